"""
Tests for the sans-I/O TLS 1.3 handshake (kwik_twisted.core.crypto.handshake).

Client and server sessions are wired back to back by shuttling bytes in
memory; raw pyOpenSSL peers stand in for implementations without ALPN.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st
from OpenSSL import SSL, crypto
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.crypto.handshake import TlsConfig, TlsSession, make_context
from kwik_twisted.errors import (
    ConfigurationError,
    ErrorCode,
    HandshakeBufferExceeded,
    HandshakeFailed,
    InternalError,
    KwikError,
)

from ...certs import Identity, fixtures

CONTEXT = bytes(range(24))  # original DCID + client CID + server CID


def server_config(identity: Identity | None = None, **kw: object) -> TlsConfig:
    """A server configuration with ``identity`` (default: the test server) as PEM bytes."""
    identity = identity or fixtures().server
    return TlsConfig(certificate_chain=identity.chain_pem, private_key=identity.key_pem, **kw)


def client_config(server_name: str = "localhost", **kw: object) -> TlsConfig:
    """A client configuration trusting the test CA."""
    kw.setdefault("trust_roots", fixtures().ca_pem)
    return TlsConfig(server_name=server_name, **kw)


def shuttle(client: TlsSession, server: TlsSession, rounds: int = 10) -> None:
    """Carry bytes between the two sessions until neither has anything to send."""
    to_server, to_client = client.start(), server.start()
    for _ in range(rounds):
        if not (to_server or to_client):
            return
        if to_server:
            to_client += server.receive(to_server)
            to_server = b""
        if to_client:
            to_server += client.receive(to_client)
            to_client = b""
    raise AssertionError("handshake did not go quiet")


def connect(client_cfg: TlsConfig, server_cfg: TlsConfig) -> tuple[TlsSession, TlsSession]:
    """Run a full handshake and return (client, server)."""
    client = TlsSession(client_cfg, is_client=True)
    server = TlsSession(server_cfg, is_client=False)
    shuttle(client, server)
    return client, server


def san_of(certificate: x509.Certificate) -> x509.SubjectAlternativeName:
    """The subjectAltName extension of ``certificate``."""
    return certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


class HandshakeTests(SynchronousTestCase):
    """A successful handshake and the keys it yields."""

    def test_handshake_completes_with_tls13_and_alpn(self) -> None:
        """
        Both sides complete, negotiate kwik/3 over a TLS 1.3 suite, and the client
        sees the server's certificate.
        """
        client, server = connect(client_config(), server_config())
        self.assertTrue(client.complete)
        self.assertTrue(server.complete)
        self.assertEqual((client.alpn, server.alpn), ("kwik/3", "kwik/3"))
        self.assertEqual(client.cipher, server.cipher)
        self.assertTrue(client.cipher.startswith("TLS_"))
        self.assertEqual(
            san_of(client.peer_certificate).get_values_for_type(x509.DNSName), ["localhost"]
        )
        self.assertIsNone(server.peer_certificate)

    def test_certificates_load_from_files_too(self) -> None:
        """Certificate chain, key and trust roots given as file paths work like PEM bytes."""
        f = fixtures()
        client, server = connect(
            TlsConfig(trust_roots=str(f.ca_path), server_name="localhost"),
            TlsConfig(certificate_chain=f.server.chain_path, private_key=str(f.server.key_path)),
        )
        self.assertTrue(client.complete and server.complete)

    def test_trust_roots_may_be_a_hashed_directory(self) -> None:
        """A c_rehash-style directory of CA files works as trust roots."""
        directory = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, directory)
        ca = crypto.load_certificate(crypto.FILETYPE_PEM, fixtures().ca_pem)
        (directory / f"{ca.subject_name_hash():08x}.0").write_bytes(fixtures().ca_pem)
        client, _ = connect(client_config(trust_roots=str(directory)), server_config())
        self.assertTrue(client.complete)

    def test_both_sides_derive_matching_application_keys(self) -> None:
        """The client's send keys are the server's receive keys, and the reverse."""
        client, server = connect(client_config(), server_config())
        client_send, client_receive = client.application_protections(CONTEXT)
        server_send, server_receive = server.application_protections(CONTEXT)
        self.assertEqual(
            server_receive.open(2, 9, b"hdr", client_send.seal(2, 9, b"hdr", b"up")), b"up"
        )
        self.assertEqual(
            client_receive.open(2, 9, b"hdr", server_send.seal(2, 9, b"hdr", b"dn")), b"dn"
        )

    def test_directions_have_different_keys(self) -> None:
        """A packet the client sealed does not open with the client's own receive keys."""
        client, _ = connect(client_config(), server_config())
        send, receive = client.application_protections(CONTEXT)
        with self.assertRaises(KwikError):
            receive.open(0, 0, b"", send.seal(0, 0, b"", b"x"))

    def test_context_binds_the_keys(self) -> None:
        """Keys exported with different connection IDs as context do not interoperate."""
        client, server = connect(client_config(), server_config())
        send, _ = client.application_protections(CONTEXT)
        _, receive = server.application_protections(CONTEXT[:-1] + b"\xff")
        with self.assertRaises(KwikError):
            receive.open(0, 0, b"", send.seal(0, 0, b"", b"x"))

    def test_separate_handshakes_get_separate_keys(self) -> None:
        """Two connections with the same context still get unrelated keys."""
        first, _ = connect(client_config(), server_config())
        _, second = connect(client_config(), server_config())
        send, _ = first.application_protections(CONTEXT)
        _, receive = second.application_protections(CONTEXT)
        with self.assertRaises(KwikError):
            receive.open(0, 0, b"", send.seal(0, 0, b"", b"x"))

    def test_keys_before_completion_are_an_internal_error(self) -> None:
        """Asking for application keys mid-handshake is a bug in the caller."""
        client = TlsSession(client_config(), is_client=True)
        client.start()
        with self.assertRaises(InternalError):
            client.application_protections(CONTEXT)

    def test_byte_at_a_time_delivery_completes(self) -> None:
        """Handshake bytes split into single bytes still complete the handshake."""
        client = TlsSession(client_config(), is_client=True)
        server = TlsSession(server_config(), is_client=False)
        hello = client.start()
        replies = [server.receive(hello[i : i + 1]) for i in range(len(hello))]
        self.assertEqual(replies[:-1], [b""] * (len(hello) - 1))
        finished = b"".join(client.receive(replies[-1][i : i + 1]) for i in range(len(replies[-1])))
        self.assertTrue(client.complete)
        tickets = b"".join(server.receive(finished[i : i + 1]) for i in range(len(finished)))
        self.assertTrue(server.complete)
        self.assertEqual(client.receive(tickets), b"")

    def test_a_server_context_is_reusable(self) -> None:
        """One context built by make_context serves several handshakes."""
        config = server_config()
        context = make_context(config, is_client=False)
        for _ in range(3):
            client = TlsSession(client_config(), is_client=True)
            server = TlsSession(config, is_client=False, context=context)
            shuttle(client, server)
            self.assertTrue(server.complete)

    def test_unverified_client_accepts_any_certificate(self) -> None:
        """With verify_peer=False the client accepts a self-signed certificate for any name."""
        client, _ = connect(
            client_config("wrong.example", verify_peer=False), server_config(fixtures().self_signed)
        )
        self.assertTrue(client.complete)


