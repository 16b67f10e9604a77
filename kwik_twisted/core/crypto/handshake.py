"""
The TLS 1.3 handshake, sans-I/O, over pyOpenSSL memory BIOs.

Kwik carries the TLS handshake as opaque bytes in its handshake packets (much
as QUIC carries CRYPTO frames, RFC 9001 section 4): a :class:`TlsSession` is
fed the peer's bytes with :meth:`~TlsSession.receive` and answers with the
bytes to send back.  OpenSSL runs over a pair of memory BIOs
(``Connection(ctx, None)``), so no socket is ever touched; OpenSSL keeps its
own clock for certificate validity, which is the only time it consults.

Only TLS 1.3 is spoken, with ALPN ``kwik/3`` required on both sides.  When
the handshake completes the client checks the server's identity with
:mod:`service_identity` (RFC 6125: subjectAltName only, DNS or IP address).
Packet keys are not TLS record keys: both sides take them from the TLS
exporter (RFC 8446 section 7.5) with the connection IDs as context, see
:meth:`TlsSession.application_protections`.  TLS alerts are never sent as TLS
records: a failure raises :class:`~kwik_twisted.errors.HandshakeFailed`
carrying the alert, and the connection reports it in CONNECTION_CLOSE as
``0x100 + alert`` (as RFC 9001 section 4.8 does).

Resumption (protocol.rst, "Resumption").  A server issues TLS 1.3 session tickets (stateless:
sealed with a key its :class:`SSL.Context` makes at random, so one context shared by a server's
connections honours its own tickets and a restarted server rejects the old ones, which then costs
a full handshake, never a failure).  A client passes ``session`` (a ticket from an earlier
connection, see :attr:`TlsSession.session`) to offer it; a resumed handshake sends no certificate
and verifies none (the identity checked when the ticket was issued stays in it), see
:attr:`TlsSession.resumed`.  Tickets arrive after the handshake completed, so
:attr:`TlsSession.tickets` counts the client's post-handshake receptions: read
:attr:`TlsSession.session` when it moves.  There is no 0-RTT: pyOpenSSL has no early data API
and the TLS early exporter, which Kwik's 0-RTT packet keys would come from, is not bound.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import PurePath

import service_identity
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from OpenSSL._util import lib as _openssl
from service_identity.pyopenssl import verify_hostname, verify_ip_address

from kwik_twisted.errors import (
    ConfigurationError,
    HandshakeBufferExceeded,
    HandshakeFailed,
    InternalError,
    KwikError,
)

from .alerts import alert_name, verify_error_string
from .protection import IV_LENGTH, KEY_LENGTH, PacketProtection, derive_protection
from .tokens import derive_static_secret

ALPN = b"kwik/3"
CLIENT_EXPORTER_LABEL = b"EXPORTER-kwik v3 client"
SERVER_EXPORTER_LABEL = b"EXPORTER-kwik v3 server"
DEFAULT_MAX_HANDSHAKE_BYTES = 64 * 1024
#: Seconds a server's session tickets are good for (its ticket_lifetime, RFC 8446 4.6.1).
TICKET_LIFETIME = 7200
_SESSION_ID_CONTEXT = b"kwik/3"

#: A PEM source: a path (``str`` or path object) or the PEM bytes themselves.
PemSource = str | PurePath | bytes

_READ_CHUNK = 16384
_CB_ALERT, _CB_READ, _CB_WRITE = 0x4000, 0x04, 0x08
_ALERT_BAD_CERTIFICATE = 42
_ALERT_UNEXPECTED_MESSAGE = 10
_ALERT_NO_APPLICATION_PROTOCOL = 120


@dataclass(slots=True, frozen=True)
class TlsConfig:
    """
    What one side of a handshake needs.

    :ivar certificate_chain: the server's certificate, then intermediates.
    :ivar private_key: the server's private key.
    :ivar trust_roots: CA certificates to trust (a PEM file or directory path,
        or PEM bytes); ``None`` means the platform's default store.
    :ivar server_name: the host name or IP address the client asked for; it
        is sent as SNI (host names only) and checked against the certificate.
    :ivar verify_peer: verify the peer's certificate; ``None`` means yes for a
        client, and for a server only when a client certificate is required.
    :ivar client_certificate: the client's certificate chain, if it has one.
    :ivar client_private_key: the client's private key.
    :ivar require_client_certificate: a server refuses clients without one.
    :ivar max_handshake_bytes: cap on the bytes fed to ``receive()``.
    """

    certificate_chain: PemSource | None = None
    private_key: PemSource | None = None
    trust_roots: PemSource | None = None
    server_name: str | None = None
    verify_peer: bool | None = None
    client_certificate: PemSource | None = None
    client_private_key: PemSource | None = None
    require_client_certificate: bool = False
    max_handshake_bytes: int = DEFAULT_MAX_HANDSHAKE_BYTES

    def verifies_peer(self, *, is_client: bool) -> bool:
        """Whether the side in that role verifies its peer's certificate."""
        if self.verify_peer is not None:
            return self.verify_peer or self.require_client_certificate
        return is_client or self.require_client_certificate


