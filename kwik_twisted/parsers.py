"""
The ``kwik:`` endpoint-string parsers (``serverFromString`` / ``clientFromString``).

Twisted splits an endpoint string on ``:`` (``\\`` escapes, so ``host=\\:\\:1`` is the IPv6 address
``::1``) and hands every value to us as ``str``.  :func:`parse_server_arguments` and
:func:`parse_client_arguments` turn those strings into the keyword arguments of
:class:`~kwik_twisted.endpoints.KwikServerEndpoint` and
:class:`~kwik_twisted.endpoints.KwikClientEndpoint`; the two parser classes only add the reactor.
Argument names mirror Twisted's own ``ssl:`` and ``tls:`` strings (``privateKey``, ``certKey``,
``extraCertChain``, ``trustRoots``/``caCertsDir``, ``interface``, ``timeout``, ``bindAddress``).

Everything is checked at parse time: an unknown or malformed argument raises
:class:`~kwik_twisted.errors.ConfigurationError` (a ``ValueError``) naming it, and certificate, key
and trust-root files are read and parsed here, so a missing or broken file is reported by name
before anything listens or connects.  The PEM contents, not the paths, go into the
:class:`~kwik_twisted.core.crypto.handshake.TlsConfig`.  The full argument table is in
``docs/endpoints.rst``.

A client's ``priority`` and QoS arguments (``minBandwidth``, ``maxLatency``, ``maxJitter``,
``lossThreshold``) set the stream each ``connect()`` opens; they take units (``2M`` bits per
second, ``50ms``, ``1%``).

Lists (``paths``, ``backup``, ``cost``, ``advertise``, a server's ``interface``) are
comma-separated, since Twisted keeps only the last of repeated arguments.  An address with a port
is ``HOST:PORT`` (the colon escaped, ``127.0.0.3\\:4434``) or ``[IPv6]:PORT``; a path is ``LOCAL``
or ``LOCAL>REMOTE``; a path's cost is ``N:COST`` (``cost=1\\:5``) or ``N=COST``.  The single values
are parsed by :mod:`kwik_twisted._values`; this module knows the arguments of each side, reads
the files, and puts the values together.  Heavy imports (cryptography, the core) happen inside the
functions, so the plugin module that instantiates these parsers stays cheap to import.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import (
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from zope.interface import implementer

from kwik_twisted import _values as values
from kwik_twisted.errors import ConfigurationError

#: Largest UDP payload (65535 minus the 8-byte UDP header).
MAX_UDP_PAYLOAD = 65527
#: ``maxUdpPayload=`` when not given (ConnectionConfig.max_udp_payload's default).
DEFAULT_UDP_PAYLOAD = 16384
#: Smallest datagram size Kwik allows (its handshake packets need it).
MIN_DATAGRAM_SIZE = 1200

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)

#: Arguments both sides accept, beyond their own.
COMMON_ARGUMENTS = (
    "congestion",
    "idleTimeout",
    "keepAlive",
    "compression",
    "maxStreams",
    "mtu",
    "maxDatagramSize",
    "scheduler",
    "maxPaths",
    "qlog",
    "keyUpdate",
    "pmtud",
    "maxUdpPayload",
)
#: Client arguments that set the stream each ``connect()`` opens (its priority and QoS policy).
STREAM_ARGUMENTS = (
    "priority",
    "minBandwidth",
    "maxLatency",
    "maxJitter",
    "lossThreshold",
)
SERVER_ARGUMENTS = (
    "port",
    "interface",
    "advertise",
    "privateKey",
    "certKey",
    "extraCertChain",
    "trustRoots",
    "caCertsDir",
    "retry",
    "serverId",
    "configRotation",
) + COMMON_ARGUMENTS
CLIENT_ARGUMENTS = (
    "host",
    "port",
    "hostname",
    "trustRoots",
    "caCertsDir",
    "certKey",
    "certificate",
    "privateKey",
    "timeout",
    "bindAddress",
    "reuse",
    "resumption",
    "insecure",
    "paths",
    "path",
    "backup",
    "cost",
    "useAdvertised",
) + STREAM_ARGUMENTS + COMMON_ARGUMENTS
#: The most paths a connection may be configured for.
MAX_PATHS = 64


# --------------------------------------------------------------------------
# Files: read and checked now, so that errors name the file.


def _read(name: str, path: str) -> bytes:
    if not path:
        raise ConfigurationError(f"{name}: empty file name")
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ConfigurationError(f"{name}={path!r}: cannot read: {e.strerror or e}") from None


def _blocks(data: bytes, kind: str) -> list[bytes]:
    return [m.group(0) for m in _PEM_BLOCK.finditer(data) if m.group(1).decode() == kind]


def _certificates(name: str, path: str, data: bytes | None = None) -> list[Any]:
    """The certificates in a PEM file (the file may hold other blocks, like a key)."""
    from cryptography import x509

    blocks = _blocks(_read(name, path) if data is None else data, "CERTIFICATE")
    if not blocks:
        raise ConfigurationError(f"{name}={path!r}: no PEM certificate in the file")
    try:
        return [x509.load_pem_x509_certificate(block) for block in blocks]
    except ValueError as e:
        raise ConfigurationError(f"{name}={path!r}: bad certificate: {e}") from None


def _private_key(name: str, path: str) -> Any:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    data = _read(name, path)
    blocks = [m.group(0) for m in _PEM_BLOCK.finditer(data) if m.group(1).endswith(b"PRIVATE KEY")]
    if not blocks:
        raise ConfigurationError(f"{name}={path!r}: no PEM private key in the file")
    try:
        return serialization.load_pem_private_key(blocks[0], password=None)
    except TypeError:
        raise ConfigurationError(
            f"{name}={path!r}: the key is encrypted; kwik needs an unencrypted key"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise ConfigurationError(f"{name}={path!r}: bad private key: {e}") from None


def _pem(certificates: list[Any]) -> bytes:
    """PEM encoding of certificates, in order."""
    from cryptography.hazmat.primitives import serialization

    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def _key_pem(key: Any) -> bytes:
    """Unencrypted PKCS#8 PEM encoding of a private key."""
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _same_public_key(certificate: Any, key: Any) -> bool:
    from cryptography.hazmat.primitives import serialization

    encoding, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    mine = certificate.public_key().public_bytes(encoding, spki)
    return mine == key.public_key().public_bytes(encoding, spki)


