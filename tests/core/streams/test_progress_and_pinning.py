"""
The building blocks of stream progress and path pinning: the send buffer's acknowledged offset,
the reassemblers' delivered count, and the send queue serving streams pinned to paths.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.config import ConnectionConfig
from kwik_twisted.core.streams.manager import StreamManager
from kwik_twisted.core.streams.reassembly import UnorderedReassembler
from kwik_twisted.core.streams.sendbuffer import SendBuffer


class AckedOffsetTests(SynchronousTestCase):
    """``SendBuffer.acked_offset``: the contiguous acknowledged offset."""

    def test_a_retransmitted_range_counts_once(self):
        """A range lost, sent again and then acknowledged twice moves the offset once."""
        buf = SendBuffer(10_000)
        buf.write(b"x" * 3000)
        frames = [buf.next_frame(1000) for _ in range(3)]
        buf.on_acked(0, 1000, False)
        buf.on_lost(1000, 1000, False)
        buf.on_acked(2000, 1000, False)
        self.assertEqual(buf.acked_offset, 1000)  # a gap holds it
        offset, data, _fin, retransmit = buf.next_frame(1000)
        self.assertEqual((offset, len(data), retransmit), (1000, 1000, True))
        buf.on_acked(1000, 1000, False)
        buf.on_acked(1000, 1000, False)  # the late ACK of the first copy
        self.assertEqual(buf.acked_offset, 3000)
        self.assertEqual(len(frames), 3)

    def test_reset_keeps_what_was_acknowledged(self):
        """After reset the offset stays where it was (not the write offset), and later
        acknowledgements that continue it in order still count."""
        buf = SendBuffer(10_000)
        buf.write(b"x" * 5000)
        for _ in range(3):
            buf.next_frame(1000)
        buf.on_acked(0, 1000, False)
        buf.reset()
        self.assertEqual(buf.acked_offset, 1000)
        buf.on_acked(2000, 1000, False)  # past a gap: forgotten with the data
        self.assertEqual(buf.acked_offset, 1000)
        buf.on_acked(1000, 1000, False)
        self.assertEqual(buf.acked_offset, 2000)
        self.assertEqual(buf.write_offset, 5000)

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 9), st.booleans()), max_size=40))
    def test_acked_offset_never_passes_sent_or_goes_back(self, steps):
        """Whatever is acked or lost in whatever order, the offset only grows and never passes
        the sent offset; with everything acknowledged it is the write offset."""
        buf = SendBuffer(100_000)
        buf.write(b"y" * 10_000)
        for _ in range(10):
            buf.next_frame(1000)
        last = 0
        for index, acked in steps:
            (buf.on_acked if acked else buf.on_lost)(index * 1000, 1000, False)
            self.assertGreaterEqual(buf.acked_offset, last)
            self.assertLessEqual(buf.acked_offset, buf.sent_offset)
            last = buf.acked_offset
        for index in range(10):
            buf.on_acked(index * 1000, 1000, False)
        self.assertEqual(buf.acked_offset, 10_000)


class DeliveredTests(SynchronousTestCase):
    """``delivered`` of the unordered reassembler counts pieces past a gap."""

    def test_pieces_past_a_gap_count_and_survive_a_discard(self):
        """Popped pieces count whether or not they are contiguous; a discard (the peer reset the
        stream) keeps the count."""
        recv = UnorderedReassembler(100_000)
        recv.insert(1000, b"b" * 500)
        self.assertEqual(recv.delivered, 0)
        recv.pop_any()
        self.assertEqual((recv.delivered, recv.read_offset), (500, 0))
        recv.insert(0, b"a" * 1000)
        recv.pop_any()
        self.assertEqual((recv.delivered, recv.read_offset), (1500, 1500))
        recv.insert(3000, b"c" * 100)
        recv.pop_any()
        recv.insert(4000, b"d" * 100)  # arrived, not delivered
        recv.discard(5000)
        self.assertEqual(recv.delivered, 1600)


def manager() -> StreamManager:
    """A client-side stream manager with the default configuration."""
    return StreamManager(is_client=True, emit=lambda event: None, config=ConnectionConfig())


def sent_on(streams: StreamManager, path_id: int) -> list[int]:
    """The stream IDs of every frame ``path_id`` may take now, in order."""
    out = []
    while (got := streams.next_stream_frame(1000, path_id)) is not None:
        out.append(got[0].stream_id)
    return out


class PinnedQueueTests(SynchronousTestCase):
    """The send queue serves a path only the streams it may carry."""

    def test_a_pinned_stream_does_not_block_others(self):
        """A critical stream pinned to path 1 is skipped on path 0, which serves the normal
        stream; path 1 then serves the pinned stream first."""
        streams = manager()
        pinned = streams.open(priority=2, paths=frozenset({1}))
        free = streams.open()
        streams.write(pinned, b"p" * 2500)
        streams.write(free, b"f" * 2500)
        streams.send_queue.usable = frozenset({0, 1})
        self.assertEqual(streams.send_queue.path_choices(), [frozenset({1}), None])
        self.assertEqual(sent_on(streams, 0), [free, free, free])
        self.assertEqual(sent_on(streams, 1), [pinned, pinned, pinned])

    def test_a_stream_whose_paths_are_all_unusable_goes_anywhere(self):
        """Pinned to a path that is not usable, a stream is served on any path."""
        streams = manager()
        pinned = streams.open(paths=frozenset({1}))
        streams.write(pinned, b"p" * 1500)
        streams.send_queue.usable = frozenset({0})
        self.assertEqual(streams.send_queue.path_choices(), [None])
        self.assertEqual(sent_on(streams, 0), [pinned, pinned])

    def test_unpinning_serves_every_path_again(self):
        """update(paths=None) lifts the restriction at once."""
        streams = manager()
        sid = streams.open(paths=frozenset({1}))
        streams.write(sid, b"p" * 1500)
        streams.send_queue.usable = frozenset({0, 1})
        self.assertEqual(sent_on(streams, 0), [])
        streams.update(sid, paths=None)
        self.assertFalse(streams.send_queue.pinned)
        self.assertEqual(sent_on(streams, 0), [sid, sid])

    def test_a_priority_change_moves_a_queued_stream(self):
        """A queued stream raised to critical is served before one queued earlier."""
        streams = manager()
        first = streams.open()
        second = streams.open()
        streams.write(first, b"a" * 1000)
        streams.write(second, b"b" * 1000)
        streams.update(second, priority=2)
        self.assertEqual(streams.highest_pending_priority(), 2)
        self.assertEqual(sent_on(streams, 0), [second, first])