class CertificateFailureTests(SynchronousTestCase):
    """The client refuses servers it cannot verify, saying why."""

    def assertHandshakeFails(
        self, client_cfg: TlsConfig, server_cfg: TlsConfig, *phrases: str, alert: int
    ) -> HandshakeFailed:
        """Assert the handshake fails with ``alert`` and a reason containing ``phrases``."""
        failure = self.assertRaises(HandshakeFailed, connect, client_cfg, server_cfg)
        for phrase in phrases:
            self.assertIn(phrase, failure.reason)
        self.assertEqual(failure.alert, alert)
        self.assertEqual(failure.code, ErrorCode.HANDSHAKE_FAILED + alert)
        return failure

    def test_wrong_host_name_fails(self) -> None:
        """A certificate for localhost is refused for wrong.example (bad_certificate)."""
        self.assertHandshakeFails(
            client_config("wrong.example"),
            server_config(),
            "hostname mismatch",
            "'wrong.example'",
            alert=42,
        )

    def test_failed_session_is_not_complete_and_has_no_keys(self) -> None:
        """After a post-handshake check fails, the session is not complete and exports nothing."""
        client = TlsSession(client_config("wrong.example"), is_client=True)
        server = TlsSession(server_config(), is_client=False)
        self.assertRaises(HandshakeFailed, shuttle, client, server)
        self.assertFalse(client.complete)
        self.assertRaises(InternalError, client.application_protections, CONTEXT)

    def test_untrusted_ca_fails(self) -> None:
        """A chain from a CA the client does not trust is refused (unknown_ca)."""
        self.assertHandshakeFails(
            client_config(trust_roots=fixtures().other_ca_pem),
            server_config(),
            "certificate verify failed",
            alert=48,
        )

    def test_self_signed_certificate_fails(self) -> None:
        """A self-signed server certificate is refused and named as such."""
        self.assertHandshakeFails(
            client_config(),
            server_config(fixtures().self_signed),
            "self-signed certificate",
            alert=48,
        )

    def test_expired_certificate_fails(self) -> None:
        """An expired certificate is refused with certificate_expired."""
        self.assertHandshakeFails(
            client_config(), server_config(fixtures().expired), "certificate has expired", alert=45
        )

    def test_certificate_without_subject_alt_name_fails(self) -> None:
        """A certificate with only a commonName cannot be matched (RFC 6125) and is refused."""
        self.assertHandshakeFails(
            client_config(), server_config(fixtures().no_san), "subjectAltName", alert=42
        )

    def test_ip_address_san_is_verified(self) -> None:
        """IPv4 and IPv6 server names match the certificate's IP address SANs."""
        for address in ("127.0.0.1", "::1", "0:0::1"):
            client, _ = connect(client_config(address), server_config())
            self.assertTrue(client.complete, address)

    def test_ip_address_not_in_san_fails(self) -> None:
        """An IP address the certificate does not list is refused."""
        self.assertHandshakeFails(
            client_config("10.0.0.1"), server_config(), "IP address mismatch", "10.0.0.1", alert=42
        )

    def test_host_name_does_not_match_an_ip_san(self) -> None:
        """A host name is not matched against IP SANs, nor an address against DNS SANs."""
        self.assertHandshakeFails(
            client_config("127.0.0.2"), server_config(), "IP address", alert=42
        )


