"""
The send side of a connection's streams: which stream's data goes into the next STREAM frame.

Theory of operation (RFC 9000 §2.2, §4.1; protocol.rst "Streams" for the priorities):

* Queues: one round-robin queue per priority level (the seed's levels: critical, high, normal).
  :meth:`SendQueue.next_stream_frame` serves the highest non-empty level first and, within a
  level, takes one frame from the stream at the head and moves it to the back; a stream leaves
  its queue when nothing of it is pending.  A stream is queued at most once (``Stream.queued``).
* Connection credit: new bytes count against the peer's MAX_DATA (:attr:`SendQueue.credit`) by
  :attr:`SendQueue.sent_total`; retransmissions were already allowed and count for nothing.
* Blocked streams: a stream with unsent bytes that neither its own credit nor the connection's
  lets out leaves the queues for the blocked set, and a STREAM_DATA_BLOCKED or DATA_BLOCKED frame
  (once per limit) goes onto the shared control queue; :meth:`SendQueue.unblock` and
  :meth:`SendQueue.unblock_all` put it back when credit arrives or a range of it is lost.
* Pinned streams (the seed's PathAssignment, ``Stream.paths``): a frame of a pinned stream goes
  only on one of its paths while any of them is usable (:attr:`SendQueue.usable`, kept by the
  sender), and on any path when none is.  While some stream is pinned (:attr:`SendQueue.pinned`)
  :meth:`SendQueue.next_stream_frame` skips, without dequeuing, the streams the packet's path may
  not carry, so a pinned stream never holds back the others; :meth:`SendQueue.path_choices`
  tells the sender which paths can carry something.
* The bulk path: :meth:`SendQueue._new_frame_from` serves new data on a stream whose QOS extension
  already went out in one step; anything else (retransmissions, a bare FIN, the announcement of
  an empty stream, the first frame with its QOS extension) takes :meth:`SendQueue._frame_from`.
  They agree (tests/core/streams/test_fast_paths.py).

A :class:`StreamRecord` describes what a frame carried of its stream; the caller stores it with the
packet and hands it back to the :class:`~.manager.StreamManager` when the packet is acked or lost.
"""

from __future__ import annotations

from collections import deque

from ...wire import DataBlockedFrame, QosPolicy, StreamDataBlockedFrame, StreamFrame
from .flow_control import SendCredit
from .stream import Stream

#: The QOS extension that withdraws a policy announced before (every field "no requirement").
NO_QOS = QosPolicy()


class StreamRecord:
    """What a packet carried of a stream, to settle when the packet is acked or lost."""

    __slots__ = ("stream", "offset", "length", "fin")

    def __init__(self, stream: Stream, offset: int, length: int, fin: bool) -> None:
        self.stream = stream
        self.offset = offset
        self.length = length
        self.fin = fin


