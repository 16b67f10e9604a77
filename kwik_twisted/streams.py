"""
What an application may ask of one stream: its priority, its QoS policy, and how far it got.

These are plain values, free of Twisted and of any I/O, so the Twisted side
(:class:`~kwik_twisted.interfaces.IKwikStreamTransport`, ``openStream``, the ``kwik:`` endpoint
strings) and the sans-I/O core can share them.

* :class:`Priority`: the seed's three stream priority levels, sent in the stream's frames.
* :class:`QoSPolicy`: what a stream needs of the network, in natural units (bits per second,
  seconds, a loss fraction).  It travels as the QOS extension of the stream's first frame
  (``protocol.rst``, "Frame extensions"), whose units are kbps, milliseconds and parts per million;
  :meth:`QoSPolicy.to_wire` and :meth:`QoSPolicy.from_wire` convert.
* :class:`StreamProgress`: the byte counts of one stream, as ``transport.progress()`` reports them.

Converting to the wire.  Each value is rounded to the nearest wire unit (1 kbps, 1 ms, 1 ppm;
halves to even).  A field that is ``None`` (no requirement) is sent as 0, which the wire reads as
"no requirement"; so a requirement that would round to 0 (a latency under half a millisecond, a
loss threshold of 0) is sent as 1, the strictest requirement the wire can carry.
:meth:`QoSPolicy.from_wire` maps 0 back to ``None``, kbps to an exact ``int`` of bits per second,
and milliseconds and ppm to ``float`` seconds and fractions (exact back and forth up to 2**50
milliseconds, some 35,000 years).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from fractions import Fraction
from numbers import Real
from typing import NamedTuple

from .errors import ConfigurationError
from .wire.frames import QosPolicy as WireQosPolicy

#: The largest value a wire field (a varint) carries.
MAX_WIRE_VALUE = 2**62 - 1


class Priority(IntEnum):
    """A stream's priority level (the seed's): higher levels are sent first."""

    NORMAL = 0
    HIGH = 1
    CRITICAL = 2


def as_priority(value) -> Priority:
    """
    ``value`` as a :class:`Priority` (a ``Priority``, or the integer 0, 1 or 2).

    :raises ConfigurationError: anything else (naming ``priority``).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(
            f"priority={value!r}: expected Priority.NORMAL, Priority.HIGH or Priority.CRITICAL")
    try:
        return Priority(value)
    except ValueError:
        raise ConfigurationError(f"priority={value!r}: expected 0, 1 or 2") from None


def _check(field: str, value, *, positive: bool, at_most: float | None = None,
           unit: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ConfigurationError(f"{field}={value!r}: expected a finite number of {unit}")
    if value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise ConfigurationError(f"{field}={value!r}: must be a {kind} number of {unit}")
    if at_most is not None and value > at_most:
        raise ConfigurationError(f"{field}={value!r}: must be at most {at_most}")


def _to_unit(value, scale: Fraction) -> int:
    """``value * scale`` rounded to the nearest integer (exactly); 0 (no requirement) for
    ``None``; a requirement that would round to 0 becomes 1, one past the wire's range the
    largest value it carries."""
    if value is None:
        return 0
    return min(MAX_WIRE_VALUE, max(1, round(Fraction(value) * scale)))


@dataclass(frozen=True, slots=True)
class QoSPolicy:
    """
    What a stream needs of the network (the seed's QoSPolicy); ``None`` fields ask nothing.

    :ivar min_bandwidth: bits per second the stream needs (positive).
    :ivar max_latency: the most one-way delay the stream tolerates, in seconds (positive).
    :ivar max_jitter: the most delay variation the stream tolerates, in seconds (positive).
    :ivar loss_threshold: the largest fraction of packets the stream may lose, in [0, 1].

    :raises ConfigurationError: (when made) a field has a bad value; the message names it.

    The policy travels with the stream to the peer, and both ends keep it for the data they send
    on the stream: paths that cannot meet it are avoided, queues are held short for latency and
    jitter, a guaranteed rate is served first, and :class:`~kwik_twisted.events.QoSViolated` says
    when no path can keep it (docs/qos.rst).
    """

    min_bandwidth: float | None = None
    max_latency: float | None = None
    max_jitter: float | None = None
    loss_threshold: float | None = None

    def __post_init__(self) -> None:
        _check("min_bandwidth", self.min_bandwidth, positive=True,
               at_most=MAX_WIRE_VALUE * 1000, unit="bits per second")
        _check("max_latency", self.max_latency, positive=True, at_most=MAX_WIRE_VALUE / 1000,
               unit="seconds")
        _check("max_jitter", self.max_jitter, positive=True, at_most=MAX_WIRE_VALUE / 1000,
               unit="seconds")
        _check("loss_threshold", self.loss_threshold, positive=False, at_most=1,
               unit="(a fraction between 0 and 1)")

    def to_wire(self) -> WireQosPolicy:
        """The QOS extension carrying this policy (kbps, ms, ppm; see the module docstring)."""
        return WireQosPolicy(
            min_bandwidth_kbps=_to_unit(self.min_bandwidth, Fraction(1, 1000)),
            max_latency_ms=_to_unit(self.max_latency, Fraction(1000)),
            max_jitter_ms=_to_unit(self.max_jitter, Fraction(1000)),
            loss_threshold_ppm=_to_unit(self.loss_threshold, Fraction(1_000_000)),
        )

    @classmethod
    def from_wire(cls, qos: WireQosPolicy | None) -> QoSPolicy | None:
        """The policy a QOS extension carries (0 in a field: ``None``); ``None`` for none."""
        if qos is None:
            return None
        kbps, ms, jitter_ms, ppm = (int(value) for value in qos)
        return cls(
            min_bandwidth=kbps * 1000 if kbps else None,
            max_latency=ms / 1000 if ms else None,
            max_jitter=jitter_ms / 1000 if jitter_ms else None,
            loss_threshold=min(ppm / 1_000_000, 1.0) if ppm else None,
        )


class StreamProgress(NamedTuple):
    """
    The byte counts of one stream.

    :ivar written: bytes the application wrote (queued for sending).
    :ivar sent: bytes that went on the wire at least once.
    :ivar acked: bytes the peer acknowledged.
    :ivar received: bytes that arrived from the peer.
    :ivar delivered: bytes handed to the application.
    """

    written: int
    sent: int
    acked: int
    received: int
    delivered: int


__all__ = ["Priority", "QoSPolicy", "StreamProgress"]
