"""
Unreliable datagrams (RFC 9221 adapted; protocol.rst, "DATAGRAM"): a bounded send queue and the
receive rules.

Theory of operation.  Each side announces the largest DATAGRAM payload it accepts in the
``max_datagram_frame_size`` transport parameter (absent or 0: none).  :class:`DatagramChannel` is
the connection's one collaborator for them (``Connection.datagrams``):

* **Sending.**  :meth:`DatagramChannel.send` queues one datagram.  Once the peer's parameters are
  known it refuses, with a typed error and nothing queued, a datagram the peer does not accept
  (:class:`~kwik_twisted.errors.DatagramsUnsupported`) or one larger than the peer's maximum or
  than one packet carries (:class:`~kwik_twisted.errors.DatagramTooLarge`).  Before they are known
  (during the handshake) it queues what one packet can carry and settles the queue when they
  arrive: what the peer does not accept is dropped and reported.  The queue is bounded
  (:data:`MAX_QUEUED_DATAGRAMS` datagrams, :data:`MAX_QUEUED_BYTES` bytes): when full, the
  *oldest* datagram goes (for games, media and tunnels a fresh datagram is worth more than a stale
  one).  Every local drop is reported by a :class:`~kwik_twisted.events.DatagramDropped` event and
  counted (``stats["datagrams_dropped"]``).
* **Packing.**  The packet assembler (:mod:`~kwik_twisted.core.sending`) takes datagrams as a frame
  source after control frames and before stream data, so datagrams go first like critical data,
  on usable paths only and only while the path's congestion window has room: they are
  ack-eliciting, in flight and paced like any data, and so count toward congestion control.
* **Never retransmitted.**  A DATAGRAM frame is its packet's record only so that its fate is counted
  (``datagrams_acked``, ``datagrams_lost``): the record router re-sends nothing for it.
* **Receiving.**  A DATAGRAM frame becomes a :class:`~kwik_twisted.events.DatagramReceived` event.
  One from a peer we did not allow datagrams (our parameter 0), or larger than our maximum, is a
  PROTOCOL_VIOLATION.  The work per frame is O(1) and one packet carries at most
  :data:`~kwik_twisted.wire.MAX_FRAME_COUNT` frames, so a flood of tiny datagrams costs the flooder
  as much as us.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from ..errors import DatagramsUnsupported, DatagramTooLarge, ProtocolViolation
from ..events import DatagramDropped, DatagramReceived, Event
from ..wire import DatagramFrame
from .handshake import DEFAULT_PEER_DATAGRAM_SIZE
from .sending import SHORT_OVERHEAD

#: Datagrams waiting to be sent at most; the oldest is dropped beyond.
MAX_QUEUED_DATAGRAMS = 256
#: Bytes of datagrams waiting to be sent at most; the oldest are dropped beyond.
MAX_QUEUED_BYTES = 256 * 1024
#: Bytes of a DATAGRAM frame's header with a payload under 16 KiB (protocol.rst, "Frames").
DATAGRAM_HEADER = 18
#: Drop reasons of :class:`~kwik_twisted.events.DatagramDropped`.
QUEUE_FULL, UNSUPPORTED, TOO_LARGE = "queue full", "unsupported", "too large"
#: The queue of a channel nothing was queued on yet: empty, shared.
_NO_DATAGRAMS: Any = ()


def packet_payload_limit(max_datagram_size: int) -> int:
    """The largest datagram payload one packet of ``max_datagram_size`` bytes carries alone (on
    any path ID below 16384: the envelope's path ID takes at most two bytes)."""
    return max_datagram_size - SHORT_OVERHEAD - DATAGRAM_HEADER


class DatagramChannel:
    """
    The datagrams of one connection (see the module docstring).

    :param local_max: our ``max_datagram_frame_size`` (0: we accept none).
    :param emit: the connection's event sink.
    :param stats: the connection's counters.
    :ivar peer_max: the peer's ``max_datagram_frame_size`` (0: it accepts none), or ``None`` until
        its transport parameters arrive.
    """

    __slots__ = ("local_max", "peer_max", "packet_limit", "queue", "queued_bytes", "emit", "stats")

    def __init__(self, local_max: int, emit: Callable[[Event], None], stats: Counter) -> None:
        self.local_max = local_max
        self.peer_max: int | None = None
        self.packet_limit = packet_payload_limit(DEFAULT_PEER_DATAGRAM_SIZE)
        self.queue: deque[bytes] = _NO_DATAGRAMS  # a deque from the first (an empty one: 1 KiB)
        self.queued_bytes = 0
        self.emit = emit
        self.stats = stats

    @property
    def max_size(self) -> int | None:
        """The largest datagram :meth:`send` accepts now: 0 if the peer accepts none, ``None``
        while its transport parameters are not known yet."""
        if self.peer_max is None:
            return None
        return min(self.peer_max, self.packet_limit)

    # -- sending ---------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """
        Queue one datagram; it goes out once with the next packets, or never.

        :raises DatagramsUnsupported: the peer accepts no datagrams.
        :raises DatagramTooLarge: ``data`` is larger than the peer's maximum or than one packet
            carries.
        """
        data = bytes(data)
        peer_max = self.peer_max
        if peer_max == 0:
            raise DatagramsUnsupported("the peer does not accept datagrams")
        limit = self.packet_limit if peer_max is None else min(peer_max, self.packet_limit)
        if len(data) > limit:
            raise DatagramTooLarge(f"a {len(data)}-byte datagram; at most {limit} bytes fit")
        if self.queue is _NO_DATAGRAMS:
            self.queue = deque()
        self.queue.append(data)
        self.queued_bytes += len(data)
        self.stats["datagrams_queued"] += 1
        dropped = 0
        while len(self.queue) > MAX_QUEUED_DATAGRAMS or self.queued_bytes > MAX_QUEUED_BYTES:
            self.queued_bytes -= len(self.queue.popleft())
            dropped += 1
        if dropped:
            self._dropped(dropped, QUEUE_FULL)

    def on_peer_parameters(self, peer_max: int, max_datagram_size: int) -> None:
        """The peer's transport parameters arrived: settle the queue against its limits."""
        self.peer_max = peer_max
        self.packet_limit = packet_payload_limit(max_datagram_size)
        if not self.queue:
            return
        if peer_max == 0:
            count = len(self.queue)
            self.queue = _NO_DATAGRAMS
            self.queued_bytes = 0
            self._dropped(count, UNSUPPORTED)
            return
        self._drop_larger(min(peer_max, self.packet_limit))

    def _drop_larger(self, limit: int) -> None:
        kept = deque(d for d in self.queue if len(d) <= limit)
        count = len(self.queue) - len(kept)
        if count:
            self.queue = kept
            self.queued_bytes = sum(map(len, kept))
            self._dropped(count, TOO_LARGE)

    def _dropped(self, count: int, reason: str) -> None:
        self.stats["datagrams_dropped"] += count
        self.emit(DatagramDropped(count, reason))

    @property
    def has_work(self) -> bool:
        """Whether datagrams wait and the peer is known to accept them."""
        return bool(self.queue) and bool(self.peer_max)

    def next_frame(self, room: int) -> DatagramFrame | None:
        """The oldest datagram as a frame if it fits in ``room`` plaintext bytes (it is then
        taken from the queue; the caller must send it), else ``None``."""
        queue = self.queue
        if not queue or len(queue[0]) + DATAGRAM_HEADER > room:
            return None
        data = queue.popleft()
        self.queued_bytes -= len(data)
        self.stats["datagrams_sent"] += 1
        return DatagramFrame(data)

    # -- receiving ---------------------------------------------------------------------------

    def on_frame(self, frame: DatagramFrame) -> None:
        """
        A DATAGRAM frame from the peer.

        :raises ProtocolViolation: we accept no datagrams, or it is larger than our maximum.
        """
        local_max = self.local_max
        if not local_max:
            raise ProtocolViolation("DATAGRAM frame, but our max_datagram_frame_size is 0")
        if len(frame.data) > local_max:
            raise ProtocolViolation(
                f"a {len(frame.data)}-byte DATAGRAM; our max_datagram_frame_size is {local_max}"
            )
        self.stats["datagrams_received"] += 1
        self.emit(DatagramReceived(frame.data))