class ClientCertificateTests(SynchronousTestCase):
    """Servers that ask for client certificates."""

    def requiring_server(self) -> TlsConfig:
        """A server that requires a client certificate from the test CA."""
        return server_config(trust_roots=fixtures().ca_pem, require_client_certificate=True)

    def client_with(self, identity: Identity) -> TlsConfig:
        """A client presenting ``identity``."""
        return client_config(
            client_certificate=identity.chain_pem, client_private_key=identity.key_pem
        )

    def test_required_certificate_provided(self) -> None:
        """A client with a certificate from the trusted CA is accepted and seen by the server."""
        _, server = connect(self.client_with(fixtures().client), self.requiring_server())
        self.assertTrue(server.complete)
        names = san_of(server.peer_certificate).get_values_for_type(x509.DNSName)
        self.assertEqual(names, ["client.example"])

    def test_required_certificate_missing(self) -> None:
        """A client without a certificate is refused with certificate_required (116)."""
        failure = self.assertRaises(
            HandshakeFailed, connect, client_config(), self.requiring_server()
        )
        self.assertEqual(failure.alert, 116)
        self.assertIn("certificate", failure.reason)

    def test_untrusted_client_certificate_refused(self) -> None:
        """A self-signed client certificate fails the server's verification."""
        failure = self.assertRaises(
            HandshakeFailed,
            connect,
            self.client_with(fixtures().self_signed),
            self.requiring_server(),
        )
        self.assertIn("certificate verify failed", failure.reason)

    def test_optional_client_certificate(self) -> None:
        """A verifying server that does not require one accepts clients with or without it."""
        config = server_config(trust_roots=fixtures().ca_pem, verify_peer=True)
        _, anonymous = connect(client_config(), config)
        _, known = connect(self.client_with(fixtures().client), config)
        self.assertIsNone(anonymous.peer_certificate)
        self.assertIsNotNone(known.peer_certificate)


