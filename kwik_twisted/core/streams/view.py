"""
A read-only view of one stream, for the application: what it asked for, and how far it got.

:meth:`Connection.stream(sid) <kwik_twisted.core.connection.Connection.stream>` hands one out
while the stream is open.  The view reads the live stream, so one taken while the stream was open
keeps answering after it closed, with the final figures (the glue keeps the view of each of its
stream transports).

Progress counters (:class:`StreamProgress`), all byte counts from offset 0 of one direction:

* ``written``: what the application wrote (the send buffer's write offset);
* ``sent``: what went on the wire at least once (the highest offset sent; retransmissions do not
  count twice);
* ``acked``: the *contiguous* acknowledged offset (every byte below it was acknowledged; a range
  acknowledged past a gap counts once the gap is acknowledged too), so ``acked == written``
  after a finished transfer; after our RESET_STREAM only acknowledgements that extend it in order
  still count (what lies past a gap then is forgotten with the data);
* ``received``: the highest offset that arrived in the peer's STREAM frames (bytes past a gap
  count before the gap is filled; a RESET_STREAM's final size does not count);
* ``delivered``: what was handed to the application (on a stream delivered as pieces, the pieces
  past a gap count too).
"""

from __future__ import annotations

from typing import NamedTuple

from ...wire import QosPolicy
from .stream import Stream


class StreamProgress(NamedTuple):
    """Byte counts of one stream (see the module's docstring for each)."""

    written: int
    sent: int
    acked: int
    received: int
    delivered: int


class StreamView:
    """
    What the application may read of one stream.

    :ivar id: the stream ID.
    """

    __slots__ = ("_stream",)

    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    @property
    def id(self) -> int:
        """The stream ID."""
        return self._stream.id

    @property
    def priority(self) -> int:
        """The priority of our frames (0 normal, 1 high, 2 critical): ours on a stream we opened
        or once set locally, else the peer's latest."""
        return self._stream.priority

    @property
    def qos(self) -> QosPolicy | None:
        """The QoS policy in force: ours on a stream we opened or once set locally, else the
        peer's QOS extension as it arrived; ``None`` without one."""
        return self._stream.qos

    @property
    def peer_priority(self) -> int:
        """The priority of the peer's latest frame on the stream (0 before any)."""
        return self._stream.peer_priority

    @property
    def peer_qos(self) -> QosPolicy | None:
        """The policy of the peer's latest QOS extension on the stream, or ``None``."""
        return self._stream.peer_qos

    @property
    def ordered(self) -> bool:
        """Whether the stream's data is delivered to us in order (else as pieces with their
        offsets); the receiver's choice, made at the peer's first frame."""
        return self._stream.recv.ordered

    @property
    def paths(self) -> tuple[int, ...] | None:
        """The IDs of the paths the application pinned the stream to, sorted, or ``None`` (any
        path; the QoS enforcer may still route it)."""
        paths = self._stream.pin
        return None if paths is None else tuple(sorted(paths))

    @property
    def max_rate(self) -> float | None:
        """The application's cap on the stream's sending rate, bits per second, or ``None``."""
        return self._stream.max_rate

    @property
    def local(self) -> bool:
        """Whether we opened the stream."""
        return self._stream.local

    @property
    def closed(self) -> bool:
        """Whether both directions reached a terminal state (the stream is forgotten)."""
        return self._stream.closed

    @property
    def progress(self) -> StreamProgress:
        """The stream's byte counts now."""
        stream = self._stream
        send, recv = stream.send, stream.recv
        received = stream.received_at_reset
        return StreamProgress(
            send.write_offset,
            send.sent_offset,
            send.acked_offset,
            recv.highest_received if received is None else received,
            recv.delivered,
        )

    def __repr__(self) -> str:
        return f"<StreamView {self.id} priority={self.priority} progress={tuple(self.progress)}>"


__all__ = ["StreamProgress", "StreamView"]
