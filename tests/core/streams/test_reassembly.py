"""
Tests for :mod:`kwik_twisted.core.streams.reassembly`.
"""

from __future__ import annotations

import os
from unittest import SkipTest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.streams.budget import MAX_HELD_PIECES, ReceiveBudget
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


# -- issue 11: completion, final sizes, piece bounds, reset ---------------------------------

def drain(r) -> list[tuple[int, bytes]]:
    """Every piece a reassembler can hand out now, as ``(offset, data)``."""
    if r.ordered:
        start = r.read_offset
        data = r.read()
        return [(start, data)] if data else []
    pieces = []
    while (piece := r.pop_any()) is not None:
        pieces.append(piece)
    return pieces


class CompletionTests(SynchronousTestCase):
    """'All received' and 'finished' are reached whatever order the pieces come in."""

    def test_unordered_stream_with_fin_tail_first_is_all_received_then_finished(self) -> None:
        """The FIN-bearing tail arrives and is delivered first; when the gap is filled, the
        stream is all received and finished (before: read_offset never moved past the gap,
        so all-received was never true)."""
        r = UnorderedReassembler(100)
        r.insert(10, b"0123456789", True)
        self.assertEqual(drain(r), [(10, b"0123456789")])
        self.assertFalse(r.all_received)
        r.insert(0, b"abcdefghij")
        self.assertTrue(r.all_received)
        self.assertEqual(drain(r), [(0, b"abcdefghij")])
        self.assertTrue(r.finished)
        self.assertEqual(r.read_offset, 20)

    def test_ordered_stream_is_all_received_before_it_is_read(self) -> None:
        """An ordered stream whose last gap fills is all received while its bytes wait."""
        r = Reassembler(100)
        r.insert(5, b"world", True)
        self.assertFalse(r.all_received)
        r.insert(0, b"hello")
        self.assertTrue(r.all_received)
        self.assertFalse(r.finished)
        self.assertEqual(r.read(), b"helloworld")
        self.assertTrue(r.finished)


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, int, bool]], list[bool]]:
    """
    A stream's bytes and an arrival pattern: split at random, each piece possibly duplicated or
    re-split, shuffled; the FIN rides on every piece that ends the stream (one may come alone,
    empty).  Also when the receiver drains (after which arrivals).
    """
    data = draw(st.binary(min_size=0, max_size=400))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    pieces = [(a, b) for a, b in zip(bounds, bounds[1:])]
    extra = draw(st.lists(st.tuples(st.integers(0, len(data)), st.integers(0, 80)), max_size=8))
    pieces += [(a, min(len(data), a + n)) for a, n in extra]
    pieces += draw(st.lists(st.sampled_from(pieces), max_size=4))
    if draw(st.booleans()):
        pieces.append((len(data), len(data)))  # a bare FIN
    order = draw(st.permutations(pieces))
    frames = [(a, b, b == len(data)) for a, b in order]
    drains = draw(st.lists(st.booleans(), min_size=len(frames), max_size=len(frames)))
    return data, frames, drains