def _identity(
    cert_name: str, cert_path: str, key_name: str, key_path: str, extra: str | None = None
) -> tuple[bytes, bytes]:
    """(certificate chain PEM, key PEM), checked to belong together."""
    chain = _certificates(cert_name, cert_path)
    key = _private_key(key_name, key_path)
    if not _same_public_key(chain[0], key):
        raise ConfigurationError(
            f"{cert_name}={cert_path!r} does not match {key_name}={key_path!r}: "
            "the certificate is for another key"
        )
    if extra is not None:
        chain += _certificates("extraCertChain", extra)
    return _pem(chain), _key_pem(key)


def _trust_roots(name: str, path: str) -> bytes:
    """A PEM file, or (like Twisted's ``trustRoots``) a directory of ``*.pem`` files."""
    directory = Path(path)
    if not directory.is_dir():
        return _pem(_certificates(name, path))
    found: list[Any] = []
    for child in sorted(directory.iterdir()):
        if child.suffix.lower() == ".pem" and child.is_file():
            data = _read(name, str(child))
            if _blocks(data, "CERTIFICATE"):
                found += _certificates(name, str(child), data)
    if not found:
        raise ConfigurationError(f"{name}={path!r}: no *.pem certificate in the directory")
    return _pem(found)


# --------------------------------------------------------------------------
# Arguments to ConnectionConfig.


