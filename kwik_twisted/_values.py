"""
The values of ``kwik:`` endpoint-string arguments: scalars, a stream's settings, lists, addresses,
paths and path costs (used by :mod:`kwik_twisted.parsers`).

Theory of operation.  Twisted hands every argument over as ``str``; each function here turns one
value into what :class:`~kwik_twisted.config.ConnectionConfig` or the endpoints take, or raises
:class:`~kwik_twisted.errors.ConfigurationError` naming the argument.  Nothing here reads files or
knows which side an argument belongs to (that is :mod:`kwik_twisted.parsers`).  Heavy imports (the
core, the stream types) happen inside the functions, so importing this module stays cheap: the
twistd plugin file imports the parsers, which import this.

Units: durations take ``ms`` or ``s`` (``50ms``, ``0.05s``, ``0.05``), rates a decimal ``k``,
``M`` or ``G`` (``2M`` is 2,000,000 bit/s), fractions ``%`` (``1%``, ``0.01``).  Lists are
comma-separated, since Twisted keeps only the last of repeated arguments; an address with a port is
``HOST:PORT`` or ``[IPv6]:PORT``, a path ``LOCAL`` or ``LOCAL>REMOTE``, a path cost ``N:COST`` or
``N=COST`` (the colon escaped in an endpoint string, ``cost=1\\:5``).
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any

from kwik_twisted.errors import ConfigurationError

_TRUE = frozenset({"yes", "true", "on", "1"})
_FALSE = frozenset({"no", "false", "off", "0"})


# --------------------------------------------------------------------------
# Scalar values.


def boolean(name: str, value: str) -> bool:
    """``yes``/``no`` (or ``true``/``false``, ``on``/``off``, ``1``/``0``), any case."""
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigurationError(f"{name}={value!r}: expected yes or no")


def integer(name: str, value: str, minimum: int, maximum: int) -> int:
    """A decimal integer within ``minimum``..``maximum``."""
    try:
        number = int(value, 10)
    except ValueError:
        raise ConfigurationError(f"{name}={value!r}: expected an integer") from None
    if not minimum <= number <= maximum:
        raise ConfigurationError(f"{name}={value!r}: must be between {minimum} and {maximum}")
    return number


#: Largest ``keyUpdate=`` interval: half the AES-GCM confidentiality limit (protocol.rst, "Key
#: update"), which is also the default.
MAX_KEY_UPDATE_INTERVAL = 2**22


def key_update(value: str) -> int:
    """``keyUpdate=N``: packets sealed under one key generation before a key update, 1..2**22."""
    return integer("keyUpdate", value, 1, MAX_KEY_UPDATE_INTERVAL)


def udp_payload(value: str) -> int:
    """``maxUdpPayload=N``: the largest UDP payload path MTU discovery tries and we announce we
    receive, 1200..65527 bytes."""
    return integer("maxUdpPayload", value, 1200, 65527)


def retry(value: str) -> str:
    """``retry=yes|no|auto``: when a server asks clients to prove their address with a Retry
    (``auto``: once many handshakes are half open).  ``yes``/``no`` accept boolean spellings."""
    word = value.strip().lower()
    if word == "auto":
        return "auto"
    try:
        return "yes" if boolean("retry", word) else "no"
    except ConfigurationError:
        raise ConfigurationError(f"retry={value!r}: use yes, no or auto") from None


#: Longest ``serverId=`` (config.MAX_SERVER_ID_LENGTH: an 8-byte CID keeps 4 nonce bytes).
MAX_SERVER_ID_BYTES = 3


def server_id(value: str) -> bytes:
    """``serverId=HEX``: the QUIC-LB server ID our CIDs carry, 1 to 3 bytes in hexadecimal
    (``c4605e``; an optional ``0x`` prefix)."""
    text = value.strip()
    if text[:2].lower() == "0x":
        text = text[2:]
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise ConfigurationError(f"serverId={value!r}: expected hexadecimal bytes") from None
    if not 1 <= len(data) <= MAX_SERVER_ID_BYTES or len(text) != 2 * len(data):
        raise ConfigurationError(
            f"serverId={value!r}: must be 1 to {MAX_SERVER_ID_BYTES} bytes (2 to 6 hex digits)"
        )
    return data


def config_rotation(value: str) -> int:
    """``configRotation=N``: the QUIC-LB config rotation codepoint, 0..6 (7 means unroutable)."""
    return integer("configRotation", value, 0, 6)


def seconds(name: str, value: str) -> float:
    """A positive, finite number of seconds."""
    try:
        number = float(value)
    except ValueError:
        raise ConfigurationError(f"{name}={value!r}: expected a number of seconds") from None
    if not math.isfinite(number) or number <= 0:
        raise ConfigurationError(f"{name}={value!r}: must be a positive number of seconds")
    return number


def ip_address(name: str, value: str) -> str:
    """An IPv4 or IPv6 address, in its normal form."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ConfigurationError(f"{name}={value!r}: expected an IPv4 or IPv6 address") from None