class ArrivalPropertyTests(SynchronousTestCase):
    """Every byte is delivered exactly once, the end once, whatever the arrival pattern, and the
    budget follows what is held (derandomized here; ``-m fuzz`` with KWIK_FUZZ_EXAMPLES draws
    new ones)."""

    def check(self, case, ordered: bool) -> None:
        data, frames, drains = case
        budget = ReceiveBudget()
        r = (Reassembler if ordered else UnorderedReassembler)(max(len(data), 1), budget)
        count = [0] * len(data)
        seen = bytearray(len(data))
        finished_at = None
        for i, ((start, end, fin), drain_now) in enumerate(zip(frames, drains)):
            r.insert(start, data[start:end], fin)
            self.assertEqual(budget.bytes, r.buffered_bytes)
            self.assertEqual(budget.pieces, r.held_pieces)
            if not drain_now and i < len(frames) - 1:
                continue
            was_all_received = r.all_received
            for offset, chunk in drain(r):
                seen[offset : offset + len(chunk)] = chunk
                for k in range(offset, offset + len(chunk)):
                    count[k] += 1
            if r.finished and finished_at is None:
                finished_at = i
                self.assertTrue(was_all_received or r.all_received)
        self.assertEqual(bytes(seen), data)
        self.assertEqual(count, [1] * len(data))
        self.assertIsNotNone(finished_at)
        self.assertTrue(r.all_received)
        self.assertEqual(r.buffered_bytes, 0)
        self.assertEqual(r.held_pieces, 0)
        self.assertEqual((budget.bytes, budget.pieces, budget.chunks), (0, 0, 0))

    @given(arrivals())
    @settings(max_examples=150, deadline=None, derandomize=True, database=None)
    def test_unordered_every_byte_once_and_the_stream_finishes(self, case) -> None:
        """Unordered: each offset delivered once with its byte; all received, then finished."""
        self.check(case, ordered=False)

    @given(arrivals())
    @settings(max_examples=150, deadline=None, derandomize=True, database=None)
    def test_ordered_every_byte_once_and_the_stream_finishes(self, case) -> None:
        """Ordered: the same, with the bytes read in order."""
        self.check(case, ordered=True)

    @pytest.mark.fuzz
    def test_fuzz_arrival_patterns(self) -> None:
        """Random arrival patterns for both reassemblers (KWIK_FUZZ_EXAMPLES of each)."""
        examples = os.environ.get("KWIK_FUZZ_EXAMPLES")
        if not examples:
            raise SkipTest("fuzzing runs only with KWIK_FUZZ_EXAMPLES set (make fuzz)")
        for ordered in (False, True):
            run = settings(max_examples=int(examples), deadline=None, database=None)(
                given(arrivals(), st.just(ordered))(self.check)
            )
            run()


class FinalSizeTests(SynchronousTestCase):
    """Data past a known final size is refused by both reassemblers, whatever came first."""

    def test_data_after_an_empty_fin_is_a_final_size_error(self) -> None:
        """After an empty FIN at offset 0 (final size 0), any byte is a FINAL_SIZE_ERROR."""
        for cls in (Reassembler, UnorderedReassembler):
            r = cls(100)
            r.insert(0, b"", True)
            self.assertTrue(r.finished)
            self.assertRaises(FinalSizeError, r.insert, 0, b"x" * 19)

    def test_the_final_size_survives_a_reset(self) -> None:
        """discard() drops the bytes but not the final size: later data past it still fails."""
        for cls in (Reassembler, UnorderedReassembler):
            r = cls(100)
            r.insert(5, b"abc", True)
            r.discard()
            self.assertEqual(r.final_size, 8)
            self.assertEqual(r.highest_received, 8)
            self.assertRaises(FinalSizeError, r.insert, 8, b"x")


class DiscardTests(SynchronousTestCase):
    """A reset stream's buffers are released at once, and the budget sees it."""

    def test_discard_releases_every_byte_and_piece(self) -> None:
        """Ready, held and queued bytes all go; the shared budget returns to zero."""
        budget = ReceiveBudget()
        ordered = Reassembler(1 << 20, budget)
        ordered.insert(0, b"r" * 1000)
        for i in range(50):
            ordered.insert(2000 + 20 * i, b"h" * 10)
        unordered = UnorderedReassembler(1 << 20, budget)
        for i in range(50):
            unordered.insert(1 + 20 * i, b"q" * 10)
        self.assertEqual(budget.bytes, 1000 + 500 + 500)
        self.assertGreater(budget.used, 2000)
        ordered.discard()
        unordered.discard()
        self.assertEqual((budget.bytes, budget.pieces, budget.chunks), (0, 0, 0))
        self.assertEqual(ordered.buffered_bytes + unordered.buffered_bytes, 0)


