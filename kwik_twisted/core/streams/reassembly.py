"""
Receive-side reassembly of a stream's bytes from STREAM frames.

STREAM frames carry ``(offset, data, fin)`` and arrive out of order,
duplicated, overlapping, and on several paths (RFC 9000 §2.2, §19.8).
:class:`Reassembler` turns them back into the byte stream:

* the *fast path*: data that starts at or below the contiguous end while
  nothing is held out of order is trimmed and appended to a ready list, with
  no copy when the frame is ``bytes`` and not trimmed;
* the *slow path*: data beyond a gap goes into two parallel lists sorted by
  offset (found with :mod:`bisect`).  Only the parts of a frame not already
  held are stored, so held chunks never overlap: the first copy of a byte wins
  (the peer must send the same bytes at the same offset, §2.2).  When the gap
  fills, held chunks move to the ready list in one slice.

The final size rules of RFC 9000 §4.5 raise :class:`FinalSizeError`.  Memory is
bounded by ``max_buffer``: data ending more than ``max_buffer`` bytes past the
read offset raises :class:`FlowControlError`.  The connection sets
``max_buffer`` to the stream's receive window and credits ``read_offset``
advances to it, so a peer that obeys flow control (§4.1) never hits the bound
while a peer that holds gaps open cannot make us buffer more than the window.

:class:`UnorderedReassembler` serves streams without the ORDERED flag: chunks
are delivered as they arrive (duplicates dropped against a :class:`RangeSet`
of received offsets) with the same final-size and buffer rules.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque

from kwik_twisted.core.streams.ranges import RangeSet
from kwik_twisted.errors import FinalSizeError, FlowControlError

Data = bytes | bytearray | memoryview

#: Out-of-order pieces a stream may hold before they are joined into runs: at least this many,
#: and one per this many bytes of the window; after joining, more than half the limit in separate
#: runs is a FLOW_CONTROL_ERROR (protocol.rst, "Flow control").
MIN_HELD_PIECES = 512
BYTES_PER_HELD_PIECE = 256


class _Limits:
    """Final size and buffer bound checks shared by both reassemblers (§4.5)."""

    __slots__ = ("max_buffer", "final_size", "highest_received", "_read_offset")

    def __init__(self, max_buffer: int) -> None:
        self.max_buffer = max_buffer
        self.final_size: int | None = None
        self.highest_received = 0
        self._read_offset = 0

    @property
    def read_offset(self) -> int:
        """The offset below which every byte has been delivered to the application."""
        return self._read_offset

    @property
    def finished(self) -> bool:
        """Whether the final size is known and every byte up to it was delivered."""
        return self.final_size is not None and self._read_offset == self.final_size

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


class Reassembler(_Limits):
    """
    Ordered reassembly: :meth:`insert` frames in any order, :meth:`read` bytes in order.

    :ivar max_buffer: the most bytes held past ``read_offset``; may be raised
        as the receive window grows.
    :ivar final_size: the stream's final size once a FIN arrived, else ``None``.
    :ivar highest_received: the highest end offset of any frame received.
    """

    __slots__ = ("_ready", "_ready_bytes", "_starts", "_chunks", "_held_bytes")

    def __init__(self, max_buffer: int) -> None:
        super().__init__(max_buffer)
        self._ready: deque[bytes] = deque()
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

    def insert(self, offset: int, data: Data, fin: bool = False) -> None:
        """
        Accept one STREAM frame's payload.

        :raises FinalSizeError: the frame contradicts the final size (§4.5).
        :raises FlowControlError: the frame ends more than ``max_buffer``
            bytes past the read offset.
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
        """Add a chunk that starts exactly at the contiguous end."""
        self._ready.append(chunk)
        self._ready_bytes += len(chunk)

    def _hold(self, offset: int, data: Data, contiguous: int) -> None:
        """Store the parts of ``data`` not yet held, then release what became contiguous."""
        starts, chunks = self._starts, self._chunks
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
                self._held_bytes += stop - pos
                i += 1
            if stop < end:
                pos = stop + len(chunks[i])
                i += 1
            else:
                pos = end
        self._release(contiguous)
        if len(starts) > max(MIN_HELD_PIECES, self.max_buffer // BYTES_PER_HELD_PIECE):
            self._compact()

    def _compact(self) -> None:
        """
        Join held chunks that touch into one chunk per run; too many runs is a flow-control error.

        The window bounds the bytes held, not the pieces: one byte at every other offset would
        otherwise cost a ``bytes`` object and two list slots per byte (about 40x the window).
        Honest senders make few runs (one per gap that loss or reordering opened), so joining
        brings them far under the limit, and the join's cost is spread over the many inserts
        it takes to reach the limit again.

        :raises FlowControlError: the held data still has more separate runs than the limit.
        """
        starts, chunks = self._starts, self._chunks
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
        if run:
            new_starts.append(run_start)
            new_chunks.append(b"".join(run) if len(run) > 1 else run[0])
        self._starts, self._chunks = new_starts, new_chunks
        limit = max(MIN_HELD_PIECES, self.max_buffer // BYTES_PER_HELD_PIECE)
        if len(new_starts) > limit // 2:
            raise FlowControlError(
                f"{len(new_starts)} separate out-of-order pieces held (limit {limit // 2})"
            )

    def _release(self, contiguous: int) -> None:
        """Move held chunks that now continue the ready data to the ready list."""
        starts, chunks = self._starts, self._chunks
        count = 0
        while count < len(starts) and starts[count] == contiguous:
            contiguous += len(chunks[count])
            count += 1
        if count:
            moved = chunks[:count]
            size = contiguous - starts[0]
            del starts[:count]
            del chunks[:count]
            self._ready.extend(moved)
            self._ready_bytes += size
            self._held_bytes -= size

    def read(self, max_bytes: int | None = None) -> bytes:
        """Remove and return up to ``max_bytes`` contiguous bytes (all when ``None``)."""
        ready = self._ready
        if not ready:
            return b""
        if max_bytes is None or max_bytes >= self._ready_bytes:
            data = ready[0] if len(ready) == 1 else b"".join(ready)
            ready.clear()
        else:
            data = self._read_some(max_bytes)
        self._ready_bytes -= len(data)
        self._read_offset += len(data)
        return data

    def _read_some(self, max_bytes: int) -> bytes:
        """Take exactly ``max_bytes`` (fewer than are ready) from the ready list."""
        ready = self._ready
        parts: list[bytes] = []
        want = max_bytes
        while want > 0:
            chunk = ready.popleft()
            if len(chunk) > want:
                ready.appendleft(chunk[want:])
                chunk = chunk[:want]
            parts.append(chunk)
            want -= len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def pop_any(self) -> tuple[int, bytes] | None:
        """Remove and return the next ready chunk as ``(offset, data)``, or ``None``."""
        if not self._ready:
            return None
        offset = self._read_offset
        chunk = self._ready.popleft()
        self._ready_bytes -= len(chunk)
        self._read_offset += len(chunk)
        return offset, chunk


class UnorderedReassembler(_Limits):
    """
    Delivery in arrival order for streams without the ORDERED flag.

    Each byte is delivered once (later copies are dropped against the set of
    received ranges).  ``read_offset`` is the end of the contiguous prefix of
    *delivered* bytes: the amount the connection may credit to flow control.
    """

    __slots__ = ("_received", "_delivered", "_queue", "_queued_bytes")

    def __init__(self, max_buffer: int) -> None:
        super().__init__(max_buffer)
        self._received = RangeSet()
        self._delivered = RangeSet()
        self._queue: deque[tuple[int, bytes]] = deque()
        self._queued_bytes = 0

    @property
    def readable(self) -> int:
        """How many bytes :meth:`pop_any` can return now."""
        return self._queued_bytes

    @property
    def buffered_bytes(self) -> int:
        """Bytes received and not yet popped."""
        return self._queued_bytes

    def insert(self, offset: int, data: Data, fin: bool = False) -> None:
        """Accept one STREAM frame's payload; same errors as :meth:`Reassembler.insert`."""
        length = len(data)
        end = offset + length
        self._check(offset, end, fin)
        start = max(offset, self._read_offset)
        if start >= end:
            return
        view = memoryview(data)
        for lo, hi in self._received.gaps(start, end):
            self._queue.append((lo, _piece(data, view, lo - offset, hi - offset)))
            self._queued_bytes += hi - lo
        self._received.add(start, end)

    def pop_any(self) -> tuple[int, bytes] | None:
        """Remove and return the oldest received chunk as ``(offset, data)``, or ``None``."""
        if not self._queue:
            return None
        offset, chunk = self._queue.popleft()
        self._queued_bytes -= len(chunk)
        delivered = self._delivered
        delivered.add(offset, offset + len(chunk))
        first = delivered.first()
        if first is not None and first[0] <= self._read_offset:
            self._read_offset = first[1]
            delivered.discard_below(first[1])
            self._received.discard_below(first[1])
        return offset, chunk


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
