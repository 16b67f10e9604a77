"""
Tests that each fast path of the stream layer agrees with its general path.

The bulk transfer takes shortcuts on both sides; these properties keep each one equal to the path
it shortcuts.  The pairs:

1. ``Reassembler.take_next`` (the next bytes of an idle ordered stream, handed straight back) and
   ``insert`` then ``read``;
2. ``Reassembler.insert`` appending in-order data to the ready list and the general path that holds
   data (``_hold``) and releases what became contiguous;
3. ``SendBuffer.next_new`` (only new data can be due) and ``next_frame``;
4. ``SendBuffer.on_acked`` moving the acknowledged floor in order, and the range bookkeeping taken
   for out-of-order acknowledgements; and acknowledging a joined run at once (the connection's
   bulk ACK path) against acknowledging its pieces;
5. ``SendQueue._new_frame_from`` (new data on a stream whose QOS extension went out) and
   ``_frame_from``;
6. ``StreamManager._receive_next`` (the next bytes of an open, ordered, unpaused stream) and
   ``_receive_frame``.

Where the general path is a private method it is called directly, here only, so that the fast path
cannot pass by taking its own shortcut twice.  The default run is derandomized; the ``fuzz``-marked
variants draw ``KWIK_FUZZ_EXAMPLES`` random examples (``make fuzz``).
"""

from __future__ import annotations

import random
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.config import ConnectionConfig
from kwik_twisted.core.streams.budget import ReceiveBudget
from kwik_twisted.core.streams.manager import StreamManager
from kwik_twisted.core.streams.reassembly import Reassembler
from kwik_twisted.core.streams.sendbuffer import SendBuffer
from kwik_twisted.core.streams.sendqueue import SendQueue
from kwik_twisted.core.streams.stream import Stream
from kwik_twisted.wire import QosPolicy, StreamFrame
from tests.wire.strategies import derandomized, fuzz, outcome

PROPERTY = derandomized(100)
BLOB = random.Random(12).randbytes(1 << 17)


# --------------------------------------------------------------------------
# 1, 2: reassembly


def reassembler_state(r: Reassembler) -> tuple:
    """Everything a caller can see of ``r``, and what it charges to its budget."""
    budget = r._budget
    return (
        r.read_offset, r.readable, r.buffered_bytes, r.held_pieces, r.final_size,
        r.highest_received, r.all_received, r.finished,
        budget.bytes, budget.pieces, budget.chunks,
    )  # fmt: skip


class HeldOnly(Reassembler):
    """A reassembler that always takes the general path: data is held, then released."""

    __slots__ = ()

    def insert(self, offset, data, fin=False) -> None:  # type: ignore[no-untyped-def]
        """Insert through ``_hold`` even when the data continues the ready bytes."""
        end = offset + len(data)
        self._check(offset, end, fin)
        contiguous = self.read_offset + self.readable
        if end > contiguous:
            self._hold(offset, data, contiguous)


#: Arrivals: (offset shift from the contiguous end, length, fin, read afterwards, read limit).
arrivals = st.lists(
    st.tuples(
        st.sampled_from([0, 0, 0, -5, -300, 7, 2000]),
        st.sampled_from([1, 10, 700, 1300, 5000]),
        st.sampled_from([False] * 6 + [True]),
        st.booleans(),
        st.none() | st.integers(1, 3000),
    ),
    min_size=1,
    max_size=25,
)


def _take(offset: int, length: int) -> tuple[int, bytes]:
    """``(offset, bytes)`` of the blob, clipped at 0."""
    offset = max(offset, 0)
    return offset, BLOB[offset : offset + length]