class PieceBoundTests(SynchronousTestCase):
    """Piece bounds hold for unordered streams too, and across the streams of a connection."""

    def test_unordered_one_byte_pieces_are_a_flow_control_error(self) -> None:
        """One byte at every odd offset of an unordered stream (delivered at once, so nothing is
        queued): the received runs count, and past 512 in a 256 KiB window it is
        FLOW_CONTROL_ERROR (before: no limit at all)."""
        r = UnorderedReassembler(256 * 1024)
        with self.assertRaises(FlowControlError):
            for offset in range(1, 256 * 1024, 2):
                r.insert(offset, b"x")
                drain(r)
        self.assertLessEqual(r.held_pieces, r.piece_limit + 1)

    def test_descending_one_byte_pieces_end_within_the_bound(self) -> None:
        """180,000 one-byte pieces from the highest offset down into a 16 MiB unordered stream:
        FLOW_CONTROL_ERROR before the connection bound on pieces is passed, so the sorted lists
        never grow beyond it (before: 360,000 ranges and quadratic inserts)."""
        budget = ReceiveBudget()
        r = UnorderedReassembler(16 * 1024 * 1024, budget)
        sent = 0
        with self.assertRaises(FlowControlError):
            for offset in range(2 * 180_000, 0, -2):
                r.insert(offset, b"x")
                sent += 1
                drain(r)
        self.assertLessEqual(sent, MAX_HELD_PIECES + 1)
        self.assertLessEqual(r.held_pieces, MAX_HELD_PIECES + 1)

    def test_paused_unordered_stream_joins_touching_pieces(self) -> None:
        """3,000 touching ten-byte pieces queued on an unordered stream nobody reads (sent in
        reverse): joined by offset into one piece, every byte still delivered once."""
        r = UnorderedReassembler(256 * 1024)
        for i in reversed(range(3000)):
            r.insert(1 + 10 * i, bytes([i % 256]) * 10)
        self.assertLessEqual(r.held_pieces, r.piece_limit)
        r.insert(0, b"s")
        got = bytearray(30001)
        for offset, chunk in drain(r):
            got[offset : offset + len(chunk)] = chunk
        self.assertEqual(bytes(got), b"s" + b"".join(bytes([i % 256]) * 10 for i in range(3000)))
        self.assertEqual(r.read_offset, 30001)

    def test_pieces_across_many_streams_are_bounded_per_connection(self) -> None:
        """256 streams sharing one budget, one byte at every odd offset of each, 80 per stream
        (each stream far under its own limit of 4,096): past 16,384 pieces on the connection the
        streams are joined, and with 8,192 separate runs still held it is a FLOW_CONTROL_ERROR.
        Memory held never passes the bound (before: no connection bound; 256 x 4,096 pieces
        pinned about 87 MiB)."""
        budget = ReceiveBudget()
        streams = [Reassembler(1 << 20, budget) for _ in range(256)]
        with self.assertRaises(FlowControlError):
            for i in range(80):
                for r in streams:
                    r.insert(1 + 2 * i, b"f")
        self.assertLessEqual(budget.pieces, MAX_HELD_PIECES + 1)
        self.assertLess(budget.used, 2 * 1024 * 1024)

    def test_touching_pieces_across_many_streams_are_joined_not_refused(self) -> None:
        """256 streams each with 100 touching one-byte pieces behind a gap (25,600 pieces, past
        the connection bound): joining leaves one run per stream, so nothing fails, and every
        stream reads back intact."""
        budget = ReceiveBudget()
        streams = [Reassembler(1 << 20, budget) for _ in range(256)]
        for i in range(100):
            for r in streams:
                r.insert(1 + i, bytes([i]))
        self.assertLessEqual(budget.pieces, MAX_HELD_PIECES)
        for r in streams:
            r.insert(0, b"s")
            self.assertEqual(r.read(), b"s" + bytes(range(100)))
        self.assertEqual((budget.bytes, budget.pieces, budget.chunks), (0, 0, 0))

    def test_unread_small_chunks_are_coalesced(self) -> None:
        """10,000 one-byte in-order frames on a stream nobody reads: held in a handful of
        chunks (before: one object per byte), and read back intact."""
        budget = ReceiveBudget()
        r = Reassembler(1 << 20, budget)
        for i in range(10_000):
            r.insert(i, bytes([i % 251]))
        self.assertLessEqual(budget.chunks, 2)
        self.assertEqual(r.read(), bytes(i % 251 for i in range(10_000)))
        self.assertEqual((budget.bytes, budget.chunks), (0, 0))
