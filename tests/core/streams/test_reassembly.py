"""
Tests for :mod:`kwik_twisted.core.streams.reassembly`.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.streams.reassembly import Reassembler, UnorderedReassembler
from kwik_twisted.errors import FinalSizeError, FlowControlError


@st.composite
def chunked(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, int]]]:
    """
    A byte string and a shuffled list of ``(start, end)`` chunks covering it,
    overlapping and duplicated at random.
    """
    data = draw(st.binary(min_size=0, max_size=600))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=20)))
    bounds = [0, *cuts, len(data)]
    chunks = list(zip(bounds, bounds[1:]))
    extra = draw(st.lists(st.tuples(st.integers(0, len(data)), st.integers(0, 200)), max_size=15))
    chunks += [(a, min(len(data), a + n)) for a, n in extra]
    chunks += draw(st.lists(st.sampled_from(chunks), max_size=5))
    return data, draw(st.permutations(chunks))


class ReassemblerTests(SynchronousTestCase):
    """Ordered reassembly."""

    def test_in_order_data_is_read_back(self) -> None:
        """Frames inserted in order are read back as one contiguous string."""
        r = Reassembler(1000)
        r.insert(0, b"hello ", False)
        r.insert(6, b"world", True)
        self.assertEqual(r.readable, 11)
        self.assertEqual(r.read(), b"hello world")
        self.assertTrue(r.finished)
        self.assertEqual(r.read_offset, 11)
        self.assertEqual(r.final_size, 11)

    def test_in_order_bytes_are_not_copied(self) -> None:
        """A bytes payload on the fast path is handed back as the same object."""
        r = Reassembler(1000)
        payload = b"x" * 100
        r.insert(0, payload, False)
        self.assertIs(r.read(), payload)

    def test_memoryview_payload_is_copied(self) -> None:
        """A memoryview over a reused buffer is copied, so later changes do not leak in."""
        buf = bytearray(b"abcdef")
        r = Reassembler(1000)
        r.insert(0, memoryview(buf)[:3], False)
        buf[:3] = b"XYZ"
        self.assertEqual(r.read(), b"abc")

    def test_gap_holds_data_until_filled(self) -> None:
        """Data beyond a gap is not readable until the gap is filled."""
        r = Reassembler(1000)
        r.insert(5, b"56789", False)
        self.assertEqual(r.readable, 0)
        self.assertEqual(r.read(), b"")
        self.assertEqual(r.buffered_bytes, 5)
        self.assertEqual(r.highest_received, 10)
        r.insert(0, b"01234", False)
        self.assertEqual(r.readable, 10)
        self.assertEqual(r.read(), b"0123456789")
        self.assertEqual(r.buffered_bytes, 0)

    def test_first_copy_wins_on_overlap(self) -> None:
        """Overlapping frames keep the bytes that arrived first."""
        r = Reassembler(1000)
        r.insert(2, b"AB", False)
        r.insert(0, b"xxxxxx", False)
        self.assertEqual(r.read(), b"xxABxx")

    def test_duplicate_of_read_data_is_ignored(self) -> None:
        """A retransmission of bytes already read changes nothing."""
        r = Reassembler(1000)
        r.insert(0, b"abc", False)
        r.read()
        r.insert(0, b"abc", False)
        self.assertEqual(r.readable, 0)
        self.assertEqual(r.buffered_bytes, 0)

    def test_read_with_limit_returns_prefix(self) -> None:
        """``read(n)`` returns exactly n bytes across chunk boundaries and keeps the rest."""
        r = Reassembler(1000)
        r.insert(0, b"abc", False)
        r.insert(3, b"defg", False)
        self.assertEqual(r.read(5), b"abcde")
        self.assertEqual(r.read_offset, 5)
        self.assertEqual(r.read(10), b"fg")

    def test_pop_any_returns_offsets(self) -> None:
        """``pop_any`` on an ordered stream yields ready chunks with their offsets."""
        r = Reassembler(1000)
        r.insert(0, b"ab", False)
        r.insert(2, b"cd", False)
        self.assertEqual(r.pop_any(), (0, b"ab"))
        self.assertEqual(r.pop_any(), (2, b"cd"))
        self.assertIsNone(r.pop_any())

    def test_empty_fin_finishes_stream(self) -> None:
        """A bare FIN at the read offset finishes the stream."""
        r = Reassembler(1000)
        r.insert(0, b"ab", False)
        r.read()
        self.assertFalse(r.finished)
        r.insert(2, b"", True)
        self.assertTrue(r.finished)

    def test_not_finished_until_read(self) -> None:
        """The stream is finished only once every byte up to the final size was read."""
        r = Reassembler(1000)
        r.insert(0, b"ab", True)
        self.assertFalse(r.finished)
        r.read()
        self.assertTrue(r.finished)

    def test_data_beyond_final_size_is_an_error(self) -> None:
        """Data past a known final size raises FinalSizeError."""
        r = Reassembler(1000)
        r.insert(0, b"abc", True)
        self.assertRaises(FinalSizeError, r.insert, 2, b"xy", False)

    def test_changed_final_size_is_an_error(self) -> None:
        """A second FIN with another final size raises FinalSizeError."""
        r = Reassembler(1000)
        r.insert(5, b"abc", True)
        self.assertRaises(FinalSizeError, r.insert, 0, b"ab", True)
        self.assertRaises(FinalSizeError, r.insert, 8, b"x", True)

    def test_repeated_fin_with_same_size_is_fine(self) -> None:
        """A retransmitted FIN with the same final size is accepted."""
        r = Reassembler(1000)
        r.insert(0, b"abc", True)
        r.insert(1, b"bc", True)
        self.assertEqual(r.read(), b"abc")

    def test_fin_below_received_data_is_an_error(self) -> None:
        """A FIN that ends below the highest offset received raises FinalSizeError."""
        r = Reassembler(1000)
        r.insert(10, b"abc", False)
        self.assertRaises(FinalSizeError, r.insert, 0, b"ab", True)

    def test_buffer_bound_raises_flow_control_error(self) -> None:
        """Data ending more than max_buffer past the read offset raises FlowControlError."""
        r = Reassembler(100)
        r.insert(90, b"x" * 10, False)
        self.assertRaises(FlowControlError, r.insert, 95, b"x" * 10, False)
        self.assertEqual(r.buffered_bytes, 10)

    def test_bound_moves_with_read_offset(self) -> None:
        """Reading advances the bound, so a flow-control-abiding peer never hits it."""
        r = Reassembler(100)
        for offset in range(0, 10_000, 50):
            r.insert(offset, b"y" * 50, False)
            r.read()
        self.assertEqual(r.read_offset, 10_000)

    def test_gaps_held_open_keep_memory_bounded(self) -> None:
        """A peer holding a gap open cannot make the buffer exceed max_buffer."""
        r = Reassembler(1000)
        offset = 1
        with self.assertRaises(FlowControlError):
            while True:
                r.insert(offset, b"z" * 99, False)
                self.assertLessEqual(r.buffered_bytes, 1000)
                offset += 100
        self.assertLessEqual(r.buffered_bytes, 1000)

    def test_raised_bound_admits_more(self) -> None:
        """Raising max_buffer (a grown window) admits data that was past it."""
        r = Reassembler(10)
        self.assertRaises(FlowControlError, r.insert, 0, b"x" * 20, False)
        r.max_buffer = 20
        r.insert(0, b"x" * 20, False)
        self.assertEqual(r.readable, 20)

    @given(chunked())
    @settings(max_examples=150, deadline=None)
    def test_any_arrival_order_reproduces_the_input(
        self, case: tuple[bytes, list[tuple[int, int]]]
    ) -> None:
        """Shuffled, overlapping, duplicated chunks reassemble to exactly the input."""
        data, chunks = case
        r = Reassembler(len(data))
        out = []
        for start, end in chunks:
            r.insert(start, data[start:end], end == len(data))
            out.append(r.read(7))
        r.insert(len(data), b"", True)
        out.append(r.read())
        self.assertEqual(b"".join(out), data)
        self.assertTrue(r.finished)
        self.assertEqual(r.buffered_bytes, 0)

    @given(chunked())
    @settings(max_examples=100, deadline=None)
    def test_memoryview_chunks_reassemble(self, case: tuple[bytes, list[tuple[int, int]]]) -> None:
        """Memoryview payloads reassemble like bytes payloads."""
        data, chunks = case
        view = memoryview(data)
        r = Reassembler(len(data))
        for start, end in chunks:
            r.insert(start, view[start:end], False)
        self.assertEqual(r.read(), data)


class UnorderedReassemblerTests(SynchronousTestCase):
    """Delivery in arrival order for unordered streams."""

    def test_chunks_are_delivered_as_they_arrive(self) -> None:
        """Out-of-order chunks come out immediately, with their offsets."""
        r = UnorderedReassembler(1000)
        r.insert(5, b"fghij", True)
        self.assertEqual(r.pop_any(), (5, b"fghij"))
        self.assertEqual(r.read_offset, 0)
        self.assertFalse(r.finished)
        r.insert(0, b"abcde", False)
        self.assertEqual(r.pop_any(), (0, b"abcde"))
        self.assertEqual(r.read_offset, 10)
        self.assertTrue(r.finished)
        self.assertIsNone(r.pop_any())

    def test_duplicates_and_overlaps_are_dropped(self) -> None:
        """Only bytes never received before are delivered."""
        r = UnorderedReassembler(1000)
        r.insert(2, b"cd", False)
        r.insert(0, b"abcdef", False)
        r.insert(0, b"abcdef", False)
        got = []
        while (item := r.pop_any()) is not None:
            got.append(item)
        self.assertEqual(got, [(2, b"cd"), (0, b"ab"), (4, b"ef")])

    def test_final_size_and_bound_apply(self) -> None:
        """Final-size and buffer rules are the same as for ordered streams."""
        r = UnorderedReassembler(100)
        r.insert(0, b"abc", True)
        self.assertRaises(FinalSizeError, r.insert, 3, b"d", False)
        r2 = UnorderedReassembler(100)
        self.assertRaises(FlowControlError, r2.insert, 90, b"x" * 20, False)

    @given(chunked())
    @settings(max_examples=100, deadline=None)
    def test_every_byte_is_delivered_exactly_once(
        self, case: tuple[bytes, list[tuple[int, int]]]
    ) -> None:
        """Whatever the arrival pattern, each offset is delivered once with its byte."""
        data, chunks = case
        r = UnorderedReassembler(len(data))
        seen = bytearray(len(data))
        count = [0] * len(data)
        for start, end in chunks:
            r.insert(start, data[start:end], False)
            while (item := r.pop_any()) is not None:
                offset, chunk = item
                seen[offset : offset + len(chunk)] = chunk
                for i in range(offset, offset + len(chunk)):
                    count[i] += 1
        self.assertEqual(bytes(seen), data)
        self.assertEqual(count, [1] * len(data))
        self.assertEqual(r.read_offset, len(data))
        self.assertEqual(r.buffered_bytes, 0)


frames = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 3000), st.integers(0, 2**62 - 1)),
        st.binary(max_size=300),
        st.booleans(),
    ),
    max_size=25,
)


class HostileInputTests(SynchronousTestCase):
    """Only typed errors escape, whatever frames a peer sends."""

    @given(frames, st.booleans())
    @settings(max_examples=150, deadline=None)
    def test_only_typed_errors_escape(
        self, sent: list[tuple[int, bytes, bool]], ordered: bool
    ) -> None:
        """Arbitrary frames are accepted or raise FinalSizeError / FlowControlError only,
        and the buffer never exceeds its bound."""
        r = Reassembler(2000) if ordered else UnorderedReassembler(2000)
        for offset, data, fin in sent:
            try:
                r.insert(offset, data, fin)
            except (FinalSizeError, FlowControlError):
                pass
            self.assertLessEqual(r.buffered_bytes, 2000)
            if len(data) % 3 == 0:
                r.pop_any()


class HeldPieceBoundTests(SynchronousTestCase):
    """The number of separate out-of-order pieces is bounded, not only their bytes."""

    def test_many_touching_small_pieces_behind_one_gap_are_joined(self) -> None:
        """3,000 ten-byte pieces behind one missing byte: joined into one run, read intact."""
        r = Reassembler(256 * 1024)
        for i in range(3000):
            r.insert(1 + 10 * i, bytes([i % 256]) * 10)
        r.insert(0, b"s")
        expected = b"s" + b"".join(bytes([i % 256]) * 10 for i in range(3000))
        self.assertEqual(r.read(), expected)

    def test_one_byte_pieces_with_gaps_are_a_flow_control_error(self) -> None:
        """One byte at every odd offset: more than 512 separate runs in a 256 KiB window."""
        r = Reassembler(256 * 1024)
        with self.assertRaises(FlowControlError):
            for offset in range(1, 256 * 1024, 2):
                r.insert(offset, b"x")

    def test_the_run_limit_grows_with_the_window(self) -> None:
        """A 4 MiB window holds 2,000 separate runs (its limit is 8,192) without complaint."""
        r = Reassembler(4 * 1024 * 1024)
        for offset in range(1, 4001, 2):
            r.insert(offset, b"x")
        self.assertEqual(r.buffered_bytes, 2000)
