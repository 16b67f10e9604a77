"""
Tests for :mod:`kwik_twisted.core.streams.ranges`.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.streams.ranges import RangeSet

operations = st.lists(
    st.tuples(st.sampled_from(["add", "discard", "pop"]), st.integers(0, 60), st.integers(0, 15)),
    max_size=40,
)


def as_set(ranges: RangeSet) -> set[int]:
    """The integers covered by ``ranges``."""
    return {i for start, end in ranges for i in range(start, end)}


class RangeSetTests(SynchronousTestCase):
    """Sorted, merged integer ranges."""

    def test_touching_ranges_merge(self) -> None:
        """Adding ranges that touch or overlap leaves one range."""
        ranges = RangeSet()
        ranges.add(0, 5)
        ranges.add(10, 15)
        ranges.add(5, 10)
        self.assertEqual(list(ranges), [(0, 15)])

    def test_discard_splits(self) -> None:
        """Discarding the middle of a range leaves two."""
        ranges = RangeSet()
        ranges.add(0, 10)
        ranges.discard(3, 6)
        self.assertEqual(list(ranges), [(0, 3), (6, 10)])
        self.assertEqual(ranges.total, 7)

    def test_gaps_and_covers(self) -> None:
        """gaps() lists the missing sub-ranges; covers() is true only without gaps."""
        ranges = RangeSet()
        ranges.add(2, 4)
        ranges.add(6, 8)
        self.assertEqual(ranges.gaps(0, 10), [(0, 2), (4, 6), (8, 10)])
        self.assertEqual(ranges.gaps(3, 7), [(4, 6)])
        self.assertTrue(ranges.covers(2, 4))
        self.assertFalse(ranges.covers(2, 7))

    def test_pop_first_takes_a_prefix(self) -> None:
        """pop_first() removes at most max_len integers from the lowest range."""
        ranges = RangeSet()
        ranges.add(5, 20)
        self.assertEqual(ranges.pop_first(10), (5, 15))
        self.assertEqual(ranges.pop_first(10), (15, 20))
        self.assertIsNone(ranges.pop_first(10))

    @given(operations)
    @settings(max_examples=200, deadline=None)
    def test_matches_a_set_of_integers(self, ops: list[tuple[str, int, int]]) -> None:
        """Any sequence of operations agrees with a plain set model, kept disjoint and sorted."""
        ranges = RangeSet()
        model: set[int] = set()
        for op, start, length in ops:
            end = start + length
            if op == "add":
                ranges.add(start, end)
                model |= set(range(start, end))
            elif op == "discard":
                ranges.discard(start, end)
                model -= set(range(start, end))
            else:
                taken = ranges.pop_first(length)
                if taken is not None:
                    self.assertTrue(set(range(*taken)) <= model)
                    self.assertEqual(min(model), taken[0])
                    model -= set(range(*taken))
            self.assertEqual(as_set(ranges), model)
            flat = [x for pair in ranges for x in pair]
            self.assertEqual(flat, sorted(flat))
            self.assertTrue(all(a < b for a, b in zip(flat, flat[1:])))
            self.assertEqual(ranges.gaps(0, 80), [(a, b) for a, b in _runs(set(range(80)) - model)])


def _runs(values: set[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive integers as half-open ranges."""
    runs: list[tuple[int, int]] = []
    for v in sorted(values):
        if runs and runs[-1][1] == v:
            runs[-1] = (runs[-1][0], v + 1)
        else:
            runs.append((v, v + 1))
    return runs