def keep_alive(value: str) -> float | str | None:
    """``no`` (no PINGs), ``auto`` (the default: PINGs while a stream is open) or seconds."""
    from kwik_twisted.config import KEEP_ALIVE_AUTO

    word = value.strip().lower()
    if word in _FALSE:
        return None
    if word == KEEP_ALIVE_AUTO:
        return KEEP_ALIVE_AUTO
    return seconds("keepAlive", value)


def congestion(value: str) -> str:
    """The name of a registered congestion controller, any case."""
    from kwik_twisted.core.congestion import available_controllers

    name = value.strip().lower()
    known = available_controllers()
    if name not in known:
        raise ConfigurationError(f"congestion={value!r}: unknown; known: {', '.join(known)}")
    return name


def scheduler(value: str) -> str:
    """The name of a registered path scheduler, any case."""
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


def priority(value: str) -> Any:
    """``normal``, ``high`` or ``critical``."""
    from kwik_twisted.streams import Priority

    word = value.strip().lower()
    if word not in _PRIORITIES:
        raise ConfigurationError(f"priority={value!r}: expected {', '.join(_PRIORITIES)}")
    return Priority[word.upper()]


def quantity(name: str, value: str, units: dict, expected: str) -> float:
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


def duration(name: str, value: str) -> float:
    """``50ms``, ``0.05s`` or ``0.05`` (seconds): a positive number of seconds."""
    number = quantity(name, value, _SECONDS, "a duration such as 50ms, 0.05s or 0.05")
    if number <= 0:
        raise ConfigurationError(f"{name}={value!r}: must be a positive duration")
    return number


def rate(name: str, value: str) -> float:
    """``2M``, ``500k``, ``1.5G`` or ``64000``: a positive number of bits per second."""
    number = quantity(name, value, _RATES, "bits per second such as 2M, 500k, 1.5G or 64000")
    if number <= 0:
        raise ConfigurationError(f"{name}={value!r}: must be a positive rate")
    return int(number) if number.is_integer() else number


def fraction(name: str, value: str) -> float:
    """``1%`` or ``0.01``: a fraction between 0 and 1."""
    number = quantity(name, value, {"": 1, "%": 0.01}, "a fraction such as 1% or 0.01")
    if not 0 <= number <= 1:
        raise ConfigurationError(f"{name}={value!r}: must be between 0 and 1 (0% and 100%)")
    return number


#: Endpoint argument -> (QoSPolicy field, parser).
QOS_ARGUMENTS = {
    "minBandwidth": ("min_bandwidth", rate),
    "maxLatency": ("max_latency", duration),
    "maxJitter": ("max_jitter", duration),
    "lossThreshold": ("loss_threshold", fraction),
}


