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

Lists (``paths``, ``backup``, ``advertise``, a server's ``interface``) are comma-separated, since
Twisted keeps only the last of repeated arguments.  An address with a port is ``HOST:PORT`` (the
colon escaped, ``127.0.0.3\\:4434``) or ``[IPv6]:PORT``; a path is ``LOCAL`` or
``LOCAL>REMOTE``.  Heavy imports (cryptography, the core) happen inside the functions, so
the plugin module that instantiates these parsers stays cheap to import.
"""

from __future__ import annotations

import ipaddress
import math
import re
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import (
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from zope.interface import implementer

from kwik_twisted.errors import ConfigurationError

#: Largest UDP payload (65535 minus the 8-byte UDP header).
MAX_UDP_PAYLOAD = 65527
#: Smallest datagram size Kwik allows (its handshake packets need it).
MIN_DATAGRAM_SIZE = 1200

_TRUE = frozenset({"yes", "true", "on", "1"})
_FALSE = frozenset({"no", "false", "off", "0"})
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
    "insecure",
    "paths",
    "path",
    "backup",
    "useAdvertised",
) + STREAM_ARGUMENTS + COMMON_ARGUMENTS
#: The most paths a connection may be configured for.
MAX_PATHS = 64


# --------------------------------------------------------------------------
# Scalar values.


def _boolean(name: str, value: str) -> bool:
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigurationError(f"{name}={value!r}: expected yes or no")


def _integer(name: str, value: str, minimum: int, maximum: int) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        raise ConfigurationError(f"{name}={value!r}: expected an integer") from None
    if not minimum <= number <= maximum:
        raise ConfigurationError(f"{name}={value!r}: must be between {minimum} and {maximum}")
    return number


def _seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigurationError(f"{name}={value!r}: expected a number of seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(f"{name}={value!r}: must be a positive number of seconds")
    return seconds


def _ip_address(name: str, value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ConfigurationError(f"{name}={value!r}: expected an IPv4 or IPv6 address") from None


def _keep_alive(value: str) -> float | str | None:
    """``no`` (no PINGs), ``auto`` (the default: PINGs while a stream is open) or seconds."""
    from kwik_twisted.config import KEEP_ALIVE_AUTO

    word = value.strip().lower()
    if word in _FALSE:
        return None
    if word == KEEP_ALIVE_AUTO:
        return KEEP_ALIVE_AUTO
    return _seconds("keepAlive", value)


def _congestion(value: str) -> str:
    from kwik_twisted.core.congestion import available_controllers

    name = value.strip().lower()
    known = available_controllers()
    if name not in known:
        raise ConfigurationError(f"congestion={value!r}: unknown; known: {', '.join(known)}")
    return name


def _scheduler(value: str) -> str:
    from kwik_twisted.core.paths.scheduler import available_schedulers

    name = value.strip().lower()
    known = available_schedulers()
    if name not in known:
        raise ConfigurationError(f"scheduler={value!r}: unknown; known: {', '.join(known)}")
    return name


# --------------------------------------------------------------------------
# A stream's priority and QoS policy.

_PRIORITIES = ("normal", "high", "critical")
_QUANTITY = re.compile(r"(?P<number>[0-9.eE+-]+)\s*(?P<unit>[a-zA-Z%]*)")
#: Units of durations (to seconds) and of rates (to bits per second; decimal).
_SECONDS = {"": 1, "s": 1, "ms": 1e-3}
_RATES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def _priority(value: str) -> Any:
    """``normal``, ``high`` or ``critical``."""
    from kwik_twisted.streams import Priority

    word = value.strip().lower()
    if word not in _PRIORITIES:
        raise ConfigurationError(f"priority={value!r}: expected {', '.join(_PRIORITIES)}")
    return Priority[word.upper()]


def _quantity(name: str, value: str, units: dict, expected: str) -> float:
    """A finite number with one of ``units`` (a multiplier each), scaled."""
    match = _QUANTITY.fullmatch(value.strip())
    unit = match["unit"].lower() if match else None
    try:
        number = float(match["number"]) * units[unit]
    except (TypeError, KeyError, ValueError):
        raise ConfigurationError(f"{name}={value!r}: expected {expected}") from None
    if not math.isfinite(number):
        raise ConfigurationError(f"{name}={value!r}: expected {expected}")
    return number


def _duration(name: str, value: str) -> float:
    """``50ms``, ``0.05s`` or ``0.05`` (seconds): a positive number of seconds."""
    seconds = _quantity(name, value, _SECONDS, "a duration such as 50ms, 0.05s or 0.05")
    if seconds <= 0:
        raise ConfigurationError(f"{name}={value!r}: must be a positive duration")
    return seconds


def _rate(name: str, value: str) -> float:
    """``2M``, ``500k``, ``1.5G`` or ``64000``: a positive number of bits per second."""
    rate = _quantity(name, value, _RATES, "bits per second such as 2M, 500k, 1.5G or 64000")
    if rate <= 0:
        raise ConfigurationError(f"{name}={value!r}: must be a positive rate")
    return int(rate) if rate.is_integer() else rate


def _fraction(name: str, value: str) -> float:
    """``1%`` or ``0.01``: a fraction between 0 and 1."""
    fraction = _quantity(name, value, {"": 1, "%": 0.01}, "a fraction such as 1% or 0.01")
    if not 0 <= fraction <= 1:
        raise ConfigurationError(f"{name}={value!r}: must be between 0 and 1 (0% and 100%)")
    return fraction


#: Endpoint argument -> (QoSPolicy field, parser).
_QOS_ARGUMENTS = {
    "minBandwidth": ("min_bandwidth", _rate),
    "maxLatency": ("max_latency", _duration),
    "maxJitter": ("max_jitter", _duration),
    "lossThreshold": ("loss_threshold", _fraction),
}


def _stream_settings(kwargs: dict[str, str]) -> dict[str, Any]:
    """Pop ``priority`` and the QoS arguments; return ``priority`` and ``qos`` when given."""
    from kwik_twisted.streams import QoSPolicy

    result: dict[str, Any] = {}
    if "priority" in kwargs:
        result["priority"] = _priority(kwargs.pop("priority"))
    fields = {}
    for name, (field, parse) in _QOS_ARGUMENTS.items():
        if name in kwargs:
            value = kwargs.pop(name)
            fields[field] = parse(name, value)
            try:
                QoSPolicy(**{field: fields[field]})
            except ConfigurationError as e:  # out of the wire's range
                raise ConfigurationError(f"{name}={value!r}: {e}") from None
    if fields:
        result["qos"] = QoSPolicy(**fields)
    return result


# --------------------------------------------------------------------------
# Lists, addresses and paths.


def _items(name: str, value: str) -> list[str]:
    """The comma-separated items of ``value`` (none may be empty)."""
    items = [item.strip() for item in value.split(",")]
    if not all(items):
        raise ConfigurationError(f"{name}={value!r}: empty item in the comma-separated list")
    return items


def _host_port(name: str, text: str, default_port: int | None) -> tuple[str, int | None]:
    """``HOST``, ``HOST:PORT``, ``IPv6``, ``[IPv6]`` or ``[IPv6]:PORT``; the port may be absent."""
    port: str | None = None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigurationError(f"{name}: {text!r} is not [ADDRESS] or [ADDRESS]:PORT")
        port = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host = text
    host = _ip_address(name, host)
    if port is None:
        return host, default_port
    return host, _integer(f"{name} port in {text!r}", port, 1, 65535)


def _paths(name: str, value: str) -> list[tuple[str, str | None, int | None]]:
    """``LOCAL`` or ``LOCAL>REMOTE[:PORT]`` items: (local, remote host or None, port or None)."""
    paths = []
    for item in _items(name, value):
        local, arrow, remote = item.partition(">")
        local_host, local_port = _host_port(name, local, None)
        if local_port is not None:
            raise ConfigurationError(f"{name}: {item!r}: the local port is chosen by the system")
        if not arrow:
            paths.append((local_host, None, None))
            continue
        if not remote:
            raise ConfigurationError(f"{name}: {item!r}: nothing after '>'")
        paths.append((local_host, *_host_port(name, remote, None)))
    return paths


def _backup(value: str, count: int) -> tuple[int, ...]:
    """Path numbers: 0 the handshake's path, 1.. the ``paths`` in order."""
    return tuple(_integer("backup", item, 0, count) for item in _items("backup", value))


def _advertise(value: str, port: int) -> tuple[tuple[str, int], ...]:
    """``HOST[:PORT]`` items; a missing port is the listening port (which must not be 0)."""
    addresses = []
    for item in _items("advertise", value):
        host, number = _host_port("advertise", item, port or None)
        if number is None:
            raise ConfigurationError(
                f"advertise={item!r}: give the port (the server listens on port 0)"
            )
        addresses.append((host, number))
    return tuple(addresses)


def _interfaces(value: str) -> tuple[str, tuple[str, ...]]:
    """The first listening address and the others."""
    if not value:
        return "", ()
    addresses = [_ip_address("interface", item) for item in _items("interface", value)]
    return addresses[0], tuple(addresses[1:])


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
        fields["congestion_control"] = _congestion(kwargs.pop("congestion"))
    if "scheduler" in kwargs:
        fields["scheduler"] = _scheduler(kwargs.pop("scheduler"))
    if "idleTimeout" in kwargs:
        fields["idle_timeout"] = _seconds("idleTimeout", kwargs.pop("idleTimeout"))
    if "keepAlive" in kwargs:
        fields["keep_alive"] = _keep_alive(kwargs.pop("keepAlive"))
    if "compression" in kwargs:
        fields["compression"] = _boolean("compression", kwargs.pop("compression"))
    if "maxStreams" in kwargs:
        fields["max_streams"] = _integer("maxStreams", kwargs.pop("maxStreams"), 1, 2**60)
    if "maxPaths" in kwargs:
        fields["max_paths"] = _integer("maxPaths", kwargs.pop("maxPaths"), 1, MAX_PATHS)
    size = _pop_one_of(kwargs, "mtu", "maxDatagramSize")
    if size is not None:
        fields["max_datagram_size"] = _integer(*size, MIN_DATAGRAM_SIZE, MAX_UDP_PAYLOAD)
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
    port = _integer("port", kwargs.pop("port"), 0, 65535)
    interface, extra = _interfaces(kwargs.pop("interface", ""))
    advertise = kwargs.pop("advertise", None)
    qlog = _qlog(kwargs)
    tls = _server_tls(kwargs)
    settings = _connection_settings(kwargs)
    if advertise is not None:
        settings["advertise"] = _advertise(advertise, port)
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

    insecure = _boolean("insecure", kwargs.pop("insecure", "no"))
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
        besides the reactor: ``host``, ``port``, ``config``, ``timeout``, ``bindAddress``
        and ``reuse``; ``paths`` and ``backup`` when given (``useAdvertised`` goes to
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
    port = _integer("port", kwargs.pop("port"), 1, 65535)
    timeout = _seconds("timeout", kwargs.pop("timeout", "30"))
    bind = kwargs.pop("bindAddress", None)
    bind_address = None if bind is None else (_ip_address("bindAddress", bind), 0)
    reuse = _boolean("reuse", kwargs.pop("reuse", "yes"))
    named = _pop_one_of(kwargs, "paths", "path")
    paths = [] if named is None else _paths(*named)
    backup = _backup(kwargs.pop("backup"), len(paths)) if "backup" in kwargs else ()
    stream = _stream_settings(kwargs)
    stream.update(_qlog(kwargs))
    tls = _client_tls(host, kwargs)
    settings = _connection_settings(kwargs)
    if "useAdvertised" in kwargs:
        settings["use_advertised"] = _boolean("useAdvertised", kwargs.pop("useAdvertised"))
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
    }
    if paths:
        result["paths"] = paths
    if backup:
        result["backup"] = backup
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