class ReassemblyTests(SynchronousTestCase):
    """The reassembler's shortcuts against insert, hold and read."""

    def check_take_next(self, steps) -> None:
        """Wherever is_next holds, take_next returns what insert then read return, and leaves
        the same state; elsewhere both reassemblers take the same general steps."""
        fast = Reassembler(16384, ReceiveBudget())
        general = Reassembler(16384, ReceiveBudget())
        for shift, length, fin, read, limit in steps:
            offset, data = _take(fast.read_offset + fast.readable + shift, length)
            if not fin and fast.is_next(offset):
                got = outcome(fast.take_next, offset, data)
                expected = outcome(self.insert_then_read, general, offset, data)
                self.assertEqual(got, expected)
            else:
                got = outcome(fast.insert, offset, data, fin)
                self.assertEqual(got, outcome(general.insert, offset, data, fin))
                if read:
                    self.assertEqual(fast.read(limit), general.read(limit))
            self.assertEqual(reassembler_state(fast), reassembler_state(general))
            if got[0] == "error":
                return

    @staticmethod
    def insert_then_read(r: Reassembler, offset: int, data: bytes) -> bytes:
        """The general path of take_next: insert the frame, then read everything ready."""
        r.insert(offset, data)
        return r.read()

    @PROPERTY
    @given(arrivals)
    def test_take_next_is_insert_then_read(self, steps) -> None:
        """take_next agrees with insert then read, in every state that allows it."""
        self.check_take_next(steps)

    @pytest.mark.fuzz
    def test_fuzz_take_next(self) -> None:
        """The take_next property on random examples."""
        fuzz(self.check_take_next, steps=arrivals)

    def check_insert(self, steps) -> None:
        """insert (appending in-order data at once) and HeldOnly (holding it first) read back
        the same bytes and keep the same state and budget after every step."""
        fast = Reassembler(16384, ReceiveBudget())
        general = HeldOnly(16384, ReceiveBudget())
        for shift, length, fin, read, limit in steps:
            offset, data = _take(fast.read_offset + fast.readable + shift, length)
            got = outcome(fast.insert, offset, data, fin)
            self.assertEqual(got, outcome(general.insert, offset, data, fin))
            if got[0] == "error":
                return
            if read:
                self.assertEqual(fast.read(limit), general.read(limit))
            self.assertEqual(reassembler_state(fast), reassembler_state(general))

    @PROPERTY
    @given(arrivals)
    def test_in_order_insert_is_hold_then_release(self, steps) -> None:
        """The in-order shortcut of insert agrees with holding and releasing the data."""
        self.check_insert(steps)

    @pytest.mark.fuzz
    def test_fuzz_in_order_insert(self) -> None:
        """The insert property on random examples."""
        fuzz(self.check_insert, steps=arrivals)


# --------------------------------------------------------------------------
# 3, 4: the send buffer

writes = st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=6)
takes = st.lists(
    st.tuples(st.integers(min_value=0, max_value=2000), st.integers(min_value=0, max_value=20_000)),
    min_size=1,
    max_size=12,
)


def filled(sizes: list[int], fin: bool) -> SendBuffer:
    """A buffer holding writes of ``sizes`` bytes (distinct contents), finished if ``fin``."""
    buf = SendBuffer(1 << 20)
    for i, size in enumerate(sizes):
        buf.write(bytes([i % 256]) * size)
    if fin:
        buf.finish()
    return buf


def send_state(buf: SendBuffer) -> tuple:
    """Everything a caller can see of ``buf``."""
    return (
        buf.sent_offset,
        buf.unsent_bytes,
        buf.retransmit_bytes,
        buf.buffered_bytes,
        buf.writable,
        buf.pending,
        buf.fin_sent,
        buf.acked_all,
    )


def handed_out(sizes: list[int], fin: bool, max_len: int) -> tuple[SendBuffer, list]:
    """A filled buffer with everything handed out in frames of ``max_len``, and the frames as
    ``(offset, length, fin)``."""
    buf = filled(sizes, fin)
    frames = []
    while (frame := buf.next_frame(max_len)) is not None:
        frames.append((frame[0], len(frame[1]), frame[2]))
    return buf, frames