def _pop_one_of(kwargs: dict[str, str], first: str, second: str) -> tuple[str, str] | None:
    if first in kwargs and second in kwargs:
        raise ConfigurationError(f"give {first} or {second}, not both")
    for name in (first, second):
        if name in kwargs:
            return name, kwargs.pop(name)
    return None


def _connection_settings(kwargs: dict[str, str]) -> dict[str, Any]:
    """Pop the arguments common to both sides; return ConnectionConfig fields."""
    fields: dict[str, Any] = {}
    if "congestion" in kwargs:
        fields["congestion_control"] = values.congestion(kwargs.pop("congestion"))
    if "scheduler" in kwargs:
        fields["scheduler"] = values.scheduler(kwargs.pop("scheduler"))
    if "idleTimeout" in kwargs:
        fields["idle_timeout"] = values.seconds("idleTimeout", kwargs.pop("idleTimeout"))
    if "keepAlive" in kwargs:
        fields["keep_alive"] = values.keep_alive(kwargs.pop("keepAlive"))
    if "compression" in kwargs:
        fields["compression"] = values.boolean("compression", kwargs.pop("compression"))
    if "maxStreams" in kwargs:
        fields["max_streams"] = values.integer("maxStreams", kwargs.pop("maxStreams"), 1, 2**60)
    if "maxPaths" in kwargs:
        fields["max_paths"] = values.integer("maxPaths", kwargs.pop("maxPaths"), 1, MAX_PATHS)
    if "keyUpdate" in kwargs:
        fields["key_update_interval"] = values.key_update(kwargs.pop("keyUpdate"))
    if "pmtud" in kwargs:
        fields["pmtud"] = values.boolean("pmtud", kwargs.pop("pmtud"))
    if "maxUdpPayload" in kwargs:
        fields["max_udp_payload"] = values.udp_payload(kwargs.pop("maxUdpPayload"))
    size = _pop_one_of(kwargs, "mtu", "maxDatagramSize")
    if size is not None:
        fields["max_datagram_size"] = values.integer(*size, MIN_DATAGRAM_SIZE, MAX_UDP_PAYLOAD)
        if "max_udp_payload" not in fields:  # path MTU discovery never searches below it
            fields["max_udp_payload"] = max(DEFAULT_UDP_PAYLOAD, fields["max_datagram_size"])
    return fields


def _qlog(kwargs: dict[str, str]) -> dict[str, str]:
    """``{"qlog": DIR}`` for ``qlog=DIR`` (qlog traces go there), else ``{}``."""
    if "qlog" not in kwargs:
        return {}
    if not kwargs["qlog"]:
        raise ConfigurationError("qlog: empty directory name")
    return {"qlog": kwargs.pop("qlog")}


def _reject_unknown(kwargs: dict[str, str], side: str, known: tuple[str, ...]) -> None:
    if kwargs:
        names = ", ".join(sorted(kwargs))
        raise ConfigurationError(
            f"unknown kwik {side} endpoint argument(s): {names}; known: {', '.join(known)}"
        )


def _positional(
    args: tuple[str, ...], kwargs: dict[str, str], names: tuple[str, ...], side: str
) -> None:
    """Move positional values into ``kwargs`` under ``names`` not given by keyword."""
    free = [name for name in names if name not in kwargs]
    if len(args) > len(free):
        extra = ":".join(args[len(free) :])
        raise ConfigurationError(f"too many positional kwik {side} endpoint arguments: {extra!r}")
    kwargs.update(zip(free, args))


def _config(tls: Any, settings: dict[str, Any]) -> Any:
    from kwik_twisted.config import ConnectionConfig

    return ConnectionConfig(tls=tls, **settings)


# --------------------------------------------------------------------------
# The two sides.