def stream_settings(kwargs: dict[str, str]) -> dict[str, Any]:
    """Pop ``priority`` and the QoS arguments; return ``priority`` and ``qos`` when given."""
    from kwik_twisted.streams import QoSPolicy

    result: dict[str, Any] = {}
    if "priority" in kwargs:
        result["priority"] = priority(kwargs.pop("priority"))
    fields = {}
    for name, (field, parse) in QOS_ARGUMENTS.items():
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


def items(name: str, value: str) -> list[str]:
    """The comma-separated items of ``value`` (none may be empty)."""
    found = [item.strip() for item in value.split(",")]
    if not all(found):
        raise ConfigurationError(f"{name}={value!r}: empty item in the comma-separated list")
    return found


def host_port(name: str, text: str, default_port: int | None) -> tuple[str, int | None]:
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
    host = ip_address(name, host)
    if port is None:
        return host, default_port
    return host, integer(f"{name} port in {text!r}", port, 1, 65535)


def paths(name: str, value: str) -> list[tuple[str, str | None, int | None]]:
    """``LOCAL`` or ``LOCAL>REMOTE[:PORT]`` items: (local, remote host or None, port or None)."""
    found = []
    for item in items(name, value):
        local, arrow, remote = item.partition(">")
        local_host, local_port = host_port(name, local, None)
        if local_port is not None:
            raise ConfigurationError(f"{name}: {item!r}: the local port is chosen by the system")
        if not arrow:
            found.append((local_host, None, None))
            continue
        if not remote:
            raise ConfigurationError(f"{name}: {item!r}: nothing after '>'")
        found.append((local_host, *host_port(name, remote, None)))
    return found


def backup(value: str, count: int) -> tuple[int, ...]:
    """Path numbers: 0 the handshake's path, 1.. the ``paths`` in order."""
    return tuple(integer("backup", item, 0, count) for item in items("backup", value))


_COST_ITEM = re.compile(r"(?P<path>[^:=]*)[:=](?P<cost>.*)")


def costs(value: str, count: int) -> dict[int, float]:
    """
    ``N:COST`` (or ``N=COST``) items: path number (0 the handshake's path, 1.. the ``paths`` in
    order) -> cost, a finite number >= 0.  A path named twice is refused.
    """
    found: dict[int, float] = {}
    for item in items("cost", value):
        match = _COST_ITEM.fullmatch(item)
        if match is None:
            raise ConfigurationError(f"cost: {item!r}: expected PATH:COST (path number, cost)")
        try:
            path = int(match["path"].strip(), 10)
        except ValueError:
            raise ConfigurationError(f"cost: {item!r}: the path number is not an integer") from None
        if not 0 <= path <= count:
            raise ConfigurationError(
                f"cost: {item!r}: no path {path}; the paths are 0 (the handshake's) to {count}"
            )
        if path in found:
            raise ConfigurationError(f"cost={value!r}: path {path} is given twice")
        try:
            cost = float(match["cost"])
        except ValueError:
            raise ConfigurationError(f"cost: {item!r}: the cost is not a number") from None
        if not math.isfinite(cost) or cost < 0:
            raise ConfigurationError(f"cost: {item!r}: the cost must be a finite number >= 0")
        found[path] = cost
    return found


def advertise(value: str, port: int) -> tuple[tuple[str, int], ...]:
    """``HOST[:PORT]`` items; a missing port is the listening port (which must not be 0)."""
    addresses = []
    for item in items("advertise", value):
        host, number = host_port("advertise", item, port or None)
        if number is None:
            raise ConfigurationError(
                f"advertise={item!r}: give the port (the server listens on port 0)"
            )
        addresses.append((host, number))
    return tuple(addresses)


def interfaces(value: str) -> tuple[str, tuple[str, ...]]:
    """The first listening address and the others."""
    if not value:
        return "", ()
    addresses = [ip_address("interface", item) for item in items("interface", value)]
    return addresses[0], tuple(addresses[1:])