class SendBufferTests(SynchronousTestCase):
    """The send buffer's shortcuts against next_frame and the acknowledged ranges."""

    def check_next_new(self, sizes, fin, steps) -> None:
        """Whenever next_new gives a frame it is next_frame's, with ``more`` equal to pending;
        when it declines, nothing changed."""
        fast, general = filled(sizes, fin), filled(sizes, fin)
        for max_len, max_offset in steps:
            got = fast.next_new(max_len, max_offset)
            if got is None:
                self.assertEqual(send_state(fast), send_state(general))  # nothing changed
                general.next_frame(max_len, max_offset)  # a bare FIN, or nothing
                fast.next_frame(max_len, max_offset)
                continue
            offset, data, end_fin, more = got
            offset2, data2, fin2, retransmit = general.next_frame(max_len, max_offset)
            self.assertEqual((offset, bytes(data), end_fin), (offset2, bytes(data2), fin2))
            self.assertFalse(retransmit)
            self.assertEqual(more, general.pending)
            self.assertEqual(send_state(fast), send_state(general))

    @PROPERTY
    @given(writes, st.booleans(), takes)
    def test_next_new_hands_out_what_next_frame_would(self, sizes, fin, steps) -> None:
        """next_new agrees with next_frame's new-data branch."""
        self.check_next_new(sizes, fin, steps)

    @pytest.mark.fuzz
    def test_fuzz_next_new(self) -> None:
        """The next_new property on random examples."""
        fuzz(self.check_next_new, sizes=writes, fin=st.booleans(), steps=takes)

    def test_next_new_declines_when_data_was_lost(self) -> None:
        """With a lost range waiting, next_new leaves it to next_frame's retransmission."""
        buf = filled([1000], False)
        buf.next_frame(1000)
        buf.on_lost(0, 500, False)
        self.assertIsNone(buf.next_new(1000, 10_000))
        self.assertEqual(buf.next_frame(1000)[0::3], (0, True))

    def check_ack_order(self, sizes, fin, max_len, order) -> None:
        """Acknowledging every frame in order (the floor moves at once) and in another order
        (ranges are recorded until the floor catches up) end in the same state, and on the way
        the memory held is always what the contiguous acknowledged prefix leaves."""
        in_order, frames = handed_out(sizes, fin, max_len)
        shuffled, _ = handed_out(sizes, fin, max_len)
        for frame in frames:
            in_order.on_acked(*frame)
        order.shuffle(frames)
        ends = {offset: offset + length for offset, length, _ in frames}
        acked: set[int] = set()
        floor = 0
        for frame in frames:
            shuffled.on_acked(*frame)
            acked.add(frame[0])
            while floor in acked and floor in ends and ends[floor] > floor:
                floor = ends[floor]  # the contiguous acknowledged prefix, as a model
            self.assertEqual(shuffled.buffered_bytes, sum(sizes) - floor)
        self.assertEqual(send_state(in_order), send_state(shuffled))
        self.assertTrue(shuffled.acked_all or not fin)

    @PROPERTY
    @given(writes, st.booleans(), st.integers(1, 1500), st.randoms(use_true_random=False))
    def test_acks_in_any_order_leave_the_in_order_state(self, sizes, fin, max_len, order):
        """The in-order acknowledgement shortcut agrees with the range bookkeeping."""
        self.check_ack_order(sizes, fin, max_len, order)

    @pytest.mark.fuzz
    def test_fuzz_ack_order(self) -> None:
        """The acknowledgement-order property on random examples."""
        fuzz(
            self.check_ack_order, sizes=writes, fin=st.booleans(), max_len=st.integers(1, 1500),
            order=st.randoms(use_true_random=False),
        )

    def check_joined_ack(self, sizes, fin, max_len, data) -> None:
        """on_acked of touching frames joined leaves the state the frames one by one leave."""
        joined, frames = handed_out(sizes, fin, max_len)
        pieces, _ = handed_out(sizes, fin, max_len)
        first = data.draw(st.integers(min_value=0, max_value=len(frames) - 1))
        last = data.draw(st.integers(min_value=first, max_value=len(frames) - 1))
        run = frames[first : last + 1]
        for offset, length, end_fin in run:
            pieces.on_acked(offset, length, end_fin)
        start = run[0][0]
        end = run[-1][0] + run[-1][1]
        joined.on_acked(start, end - start, any(f for _, _, f in run))
        self.assertEqual(send_state(joined), send_state(pieces))

    @PROPERTY
    @given(writes, st.booleans(), st.integers(min_value=1, max_value=1500), st.data())
    def test_joined_range_acks_like_its_pieces(self, sizes, fin, max_len, data) -> None:
        """Acknowledging a joined run at once agrees with acknowledging its frames."""
        self.check_joined_ack(sizes, fin, max_len, data)

    @pytest.mark.fuzz
    def test_fuzz_joined_acks(self) -> None:
        """The joined-acknowledgement property on random examples."""
        fuzz(
            self.check_joined_ack, sizes=writes, fin=st.booleans(),
            max_len=st.integers(1, 1500), data=st.data(),
        )


