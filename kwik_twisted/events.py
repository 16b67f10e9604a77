"""
Events a Kwik connection reports to the layer above it.

The sans-I/O connection never calls out: it queues these small values, and the layer above
(the Twisted glue, a test, the simulator) takes them with ``Connection.next_event()`` after each
call in.  They are read-only by convention, not frozen: a frozen dataclass pays for
``object.__setattr__`` on every field, and one event per received packet made that 0.6 us of the
per-packet budget (benchmarks/core_bulk.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Event:
    """Base class of all connection events."""


@dataclass(slots=True)
class HandshakeCompleted(Event):
    """The TLS handshake finished; application data may flow."""

    alpn: str | None
    cipher: str | None
    peer_certificate_subject: str | None = None


@dataclass(slots=True)
class StreamOpened(Event):
    """The peer opened a stream."""

    stream_id: int


@dataclass(slots=True)
class StreamDataReceived(Event):
    """
    Bytes of a stream arrived; ``end_stream`` when the peer finished sending.

    ``offset`` is where ``data`` starts in the stream.  On ordered streams (the default) events come
    in offset order; on unordered streams each piece comes as it arrives, at its own offset.
    """

    stream_id: int
    data: bytes
    end_stream: bool
    offset: int = 0


@dataclass(slots=True)
class StreamReset(Event):
    """The peer abandoned its direction of a stream (RESET_STREAM)."""

    stream_id: int
    error_code: int


@dataclass(slots=True)
class StopSendingReceived(Event):
    """The peer asked us to stop sending on a stream; we reset it in answer."""

    stream_id: int
    error_code: int


@dataclass(slots=True)
class StreamWritable(Event):
    """A stream's send buffer dropped below its limit: a paused producer may resume."""

    stream_id: int


@dataclass(slots=True)
class StreamClosed(Event):
    """Both directions of a stream are finished; its state is gone."""

    stream_id: int


@dataclass(slots=True)
class PathEvent(Event):
    """Base of the path events."""

    path_id: int
    local_addr: tuple
    remote_addr: tuple


@dataclass(slots=True)
class PathAdded(PathEvent):
    """A path was created (it still needs validation before it carries data)."""


@dataclass(slots=True)
class PathValidated(PathEvent):
    """A path answered its challenge and may carry data."""


@dataclass(slots=True)
class PathFailed(PathEvent):
    """A path stopped answering; its data moved to the other paths."""


@dataclass(slots=True)
class PathRecovered(PathEvent):
    """A failed path answered again and is back in use."""


@dataclass(slots=True)
class PathAbandoned(PathEvent):
    """A path was given up for good (PATH_ABANDON)."""


@dataclass(slots=True)
class AddressAdvertised(Event):
    """The server advertised another address (ADD_ADDRESS) a client may open a path to."""

    address_id: int
    address: tuple


@dataclass(slots=True)
class QoSViolated(Event):
    """
    The transport cannot keep a stream's QoS promise (reported once per episode, not per packet;
    docs/qos.rst).

    :ivar stream_id: the stream whose :class:`~kwik_twisted.streams.QoSPolicy` is not met.
    :ivar metric: which promise: ``"max_latency"``, ``"loss_threshold"``, ``"max_jitter"`` or
        ``"min_bandwidth"``.
    :ivar measured: the best the connection's paths can do now, in the policy's natural unit
        (seconds, a fraction, bits per second).
    :ivar bound: the policy's bound, in the same unit.
    """

    stream_id: int
    metric: str
    measured: float
    bound: float


@dataclass(slots=True)
class DatagramReceived(Event):
    """An unreliable datagram (a DATAGRAM frame) arrived from the peer."""

    data: bytes


@dataclass(slots=True)
class DatagramDropped(Event):
    """
    ``count`` datagrams we had queued were dropped before they were sent.

    :ivar reason: ``"queue full"`` (the oldest went to make room), ``"unsupported"`` (the peer's
        parameters turned out not to accept datagrams) or ``"too large"`` (larger than the peer's
        maximum or than a packet can carry).
    """

    count: int
    reason: str


@dataclass(slots=True)
class ConnectionTerminated(Event):
    """
    The connection is over.

    :ivar error_code: the wire error code (0 for a clean close).
    :ivar reason: a human-readable explanation.
    :ivar by_peer: whether the peer closed it (else we did, or a timer did).
    :ivar frame_type: the frame type that caused a protocol error, if any.
    :ivar application: whether ``error_code`` is an application's code.
    """

    error_code: int
    reason: str
    by_peer: bool
    frame_type: int | None = None
    application: bool = False


__all__ = [
    "AddressAdvertised",
    "ConnectionTerminated",
    "DatagramDropped",
    "DatagramReceived",
    "Event",
    "HandshakeCompleted",
    "PathAbandoned",
    "PathAdded",
    "PathEvent",
    "PathFailed",
    "PathRecovered",
    "PathValidated",
    "QoSViolated",
    "StopSendingReceived",
    "StreamClosed",
    "StreamDataReceived",
    "StreamOpened",
    "StreamReset",
    "StreamWritable",
]
