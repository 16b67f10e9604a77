"""
The send buffer's fast paths agree with its general paths.

``SendBuffer.next_new`` (the sender's bulk path) must hand out what ``next_frame`` would, and
acknowledging a joined range at once (the connection's bulk ACK path) must leave the state that
acknowledging its pieces one by one leaves.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.streams.sendbuffer import SendBuffer

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


def state(buf: SendBuffer) -> tuple:
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


class NextNewTests(SynchronousTestCase):
    """``next_new`` against ``next_frame``."""

    @settings(max_examples=60, deadline=None)
    @given(writes, st.booleans(), takes)
    def test_next_new_hands_out_what_next_frame_would(self, sizes, fin, steps) -> None:
        """Whenever next_new gives a frame it is next_frame's, with ``more`` equal to pending."""
        fast, general = filled(sizes, fin), filled(sizes, fin)
        for max_len, max_offset in steps:
            got = fast.next_new(max_len, max_offset)
            if got is None:
                self.assertEqual(state(fast), state(general))  # nothing changed
                continue
            offset, data, end_fin, more = got
            offset2, data2, fin2, retransmit = general.next_frame(max_len, max_offset)
            self.assertEqual((offset, bytes(data), end_fin), (offset2, bytes(data2), fin2))
            self.assertFalse(retransmit)
            self.assertEqual(more, general.pending)
            self.assertEqual(state(fast), state(general))

    def test_next_new_declines_when_data_was_lost(self) -> None:
        """With a lost range waiting, next_new leaves it to next_frame's retransmission."""
        buf = filled([1000], False)
        buf.next_frame(1000)
        buf.on_lost(0, 500, False)
        self.assertIsNone(buf.next_new(1000, 10_000))
        self.assertEqual(buf.next_frame(1000)[0::3], (0, True))


class JoinedAckTests(SynchronousTestCase):
    """Acknowledging a run at once against acknowledging it piece by piece."""

    @settings(max_examples=60, deadline=None)
    @given(writes, st.booleans(), st.integers(min_value=1, max_value=1500), st.data())
    def test_joined_range_acks_like_its_pieces(self, sizes, fin, max_len, data) -> None:
        """on_acked of touching frames joined leaves the state the frames one by one leave."""
        joined, pieces = filled(sizes, fin), filled(sizes, fin)
        frames = []
        while (frame := joined.next_frame(max_len)) is not None:
            pieces.next_frame(max_len)
            frames.append((frame[0], len(frame[1]), frame[2]))
        first = data.draw(st.integers(min_value=0, max_value=len(frames) - 1))
        last = data.draw(st.integers(min_value=first, max_value=len(frames) - 1))
        run = frames[first : last + 1]
        for offset, length, end_fin in run:
            pieces.on_acked(offset, length, end_fin)
        start = run[0][0]
        end = run[-1][0] + run[-1][1]
        joined.on_acked(start, end - start, any(f for _, _, f in run))
        self.assertEqual(state(joined), state(pieces))