# --------------------------------------------------------------------------
# 5: the send queue

_write_step = st.tuples(st.just("write"), st.sampled_from([1, 100, 1300, 4000]))
_step = st.one_of(
    _write_step,
    st.tuples(st.just("fin")),
    st.tuples(st.just("take"), st.sampled_from([0, 1, 500, 1200, 1300, 5000])),
    st.tuples(st.just("take"), st.sampled_from([1200])),
    st.tuples(st.just("lose"), st.integers(0, 20)),
    st.tuples(st.just("ack"), st.integers(0, 20)),
    st.tuples(st.just("credit"), st.sampled_from([0, 2000, 8000, 1 << 20])),
    st.tuples(st.just("conn"), st.sampled_from([0, 3000, 1 << 20])),
)
#: Steps on one stream, writes first: ("write", n), ("fin",), ("take", max_data),
#: ("lose", frame index), ("ack", frame index), ("credit", stream limit), ("conn", connection
#: limit).
queue_steps = st.builds(
    list.__add__,
    st.lists(_write_step, min_size=1, max_size=2),
    st.lists(_step, min_size=1, max_size=30),
)


def queued_stream(qos: QosPolicy | None, credit: int) -> Stream:
    """A stream we opened, with ``credit`` for its data."""
    return Stream(
        0, local=True, send_limit=1 << 20, peer_max_stream_data=credit,
        initial_window=1 << 16, max_window=1 << 20, qos=qos,
    )


def queue_side(queue: SendQueue, stream: Stream) -> tuple:
    """Everything of the stream and queue a frame decision can change."""
    return (
        queue.sent_total, stream.announce, stream.qos_sent, stream.blocked, send_state(stream.send),
        list(queue._control),
    )


def frame_fields(frame: StreamFrame) -> tuple:
    """A frame's every field, the ones ``==`` leaves out included."""
    return (frame, frame.compressed, frame.qos)


class SendQueueTests(SynchronousTestCase):
    """The send queue's bulk frame builder against the general one."""

    def check_new_frame(self, qos, initial_credit, max_data, steps) -> None:
        """Wherever _new_frame_from builds a frame, _frame_from builds the same frame and
        record and leaves the same state, and ``more`` is whether the stream has more pending;
        where it declines, nothing changed."""
        sides = []
        for _ in range(2):
            queue = SendQueue(deque(), max_data)
            sides.append((queue, queued_stream(qos, initial_credit), []))
        (fast_q, fast_s, fast_records), (gen_q, gen_s, gen_records) = sides
        for step in steps:
            if step[0] == "take":
                got = fast_q._new_frame_from(fast_s, step[1])
                if got is None:
                    self.assertEqual(queue_side(fast_q, fast_s), queue_side(gen_q, gen_s))
                    got = fast_q._frame_from(fast_s, step[1])
                    more = None
                else:
                    got, more = got[:2], got[2]
                expected = gen_q._frame_from(gen_s, step[1])
                self.assertEqual(got is None, expected is None)
                if got is not None:
                    self.assertEqual(frame_fields(got[0]), frame_fields(expected[0]))
                    self.assertEqual(
                        (got[1].offset, got[1].length, got[1].fin),
                        (expected[1].offset, expected[1].length, expected[1].fin),
                    )
                    if more is not None:
                        self.assertEqual(more, gen_s.send.pending)
                    fast_records.append(got[1])
                    gen_records.append(expected[1])
            else:
                for queue, stream, records in sides:
                    self.apply(queue, stream, records, step)
            self.assertEqual(queue_side(fast_q, fast_s), queue_side(gen_q, gen_s))

    @staticmethod
    def apply(queue: SendQueue, stream: Stream, records: list, step: tuple) -> None:
        """Apply a non-frame ``step`` to one side."""
        kind = step[0]
        if kind == "write":
            outcome(stream.send.write, BLOB[: step[1]])  # refused once finished, on both sides
        elif kind == "fin":
            stream.send.finish()
        elif kind in ("lose", "ack") and records:
            record = records[step[1] % len(records)]
            handle = stream.send.on_lost if kind == "lose" else stream.send.on_acked
            handle(record.offset, record.length, record.fin)
        elif kind == "credit":
            stream.credit.update(step[1])
        elif kind == "conn":
            queue.credit.update(step[1])

    @derandomized(200)
    @given(
        st.none() | st.just(QosPolicy(1, 2, 3, 4)),
        st.sampled_from([0, 5000, 1 << 20]),
        st.sampled_from([0, 2500, 1 << 20]),
        queue_steps,
    )
    def test_new_data_frame_is_the_general_frame(self, qos, initial_credit, max_data, steps):
        """The bulk frame builder agrees with the general builder on any stream history."""
        self.check_new_frame(qos, initial_credit, max_data, steps)

    @pytest.mark.fuzz
    def test_fuzz_new_data_frame(self) -> None:
        """The frame builder property on random examples."""
        fuzz(
            self.check_new_frame, qos=st.none() | st.just(QosPolicy(1, 2, 3, 4)),
            initial_credit=st.sampled_from([0, 5000, 1 << 20]),
            max_data=st.sampled_from([0, 2500, 1 << 20]), steps=queue_steps,
        )