def _server_tls(kwargs: dict[str, str]) -> Any:
    from kwik_twisted.core.crypto.handshake import TlsConfig

    if "privateKey" not in kwargs:
        raise ConfigurationError(
            "a kwik server endpoint needs privateKey=PATH (and certKey=PATH unless the key "
            "file also holds the certificate)"
        )
    key_path = kwargs.pop("privateKey")
    cert_name = "certKey" if "certKey" in kwargs else "privateKey"
    cert_path = kwargs.pop("certKey", key_path)
    chain, key = _identity(
        cert_name, cert_path, "privateKey", key_path, kwargs.pop("extraCertChain", None)
    )
    roots = _pop_one_of(kwargs, "trustRoots", "caCertsDir")
    return TlsConfig(
        certificate_chain=chain,
        private_key=key,
        trust_roots=None if roots is None else _trust_roots(*roots),
        require_client_certificate=roots is not None,
    )


def parse_server_arguments(*args: str, **kwargs: str) -> dict[str, Any]:
    """
    Parse the arguments of a ``kwik:`` server string (after the prefix).

    :returns: the keyword arguments of :class:`~kwik_twisted.endpoints.KwikServerEndpoint`
        besides the reactor: ``port``, ``interface`` and ``config`` (``advertise`` goes to
        ``config.advertise``), and ``extraInterfaces`` when ``interface`` lists several.
    :raises ConfigurationError: naming the argument (or file) that is unknown or unusable.
    """
    _positional(args, kwargs, ("port",), "server")
    if "port" not in kwargs:
        raise ConfigurationError("a kwik server endpoint needs a port (kwik:PORT:...)")
    port = values.integer("port", kwargs.pop("port"), 0, 65535)
    interface, extra = values.interfaces(kwargs.pop("interface", ""))
    advertise = kwargs.pop("advertise", None)
    qlog = _qlog(kwargs)
    tls = _server_tls(kwargs)
    settings = _connection_settings(kwargs)
    if advertise is not None:
        settings["advertise"] = values.advertise(advertise, port)
    if "retry" in kwargs:
        settings["retry"] = values.retry(kwargs.pop("retry"))
    if "serverId" in kwargs:
        settings["server_id"] = values.server_id(kwargs.pop("serverId"))
    if "configRotation" in kwargs:
        settings["config_rotation"] = values.config_rotation(kwargs.pop("configRotation"))
    _reject_unknown(kwargs, "server", SERVER_ARGUMENTS)
    result = {"port": port, "interface": interface, "config": _config(tls, settings), **qlog}
    if extra:
        result["extraInterfaces"] = extra
    return result


def _client_certificate(kwargs: dict[str, str]) -> tuple[bytes | None, bytes | None]:
    named = _pop_one_of(kwargs, "certKey", "certificate")
    if named is None:
        if "privateKey" in kwargs:
            raise ConfigurationError("privateKey needs certKey=PATH (the client certificate)")
        return None, None
    cert_name, cert_path = named
    if "privateKey" in kwargs:
        return _identity(cert_name, cert_path, "privateKey", kwargs.pop("privateKey"))
    return _identity(cert_name, cert_path, cert_name, cert_path)


def _client_tls(host: str, kwargs: dict[str, str]) -> Any:
    from kwik_twisted.core.crypto.handshake import TlsConfig

    insecure = values.boolean("insecure", kwargs.pop("insecure", "no"))
    roots = _pop_one_of(kwargs, "trustRoots", "caCertsDir")
    if insecure and roots is not None:
        raise ConfigurationError(f"insecure=yes skips verification, so {roots[0]} makes no sense")
    server_name = kwargs.pop("hostname", host)
    if not server_name:
        raise ConfigurationError("hostname: empty name")
    chain, key = _client_certificate(kwargs)
    return TlsConfig(
        trust_roots=None if roots is None else _trust_roots(*roots),
        server_name=server_name,
        verify_peer=False if insecure else None,
        client_certificate=chain,
        client_private_key=key,
    )


