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
* Pinned and routed streams: ``Stream.pin`` is the application's choice of paths (the seed's
  PathAssignment, :meth:`SendQueue.pin`), ``Stream.route`` the QoS enforcer's
  (:meth:`SendQueue.route`), and ``Stream.paths`` the restriction in force, the pin if there is
  one, else the route.  A frame of a stream so restricted goes only on one of its paths while any
  of them is usable (:attr:`SendQueue.usable`, kept by the sender), and on any path when none is.
  While some stream is restricted (:attr:`SendQueue.pinned`)
  :meth:`SendQueue.next_stream_frame` skips, without dequeuing, the streams the packet's path may
  not carry, so a pinned stream never holds back the others; :meth:`SendQueue.path_choices`
  tells the sender which paths can carry something.
* Shaping (:mod:`kwik_twisted.core.qos.shaper`): the streams with a QoS policy or a cap are
  tracked by :attr:`SendQueue.shaper`.  Within each level, the guaranteed streams with credit are
  served first; a capped stream out of tokens is parked out of its queue until its bucket refills
  (it stays ``queued``).  Time comes from :attr:`SendQueue.now`, which the sender sets before each
  send round and which puts back the parked streams whose wake-up came.
* One general frame picker: while no stream is restricted or tracked (the common case)
  :meth:`SendQueue.next_stream_frame` runs its plain loop after one attribute test (as it did
  for pinning alone); otherwise :meth:`SendQueue._next_filtered_frame` does the path filtering
  and the shaping.
* The bulk path: :meth:`SendQueue._new_frame_from` serves new data on a stream whose QOS extension
  already went out in one step; anything else (retransmissions, a bare FIN, the announcement of
  an empty stream, the first frame with its QOS extension) takes :meth:`SendQueue._frame_from`.
  They agree (tests/core/streams/test_fast_paths.py).

A :class:`StreamRecord` describes what a frame carried of its stream; the caller stores it with the
packet and hands it back to the :class:`~.manager.StreamManager` when the packet is acked or lost.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ...wire import DataBlockedFrame, QosPolicy, StreamDataBlockedFrame, StreamFrame
from ..qos.shaper import BandwidthShaper
from .budget import NO_MEMBERS, with_member
from .flow_control import SendCredit
from .stream import Stream

#: The QOS extension that withdraws a policy announced before (every field "no requirement").
NO_QOS = QosPolicy()

