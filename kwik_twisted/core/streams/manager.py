"""
The streams of one connection: opening, limits, flow control at both levels, priorities, delivery.

Theory of operation (RFC 9000 §2-4 adapted by protocol.rst "Streams"):

* IDs: each side opens streams 4n + (0 client | 1 server); a frame for a peer stream above the
  highest seen opens every lower one implicitly; beyond the MAX_STREAMS we advertised it is a
  STREAM_LIMIT_ERROR. As peer streams close, the limit is raised again (MAX_STREAMS) so the peer may
  keep ``max_streams`` open at once.
* Flow control: per stream and per connection, with auto-tuned receive windows.  Data counts against
  the connection window by the *highest offset* received per stream; the application's consumption
  reopens both windows (MAX_STREAM_DATA / MAX_DATA).  The reassembler's buffer bound equals the
  stream window, so a peer holding gaps open cannot make us buffer more than we granted.
* Receive ordering: the ORDERED flag is the sender's permission to deliver pieces, not an
  obligation.  A peer stream is reassembled in order unless its first frame has ORDERED clear *and*
  ``config.accept_unordered`` is on; a stream we opened unordered is delivered as pieces (our
  application opted in).  The choice is made once, at the stream's first frame, so a final size is
  never forgotten; a peer that changes the flag after its first frame commits a PROTOCOL_VIOLATION.
* Memory: every reassembler charges one :class:`~.budget.ReceiveBudget` per connection (bytes and
  pieces across all streams, with a bound on pieces); a RESET_STREAM from the peer drops the
  stream's buffers at once, so the credit it returns is memory really released.
* Priority: the seed's levels.  :meth:`next_stream_frame` serves critical, then high, then normal
  streams, round-robin within a level; control frames (priority 0xFF) go before all of them, which
  is the connection's business.  The queues, the connection's send credit and the blocked streams
  live in a :class:`~.sendqueue.SendQueue`; this class is the connection's one entry point and
  keeps the stream lifecycle, the receive side and the outcomes of sent frames.
* Requests travel with the stream: the opener's priority rides on every STREAM frame and its QoS
  policy in a QOS extension (the first frame, and again after a change; all-zero withdraws it).
  On a peer stream both apply to our frames too until the application sets its own
  (:meth:`update`); on a stream we opened ours stay.  Peer streams are compressed as
  ``config.compression`` says, like ours.  :meth:`update` also pins a stream to paths
  (:class:`~.sendqueue.SendQueue` applies it) and caps its rate; :meth:`view` reads a stream.
* Shaping: each change of a stream's policy in force or cap goes through :meth:`_qos_changed`: the
  send queue's shaper (:mod:`kwik_twisted.core.qos.shaper`) applies it, and ``qos_streams`` (the
  open streams with a policy, for the QoS enforcer) follows.
* Retransmission: frames handed out are recorded by the caller with the packet;
  :meth:`on_record_acked` / :meth:`on_record_lost` route a STREAM frame's outcome back to the
  stream's send buffer, and :meth:`on_control_lost` re-queues a lost control frame if it still
  matters.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from ...errors import (
    FinalSizeError,
    ProtocolViolation,
    StreamLimitError,
    StreamStateError,
)
from ...events import (
    Event,
    StopSendingReceived,
    StreamClosed,
    StreamDataReceived,
    StreamOpened,
    StreamReset,
    StreamWritable,
)
from ...wire import (
    DataBlockedFrame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    QosPolicy,
    ResetStreamFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    StreamsBlockedFrame,
)
from ..qos.shaper import check_rate
from .budget import NO_MEMBERS, ReceiveBudget, with_member
from .flow_control import ReceiveWindow
from .reassembly import UnorderedReassembler
from .sendqueue import SendQueue, StreamRecord
from .state import RecvState, SendState, StreamEvent
from .stream import UNIDIRECTIONAL, Stream
from .view import StreamView

_RECV = RecvState.RECV

#: Spec defaults (protocol.rst, TRANSPORT_PARAMETERS): what a peer may assume before ours arrive.
DEFAULT_MAX_DATA = 1048576
DEFAULT_MAX_STREAM_DATA = 262144
DEFAULT_MAX_STREAMS = 100


#: The "leave it as it is" value of :meth:`StreamManager.update`'s keyword arguments.
UNCHANGED: object = object()


def _stream_id(stream: Stream) -> int:
    return stream.id


def _check_priority(priority: int) -> int:
    if priority not in (0, 1, 2):
        raise ValueError(f"priority must be 0, 1 or 2, not {priority!r}")
    return int(priority)


def _policy(qos: QosPolicy | None) -> QosPolicy | None:
    """``qos`` as stored: an all-zero policy (no requirement at all) is no policy."""
    if qos is None or not any(qos):
        return None
    return QosPolicy(*qos)


def _on_peer_request(queue: SendQueue, stream: Stream, frame: StreamFrame) -> bool:
    """The peer's priority and QOS extension on a frame of ``stream``: kept as the peer's, and in
    force for our frames unless the local side chose its own.  Returns whether the policy in
    force changed."""
    if frame.priority != stream.peer_priority:
        stream.peer_priority = frame.priority
        if not stream.fixed:
            queue.reprioritize(stream, frame.priority)
    if frame.qos is not None:
        stream.peer_qos = policy = _policy(frame.qos)
        if not stream.fixed and policy != stream.qos:
            stream.qos = policy
            return True
    return False


def _note_all_received(stream: Stream) -> None:
    """Size Known -> Data Recvd once every byte up to the final size has arrived."""
    if stream.recv_state.state is RecvState.SIZE_KNOWN and stream.recv.all_received:
        stream.recv_state.process(StreamEvent.ALL_RECEIVED)


class StreamManager:
    """
    All streams of a connection.

    :param is_client: our role (decides which IDs we open).
    :param emit: called with each event for the application.
    :param config: the connection's :class:`~kwik_twisted.config.ConnectionConfig`.
    :param budget: the connection's receive memory budget (a new one by default).
    """

    __slots__ = ("is_client", "budget", "_emit", "_config", "streams", "_next_local", "_peer_type",
                 "_peer_opened", "_peer_closed", "local_limit", "peer_limit", "_advertised_streams",
                 "peer_max_stream_data", "window", "received_total", "_signalling", "control",
                 "rtt", "send_queue", "qos_streams", "credit", "_queues", "_next_stream_frame")

    def __init__(self, *, is_client: bool, emit: Callable[[Event], None], config,
                 budget: ReceiveBudget | None = None) -> None:
        self.is_client = is_client
        self.budget = ReceiveBudget() if budget is None else budget
        self._emit = emit
        self._config = config
        self.streams: dict[int, Stream] = {}
        self._next_local = 0 if is_client else 1
        self._peer_type = 1 if is_client else 0
        self._peer_opened = 0  # count of peer streams opened so far
        self._peer_closed = 0
        self.local_limit = DEFAULT_MAX_STREAMS  # how many streams we may open (peer's MAX_STREAMS)
        self.peer_limit = config.max_streams  # how many the peer may open (ours)
        self._advertised_streams = config.max_streams
        self.peer_max_stream_data = DEFAULT_MAX_STREAM_DATA
        self.window = ReceiveWindow(config.initial_max_data, config.max_data_window)
        self.received_total = 0  # sum of highest offsets received per stream
        self._signalling: set[Stream] = NO_MEMBERS  # type: ignore[assignment]  # streams with a RESET_STREAM / STOP_SENDING to send
        self.control: deque = deque()  # flow-control frames waiting to be sent
        self.rtt = 0.0  # smoothed RTT, kept fresh by the connection for window tuning
        self.send_queue = SendQueue(self.control, DEFAULT_MAX_DATA)
        self.qos_streams: set[Stream] = NO_MEMBERS  # type: ignore[assignment]  # open, with a policy
        self.credit = self.send_queue.credit  # the peer's MAX_DATA
        # The per-packet calls go straight to the send queue: its queues for has_data, its
        # bound method for next_stream_frame.
        self._queues = self.send_queue.queues
        self._next_stream_frame = self.send_queue.next_stream_frame

    @property
    def receive_memory(self) -> int:
        """Bytes of receive-side memory held on all streams (data plus piece bookkeeping)."""
        return self.budget.used

    # -- opening -------------------------------------------------------------------------

    def can_open(self) -> bool:
        """Whether the peer's stream limit lets us open another stream."""
        return self._next_local // 4 < self.local_limit

    def open(
        self,
        *,
        priority: int = 0,
        ordered: bool = True,
        compress: bool | None = None,
        qos: QosPolicy | None = None,
        paths: frozenset[int] | None = None,
        max_rate: float | None = None,
    ) -> int:
        """
        Open a stream and return its ID; ``paths`` pins it (the caller checked the IDs),
        ``max_rate`` caps our sending rate on it (bits per second; see :meth:`update`).

        :raises StreamLimitError: the peer's MAX_STREAMS does not allow another one yet.
        """
        max_rate = check_rate(max_rate)
        if not self.can_open():
            self.control.append(StreamsBlockedFrame(self.local_limit))
            raise StreamLimitError(f"the peer allows {self.local_limit} streams; all are in use")
        priority = _check_priority(priority)
        sid = self._next_local
        self._next_local += 4
        compress = self._config.compression if compress is None else compress
        stream = self._new_stream(sid, True, priority, ordered, compress, _policy(qos))
        self.streams[sid] = stream
        if paths is not None:
            self.send_queue.pin(stream, paths)
        self.send_queue.schedule(stream)
        if stream.qos is not None or max_rate is not None:
            stream.max_rate = max_rate
            self._qos_changed(stream)
        return sid

    def _qos_changed(self, stream: Stream) -> None:
        """``stream``'s policy in force or its cap changed: the shaper applies them, and
        :attr:`qos_streams` holds it while it is open with a policy."""
        self.send_queue.shape(stream)
        if stream.qos is not None and stream.id in self.streams:
            self.qos_streams = with_member(self.qos_streams, stream)
        elif self.qos_streams:
            self.qos_streams.discard(stream)

    def _new_stream(
        self,
        sid: int,
        local: bool,
        priority: int = 0,
        ordered: bool = True,
        compress: bool = False,
        qos: QosPolicy | None = None,
    ) -> Stream:
        cfg = self._config
        return Stream(
            sid,
            local=local,
            send_limit=cfg.stream_send_buffer,
            peer_max_stream_data=self.peer_max_stream_data,
            initial_window=cfg.initial_max_stream_data,
            max_window=cfg.max_stream_data_window,
            priority=priority,
            ordered=ordered,
            compress=compress,
            qos=qos,
            budget=self.budget,
        )

    def _peer_stream(self, sid: int) -> Stream | None:
        """The stream a peer frame names, opening it (and lower ones) if new; None if long
        closed."""
        stream = self.streams.get(sid)
        if stream is not None:
            return stream
        if sid & UNIDIRECTIONAL:
            raise StreamStateError(f"stream {sid} is unidirectional; v3 has none")
        if (sid & 1) != self._peer_type:
            if sid < self._next_local:
                return None  # one of ours, already closed
            raise StreamStateError(f"stream {sid} is ours and was never opened")
        index = sid // 4
        if index < self._peer_opened:
            return None  # closed and forgotten
        if index >= self._advertised_streams:
            raise StreamLimitError(
                f"stream {sid} is beyond the {self._advertised_streams} streams allowed"
            )
        while self._peer_opened <= index:
            new_id = self._peer_opened * 4 + self._peer_type
            compress = self._config.compression
            self.streams[new_id] = self._new_stream(new_id, False, compress=compress)
            self._peer_opened += 1
            self._emit(StreamOpened(new_id))
        return self.streams[sid]

    def _local_stream(self, sid: int) -> Stream:
        stream = self.streams.get(sid)
        if stream is None:
            raise StreamStateError(f"stream {sid} is not open")
        return stream

    # -- application operations ---------------------------------------------------------

    def write(self, sid: int, data: bytes, end_stream: bool = False) -> None:
        """Queue ``data`` (and FIN) on stream ``sid``."""
        stream = self._local_stream(sid)
        if data:
            stream.send.write(data)
            if stream.send_state.state is not SendState.SEND:
                stream.send_state.process(StreamEvent.SEND_DATA)
        if end_stream:
            stream.send.finish()
            stream.send_state.process(StreamEvent.SEND_FIN)
        self.send_queue.schedule(stream)
        stream.was_writable = stream.send.writable

    def reset(self, sid: int, error_code: int) -> None:
        """Abandon our direction of stream ``sid`` (RESET_STREAM)."""
        stream = self._local_stream(sid)
        if stream.send_state.is_reset or stream.send_state.terminal:
            return
        final_size = stream.send.reset()
        stream.send_state.process(StreamEvent.SEND_RESET)
        stream.reset_pending = (error_code, final_size)
        self._signalling = with_member(self._signalling, stream)

    def stop_sending(self, sid: int, error_code: int) -> None:
        """Ask the peer to stop sending on ``sid`` (STOP_SENDING); we discard what arrives."""
        stream = self._local_stream(sid)
        if stream.recv_state.terminal or stream.recv_state.size_known:
            return
        stream.recv_state.process(StreamEvent.SEND_STOP_SENDING)
        stream.stop_sending_pending = error_code
        self._signalling = with_member(self._signalling, stream)

    def pause(self, sid: int, paused: bool, *, now: float) -> None:
        """Stop (or resume) delivering stream ``sid``'s data; unread data holds the windows shut."""
        stream = self.streams.get(sid)
        if stream is None:
            return
        stream.paused = paused
        if not paused:
            self._deliver(stream, now)

    def view(self, sid: int) -> StreamView | None:
        """A read-only view of stream ``sid``, or ``None`` if it is not open (or long closed)."""
        stream = self.streams.get(sid)
        return None if stream is None else StreamView(stream)

    def update(
        self,
        sid: int,
        *,
        priority: int | object = UNCHANGED,
        qos: QosPolicy | None | object = UNCHANGED,
        paths: frozenset[int] | None | object = UNCHANGED,
        max_rate: float | None | object = UNCHANGED,
    ) -> None:
        """
        Change what stream ``sid`` asks for; each argument left :data:`UNCHANGED` stays.

        A priority applies to every frame we send from now on (retransmissions too); a QoS policy
        (``None`` withdraws ours) goes out in a QOS extension on the stream's next frame.  Either
        makes the stream's priority and policy ours: the peer's later requests no longer change
        them.  ``paths`` pins the stream (``None``: any path; the caller checked the IDs).
        ``max_rate`` caps our sending rate on it, bits per second (``None``: no cap; local only).

        :raises StreamStateError: the stream is not open.
        :raises ValueError: a priority other than 0, 1 or 2; a ConfigurationError: a bad max_rate.
        """
        if max_rate is not UNCHANGED:
            max_rate = check_rate(max_rate)
        stream = self._local_stream(sid)
        queue = self.send_queue
        if priority is not UNCHANGED:
            priority = _check_priority(priority)  # type: ignore[arg-type]
            stream.fixed = True
            queue.reprioritize(stream, priority)
        if qos is not UNCHANGED:
            stream.fixed = True
            policy = _policy(qos)  # type: ignore[arg-type]
            if policy != stream.qos or not stream.qos_sent:
                stream.qos = policy
                stream.qos_sent = False
        if max_rate is not UNCHANGED:
            stream.max_rate = max_rate  # type: ignore[assignment]
        if qos is not UNCHANGED or max_rate is not UNCHANGED:
            self._qos_changed(stream)
        if paths is not UNCHANGED:
            queue.pin(stream, paths)  # type: ignore[arg-type]

    def writable(self, sid: int) -> bool:
        """Whether stream ``sid``'s send buffer is below its limit."""
        stream = self.streams.get(sid)
        return stream is not None and stream.send.writable

    # -- frames from the peer -------------------------------------------------------------

    def on_stream_frame(self, frame: StreamFrame, *, now: float) -> None:
        """Handle a STREAM frame."""
        stream = self.streams.get(frame.stream_id)
        if stream is not None and self._receive_next(stream, frame, now):
            return
        self._receive_frame(frame, now)

    def _receive_frame(self, frame: StreamFrame, now: float) -> None:
        """:meth:`on_stream_frame` for any frame (:meth:`_receive_next` is its fast path)."""
        stream = self._peer_stream(frame.stream_id)
        if stream is None or stream.recv_state.is_reset:
            return
        if frame.ordered is not stream.peer_ordered:
            self._check_ordered_flag(stream, frame.ordered)
        if frame.priority != stream.peer_priority or frame.qos is not None:
            if _on_peer_request(self.send_queue, stream, frame):
                self._qos_changed(stream)
        end = frame.offset + len(frame.data)
        before = stream.recv.highest_received
        stream.window.on_data(end)
        if end > before:
            self.received_total += end - before
            self.window.on_data(self.received_total)
        stream.recv.insert(frame.offset, frame.data, frame.fin)
        if frame.fin or stream.recv_state.state is not RecvState.RECV:
            # RECV_DATA in RECV is the one transition taken per packet, and a no-op.
            stream.recv_state.process(StreamEvent.RECV_FIN if frame.fin else StreamEvent.RECV_DATA)
        _note_all_received(stream)
        self._deliver(stream, now)

    def _receive_next(self, stream: Stream, frame: StreamFrame, now: float) -> bool:
        """
        The bulk case in one step: the next bytes of an ordered, open, unpaused stream, no FIN.

        Returns ``False`` (having changed nothing) for any other frame.  Equivalent to the general
        path, :meth:`_receive_frame`: the windows see the same calls in the same order, the
        receive state machine stays in Recv (RECV_DATA is a no-op there), and with nothing
        buffered the reassembler would hand back exactly the frame's bytes, at once.
        """
        data = frame.data
        recv = stream.recv
        if (
            frame.fin
            or not data
            or frame.ordered is not stream.peer_ordered
            or not recv.ordered
            or stream.paused
            or frame.priority != stream.peer_priority
            or frame.qos is not None
            or stream.recv_state.state is not _RECV
            or not recv.is_next(frame.offset)
        ):
            return False
        offset = frame.offset
        end = offset + len(data)
        before = recv.highest_received
        stream.window.on_data(end)
        if end > before:
            self.received_total += end - before
            self.window.on_data(self.received_total)
        chunk = recv.take_next(offset, data)
        self._consumed(stream, end - offset, now)
        self._emit(StreamDataReceived(stream.id, chunk, False, offset))
        return True

    def _check_ordered_flag(self, stream: Stream, ordered: bool) -> None:
        """The peer's first frame fixes its ORDERED flag and, on a peer stream, our reassembly
        (nothing was inserted yet, so nothing is forgotten); a change is a PROTOCOL_VIOLATION."""
        if stream.peer_ordered is not None:
            raise ProtocolViolation(f"ORDERED flag changed on stream {stream.id}")
        stream.peer_ordered = ordered = bool(ordered)
        if stream.local:
            return
        stream.ordered = ordered  # our frames mirror the peer's flag
        if not ordered and self._config.accept_unordered:
            stream.recv = UnorderedReassembler(stream.recv.max_buffer, self.budget)

    def _deliver(self, stream: Stream, now: float) -> None:
        """Hand what can be read to the application, and credit the windows for it."""
        if stream.paused or stream.recv_state.is_reset:
            return
        recv = stream.recv
        start = recv.read_offset
        if recv.ordered:
            pieces = [(start, recv.read())] if recv.readable else []
        else:
            pieces = []
            while (piece := recv.pop_any()) is not None:
                pieces.append(piece)
        # Credit follows the contiguous read offset: on unordered streams, bytes past a gap
        # still occupy the window until the gap is filled.
        advanced = recv.read_offset - start
        if advanced:
            self._consumed(stream, advanced, now)
        finished = recv.finished and not stream.fin_delivered
        if finished:
            stream.fin_delivered = True
            if not pieces:
                pieces.append((recv.read_offset, b""))
        last = len(pieces) - 1
        for i, (offset, data) in enumerate(pieces):
            self._emit(StreamDataReceived(stream.id, data, finished and i == last, offset))
        if finished:
            _note_all_received(stream)
            stream.recv_state.process(StreamEvent.APP_READ_ALL)
            self._maybe_close(stream)

    def _consumed(self, stream: Stream, n: int, now: float) -> None:
        """Credit ``n`` bytes to both windows; they measure the reader by its progress."""
        window, delivered = stream.window, stream.recv.delivered
        total = self.window.delivered + delivered - window.delivered
        window.on_consumed(n, now=now, rtt=self.rtt, delivered=delivered)
        limit = window.update_due()
        if limit is not None and not stream.recv_state.size_known:
            stream.recv.max_buffer = window.window
            self.control.append(MaxStreamDataFrame(stream.id, limit))
        self.window.on_consumed(n, now=now, rtt=self.rtt, delivered=total)
        limit = self.window.update_due()
        if limit is not None:
            self.control.append(MaxDataFrame(limit))

    def on_reset_stream(self, frame: ResetStreamFrame, *, now: float) -> None:
        """Handle RESET_STREAM: the peer abandoned its direction."""
        stream = self._peer_stream(frame.stream_id)
        if stream is None:
            return
        final = frame.final_size
        known = stream.recv.final_size
        if (known is not None and known != final) or final < stream.recv.highest_received:
            raise FinalSizeError(f"RESET_STREAM final size {final} contradicts stream {stream.id}")
        if stream.recv_state.is_reset:
            return
        stream.window.on_data(final)
        if final > stream.recv.highest_received:
            self.received_total += final - stream.recv.highest_received
            self.window.on_data(self.received_total)
        unread = final - stream.recv.read_offset
        stream.recv_state.process(StreamEvent.RECV_RESET)
        if stream.recv_state.is_reset:
            stream.received_at_reset = stream.recv.highest_received
            # Drop the buffers now, not at close (our reset may wait for an ACK that never comes).
            stream.recv.discard(final)
            self._consumed(stream, max(unread, 0), now)
            self._emit(StreamReset(stream.id, frame.error_code))
            stream.recv_state.process(StreamEvent.APP_READ_RESET)
            self._maybe_close(stream)

    def on_stop_sending(self, frame: StopSendingFrame) -> None:
        """Handle STOP_SENDING: answer with RESET_STREAM."""
        stream = self._peer_stream(frame.stream_id)
        if stream is None:
            return
        stream.send_state.process(StreamEvent.RECV_STOP_SENDING)
        self._emit(StopSendingReceived(stream.id, frame.error_code))
        self.reset(stream.id, frame.error_code)

    def on_max_data(self, frame: MaxDataFrame) -> None:
        """Handle MAX_DATA: more connection credit."""
        if self.credit.update(frame.maximum):
            self.send_queue.unblock_all()

    def on_max_stream_data(self, frame: MaxStreamDataFrame) -> None:
        """Handle MAX_STREAM_DATA: more credit for one stream."""
        stream = self._peer_stream(frame.stream_id)
        if stream is None:
            return
        stream.send_state.process(StreamEvent.RECV_MAX_STREAM_DATA)
        if stream.credit.update(frame.maximum) and stream.blocked:
            self.send_queue.unblock(stream)

    def on_max_streams(self, frame: MaxStreamsFrame) -> None:
        """Handle MAX_STREAMS: we may open more streams."""
        if frame.maximum > self.local_limit:
            self.local_limit = frame.maximum

    def on_stream_data_blocked(self, frame: StreamDataBlockedFrame) -> None:
        """Handle STREAM_DATA_BLOCKED (informational; validates the stream ID)."""
        self._peer_stream(frame.stream_id)

    def apply_peer_parameters(self, max_data: int, max_stream_data: int, max_streams: int) -> None:
        """Apply the peer's TRANSPORT_PARAMETERS (never below the spec defaults)."""
        self.credit.update(max_data)
        self.peer_max_stream_data = max_stream_data
        for stream in self.streams.values():
            stream.credit.update(max_stream_data)
        self.local_limit = max(self.local_limit, max_streams)
        self.send_queue.unblock_all()

    # -- sending (the send queue does the scheduling) -----------------------------------

    @property
    def sent_total(self) -> int:
        """New stream bytes sent, counted against the connection's credit."""
        return self.send_queue.sent_total

    @property
    def has_control(self) -> bool:
        """Whether stream-related control frames wait to be sent."""
        return bool(self.control or self._signalling)

    @property
    def has_data(self) -> bool:
        """Whether any stream has data it may send now."""
        q = self._queues
        return bool(q[2] or q[1] or q[0])

    def backlog(self) -> int:
        """Bytes waiting to be sent on all scheduled streams (new and retransmissions)."""
        return self.send_queue.backlog()

    def highest_pending_priority(self) -> int | None:
        """The highest priority level with data waiting, or None."""
        return self.send_queue.highest_pending_priority()

    def next_stream_frame(
        self, max_data: int, path_id: int = 0
    ) -> tuple[StreamFrame, StreamRecord] | None:
        """
        The next STREAM frame to send on path ``path_id``, at most ``max_data`` data bytes, by
        priority then round-robin, skipping streams pinned elsewhere
        (:meth:`.SendQueue.next_stream_frame`).

        Returns the frame and the record to attach to the packet, or ``None``.
        """
        return self._next_stream_frame(max_data, path_id)

    def pending_control(self) -> list:
        """Take the stream-related control frames waiting to be sent (RESET, STOP, MAX_*)."""
        if not self.control and not self._signalling:
            return []
        out = list(self.control)
        self.control.clear()
        signalling, self._signalling = self._signalling, NO_MEMBERS
        for stream in sorted(signalling, key=_stream_id):
            if stream.reset_pending is not None:
                code, final = stream.reset_pending
                stream.reset_pending = None
                out.append(ResetStreamFrame(stream.id, code, final))
            if stream.stop_sending_pending is not None:
                out.append(StopSendingFrame(stream.id, stream.stop_sending_pending))
                stream.stop_sending_pending = None
        return out

    # -- outcomes ----------------------------------------------------------------------

    def on_record_acked(self, record: StreamRecord) -> None:
        """A packet carrying ``record`` was acknowledged."""
        stream = record.stream
        stream.send.on_acked(record.offset, record.length, record.fin)
        if stream.send.acked_all and not stream.send_state.terminal:
            stream.send_state.process(StreamEvent.ALL_ACKED)
            self._maybe_close(stream)
        if not stream.was_writable and stream.send.writable:
            stream.was_writable = True
            self._emit(StreamWritable(stream.id))

    def on_record_lost(self, record: StreamRecord) -> None:
        """A packet carrying ``record`` was declared lost: queue the range again."""
        stream = record.stream
        if stream.send.is_reset or stream.send_state.terminal:
            return
        if record.length == 0 and not record.fin:  # a lost announcement
            stream.announce = stream.send.sent_offset == 0 and not stream.send.fin_sent
            self.send_queue.schedule(stream)
            return
        stream.send.on_lost(record.offset, record.length, record.fin)
        self.send_queue.unblock(stream)

    def on_control_acked(self, frame) -> None:
        """A stream-related control frame was acknowledged."""
        if isinstance(frame, ResetStreamFrame):
            stream = self.streams.get(frame.stream_id)
            if stream is not None and stream.send_state.is_reset:
                stream.send_state.process(StreamEvent.RESET_ACKED)
                self._maybe_close(stream)

    def on_control_lost(self, frame) -> None:
        """A stream-related control frame was lost: send it again if it still matters."""
        stream = self.streams.get(getattr(frame, "stream_id", -1))
        if isinstance(frame, MaxDataFrame):
            self.control.append(MaxDataFrame(self.window.max_data))
        elif isinstance(frame, MaxStreamDataFrame):
            if stream is not None and not stream.recv_state.size_known:
                self.control.append(MaxStreamDataFrame(stream.id, stream.window.max_data))
        elif isinstance(frame, MaxStreamsFrame):
            self.control.append(MaxStreamsFrame(self._advertised_streams))
        elif isinstance(frame, ResetStreamFrame):
            if stream is not None and stream.send_state.state is SendState.RESET_SENT:
                stream.reset_pending = (frame.error_code, frame.final_size)
                self._signalling = with_member(self._signalling, stream)
        elif isinstance(frame, StopSendingFrame):
            if stream is not None and not stream.recv_state.terminal:
                stream.stop_sending_pending = frame.error_code
                self._signalling = with_member(self._signalling, stream)
        elif isinstance(frame, DataBlockedFrame):
            self.credit.blocked_lost(frame.limit)
        elif isinstance(frame, StreamDataBlockedFrame) and stream is not None:
            stream.credit.blocked_lost(frame.limit)

    def _maybe_close(self, stream: Stream) -> None:
        if not stream.closed or stream.id not in self.streams:
            return
        del self.streams[stream.id]
        self.send_queue.forget(stream)
        if self.qos_streams:
            self.qos_streams.discard(stream)
        self._emit(StreamClosed(stream.id))
        if not stream.local:
            self._peer_closed += 1
            target = self._peer_closed + self.peer_limit
            if target - self._advertised_streams >= max(1, self.peer_limit // 8):
                self._advertised_streams = target
                self.control.append(MaxStreamsFrame(target))