def parse_client_arguments(*args: str, **kwargs: str) -> dict[str, Any]:
    """
    Parse the arguments of a ``kwik:`` client string (after the prefix).

    :returns: the keyword arguments of :class:`~kwik_twisted.endpoints.KwikClientEndpoint`
        besides the reactor: ``host``, ``port``, ``config``, ``timeout``, ``bindAddress``,
        ``reuse`` and ``resumption``; ``paths``, ``backup`` and ``costs`` (``{path number:
        cost}``, from ``cost``) when given (``useAdvertised`` goes to
        ``config.use_advertised``); ``priority`` (a :class:`~kwik_twisted.streams.Priority`)
        and ``qos`` (a :class:`~kwik_twisted.streams.QoSPolicy` of the ``minBandwidth``,
        ``maxLatency``, ``maxJitter`` and ``lossThreshold`` arguments) when given.
    :raises ConfigurationError: naming the argument (or file) that is unknown or unusable.
    """
    _positional(args, kwargs, ("host", "port"), "client")
    for required in ("host", "port"):
        if not kwargs.get(required):
            raise ConfigurationError(f"a kwik client endpoint needs {required}=...")
    host = kwargs.pop("host")
    port = values.integer("port", kwargs.pop("port"), 1, 65535)
    timeout = values.seconds("timeout", kwargs.pop("timeout", "30"))
    bind = kwargs.pop("bindAddress", None)
    bind_address = None if bind is None else (values.ip_address("bindAddress", bind), 0)
    reuse = values.boolean("reuse", kwargs.pop("reuse", "yes"))
    resumption = values.boolean("resumption", kwargs.pop("resumption", "yes"))
    named = _pop_one_of(kwargs, "paths", "path")
    paths = [] if named is None else values.paths(*named)
    backup = values.backup(kwargs.pop("backup"), len(paths)) if "backup" in kwargs else ()
    costs = values.costs(kwargs.pop("cost"), len(paths)) if "cost" in kwargs else {}
    stream = values.stream_settings(kwargs)
    stream.update(_qlog(kwargs))
    tls = _client_tls(host, kwargs)
    settings = _connection_settings(kwargs)
    if "useAdvertised" in kwargs:
        settings["use_advertised"] = values.boolean("useAdvertised", kwargs.pop("useAdvertised"))
    _reject_unknown(kwargs, "client", CLIENT_ARGUMENTS)
    config = _config(tls, settings)
    if len(paths) >= config.max_paths:
        raise ConfigurationError(
            f"paths: {len(paths)} extra paths and the handshake's make more than maxPaths="
            f"{config.max_paths}"
        )
    result = {
        "host": host,
        "port": port,
        "config": config,
        "timeout": timeout,
        "bindAddress": bind_address,
        "reuse": reuse,
        "resumption": resumption,
    }
    if paths:
        result["paths"] = paths
    if backup:
        result["backup"] = backup
    if costs:
        result["costs"] = costs
    result.update(stream)
    return result


@implementer(IPlugin, IStreamServerEndpointStringParser)
class KwikServerParser:
    """Makes a :class:`~kwik_twisted.endpoints.KwikServerEndpoint` from ``kwik:PORT:...``."""

    prefix = "kwik"

    def parseStreamServer(self, reactor: Any, *args: str, **kwargs: str) -> Any:
        """Parse a server string; see :func:`parse_server_arguments`."""
        arguments = parse_server_arguments(*args, **kwargs)
        from kwik_twisted import endpoints

        return endpoints.KwikServerEndpoint(reactor, **arguments)


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class KwikClientParser:
    """Makes a :class:`~kwik_twisted.endpoints.KwikClientEndpoint` from ``kwik:host=...``."""

    prefix = "kwik"

    def parseStreamClient(self, reactor: Any, *args: str, **kwargs: str) -> Any:
        """Parse a client string; see :func:`parse_client_arguments`."""
        arguments = parse_client_arguments(*args, **kwargs)
        from kwik_twisted import endpoints

        return endpoints.KwikClientEndpoint(reactor, **arguments)


__all__ = [
    "CLIENT_ARGUMENTS",
    "SERVER_ARGUMENTS",
    "KwikClientParser",
    "KwikServerParser",
    "parse_client_arguments",
    "parse_server_arguments",
]