# --------------------------------------------------------------------------
# Building an SSL.Context (done once per config and shared by sessions).


def _describe(source: PemSource) -> str:
    return "<PEM bytes>" if isinstance(source, bytes) else repr(str(source))


def _ssl_reason(error: SSL.Error) -> str:
    queue = error.args[0] if error.args and isinstance(error.args[0], list) else []
    reasons = [entry[2] for entry in queue if len(entry) == 3 and entry[2]]
    return "; ".join(reasons) or str(error) or type(error).__name__


def _load_private_key(source: PemSource) -> object:
    """
    Load a key with cryptography rather than OpenSSL's file loader, which would
    prompt on the terminal for an encrypted key's passphrase.
    """
    if not isinstance(source, bytes):
        try:
            with open(str(source), "rb") as f:
                source = f.read()
        except OSError as e:
            raise ConfigurationError(f"cannot read private key: {e}") from None
    return serialization.load_pem_private_key(source, password=None)


def server_secret(config: TlsConfig | None) -> bytes | None:
    """
    The static secret of a server (stateless reset and Retry tokens, protocol.rst "Stateless
    reset"): derived from its private key, so every process and every restart of the same server
    has the same one, with nothing more to configure.

    ``None`` without a private key (the dispatcher then draws a secret of its own).

    :raises ConfigurationError: the key cannot be read.
    """
    if config is None or config.private_key is None:
        return None
    key = _load_private_key(config.private_key)
    der = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return derive_static_secret(der)


def _use_identity(ctx: SSL.Context, chain: PemSource, key: PemSource | None) -> None:
    if key is None:
        raise ConfigurationError(f"certificate {_describe(chain)} needs a private key")
    try:
        if isinstance(chain, bytes):
            certificates = x509.load_pem_x509_certificates(chain)
            ctx.use_certificate(certificates[0])
            for extra in certificates[1:]:
                ctx.add_extra_chain_cert(extra)
        else:
            ctx.use_certificate_chain_file(str(chain))
        ctx.use_privatekey(_load_private_key(key))  # type: ignore[arg-type]
        ctx.check_privatekey()
    except SSL.Error as e:
        raise ConfigurationError(
            f"cannot use certificate {_describe(chain)} with key {_describe(key)}: {_ssl_reason(e)}"
        ) from None
    except (ValueError, TypeError, IndexError) as e:  # no PEM, encrypted or unsupported key
        raise ConfigurationError(f"cannot parse certificate or key: {e}") from None


def _load_trust_roots(ctx: SSL.Context, roots: PemSource | None) -> None:
    if roots is None:
        ctx.set_default_verify_paths()
        return
    if isinstance(roots, bytes):
        try:
            store = ctx.get_cert_store()
            for cert in x509.load_pem_x509_certificates(roots):
                store.add_cert(crypto.X509.from_cryptography(cert))  # type: ignore[union-attr]
        except (ValueError, crypto.Error) as e:
            raise ConfigurationError(f"cannot parse trust roots: {e}") from None
        return
    path = str(roots)
    try:
        ctx.load_verify_locations(path)
    except SSL.Error as e:
        if "no such file" in _ssl_reason(e):
            raise ConfigurationError(f"trust roots {path!r}: no such file") from None
        # Not a PEM file: OpenSSL's hashed-directory lookup (c_rehash layout).
        ctx.load_verify_locations(None, path)


