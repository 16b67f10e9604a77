"""
Receive-side reassembly of a stream's bytes from STREAM frames.

STREAM frames carry ``(offset, data, fin)`` and arrive out of order,
duplicated, overlapping, and on several paths (RFC 9000 §2.2, §19.8).
:class:`Reassembler` turns them back into the byte stream:

* the *fast path*: data that starts at or below the contiguous end while
  nothing is held out of order is trimmed and appended to a ready list, with
  no copy when the frame is ``bytes`` and not trimmed (small chunks that wait
  behind others are coalesced, so a stream the application does not read
  holds few objects);
* the *slow path*: data beyond a gap goes into two parallel lists sorted by
  offset (found with :mod:`bisect`).  Only the parts of a frame not already
  held are stored, so held chunks never overlap: the first copy of a byte wins
  (the peer must send the same bytes at the same offset, §2.2).  When the gap
  fills, held chunks move to the ready list.

:class:`UnorderedReassembler` serves streams delivered as pieces (a stream we
opened unordered, or one the peer opened without the ORDERED flag when the
configuration accepts that): each new byte is queued once for delivery, with
its offset, as it arrives (later copies are dropped against a
:class:`RangeSet` of received offsets).  ``read_offset`` is the end of the
contiguous prefix of *delivered* bytes, the amount the connection may credit
to flow control; it moves when the delivery queue is drained.

Both apply the same rules:

* Final size (§4.5): once known it never changes or is forgotten; data past
  it, a different FIN, or a FIN below data received is :class:`FinalSizeError`.
* Bytes: data ending more than ``max_buffer`` bytes past the read offset is
  :class:`FlowControlError`.  The connection sets ``max_buffer`` to the
  stream's receive window, so a peer holding gaps open cannot make us buffer
  more than we granted.
* Pieces: the window bounds bytes, not objects.  A stream joins its touching
  pieces once it holds more than ``max(512, window / 256)``, and so does every
  stream of the connection once the connection holds more than
  :data:`~.budget.MAX_HELD_PIECES`; more than half either bound left in
  separate runs is :class:`FlowControlError`.  Held pieces live in lists of
  at most that size, so an insertion in the middle stays cheap, and a join
  costs O(pieces) once per half a bound of new pieces.
* "All received": the final size is known and every byte from ``read_offset``
  to it has arrived (:attr:`all_received`); "finished": every byte up to the
  final size was delivered (:attr:`finished`).  The first always comes first.
* Memory: every byte and piece held is charged to the connection's
  :class:`~.budget.ReceiveBudget`; :meth:`discard` (the peer reset the stream)
  drops the buffers at once and keeps only the final size and highest offset.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from operator import itemgetter
from typing import Any

from kwik_twisted.core.streams.budget import ReceiveBudget, with_member
from kwik_twisted.core.streams.ranges import RangeSet
from kwik_twisted.errors import FinalSizeError, FlowControlError

Data = bytes | bytearray | memoryview

#: Out-of-order pieces a stream may hold before they are joined into runs: at least this many,
#: and one per this many bytes of the window; after joining, more than half the limit in separate
#: runs is a FLOW_CONTROL_ERROR (protocol.rst, "Out-of-order pieces").
MIN_HELD_PIECES = 512
BYTES_PER_HELD_PIECE = 256
#: Contiguous chunks smaller than this that wait behind others are coalesced into one ...
SMALL_CHUNK = 1024
#: ... growing chunk of up to this many bytes.
COALESCE = 64 * 1024

_offset_of = itemgetter(0)
#: The ready chunks of a stream with none: empty, shared (a deque is made for the first chunk).
_NO_CHUNKS: Any = ()


class _Limits:
    """Final size, buffer and piece bounds shared by both reassemblers (§4.5)."""

    #: Whether :meth:`read` serves the bytes in order (else :meth:`pop_any` serves pieces).
    ordered = True

    __slots__ = ("max_buffer", "final_size", "highest_received", "_read_offset", "_budget")

    def __init__(self, max_buffer: int, budget: ReceiveBudget | None = None) -> None:
        self.max_buffer = max_buffer
        self.final_size: int | None = None
        self.highest_received = 0
        self._read_offset = 0
        self._budget = ReceiveBudget() if budget is None else budget

    @property
    def read_offset(self) -> int:
        """The offset below which every byte has been delivered to the application."""
        return self._read_offset

    @property
    def delivered(self) -> int:
        """Bytes handed to the application: :attr:`read_offset` for in-order delivery."""
        return self._read_offset

    @property
    def finished(self) -> bool:
        """Whether the final size is known and every byte up to it was delivered."""
        return self.final_size is not None and self._read_offset == self.final_size

    @property
    def piece_limit(self) -> int:
        """Pieces this stream may hold before joining them (half of it after joining)."""
        return max(MIN_HELD_PIECES, self.max_buffer // BYTES_PER_HELD_PIECE)

    def _check(self, offset: int, end: int, fin: bool) -> None:
        """Apply the final size and buffer rules to a frame covering ``[offset, end)``."""
        final = self.final_size
        if fin:
            if final is not None and end != final:
                raise FinalSizeError(f"final size changed from {final} to {end}")
            if end < self.highest_received:
                raise FinalSizeError(
                    f"final size {end} below received offset {self.highest_received}"
                )
        elif final is not None and end > final:
            raise FinalSizeError(f"data up to {end} beyond final size {final}")
        if end - self._read_offset > self.max_buffer:
            raise FlowControlError(
                f"data up to {end} exceeds buffer of {self.max_buffer} past {self._read_offset}"
            )
        if fin:
            self.final_size = end
        if end > self.highest_received:
            self.highest_received = end

    def _bound_pieces(self, held: int) -> None:
        """
        Join pieces when this stream holds ``held`` > its limit or the connection too many.

        :raises FlowControlError: after joining, the stream holds more than half its limit in
            separate runs, or the connection more than half its bound.
        """
        budget = self._budget
        limit = self.piece_limit
        crowded = budget.crowded
        if held <= limit and not crowded:
            return
        self.join_pieces()
        if crowded:
            budget.join_all()
        runs = self.held_pieces
        if runs > limit // 2:
            raise FlowControlError(
                f"{runs} separate out-of-order pieces held on one stream (limit {limit // 2})"
            )

    def _keep_final(self, final_size: int | None) -> None:
        """Record a final size learnt from RESET_STREAM (already checked by the caller)."""
        if final_size is not None:
            self.final_size = final_size
            self.highest_received = max(self.highest_received, final_size)

    @property
    def held_pieces(self) -> int:
        """Separate pieces held (charged to the budget's ``pieces``)."""
        raise NotImplementedError

    def join_pieces(self) -> None:
        """Join touching held pieces into runs."""
        raise NotImplementedError


class Reassembler(_Limits):
    """
    Ordered reassembly: :meth:`insert` frames in any order, :meth:`read` bytes in order.

    :ivar max_buffer: the most bytes held past ``read_offset``; may be raised
        as the receive window grows.
    :ivar final_size: the stream's final size once a FIN arrived, else ``None``.
    :ivar highest_received: the highest end offset of any frame received.
    """

    __slots__ = ("_ready", "_ready_bytes", "_starts", "_chunks", "_held_bytes")

    def __init__(self, max_buffer: int, budget: ReceiveBudget | None = None) -> None:
        super().__init__(max_buffer, budget)
        # made for the first ready chunk, dropped when all is read (an empty deque holds 1 KiB)
        self._ready: deque[bytes | bytearray] = _NO_CHUNKS
        self._ready_bytes = 0
        self._starts: list[int] = []
        self._chunks: list[bytes] = []
        self._held_bytes = 0

    @property
    def readable(self) -> int:
        """How many contiguous bytes :meth:`read` can return now."""
        return self._ready_bytes

    @property
    def buffered_bytes(self) -> int:
        """Bytes held in memory: ready to read plus held out of order."""
        return self._ready_bytes + self._held_bytes

    @property
    def held_pieces(self) -> int:
        """Separate out-of-order pieces held."""
        return len(self._starts)

    @property
    def all_received(self) -> bool:
        """Whether the final size is known and every byte up to it has arrived."""
        final = self.final_size
        return final is not None and self._read_offset + self._ready_bytes == final

    def insert(self, offset: int, data: Data, fin: bool = False) -> None:
        """
        Accept one STREAM frame's payload.

        :raises FinalSizeError: the frame contradicts the final size (§4.5).
        :raises FlowControlError: the frame ends more than ``max_buffer``
            bytes past the read offset, or leaves too many separate pieces held.
        """
        length = len(data)
        end = offset + length
        self._check(offset, end, fin)
        contiguous = self._read_offset + self._ready_bytes
        if end <= contiguous:
            return
        if not self._starts and offset <= contiguous:
            self._append_ready(_trimmed(data, contiguous - offset, length))
        else:
            self._hold(offset, data, contiguous)

    def is_next(self, offset: int) -> bool:
        """Whether a frame at ``offset`` continues exactly what was read, with nothing buffered
        and no final size known (the case :meth:`take_next` serves)."""
        return (
            offset == self._read_offset
            and not self._ready_bytes
            and not self._starts
            and self.final_size is None
        )

    def take_next(self, offset: int, data: Data) -> bytes:
        """
        :meth:`insert` then :meth:`read` of a non-FIN frame for which :meth:`is_next` holds.

        The same checks and the same outcome, without queueing the bytes: with nothing buffered,
        the frame's bytes are exactly what :meth:`read` would return.
        """
        end = offset + len(data)
        self._check(offset, end, False)
        self._read_offset = end
        return data if type(data) is bytes else bytes(data)

    def _append_ready(self, chunk: bytes) -> None:
        """Add a chunk that starts exactly at the contiguous end (coalescing small ones)."""
        size = len(chunk)
        ready = self._ready
        if ready is _NO_CHUNKS:
            ready = self._ready = deque()
        budget = self._budget
        if ready and size < SMALL_CHUNK:
            last = ready[-1]
            if type(last) is bytearray and len(last) < COALESCE:
                last += chunk  # in place: amortised O(size)
            else:
                ready.append(bytearray(chunk))
                budget.chunks += 1
        else:
            ready.append(chunk)
            budget.chunks += 1
        self._ready_bytes += size
        budget.bytes += size

    def _hold(self, offset: int, data: Data, contiguous: int) -> None:
        """Store the parts of ``data`` not yet held, then release what became contiguous."""
        starts, chunks = self._starts, self._chunks
        before = len(starts)
        added = 0
        view = memoryview(data)
        end = offset + len(view)
        pos = max(offset, contiguous)
        i = bisect_right(starts, pos) - 1
        if i >= 0:
            pos = max(pos, starts[i] + len(chunks[i]))
        i += 1
        while pos < end:
            stop = starts[i] if i < len(starts) and starts[i] < end else end
            if stop > pos:
                starts.insert(i, pos)
                chunks.insert(i, _piece(data, view, pos - offset, stop - offset))
                added += stop - pos
                i += 1
            if stop < end:
                pos = stop + len(chunks[i])
                i += 1
            else:
                pos = end
        if not added:
            return
        self._held_bytes += added
        budget = self._budget
        budget.bytes += added
        budget.pieces += len(starts) - before
        budget.holders = with_member(budget.holders, self)
        self._release(contiguous)
        if self._starts:
            self._bound_pieces(len(self._starts))

    def join_pieces(self) -> None:
        """
        Join held chunks that touch into one chunk per run.

        The window bounds the bytes held, not the pieces: one byte at every other offset would
        otherwise cost a ``bytes`` object and two list slots per byte (about 40x the window).
        Honest senders make few runs (one per gap that loss or reordering opened), so joining
        brings them far under the limit, and the join's cost is spread over the many inserts
        it takes to reach the limit again.
        """
        starts, chunks = self._starts, self._chunks
        if len(starts) < 2:
            return
        new_starts: list[int] = []
        new_chunks: list[bytes] = []
        run: list[bytes] = []
        run_start = run_end = -1
        for start, chunk in zip(starts, chunks):
            if start != run_end and run:
                new_starts.append(run_start)
                new_chunks.append(b"".join(run) if len(run) > 1 else run[0])
                run = []
            if not run:
                run_start = start
            run.append(chunk)
            run_end = start + len(chunk)
        new_starts.append(run_start)
        new_chunks.append(b"".join(run) if len(run) > 1 else run[0])
        self._budget.pieces -= len(starts) - len(new_starts)
        self._starts, self._chunks = new_starts, new_chunks

    def _release(self, contiguous: int) -> None:
        """Move held chunks that now continue the ready data to the ready list."""
        starts, chunks = self._starts, self._chunks
        count = 0
        while count < len(starts) and starts[count] == contiguous:
            contiguous += len(chunks[count])
            count += 1
        if not count:
            return
        moved = chunks[:count]
        size = contiguous - starts[0]
        del starts[:count]
        del chunks[:count]
        self._held_bytes -= size
        budget = self._budget
        budget.bytes -= size
        budget.pieces -= count
        if not starts:
            if budget.holders:
                budget.holders.discard(self)
        for chunk in moved:
            self._append_ready(chunk)

    def read(self, max_bytes: int | None = None) -> bytes:
        """Remove and return up to ``max_bytes`` contiguous bytes (all when ``None``)."""
        ready = self._ready
        if not ready:
            return b""
        if max_bytes is None or max_bytes >= self._ready_bytes:
            count = len(ready)
            data = ready[0] if count == 1 else b"".join(ready)
            self._ready = _NO_CHUNKS
            self._budget.chunks -= count
        else:
            data = self._read_some(max_bytes)
        if type(data) is not bytes:
            data = bytes(data)
        size = len(data)
        self._ready_bytes -= size
        self._budget.bytes -= size
        self._read_offset += size
        return data

    def _read_some(self, max_bytes: int) -> bytes:
        """Take exactly ``max_bytes`` (fewer than are ready) from the ready list."""
        ready = self._ready
        before = len(ready)
        parts: list[bytes | bytearray] = []
        want = max_bytes
        while want > 0:
            chunk = ready.popleft()
            if len(chunk) > want:
                ready.appendleft(chunk[want:])
                chunk = chunk[:want]
            parts.append(chunk)
            want -= len(chunk)
        self._budget.chunks += len(ready) - before
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def pop_any(self) -> tuple[int, bytes] | None:
        """Remove and return the next ready chunk as ``(offset, data)``, or ``None``."""
        if not self._ready:
            return None
        offset = self._read_offset
        chunk = self._ready.popleft()
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        size = len(chunk)
        self._ready_bytes -= size
        self._read_offset += size
        budget = self._budget
        budget.chunks -= 1
        budget.bytes -= size
        return offset, chunk

    def discard(self, final_size: int | None = None) -> None:
        """Drop every byte held (the peer reset the stream, with ``final_size``); the final
        size and the highest offset received stay known."""
        self._keep_final(final_size)
        budget = self._budget
        budget.bytes -= self._ready_bytes + self._held_bytes
        budget.chunks -= len(self._ready)
        budget.pieces -= len(self._starts)
        if budget.holders:
            budget.holders.discard(self)
        self._ready = _NO_CHUNKS
        self._ready_bytes = self._held_bytes = 0
        self._starts, self._chunks = [], []


class UnorderedReassembler(_Limits):
    """
    Delivery as pieces, in arrival order, for streams delivered unordered.

    Each byte is delivered once (later copies are dropped against the set of
    received ranges).  ``read_offset`` is the end of the contiguous prefix of
    *delivered* bytes: the amount the connection may credit to flow control.
    """

    ordered = False

    __slots__ = ("_received", "_queue", "_queued_bytes", "_dropped_delivered")

    def __init__(self, max_buffer: int, budget: ReceiveBudget | None = None) -> None:
        super().__init__(max_buffer, budget)
        self._received = RangeSet()  # offsets >= read_offset that arrived
        self._queue: deque[tuple[int, bytes]] = deque()
        self._queued_bytes = 0
        self._dropped_delivered = 0  # pieces past read_offset delivered before a discard

    @property
    def delivered(self) -> int:
        """Bytes handed to the application: the contiguous prefix plus the pieces past it."""
        return (
            self._read_offset + self._received.total - self._queued_bytes + self._dropped_delivered
        )

    @property
    def readable(self) -> int:
        """How many bytes :meth:`pop_any` can return now."""
        return self._queued_bytes

    @property
    def buffered_bytes(self) -> int:
        """Bytes received and not yet popped."""
        return self._queued_bytes

    @property
    def held_pieces(self) -> int:
        """Separate received runs past the read offset plus pieces queued for delivery."""
        return len(self._received) + len(self._queue)

    @property
    def all_received(self) -> bool:
        """Whether the final size is known and every byte up to it has arrived."""
        final = self.final_size
        if final is None:
            return False
        return self._read_offset == final or self._received.covers(self._read_offset, final)

    def insert(self, offset: int, data: Data, fin: bool = False) -> None:
        """Accept one STREAM frame's payload; same errors as :meth:`Reassembler.insert`."""
        length = len(data)
        end = offset + length
        self._check(offset, end, fin)
        start = max(offset, self._read_offset)
        if start >= end:
            return
        received = self._received
        gaps = received.gaps(start, end)
        if not gaps:
            return
        queue = self._queue
        before = len(received) + len(queue)
        view = memoryview(data)
        added = 0
        for lo, hi in gaps:
            queue.append((lo, _piece(data, view, lo - offset, hi - offset)))
            added += hi - lo
        received.add(start, end)
        self._queued_bytes += added
        budget = self._budget
        budget.bytes += added
        held = len(received) + len(queue)
        budget.pieces += held - before
        budget.holders = with_member(budget.holders, self)
        self._bound_pieces(held)

    def join_pieces(self) -> None:
        """Sort the delivery queue by offset and join touching pieces (delivery order is free
        on an unordered stream)."""
        queue = self._queue
        if len(queue) < 2:
            return
        joined: deque[tuple[int, bytes]] = deque()
        run: list[bytes] = []
        run_start = run_end = -1
        for start, chunk in sorted(queue, key=_offset_of):
            if start != run_end and run:
                joined.append((run_start, b"".join(run) if len(run) > 1 else run[0]))
                run = []
            if not run:
                run_start = start
            run.append(chunk)
            run_end = start + len(chunk)
        joined.append((run_start, b"".join(run) if len(run) > 1 else run[0]))
        self._budget.pieces -= len(queue) - len(joined)
        self._queue = joined

    def pop_any(self) -> tuple[int, bytes] | None:
        """Remove and return the oldest queued piece as ``(offset, data)``, or ``None``."""
        queue = self._queue
        if not queue:
            return None
        offset, chunk = queue.popleft()
        size = len(chunk)
        self._queued_bytes -= size
        budget = self._budget
        budget.bytes -= size
        budget.pieces -= 1
        if not queue:
            self._advance()
        return offset, chunk

    def _advance(self) -> None:
        """With everything received delivered, move ``read_offset`` over the first run."""
        received = self._received
        first = received.first()
        if first is not None and first[0] == self._read_offset:
            self._read_offset = first[1]
            received.pop_first(first[1] - first[0])
            self._budget.pieces -= 1
        if not received:
            if self._budget.holders:
                self._budget.holders.discard(self)

    def discard(self, final_size: int | None = None) -> None:
        """Drop every byte held (the peer reset the stream, with ``final_size``); the final
        size and the highest offset received stay known."""
        self._dropped_delivered += self._received.total - self._queued_bytes
        self._keep_final(final_size)
        budget = self._budget
        budget.bytes -= self._queued_bytes
        budget.pieces -= len(self._received) + len(self._queue)
        if budget.holders:
            budget.holders.discard(self)
        self._queue = deque()
        self._queued_bytes = 0
        self._received = RangeSet()


def _trimmed(data: Data, skip: int, length: int) -> bytes:
    """``data[skip:]`` as bytes, copying only when needed."""
    if skip == 0 and type(data) is bytes:
        return data
    return bytes(memoryview(data)[skip:length])


def _piece(data: Data, view: memoryview, lo: int, hi: int) -> bytes:
    """``data[lo:hi]`` as bytes, without a copy when that is all of a ``bytes``."""
    if lo == 0 and hi == len(view) and type(data) is bytes:
        return data
    return bytes(view[lo:hi])


__all__ = ["Reassembler", "UnorderedReassembler"]