#: A priority level no stream was queued at yet: empty, read-only, shared.
_NO_STREAMS: Any = ()


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
    :ivar pinned: the open streams whose :attr:`~.stream.Stream.paths` restricts them (pinned or
        routed; none: no path filtering at all).
    :ivar usable: the IDs of the usable paths, kept fresh by the sender while a stream is pinned.
    :ivar shaper: the guarantees and caps of the streams (:mod:`~kwik_twisted.core.qos.shaper`).
    """

    __slots__ = (
        "credit",
        "sent_total",
        "queues",
        "pinned",
        "usable",
        "shaper",
        "_now",
        "_filtered",
        "_blocked",
        "_control",
    )

    def __init__(self, control: deque, max_data: int) -> None:
        self.credit = SendCredit(max_data)
        self.sent_total = 0
        # a level's deque is made for its first stream (an empty deque holds a 1 KiB block)
        self.queues: list[deque[Stream]] = [_NO_STREAMS, _NO_STREAMS, _NO_STREAMS]
        self.pinned: set[Stream] = NO_MEMBERS  # type: ignore[assignment]
        self.usable: frozenset[int] = frozenset()
        self.shaper = BandwidthShaper()
        self._now = 0.0
        self._filtered = False  # some stream is restricted to paths or tracked by the shaper
        self._blocked: set[Stream] = NO_MEMBERS  # type: ignore[assignment]
        self._control = control

    @property
    def now(self) -> float:
        """The time of the current send round (the shaper's clock)."""
        return self._now

    @now.setter
    def now(self, now: float) -> None:
        """Set by the sender before each send round: the parked streams whose bucket refilled go
        back to the end of their level, and the guaranteed ones whose credit is back are ready."""
        self._now = now
        if self._filtered:
            for stream in self.shaper.release(now):
                self._append(stream)
                if stream.shaping is not None:
                    self.shaper.enqueue(stream.shaping, now)

    # -- membership --------------------------------------------------------------------

    def schedule(self, stream: Stream) -> None:
        """Queue ``stream`` if it has something to send and is neither queued nor blocked."""
        if (
            not stream.queued
            and not stream.blocked
            and (stream.send.pending or not stream.qos_sent or stream.announce)
        ):
            stream.queued = True
            queue = self.queues[stream.priority]
            if queue is _NO_STREAMS:
                queue = self.queues[stream.priority] = deque()
            queue.append(stream)
            if stream.shaping is not None:
                self.shaper.enqueue(stream.shaping, self._now)

    def _append(self, stream: Stream) -> None:
        """Put ``stream`` at the back of its level's queue (made here if it is the first)."""
        queue = self.queues[stream.priority]
        if queue is _NO_STREAMS:
            queue = self.queues[stream.priority] = deque()
        queue.append(stream)

    def unblock(self, stream: Stream) -> None:
        """``stream`` got credit or has a range to send again: take it out of the blocked set
        and queue it."""
        if stream.blocked:
            stream.blocked = False
            self._blocked.discard(stream)
        self.schedule(stream)

    def unblock_all(self) -> None:
        """The connection got credit: queue every blocked stream again."""
        blocked, self._blocked = self._blocked, NO_MEMBERS
        for stream in blocked:
            stream.blocked = False
            self.schedule(stream)

    def forget(self, stream: Stream) -> None:
        """``stream`` closed: it will not be unblocked any more, nor shaped."""
        if self._blocked:
            self._blocked.discard(stream)
        if self.pinned:
            self.pinned.discard(stream)
        self.shaper.forget(stream)
        self._filtered = bool(self.pinned) or self.shaper.active

    def reprioritize(self, stream: Stream, priority: int) -> None:
        """Give ``stream`` another priority level, moving it to that level's queue if queued."""
        if priority == stream.priority:
            return
        entry = stream.shaping
        if entry is not None:
            self.shaper.unready(entry)
            if entry.parked:  # out of the queues: it goes back to its new level when unparked
                stream.priority = priority
                return
        if stream.queued:
            self.queues[stream.priority].remove(stream)
            stream.queued = False
            stream.priority = priority
            self.schedule(stream)
        else:
            stream.priority = priority

    def pin(self, stream: Stream, paths: frozenset[int] | None) -> None:
        """Pin ``stream`` to ``paths`` (``None``: any path), the application's choice: it wins
        over a route."""
        stream.pin = paths
        self._restrict(stream)

    def route(self, stream: Stream, paths: frozenset[int] | None) -> None:
        """Route ``stream`` on ``paths`` (``None``: any path), the QoS enforcer's choice: in
        force while the stream is not pinned."""
        stream.route = paths
        self._restrict(stream)

    def _restrict(self, stream: Stream) -> None:
        """Set ``stream.paths``, the restriction in force: its pin, else its route."""
        stream.paths = paths = stream.pin if stream.pin is not None else stream.route
        if paths is None:
            if self.pinned:
                self.pinned.discard(stream)
        else:
            self.pinned = with_member(self.pinned, stream)
        self._filtered = bool(self.pinned) or self.shaper.active

    def shape(self, stream: Stream) -> None:
        """
        Apply ``stream``'s guarantee (its policy's ``min_bandwidth_kbps``) and cap
        (``max_rate``, bits per second); the shaper tracks it while it has a policy or a cap.
        """
        qos, max_rate = stream.qos, stream.max_rate
        guarantee = qos.min_bandwidth_kbps * 125.0 if qos is not None else 0.0
        cap = max_rate / 8 if max_rate is not None else 0.0
        track = qos is not None or max_rate is not None
        if self.shaper.configure(stream, guarantee, cap, track, now=self._now):
            self._append(stream)  # unparked: queued all along
            if stream.shaping is not None:
                self.shaper.enqueue(stream.shaping, self._now)
        self._filtered = bool(self.pinned) or self.shaper.active

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
        if self._filtered:
            return self._next_filtered_frame(max_data, path_id)
        for queue in (self.queues[2], self.queues[1], self.queues[0]):
            while queue:
                out = self._serve(queue, queue[0], max_data)
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

    def _next_filtered_frame(
        self, max_data: int, path_id: int
    ) -> tuple[StreamFrame, StreamRecord] | None:
        """:meth:`next_stream_frame` while some stream is restricted to paths or tracked by the
        shaper: by level, the ready guaranteed streams first, then the round-robin, where the
        streams ``path_id`` may not carry stay queued (moved to the back of their level) and a
        capped stream out of tokens is parked."""
        shaper = self.shaper
        now = self._now
        for level in (2, 1, 0):
            queue = self.queues[level]
            if not queue:
                continue
            if shaper.guaranteed and shaper.ready[level]:
                out = self._next_ready_frame(level, queue, max_data, path_id)
                if out is not None:
                    return out
            for _ in range(len(queue)):
                stream = queue[0]
                if not self._may_carry(stream, path_id):
                    queue.rotate(-1)
                    continue
                entry = stream.shaping
                if entry is None:
                    out = self._serve(queue, stream, max_data)
                    if out is not None:
                        return out
                    continue
                if not shaper.may_send(entry, now):
                    queue.popleft()
                    shaper.park(entry)
                    continue
                out = self._serve(queue, stream, max_data)
                if out is None:
                    continue
                shaper.charge(entry, out[1].length, now)
                if stream.queued and entry.cap and entry.tokens <= 0:
                    queue.pop()  # at the back of its level after its turn
                    shaper.park(entry)
                return out
        return None

    def _next_ready_frame(
        self, level: int, queue: deque[Stream], max_data: int, path_id: int
    ) -> tuple[StreamFrame, StreamRecord] | None:
        """The next frame of ``level``'s ready guaranteed streams, in deficit round-robin, or
        ``None``; a stream that leaves its round-robin leaves ``queue`` here (O(len(queue)))."""
        shaper = self.shaper
        ready = shaper.ready[level]
        now = self._now
        for _ in range(len(ready)):
            if not ready:  # the shaper may have rebuilt it (dropped entries)
                break
            entry = ready[0]
            if not shaper.servable(entry, level, now):
                continue
            stream = entry.stream
            if not self._may_carry(stream, path_id):
                ready.rotate(-1)
                continue
            if not shaper.may_send(entry, now):
                ready.popleft()
                entry.ready = -1
                queue.remove(stream)
                shaper.park(entry)
                continue
            out = self._fast_or_general(stream, max_data)
            if out is None or shaper.served(entry, level, out[1].length, now):
                queue.remove(stream)
                if not entry.parked:
                    stream.queued = False
                if out is None:
                    ready.popleft()
                    entry.ready = -1
                    continue
            return out
        return None

    def _may_carry(self, stream: Stream, path_id: int) -> bool:
        """Whether path ``path_id`` may carry a frame of ``stream`` (not restricted to other
        usable paths)."""
        paths = stream.paths
        return paths is None or path_id in paths or paths.isdisjoint(self.usable)

    def _serve(self, queue, stream: Stream, max_data: int):
        """The next frame of ``stream``, the head of ``queue``, by the bulk builder if it can,
        else by :meth:`_take` (which moves the stream along the same way)."""
        fast = self._new_frame_from(stream, max_data)
        if fast is None:
            return self._take(queue, stream, max_data)
        frame, record, more = fast
        queue.rotate(-1)
        if not more:
            queue.pop()
            stream.queued = False
        return frame, record

    def _fast_or_general(self, stream: Stream, max_data: int):
        """The next frame of ``stream`` by the bulk builder if it can, else the general one."""
        fast = self._new_frame_from(stream, max_data)
        return self._frame_from(stream, max_data) if fast is None else fast[:2]

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
        self._blocked = with_member(self._blocked, stream)
        if conn_room == 0:
            limit = self.credit.blocked_at(self.sent_total)
            if limit is not None:
                self._control.append(DataBlockedFrame(limit))
        else:
            limit = stream.credit.blocked_at(send.sent_offset)
            if limit is not None:
                self._control.append(StreamDataBlockedFrame(stream.id, limit))


__all__ = ["NO_QOS", "SendQueue", "StreamRecord"]