def _select_alpn(connection: SSL.Connection, offered: list[bytes]) -> bytes:
    if ALPN in offered:
        return ALPN
    names = b", ".join(offered).decode("ascii", "replace")
    raise HandshakeFailed(
        f"peer did not offer ALPN {ALPN.decode()} (it offered {names})",
        alert=_ALERT_NO_APPLICATION_PROTOCOL,
    )


def _verify_mode(config: TlsConfig, *, is_client: bool) -> int:
    if not config.verifies_peer(is_client=is_client):
        return SSL.VERIFY_NONE
    if not is_client and config.require_client_certificate:
        return SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
    return SSL.VERIFY_PEER


def make_context(config: TlsConfig, *, is_client: bool) -> SSL.Context:
    """
    Build the OpenSSL context for one role of ``config``.

    A server should build it once and pass it to every :class:`TlsSession`:
    loading certificates is far costlier than a handshake's bookkeeping.

    :raises ConfigurationError: if a certificate, key or trust root is unusable.
    """
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_3_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION)
    # Stateless TLS 1.3 tickets need no server cache; a client keeps its tickets itself.
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    ctx.set_timeout(TICKET_LIFETIME)
    if is_client:
        if config.client_certificate is not None:
            _use_identity(ctx, config.client_certificate, config.client_private_key)
        ctx.set_alpn_protos([ALPN])
    else:
        if config.certificate_chain is None:
            raise ConfigurationError("a server needs a certificate chain and private key")
        _use_identity(ctx, config.certificate_chain, config.private_key)
        ctx.set_alpn_select_callback(_select_alpn)
        ctx.set_session_id(_SESSION_ID_CONTEXT)  # tickets of verified client certificates
    if config.verifies_peer(is_client=is_client):
        _load_trust_roots(ctx, config.trust_roots)
    return ctx


# --------------------------------------------------------------------------
# The session.


