"""
A set of half-open integer ranges, kept sorted and merged.

Stream bookkeeping needs "which offsets have been acknowledged / lost /
received" in a structure whose size depends on the number of *gaps*, not on
the number of bytes or frames.  Ranges are stored as two parallel sorted lists
of starts and ends; no two ranges overlap or touch (touching ranges are merged
on insertion), so :mod:`bisect` finds the neighbours of any offset in
O(log n) and an insertion or removal rewrites one slice of each list.

This plays the part of quinn's ``RangeSet`` and aioquic's ``RangeSet`` for
ACK ranges and stream offsets (RFC 9000 §2.2, §13.2).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator


class RangeSet:
    """
    Sorted, merged, disjoint half-open ranges ``[start, end)`` of integers.
    """

    __slots__ = ("_starts", "_ends")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def __len__(self) -> int:
        """The number of disjoint ranges (not the number of integers)."""
        return len(self._starts)

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self._starts, self._ends))

    def __repr__(self) -> str:
        return f"RangeSet({list(self)!r})"

    @property
    def total(self) -> int:
        """The number of integers covered by all the ranges."""
        return sum(self._ends) - sum(self._starts)

    def first(self) -> tuple[int, int] | None:
        """The lowest range, or ``None`` when empty."""
        if not self._starts:
            return None
        return self._starts[0], self._ends[0]

    def add(self, start: int, end: int) -> None:
        """Add ``[start, end)``, merging with every range it overlaps or touches."""
        if start >= end:
            return
        starts, ends = self._starts, self._ends
        # The first range whose end is >= start, the last whose start is <= end.
        lo = bisect_left(ends, start)
        hi = bisect_right(starts, end, lo)
        if lo < hi:
            start = min(start, starts[lo])
            end = max(end, ends[hi - 1])
        starts[lo:hi] = (start,)
        ends[lo:hi] = (end,)

    def discard(self, start: int, end: int) -> None:
        """Remove ``[start, end)`` from the set, splitting a range if needed."""
        if start >= end:
            return
        starts, ends = self._starts, self._ends
        lo = bisect_right(ends, start)
        hi = bisect_left(starts, end, lo)
        if lo >= hi:
            return
        new_starts: list[int] = []
        new_ends: list[int] = []
        if starts[lo] < start:
            new_starts.append(starts[lo])
            new_ends.append(start)
        if ends[hi - 1] > end:
            new_starts.append(end)
            new_ends.append(ends[hi - 1])
        starts[lo:hi] = new_starts
        ends[lo:hi] = new_ends

    def discard_below(self, offset: int) -> None:
        """Remove every integer below ``offset``."""
        self.discard(self._starts[0] if self._starts else offset, offset)

    def covers(self, start: int, end: int) -> bool:
        """Whether every integer of ``[start, end)`` is in the set."""
        if start >= end:
            return True
        i = bisect_right(self._starts, start) - 1
        return i >= 0 and self._ends[i] >= end

    def gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """The sub-ranges of ``[start, end)`` that are *not* in the set, in order."""
        starts, ends = self._starts, self._ends
        i = bisect_right(ends, start)
        result: list[tuple[int, int]] = []
        pos = start
        n = len(starts)
        while pos < end and i < n and starts[i] < end:
            if starts[i] > pos:
                result.append((pos, starts[i]))
            pos = max(pos, ends[i])
            i += 1
        if pos < end:
            result.append((pos, end))
        return result

    def pop_first(self, max_len: int) -> tuple[int, int] | None:
        """Remove and return up to ``max_len`` integers from the lowest range."""
        if not self._starts or max_len <= 0:
            return None
        start = self._starts[0]
        end = min(self._ends[0], start + max_len)
        if end == self._ends[0]:
            del self._starts[0]
            del self._ends[0]
        else:
            self._starts[0] = end
        return start, end

    def clear(self) -> None:
        """Remove every range."""
        self._starts.clear()
        self._ends.clear()
