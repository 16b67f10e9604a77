"""
Tests for :mod:`kwik_twisted.core.streams.sendbuffer`.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.streams.reassembly import Reassembler
from kwik_twisted.core.streams.sendbuffer import SendBuffer
from kwik_twisted.errors import StreamStateError


def drain(buf: SendBuffer, max_len: int = 1000) -> list[tuple[int, bytes, bool, bool]]:
    """Every frame ``buf`` will hand out now, with payloads as bytes."""
    frames = []
    while (frame := buf.next_frame(max_len)) is not None:
        offset, data, fin, retransmit = frame
        frames.append((offset, bytes(data), fin, retransmit))
    return frames


class SendBufferTests(SynchronousTestCase):
    """Sending, acknowledging and retransmitting stream data."""

    def test_new_data_is_cut_into_frames(self) -> None:
        """Written data comes out in order in frames of at most max_len bytes."""
        buf = SendBuffer(10_000)
        buf.write(b"a" * 2500)
        buf.finish()
        frames = drain(buf)
        self.assertEqual(
            [(o, len(d), fin, rt) for o, d, fin, rt in frames],
            [(0, 1000, False, False), (1000, 1000, False, False), (2000, 500, True, False)],
        )
        self.assertFalse(buf.pending)
        self.assertEqual(buf.unsent_bytes, 0)

    def test_frames_span_chunks(self) -> None:
        """A frame may combine the tails and heads of several writes."""
        buf = SendBuffer(10_000)
        for piece in (b"a" * 600, b"b" * 600, b"c" * 600):
            buf.write(piece)
        frames = drain(buf, 1000)
        self.assertEqual(frames[0], (0, b"a" * 600 + b"b" * 400, False, False))
        self.assertEqual(frames[1], (1000, b"b" * 200 + b"c" * 600, False, False))

    def test_bare_fin_after_data(self) -> None:
        """Finishing after all data was sent yields an empty frame with FIN."""
        buf = SendBuffer(100)
        buf.write(b"abc")
        drain(buf)
        buf.finish()
        self.assertTrue(buf.pending)
        self.assertEqual(drain(buf), [(3, b"", True, False)])
        self.assertTrue(buf.fin_sent)

    def test_lost_ranges_go_first_in_offset_order(self) -> None:
        """Lost ranges are re-sent before new data, lowest offset first."""
        buf = SendBuffer(10_000)
        buf.write(bytes(range(256)) * 10)
        f1 = buf.next_frame(100)
        f2 = buf.next_frame(100)
        assert f1 is not None and f2 is not None
        buf.on_lost(100, 100, False)
        buf.on_lost(0, 100, False)
        self.assertEqual(buf.retransmit_bytes, 200)
        first = buf.next_frame(150)
        second = buf.next_frame(150)
        third = buf.next_frame(150)
        assert first is not None and second is not None and third is not None
        self.assertEqual((first[0], len(first[1]), first[3]), (0, 150, True))
        self.assertEqual((second[0], len(second[1]), second[3]), (150, 50, True))
        self.assertEqual((third[0], third[3]), (200, False))

    def test_acked_part_of_lost_frame_is_not_resent(self) -> None:
        """Only the unacknowledged parts of a lost range are queued again."""
        buf = SendBuffer(10_000)
        buf.write(b"x" * 300)
        drain(buf, 100)
        buf.on_acked(100, 100, False)
        buf.on_lost(0, 300, False)
        self.assertEqual([(o, len(d)) for o, d, _, _ in drain(buf)], [(0, 100), (200, 100)])

    def test_late_ack_cancels_queued_retransmission(self) -> None:
        """An ack arriving after a loss removes the range from the retransmit queue."""
        buf = SendBuffer(10_000)
        buf.write(b"x" * 100)
        drain(buf)
        buf.on_lost(0, 100, False)
        buf.on_acked(0, 100, False)
        self.assertFalse(buf.pending)
        self.assertIsNone(buf.next_frame(1000))

    def test_lost_fin_is_resent(self) -> None:
        """A lost FIN is re-sent, with the last lost data or alone."""
        buf = SendBuffer(100)
        buf.write(b"abc")
        buf.finish()
        ((offset, data, fin, _),) = drain(buf)
        buf.on_lost(offset, len(data), fin)
        self.assertEqual(drain(buf), [(0, b"abc", True, True)])
        buf.on_acked(0, 3, False)
        buf.on_lost(0, 3, True)
        self.assertEqual(drain(buf), [(3, b"", True, True)])
        buf.on_acked(3, 0, True)
        self.assertTrue(buf.acked_all)

    def test_flow_control_blocks_new_data_only(self) -> None:
        """New data stops at max_offset; retransmissions are not limited."""
        buf = SendBuffer(10_000)
        buf.write(b"x" * 500)
        buf.finish()
        frame = buf.next_frame(1000, 200)
        assert frame is not None
        self.assertEqual((frame[0], len(frame[1]), frame[2]), (0, 200, False))
        self.assertIsNone(buf.next_frame(1000, 200))
        self.assertEqual(buf.sent_offset, 200)
        self.assertTrue(buf.pending)
        buf.on_lost(0, 200, False)
        retransmit = buf.next_frame(1000, 0)
        assert retransmit is not None
        self.assertEqual((retransmit[0], len(retransmit[1]), retransmit[3]), (0, 200, True))
        rest = buf.next_frame(1000, 500)
        assert rest is not None
        self.assertEqual((rest[0], len(rest[1]), rest[2]), (200, 300, True))

    def test_memory_is_released_below_lowest_unacked(self) -> None:
        """Acknowledged prefixes are released and writable turns true again."""
        buf = SendBuffer(2000)
        for _ in range(4):
            buf.write(b"y" * 1000)
        self.assertFalse(buf.writable)
        self.assertEqual(buf.buffered_bytes, 4000)
        frames = drain(buf, 1000)
        buf.on_acked(1000, 1000, False)
        self.assertEqual(buf.buffered_bytes, 4000)
        buf.on_acked(0, 1000, False)
        self.assertEqual(buf.buffered_bytes, 2000)
        self.assertFalse(buf.writable)
        buf.on_acked(2000, 1000, False)
        self.assertTrue(buf.writable)
        self.assertEqual(len(frames), 4)

    def test_write_after_finish_or_reset_is_refused(self) -> None:
        """Writing after FIN or reset raises StreamStateError."""
        buf = SendBuffer(100)
        buf.finish()
        self.assertRaises(StreamStateError, buf.write, b"x")
        buf2 = SendBuffer(100)
        buf2.reset()
        self.assertRaises(StreamStateError, buf2.write, b"x")
        self.assertRaises(StreamStateError, buf2.finish)

    def test_reset_stops_sending_and_reports_final_size(self) -> None:
        """reset() returns the highest offset sent and nothing more is sent."""
        buf = SendBuffer(10_000)
        buf.write(b"z" * 3000)
        buf.next_frame(1200)
        buf.on_lost(0, 1200, False)
        self.assertEqual(buf.reset(), 1200)
        self.assertFalse(buf.pending)
        self.assertIsNone(buf.next_frame(1000))
        self.assertEqual(buf.buffered_bytes, 0)
        self.assertFalse(buf.acked_all)
        buf.on_acked(0, 1200, False)
        buf.on_lost(0, 1200, True)
        self.assertIsNone(buf.next_frame(1000))

    def test_small_writes_are_coalesced(self) -> None:
        """Many tiny writes still produce full-size frames with the right bytes."""
        buf = SendBuffer(100_000)
        expected = b"".join(bytes([i % 256]) * 3 for i in range(3000))
        for i in range(3000):
            buf.write(bytes([i % 256]) * 3)
        frames = drain(buf, 1200)
        self.assertEqual(b"".join(d for _, d, _, _ in frames), expected)
        self.assertTrue(all(len(d) == 1200 for _, d, _, _ in frames[:-1]))

    def test_mutable_write_is_copied(self) -> None:
        """A bytearray written and then changed by the application is sent as written."""
        buf = SendBuffer(100)
        data = bytearray(b"abc")
        buf.write(data)
        data[:] = b"XYZ"
        self.assertEqual(drain(buf), [(0, b"abc", False, False)])

    @given(
        st.lists(st.binary(min_size=1, max_size=700), min_size=1, max_size=12),
        st.lists(
            st.sampled_from(["ack", "lose", "ack-late", "dup"]), min_size=1, max_size=10
        ).filter(lambda fates: "ack" in fates or "dup" in fates),
        st.integers(50, 1500),
    )
    @settings(max_examples=100, deadline=None)
    def test_lossy_transfer_delivers_everything(
        self, writes: list[bytes], fates: list[str], max_len: int
    ) -> None:
        """
        Under any pattern of losses, late and duplicate acks, the receiver gets
        exactly the written bytes, every sent range is acked, acked_all holds at
        the end and all memory is released.
        """
        buf = SendBuffer(1 << 20)
        for piece in writes:
            buf.write(piece)
        buf.finish()
        receiver = Reassembler(1 << 20)
        late: list[tuple[int, int, bool]] = []
        step = 0
        while (frame := buf.next_frame(max_len)) is not None:
            self.assertLess(step, 10_000)
            offset, data, fin, _ = frame
            fate = fates[step % len(fates)]
            step += 1
            record = (offset, len(data), fin)
            if fate == "lose":
                buf.on_lost(*record)
                continue
            receiver.insert(offset, bytes(data), fin)
            if fate == "ack-late":
                late.append(record)
                buf.on_lost(*record)
            else:
                buf.on_acked(*record)
                if fate == "dup":
                    buf.on_acked(*record)
        for record in late:
            buf.on_acked(*record)
        self.assertEqual(receiver.read(), b"".join(writes))
        self.assertTrue(receiver.finished)
        self.assertTrue(buf.acked_all)
        self.assertEqual(buf.buffered_bytes, 0)
        self.assertFalse(buf.pending)


class PeekTests(SynchronousTestCase):
    """``SendBuffer.peek``: the bytes of a sent, still held range, for a redundant copy."""

    def test_peek_reads_sent_bytes_without_changing_state(self) -> None:
        """peek returns the written bytes of a sent range and leaves what is pending alone."""
        buf = SendBuffer(1 << 20)
        buf.write(b"abcdefghij")
        buf.next_frame(6)
        self.assertEqual(bytes(buf.peek(2, 6)), b"cdef")
        self.assertEqual(bytes(buf.peek(3, 3)), b"")
        self.assertEqual(buf.unsent_bytes, 4)
        self.assertEqual(buf.next_frame(100)[0], 6)

    def test_peek_refuses_unsent_or_released_ranges(self) -> None:
        """A range past what was sent, or below what was acknowledged, raises ValueError."""
        buf = SendBuffer(1 << 20)
        buf.write(b"abcdefghij")
        buf.next_frame(6)
        with self.assertRaises(ValueError):
            buf.peek(4, 8)
        buf.on_acked(0, 4, False)
        with self.assertRaises(ValueError):
            buf.peek(2, 5)
        self.assertEqual(bytes(buf.peek(4, 6)), b"ef")