# --------------------------------------------------------------------------
# 6: the stream manager's receive side

#: Frames on peer streams 0 and 4: (stream, offset shift from the stream's contiguous end,
#: length, fin, ordered, priority), or ("pause", stream, paused).
receive_steps = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from([0, 0, 0, 4]),
            st.sampled_from([0, 0, 0, 0, -100, 50, 5000]),
            st.sampled_from([0, 1, 700, 1300, 1300]),
            st.sampled_from([False] * 8 + [True]),
            st.sampled_from([True] * 8 + [False]),
            st.sampled_from([0] * 4 + [1]),
        ),
        st.tuples(st.just("pause"), st.sampled_from([0, 4]), st.booleans()),
    ),
    min_size=1,
    max_size=40,
)


def stream_view(manager: StreamManager) -> tuple:
    """Everything of ``manager``'s receive side a caller can see."""
    streams = tuple(
        (sid, s.recv.read_offset, s.recv.highest_received, s.recv.final_size,
         s.recv_state.state, s.window.max_data, s.priority, s.peer_ordered, s.paused)
        for sid, s in sorted(manager.streams.items())
    )  # fmt: skip
    return (
        streams, manager.received_total, manager.window.max_data, manager.receive_memory,
        manager.pending_control(),
    )


class ReceiveTests(SynchronousTestCase):
    """The stream manager's in-order receive shortcut against its general receive path."""

    def check_receive(self, accept_unordered: bool, steps) -> None:
        """on_stream_frame and _receive_frame emit the same events, queue the same control
        frames and leave the same state after every frame, or raise the same error."""
        config = ConnectionConfig(
            initial_max_stream_data=4096, max_stream_data_window=16384,
            accept_unordered=accept_unordered,
        )
        sides = []
        for _ in range(2):
            events: list = []
            sides.append((StreamManager(is_client=False, emit=events.append, config=config),
                          events))
        (fast, fast_events), (general, general_events) = sides
        now = 0.0
        for step in steps:
            now += 0.01
            if step[0] == "pause":
                for manager, _ in sides:
                    manager.pause(step[1], step[2], now=now)
            else:
                sid, shift, length, fin, ordered, priority = step
                stream = fast.streams.get(sid)
                end = 0 if stream is None else stream.recv.read_offset + stream.recv.readable
                offset, data = _take(end + shift, length)
                frame = StreamFrame(sid, offset, data, fin, priority, ordered)
                got = outcome(fast.on_stream_frame, frame, now=now)
                self.assertEqual(got, outcome(general._receive_frame, frame, now))
                if got[0] == "error":
                    return
            self.assertEqual(fast_events, general_events)
            self.assertEqual(stream_view(fast), stream_view(general))

    @derandomized(200)
    @given(st.booleans(), receive_steps)
    def test_in_order_frame_is_received_as_the_general_path_receives_it(
        self, accept_unordered, steps
    ) -> None:
        """The in-order receive shortcut agrees with the general receive path."""
        self.check_receive(accept_unordered, steps)

    @pytest.mark.fuzz
    def test_fuzz_in_order_receive(self) -> None:
        """The receive property on random examples."""
        fuzz(self.check_receive, accept_unordered=st.booleans(), steps=receive_steps)