def raw_context(identity: Identity | None = None) -> SSL.Context:
    """A plain pyOpenSSL TLS 1.3 context without ALPN, optionally with a certificate."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    if identity is not None:
        ctx.use_certificate(x509.load_pem_x509_certificates(identity.chain_pem)[0])
        ctx.use_privatekey_file(str(identity.key_path))
    return ctx


def pump(conn: SSL.Connection, data: bytes = b"") -> bytes:
    """Feed ``data`` to a raw connection, advance its handshake and return its output."""
    if data:
        conn.bio_write(data)
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        pass
    return conn.bio_read(65536)


class ProtocolFailureTests(SynchronousTestCase):
    """ALPN, alerts, garbage and the handshake byte cap all end in typed errors."""

    def test_client_without_alpn_is_refused(self) -> None:
        """
        A server refuses a client that does not offer kwik/3 (no_application_protocol)
        by the time the handshake would complete.
        """
        raw = SSL.Connection(raw_context(), None)
        raw.set_connect_state()
        server = TlsSession(server_config(), is_client=False)
        finished = pump(raw, server.receive(pump(raw)))
        failure = self.assertRaises(HandshakeFailed, server.receive, finished)
        self.assertFalse(server.complete)
        self.assertIn("did not offer ALPN kwik/3", failure.reason)
        self.assertEqual(failure.alert, 120)

    def test_client_offering_other_protocols_is_refused_at_once(self) -> None:
        """A client offering only other ALPN protocols is refused on its ClientHello."""
        context = raw_context()
        context.set_alpn_protos([b"h3", b"http/1.1"])
        raw = SSL.Connection(context, None)
        raw.set_connect_state()
        server = TlsSession(server_config(), is_client=False)
        failure = self.assertRaises(HandshakeFailed, server.receive, pump(raw))
        self.assertIn("did not offer ALPN kwik/3 (it offered h3, http/1.1)", failure.reason)
        self.assertEqual(failure.alert, 120)

    def test_server_without_alpn_is_refused(self) -> None:
        """A client refuses a server that does not select kwik/3."""
        raw = SSL.Connection(raw_context(fixtures().server), None)
        raw.set_accept_state()
        client = TlsSession(client_config(), is_client=True)
        failure = self.assertRaises(HandshakeFailed, client.receive, pump(raw, client.start()))
        self.assertIn("did not select ALPN kwik/3", failure.reason)
        self.assertEqual(failure.alert, 120)

    def test_peer_alert_is_reported(self) -> None:
        """A fatal alert record from the peer fails the handshake with that alert."""
        client = TlsSession(client_config(), is_client=True)
        client.start()
        alert_record = b"\x15\x03\x03\x00\x02\x02\x28"  # fatal handshake_failure (40)
        failure = self.assertRaises(HandshakeFailed, client.receive, alert_record)
        self.assertEqual(failure.alert, 40)
        self.assertIn("handshake_failure", failure.reason)

    def test_failure_is_sticky(self) -> None:
        """After a failure every later receive() raises the same error."""
        server = TlsSession(server_config(), is_client=False)
        first = self.assertRaises(HandshakeFailed, server.receive, b"\x16\x03\x01\xff\xffgarbage")
        second = self.assertRaises(HandshakeFailed, server.receive, b"")
        self.assertIs(first, second)

    def test_garbage_after_completion_is_a_typed_error(self) -> None:
        """A forged record fed to a completed session raises HandshakeFailed, nothing else."""
        client, _ = connect(client_config(), server_config())
        self.assertRaises(HandshakeFailed, client.receive, b"\x17\x03\x03\x00\x05hello")

    def test_handshake_byte_cap(self) -> None:
        """A server stops at max_handshake_bytes, counted across calls."""
        client = TlsSession(client_config(), is_client=True)
        hello = client.start()
        server = TlsSession(server_config(max_handshake_bytes=len(hello) - 1), is_client=False)
        server.receive(hello[:-2])
        failure = self.assertRaises(HandshakeBufferExceeded, server.receive, hello[-2:])
        self.assertEqual(failure.code, ErrorCode.HANDSHAKE_BUFFER_EXCEEDED)
        self.assertRaises(HandshakeBufferExceeded, server.receive, b"")

    def test_handshake_exactly_at_the_cap_succeeds(self) -> None:
        """Exactly max_handshake_bytes is still allowed."""
        client = TlsSession(client_config(), is_client=True)
        hello = client.start()
        server = TlsSession(server_config(max_handshake_bytes=len(hello)), is_client=False)
        self.assertNotEqual(server.receive(hello), b"")

    @given(chunks=st.lists(st.binary(max_size=300), max_size=4))
    @settings(max_examples=60, deadline=None)
    def test_random_bytes_to_a_server_raise_only_typed_errors(self, chunks: list[bytes]) -> None:
        """Whatever bytes a server is fed, receive() returns bytes or raises a KwikError."""
        self.feed_randomly(
            TlsSession(server_config(), is_client=False, context=SERVER_CONTEXT), chunks
        )

    @given(chunks=st.lists(st.binary(max_size=300), max_size=4))
    @settings(max_examples=30, deadline=None)
    def test_random_bytes_to_a_client_raise_only_typed_errors(self, chunks: list[bytes]) -> None:
        """Whatever bytes a client is fed after its ClientHello, only KwikErrors escape."""
        client = TlsSession(client_config(), is_client=True, context=CLIENT_CONTEXT)
        client.start()
        self.feed_randomly(client, chunks)

    @given(prefix=st.binary(max_size=8), body=st.binary(max_size=200))
    @settings(max_examples=40, deadline=None)
    def test_record_shaped_bytes_raise_only_typed_errors(self, prefix: bytes, body: bytes) -> None:
        """Bytes that look like TLS handshake records go deeper into OpenSSL, still typed."""
        record = b"\x16\x03\x01" + len(body).to_bytes(2, "big") + prefix + body
        self.feed_randomly(
            TlsSession(server_config(), is_client=False, context=SERVER_CONTEXT), [record]
        )

    def feed_randomly(self, session: TlsSession, chunks: list[bytes]) -> None:
        """Feed every chunk; accept bytes or a KwikError, and nothing else."""
        for chunk in chunks:
            try:
                self.assertIsInstance(session.receive(chunk), bytes)
            except KwikError:
                return


SERVER_CONTEXT = make_context(server_config(), is_client=False)
CLIENT_CONTEXT = make_context(client_config(), is_client=True)


class ConfigurationTests(SynchronousTestCase):
    """Unusable settings are ConfigurationErrors, raised before any byte is exchanged."""

    def test_server_needs_a_certificate(self) -> None:
        """A server configuration without a certificate chain is refused."""
        self.assertRaises(ConfigurationError, make_context, TlsConfig(), is_client=False)

    def test_certificate_needs_a_key(self) -> None:
        """A certificate chain without a private key is refused."""
        config = TlsConfig(certificate_chain=fixtures().server.chain_pem)
        self.assertRaises(ConfigurationError, make_context, config, is_client=False)

    def test_key_must_match_the_certificate(self) -> None:
        """A private key that does not belong to the certificate is refused."""
        f = fixtures()
        config = TlsConfig(certificate_chain=f.server.chain_pem, private_key=f.client.key_pem)
        self.assertRaises(ConfigurationError, make_context, config, is_client=False)

    def test_garbage_pem_is_refused(self) -> None:
        """PEM bytes that hold no certificate, or a bad trust-root blob, are refused."""
        bad = TlsConfig(certificate_chain=b"nonsense", private_key=fixtures().server.key_pem)
        self.assertRaises(ConfigurationError, make_context, bad, is_client=False)
        roots = TlsConfig(trust_roots=b"nonsense")
        self.assertRaises(ConfigurationError, make_context, roots, is_client=True)

    def test_encrypted_key_file_is_refused_without_prompting(self) -> None:
        """A passphrase-protected key file fails as configuration, never prompting for input."""
        f = fixtures()
        key = serialization.load_pem_private_key(f.server.key_pem, password=None)
        encrypted = f.directory / "encrypted.key"
        encrypted.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            )
        )
        config = TlsConfig(certificate_chain=f.server.chain_path, private_key=str(encrypted))
        self.assertRaises(ConfigurationError, make_context, config, is_client=False)

    def test_missing_files_are_refused(self) -> None:
        """Paths that do not exist are reported as configuration errors."""
        missing = str(fixtures().directory / "missing.pem")
        self.assertRaises(
            ConfigurationError, make_context, TlsConfig(trust_roots=missing), is_client=True
        )
        config = TlsConfig(certificate_chain=missing, private_key=missing)
        self.assertRaises(ConfigurationError, make_context, config, is_client=False)

    def test_invalid_server_name_is_refused(self) -> None:
        """A server name that is not a valid host name is a configuration error."""
        self.assertRaises(
            ConfigurationError, TlsSession, client_config("bad..name"), is_client=True
        )

    def test_client_without_server_name_cannot_verify(self) -> None:
        """A verifying client with no server_name fails instead of accepting any certificate."""
        failure = self.assertRaises(
            HandshakeFailed, connect, TlsConfig(trust_roots=fixtures().ca_pem), server_config()
        )
        self.assertIn("server_name", failure.reason)