class TlsSession:
    """
    One side of a TLS 1.3 handshake, driven by bytes.

    Call :meth:`start` once, then :meth:`receive` with every chunk of the
    peer's handshake bytes, in order, and send what it returns.  When
    :attr:`complete` turns true, take the packet keys from
    :meth:`application_protections`.  Once a call has raised, every later call
    raises the same error.

    :param session: client only: a session (ticket) from an earlier connection to the same
        server to offer for resumption; the server may refuse it (a full handshake follows).
    :ivar tickets: client: how many times bytes came after completion (session tickets).
    :ivar verifications: how many certificates the verify callback saw (none when resumed).
    """

    __slots__ = (
        "_alert_received",
        "_alert_sent",
        "_config",
        "_conn",
        "_failure",
        "_is_client",
        "_received",
        "_verify_error",
        "complete",
        "tickets",
        "verifications",
    )

    def __init__(
        self,
        config: TlsConfig,
        *,
        is_client: bool,
        context: SSL.Context | None = None,
        session: SSL.Session | None = None,
    ) -> None:
        self._config = config
        self._is_client = is_client
        self._received = 0
        self._failure: KwikError | None = None
        self._alert_sent: int | None = None
        self._alert_received: int | None = None
        self._verify_error: tuple[int, int] | None = None
        self.complete = False
        self.tickets = 0
        self.verifications = 0
        ctx = context if context is not None else make_context(config, is_client=is_client)
        self._conn = SSL.Connection(ctx, None)
        self._conn.set_info_callback(self._on_info)
        self._conn.set_verify(_verify_mode(config, is_client=is_client), self._on_verify)
        if is_client:
            self._conn.set_connect_state()
            _set_sni(self._conn, config.server_name)
            if session is not None:
                self._conn.set_session(session)
        else:
            self._conn.set_accept_state()

    # -- callbacks from OpenSSL (they must never raise) -------------------

    def _on_info(self, conn: SSL.Connection, where: int, ret: int) -> None:
        if where & _CB_ALERT and (ret >> 8) == 2:  # fatal alerts only
            if where & _CB_WRITE and self._alert_sent is None:
                self._alert_sent = ret & 0xFF
            elif where & _CB_READ and self._alert_received is None:
                self._alert_received = ret & 0xFF

    def _on_verify(
        self, conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int
    ) -> bool:
        self.verifications += 1
        if not ok and self._verify_error is None:
            self._verify_error = (errno, depth)
        return bool(ok)

    # -- driving the handshake -------------------------------------------

    def start(self) -> bytes:
        """Begin: a client returns its ClientHello, a server returns ``b""``."""
        if not self._is_client:
            return b""
        return self.receive(b"")

    def receive(self, data: bytes) -> bytes:
        """
        Feed the peer's handshake bytes; return the bytes to send to the peer.

        Bytes arriving after completion (session tickets) are consumed too.

        :raises HandshakeFailed: the handshake failed; ``alert`` says how.
        :raises HandshakeBufferExceeded: the peer sent more than
            ``max_handshake_bytes``.
        """
        if self._failure is not None:
            raise self._failure
        try:
            self._feed(data)
            if not self.complete:
                self._advance()
            elif data and self._is_client:
                self.tickets += 1
            if self.complete:
                self._drain_post_handshake()
            return self._outgoing()
        except KwikError as e:
            self._failure = e
        except SSL.Error as e:
            self._failure = self._translate(e)
        except Exception as e:  # OpenSSL bindings may raise anything; nothing untyped escapes
            self._failure = HandshakeFailed(f"TLS library error: {e!r}", alert=self._alert_sent)
        raise self._failure

    def _feed(self, data: bytes) -> None:
        if not data:
            return
        self._received += len(data)
        if self._received > self._config.max_handshake_bytes:
            raise HandshakeBufferExceeded(
                f"peer sent {self._received} handshake bytes, more than the "
                f"{self._config.max_handshake_bytes} allowed"
            )
        self._conn.bio_write(data)

    def _advance(self) -> None:
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            return
        self._check_alpn()
        if self._is_client and self._config.verifies_peer(is_client=True):
            self._check_identity()
        self.complete = True
        if self._is_client:
            # Kwik never sends a TLS close_notify; without this, freeing the connection would mark
            # its session (the latest ticket, maybe kept for later) unresumable.  Kwik never
            # writes TLS application data, which is all that a sent shutdown forbids.
            self._conn.set_shutdown(SSL.SENT_SHUTDOWN)

    def _drain_post_handshake(self) -> None:
        while True:
            try:
                data = self._conn.recv(_READ_CHUNK)
            except SSL.WantReadError:
                return
            except SSL.ZeroReturnError:
                raise HandshakeFailed("peer closed the TLS session") from None
            if data:
                raise HandshakeFailed(
                    "peer sent TLS application data, which Kwik never uses",
                    alert=_ALERT_UNEXPECTED_MESSAGE,
                )

    def _outgoing(self) -> bytes:
        chunks = []
        while True:
            try:
                chunks.append(self._conn.bio_read(_READ_CHUNK))
            except SSL.WantReadError:
                return b"".join(chunks)

    # -- checks after completion -----------------------------------------

    def _check_alpn(self) -> None:
        if self._conn.get_alpn_proto_negotiated() != ALPN:
            verb = "select" if self._is_client else "offer"
            raise HandshakeFailed(
                f"peer did not {verb} ALPN {ALPN.decode()}",
                alert=_ALERT_NO_APPLICATION_PROTOCOL,
            )

    def _check_identity(self) -> None:
        name = self._config.server_name
        if name is None:
            raise HandshakeFailed("no server_name configured to verify the certificate against")
        address = _ip_address(name)
        try:
            if address is None:
                verify_hostname(self._conn, name)
            else:
                verify_ip_address(self._conn, address)
        except service_identity.VerificationError:
            kind = "hostname" if address is None else "IP address"
            raise HandshakeFailed(
                f"{kind} mismatch: certificate is not valid for {name!r}",
                alert=_ALERT_BAD_CERTIFICATE,
            ) from None
        except service_identity.CertificateError as e:
            raise HandshakeFailed(
                f"certificate cannot be checked for {name!r}: {e}", alert=_ALERT_BAD_CERTIFICATE
            ) from None

    def _translate(self, error: SSL.Error) -> HandshakeFailed:
        alert = self._alert_sent if self._alert_sent is not None else self._alert_received
        if self._verify_error is not None:
            errno, depth = self._verify_error
            where = "" if depth == 0 else f" (at chain depth {depth})"
            reason = f"certificate verify failed: {verify_error_string(errno)}{where}"
        elif self._alert_received is not None:
            reason = (
                f"peer aborted the handshake with TLS alert {self._alert_received} "
                f"({alert_name(self._alert_received)})"
            )
        elif isinstance(error, SSL.ZeroReturnError):
            reason = "peer closed the TLS session during the handshake"
        else:
            reason = _ssl_reason(error)
            if alert is not None:
                reason += f" (sent TLS alert {alert}, {alert_name(alert)})"
        return HandshakeFailed(reason, alert=alert)

    # -- results ----------------------------------------------------------

    @property
    def peer_certificate(self) -> x509.Certificate | None:
        """The peer's leaf certificate, or ``None`` if it sent none."""
        return self._conn.get_peer_certificate(as_cryptography=True)

    @property
    def resumed(self) -> bool:
        """Whether the handshake resumed a session (a ticket) instead of a full one."""
        return self.complete and _session_reused(self._conn)

    @property
    def session(self) -> SSL.Session | None:
        """
        The session to resume a later connection to this server with, or ``None``.

        Meaningful on a client once :attr:`tickets` is non-zero (before, it holds no ticket).
        """
        if not self.complete or self._failure is not None:
            return None
        return self._conn.get_session()

    @property
    def alpn(self) -> str | None:
        """The negotiated application protocol (``"kwik/3"``), or ``None``."""
        negotiated = self._conn.get_alpn_proto_negotiated()
        return negotiated.decode("ascii", "replace") if negotiated else None

    @property
    def cipher(self) -> str | None:
        """The TLS cipher suite name, such as ``TLS_AES_128_GCM_SHA256``."""
        return self._conn.get_cipher_name()

    def application_protections(self, context: bytes) -> tuple[PacketProtection, PacketProtection]:
        """
        Return ``(send, receive)`` packet protections from the TLS exporter.

        ``context`` binds the keys to the connection: original destination
        connection ID + client connection ID + server connection ID.

        :raises InternalError: if the handshake is not complete.
        """
        if not self.complete or self._failure is not None:
            raise InternalError("application keys requested before the handshake completed")
        size = KEY_LENGTH + IV_LENGTH
        client = self._conn.export_keying_material(CLIENT_EXPORTER_LABEL, size, bytes(context))
        server = self._conn.export_keying_material(SERVER_EXPORTER_LABEL, size, bytes(context))
        send, receive = (client, server) if self._is_client else (server, client)
        return derive_protection(send), derive_protection(receive)


def _session_reused(conn: SSL.Connection) -> bool:
    """``SSL_session_reused``: pyOpenSSL 26 has no wrapper, so its own bindings are called."""
    method = getattr(conn, "session_reused", None)
    if method is not None:
        return bool(method())
    return bool(_openssl.SSL_session_reused(conn._ssl))


def _ip_address(name: str) -> str | None:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return None


def _set_sni(conn: SSL.Connection, name: str | None) -> None:
    if name is None or _ip_address(name) is not None:
        return  # RFC 6066 section 3: no IP addresses in SNI
    try:
        conn.set_tlsext_host_name(name.encode("idna"))
    except (UnicodeError, ValueError, TypeError):
        raise ConfigurationError(f"server name {name!r} is not a valid host name") from None


__all__ = [
    "ALPN",
    "CLIENT_EXPORTER_LABEL",
    "SERVER_EXPORTER_LABEL",
    "TICKET_LIFETIME",
    "TlsConfig",
    "TlsSession",
    "make_context",
]