class SendQueue:
    """
    The priority queues of streams with something to send, and the connection's send credit.

    :param control: the queue of stream-related control frames the blocked frames go to.
    :param max_data: the connection credit before the peer's transport parameters arrive.
    :ivar credit: the peer's MAX_DATA.
    :ivar sent_total: new stream bytes sent, counted against :attr:`credit`.
    :ivar queues: the round-robin queues by priority level (0 normal, 1 high, 2 critical).
    :ivar pinned: the open streams pinned to paths (none: no path filtering at all).
    :ivar usable: the IDs of the usable paths, kept fresh by the sender while a stream is pinned.
    """

    __slots__ = ("credit", "sent_total", "queues", "pinned", "usable", "_blocked", "_control")

    def __init__(self, control: deque, max_data: int) -> None:
        self.credit = SendCredit(max_data)
        self.sent_total = 0
        self.queues: tuple[deque[Stream], ...] = (deque(), deque(), deque())
        self.pinned: set[Stream] = set()
        self.usable: frozenset[int] = frozenset()
        self._blocked: set[Stream] = set()
        self._control = control

    # -- membership --------------------------------------------------------------------

    def schedule(self, stream: Stream) -> None:
        """Queue ``stream`` if it has something to send and is neither queued nor blocked."""
        if (
            not stream.queued
            and not stream.blocked
            and (stream.send.pending or not stream.qos_sent or stream.announce)
        ):
            stream.queued = True
            self.queues[stream.priority].append(stream)

    def unblock(self, stream: Stream) -> None:
        """``stream`` got credit or has a range to send again: take it out of the blocked set
        and queue it."""
        if stream.blocked:
            stream.blocked = False
            self._blocked.discard(stream)
        self.schedule(stream)

    def unblock_all(self) -> None:
        """The connection got credit: queue every blocked stream again."""
        blocked, self._blocked = self._blocked, set()
        for stream in blocked:
            stream.blocked = False
            self.schedule(stream)

    def forget(self, stream: Stream) -> None:
        """``stream`` closed: it will not be unblocked any more."""
        self._blocked.discard(stream)
        self.pinned.discard(stream)

    def reprioritize(self, stream: Stream, priority: int) -> None:
        """Give ``stream`` another priority level, moving it to that level's queue if queued."""
        if priority == stream.priority:
            return
        if stream.queued:
            self.queues[stream.priority].remove(stream)
            stream.queued = False
            stream.priority = priority
            self.schedule(stream)
        else:
            stream.priority = priority

    def pin(self, stream: Stream, paths: frozenset[int] | None) -> None:
        """Pin ``stream`` to ``paths`` (``None``: any path)."""
        stream.paths = paths
        if paths is None:
            self.pinned.discard(stream)
        else:
            self.pinned.add(stream)

    def path_choices(self) -> list[frozenset[int] | None]:
        """
        For each priority level with data waiting, highest first, the IDs of the paths that can
        carry a frame of it now (``None``: any path).
        """
        usable = self.usable
        choices: list[frozenset[int] | None] = []
        for level in (2, 1, 0):
            allowed: set[int] | None = set()
            for stream in self.queues[level]:
                paths = stream.paths
                if paths is None or paths.isdisjoint(usable):
                    allowed = None
                    break
                allowed |= paths
            if self.queues[level]:
                choices.append(None if allowed is None else frozenset(allowed))
        return choices

    # -- what is waiting ---------------------------------------------------------------

    @property
    def has_data(self) -> bool:
        """Whether any stream has data it may send now."""
        q = self.queues
        return bool(q[2] or q[1] or q[0])

    def backlog(self) -> int:
        """Bytes waiting to be sent on all queued streams (new and retransmissions)."""
        total = 0
        for queue in self.queues:
            for stream in queue:
                total += stream.send.unsent_bytes + stream.send.retransmit_bytes
        return total

    def highest_pending_priority(self) -> int | None:
        """The highest priority level with data waiting, or None."""
        for level in (2, 1, 0):
            if self.queues[level]:
                return level
        return None

    # -- frames --------------------------------------------------------------------------

    def next_stream_frame(
        self, max_data: int, path_id: int = 0
    ) -> tuple[StreamFrame, StreamRecord] | None:
        """
        The next STREAM frame to send on path ``path_id``, at most ``max_data`` data bytes, by
        priority then round-robin.

        Returns the frame and the record to attach to the packet, or ``None``.
        """
        if self.pinned:
            return self._next_allowed_frame(max_data, path_id)
        for queue in (self.queues[2], self.queues[1], self.queues[0]):
            while queue:
                stream = queue[0]
                fast = self._new_frame_from(stream, max_data)
                if fast is not None:
                    frame, record, more = fast
                    queue.rotate(-1)
                    if not more:
                        queue.pop()
                        stream.queued = False
                    return frame, record
                out = self._take(queue, stream, max_data)
                if out is not None:
                    return out
        return None

    def _take(self, queue, stream: Stream, max_data: int):
        """The next frame of ``stream``, the head of ``queue``, by the general builder: the stream
        leaves the queue when it has nothing to send, or after this frame if nothing remains;
        otherwise it goes to the back of its level (round-robin)."""
        out = self._frame_from(stream, max_data)
        if out is None:
            queue.popleft()
            stream.queued = False
            return None
        queue.rotate(-1)
        if not stream.send.pending:
            queue.pop()
            stream.queued = False
        return out

    def _next_allowed_frame(
        self, max_data: int, path_id: int
    ) -> tuple[StreamFrame, StreamRecord] | None:
        """:meth:`next_stream_frame` while some stream is pinned: the streams ``path_id`` may not
        carry stay queued, moved to the back of their level."""
        usable = self.usable
        for queue in (self.queues[2], self.queues[1], self.queues[0]):
            for _ in range(len(queue)):
                stream = queue[0]
                paths = stream.paths
                if paths is not None and path_id not in paths and not paths.isdisjoint(usable):
                    queue.rotate(-1)
                    continue
                out = self._take(queue, stream, max_data)
                if out is not None:
                    return out
        return None

    def _new_frame_from(
        self, stream: Stream, max_data: int
    ) -> tuple[StreamFrame, StreamRecord, bool] | None:
        """
        The bulk case of :meth:`_frame_from`: new data (no retransmission, no bare FIN) on a
        stream whose QOS extension already went out.

        ``None`` (nothing changed) sends the caller to :meth:`_frame_from`.  Otherwise the frame
        and record are the ones :meth:`_frame_from` would build (``SendBuffer.next_new`` is the
        new-data branch of ``next_frame``, and new data advances the connection's sent total by
        its length), plus whether the stream still has something pending.
        """
        if not stream.qos_sent:
            return None
        send = stream.send
        sent_total = self.sent_total
        conn_room = self.credit.available(sent_total)
        piece = send.next_new(max_data, min(stream.credit.limit, send.sent_offset + conn_room))
        if piece is None:
            return None
        stream.announce = False
        offset, data, fin, more = piece
        length = len(data)
        self.sent_total = sent_total + length
        frame = StreamFrame(
            stream.id, offset, data, fin, stream.priority, stream.ordered, False, stream.compress
        )
        return frame, StreamRecord(stream, offset, length, fin), more

    def _frame_from(self, stream: Stream, max_data: int) -> tuple[StreamFrame, StreamRecord] | None:
        """The next frame of ``stream`` in every case, or ``None`` (then it may be blocked)."""
        send = stream.send
        conn_room = self.credit.available(self.sent_total)
        limit = min(stream.credit.limit, send.sent_offset + conn_room)
        before = send.sent_offset
        piece = send.next_frame(max_data, limit)
        if piece is None:
            if stream.announce and not send.is_reset:
                stream.announce = False
                frame = StreamFrame(
                    stream.id, 0, b"", False, stream.priority, ordered=stream.ordered
                )
                return frame, StreamRecord(stream, 0, 0, False)
            self._note_blocked(stream, conn_room)
            return None
        stream.announce = False
        offset, data, fin, retransmit = piece
        self.sent_total += send.sent_offset - before
        qos = None
        if not stream.qos_sent:
            qos, stream.qos_sent = stream.qos or NO_QOS, True
        frame = StreamFrame(
            stream.id,
            offset,
            data,
            fin,
            stream.priority,
            stream.ordered,
            retransmit,
            stream.compress,
            False,
            qos,
        )
        return frame, StreamRecord(stream, offset, len(data), fin)

    def _note_blocked(self, stream: Stream, conn_room: int) -> None:
        """Move ``stream`` to the blocked set if credit holds its unsent bytes back, and say so
        to the peer (once per limit)."""
        send = stream.send
        if not send.unsent_bytes or send.is_reset:
            return
        stream.blocked = True
        self._blocked.add(stream)
        if conn_room == 0:
            limit = self.credit.blocked_at(self.sent_total)
            if limit is not None:
                self._control.append(DataBlockedFrame(limit))
        else:
            limit = stream.credit.blocked_at(send.sent_offset)
            if limit is not None:
                self._control.append(StreamDataBlockedFrame(stream.id, limit))


__all__ = ["NO_QOS", "SendQueue", "StreamRecord"]
