"""
Send-side buffer of one stream: bytes written, sent, lost, acknowledged.

The application appends bytes with :meth:`SendBuffer.write` and ends the
stream with :meth:`SendBuffer.finish`.  The connection asks for STREAM frame
payloads with :meth:`SendBuffer.next_frame`: ranges declared lost come first,
lowest offset first, then new data (RFC 9000 §2.2, §13.3: stream data is
retransmitted in new frames, never by resending packets).  New data never goes
at or past the peer's MAX_STREAM_DATA; retransmissions are never blocked by
flow control, since their offsets were already allowed (§4.1).

Written chunks live in a list with their start offsets (bisect finds the chunk
of any offset); payloads are memoryview slices, so bulk writes are never
concatenated.  Writes of at most ``SMALL`` bytes are coalesced into the last
chunk up to ``COALESCE`` bytes, so that many tiny writes do not make many tiny
chunks, while bulk writes are kept as they are, uncopied.
Acknowledged and lost offsets are two :class:`RangeSet` objects; everything
below the lowest unacknowledged offset is released.
"""

from __future__ import annotations

from bisect import bisect_right

from kwik_twisted.core.streams.ranges import RangeSet
from kwik_twisted.errors import StreamStateError

Data = bytes | bytearray | memoryview
Frame = tuple[int, "bytes | memoryview", bool, bool]

#: Small writes are appended to the previous chunk while the result stays this small.
COALESCE = 4096
#: Writes of at most this many bytes count as small.
SMALL = 512


class SendBuffer:
    """
    The sending half of a stream.

    :ivar limit: ``writable`` turns false once this many bytes are buffered.
    """

    __slots__ = (
        "limit",
        "_starts",
        "_chunks",
        "_head",
        "_write_offset",
        "_sent_offset",
        "_acked_floor",
        "_acked_at_reset",
        "_acked",
        "_lost",
        "_fin",
        "_fin_sent",
        "_fin_lost",
        "_fin_acked",
        "_reset",
    )

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._starts: list[int] = []
        self._chunks: list[bytes] = []
        self._head = 0
        self._write_offset = 0
        self._sent_offset = 0
        self._acked_floor = 0
        self._acked_at_reset = 0
        self._acked = RangeSet()
        self._lost = RangeSet()
        self._fin = False
        self._fin_sent = False
        self._fin_lost = False
        self._fin_acked = False
        self._reset = False

    # -- application side ---------------------------------------------------

    def write(self, data: Data) -> None:
        """
        Append ``data`` to the stream.

        :raises StreamStateError: the stream was finished or reset.
        """
        if self._fin or self._reset:
            raise StreamStateError("write after the stream was finished or reset")
        size = len(data)
        if not size:
            return
        chunk = data if type(data) is bytes else bytes(data)
        chunks = self._chunks
        if size <= SMALL and len(chunks) > self._head and len(chunks[-1]) + size <= COALESCE:
            chunks[-1] += chunk
        else:
            chunks.append(chunk)
            self._starts.append(self._write_offset)
        self._write_offset += size

    def finish(self) -> None:
        """Mark the end of the stream (FIN); idempotent."""
        if self._reset:
            raise StreamStateError("finish after the stream was reset")
        self._fin = True

    def reset(self) -> int:
        """
        Abandon the stream (RESET_STREAM): stop sending, drop buffered data.

        :return: the final size to put in RESET_STREAM, the highest offset
            sent so far (§4.5).
        """
        if not self._reset:
            self._acked_at_reset = self._acked_floor
        self._reset = True
        self._lost.clear()
        self._acked.clear()
        self._chunks.clear()
        self._starts.clear()
        self._head = 0
        self._acked_floor = self._write_offset
        self._fin_lost = False
        return self._sent_offset

    # -- state ----------------------------------------------------------------

    @property
    def write_offset(self) -> int:
        """The offset just past the last byte written."""
        return self._write_offset

    @property
    def acked_offset(self) -> int:
        """The offset below which every byte was acknowledged (contiguously, so a retransmitted
        range counts once); after :meth:`reset`, acknowledgements extend it only in order."""
        return self._acked_at_reset if self._reset else self._acked_floor

    @property
    def held_bytes(self) -> int:
        """Bytes of written data still in memory (released by acknowledgement or reset)."""
        return sum(len(chunk) for chunk in self._chunks[self._head :])

    @property
    def sent_offset(self) -> int:
        """The offset just past the highest byte sent; the next new byte's offset."""
        return self._sent_offset

    @property
    def unsent_bytes(self) -> int:
        """Bytes written and never sent (retransmissions not counted)."""
        return 0 if self._reset else self._write_offset - self._sent_offset

    @property
    def retransmit_bytes(self) -> int:
        """Bytes declared lost and waiting to be sent again."""
        return self._lost.total

    @property
    def buffered_bytes(self) -> int:
        """Bytes at or past the lowest unacknowledged offset: the memory held."""
        return self._write_offset - self._acked_floor

    @property
    def writable(self) -> bool:
        """Whether the application may write more (producer back-pressure)."""
        return self._write_offset - self._acked_floor < self.limit

    @property
    def pending(self) -> bool:
        """Whether anything (lost data, new data, FIN) waits to be sent."""
        if self._reset:
            return False
        return bool(
            self._lost
            or self._fin_lost
            or self._sent_offset < self._write_offset
            or (self._fin and not self._fin_sent)
        )

    @property
    def fin_sent(self) -> bool:
        """Whether a frame carrying FIN has been handed out."""
        return self._fin_sent

    @property
    def acked_all(self) -> bool:
        """Whether every byte and the FIN were acknowledged (Data Recvd, §3.1)."""
        return self._fin_acked and self._acked_floor == self._write_offset and not self._reset

    @property
    def is_reset(self) -> bool:
        """Whether :meth:`reset` was called."""
        return self._reset

    # -- connection side ------------------------------------------------------

    def next_frame(self, max_len: int, max_offset: int | None = None) -> Frame | None:
        """
        The next STREAM frame payload: ``(offset, data, fin, retransmit)`` or ``None``.

        :param max_len: the most data bytes the frame may carry (0 still
            allows a bare FIN).
        :param max_offset: the peer's MAX_STREAM_DATA; new data stops there.
        """
        if self._reset:
            return None
        if self._lost:
            return self._next_lost(max_len)
        if self._fin_lost:
            self._fin_lost = False
            return self._write_offset, b"", True, True
        return self._next_new(max_len, max_offset)

    def next_new(
        self, max_len: int, max_offset: int
    ) -> tuple[int, bytes | memoryview, bool, bool] | None:
        """
        The sender's fast path: :meth:`next_frame` when only new data can be due.

        Applies when the stream is not reset and holds no lost range or lost FIN; otherwise (or
        when nothing new may go) it returns ``None`` without changing anything, and the caller
        takes :meth:`next_frame`.  Then it is :meth:`next_frame`'s new-data branch, returning
        ``(offset, data, fin, more)`` where ``more`` is :attr:`pending` afterwards, which the
        caller would otherwise ask next.
        """
        if self._reset or self._lost or self._fin_lost:
            return None
        start = self._sent_offset
        write_offset = self._write_offset
        end = min(write_offset, start + max_len)
        if end > max_offset:
            end = max(start, max_offset)
        fin = self._fin and not self._fin_sent and end == write_offset
        if end == start:
            return None
        self._sent_offset = end
        if fin:
            self._fin_sent = True
        more = end < write_offset  # at the write offset a finished stream just sent its FIN
        return start, self._slice(start, end), fin, more

    def _next_lost(self, max_len: int) -> Frame | None:
        """A retransmission of the lowest lost range."""
        taken = self._lost.pop_first(max_len)
        if taken is None:
            return None
        start, end = taken
        fin = self._fin_lost and end == self._write_offset and not self._lost
        if fin:
            self._fin_lost = False
        return start, self._slice(start, end), fin, True

    def _next_new(self, max_len: int, max_offset: int | None) -> Frame | None:
        """New data from the sent offset, within ``max_len`` and ``max_offset``."""
        start = self._sent_offset
        end = min(self._write_offset, start + max_len)
        if max_offset is not None and end > max_offset:
            end = max(start, max_offset)
        fin = self._fin and not self._fin_sent and end == self._write_offset
        if end == start and not fin:
            return None
        self._sent_offset = end
        if fin:
            self._fin_sent = True
        return start, self._slice(start, end) if end > start else b"", fin, False

    def peek(self, start: int, end: int) -> bytes | memoryview:
        """The written bytes ``[start, end)`` still held (not below :attr:`acked_offset`), without
        changing any state: what a redundant copy of a frame sent before carries."""
        if not self._acked_floor <= start <= end <= self._sent_offset:
            raise ValueError(f"[{start}, {end}) is not a sent, held range")
        return self._slice(start, end) if end > start else b""

    def _slice(self, start: int, end: int) -> bytes | memoryview:
        """The written bytes ``[start, end)``, without copying when within one chunk."""
        starts, chunks = self._starts, self._chunks
        i = bisect_right(starts, start, self._head) - 1
        chunk = chunks[i]
        lo = start - starts[i]
        if end - starts[i] <= len(chunk):
            if lo == 0 and end - start == len(chunk):
                return chunk
            return memoryview(chunk)[lo : end - starts[i]]
        parts: list[bytes | memoryview] = []
        while start < end:
            chunk = chunks[i]
            lo = start - starts[i]
            hi = min(len(chunk), end - starts[i])
            parts.append(memoryview(chunk)[lo:hi])
            start += hi - lo
            i += 1
        return b"".join(parts)

    def on_acked(self, offset: int, length: int, fin: bool) -> None:
        """Record that the frame ``(offset, length, fin)`` was acknowledged."""
        if self._reset:
            if offset <= self._acked_at_reset < offset + length:  # the count only
                self._acked_at_reset = min(offset + length, self._sent_offset)
            return
        if fin:
            self._fin_acked = True
            self._fin_lost = False
        end = min(offset + length, self._sent_offset)
        start = max(offset, self._acked_floor)
        if start >= end:
            return
        if self._lost:
            self._lost.discard(start, end)
        acked = self._acked
        if start == self._acked_floor and not acked:
            self._acked_floor = end  # in-order fast path: no range bookkeeping
        else:
            acked.add(start, end)
            first = acked.first()
            if first is None or first[0] != self._acked_floor:
                return
            self._acked_floor = first[1]
            acked.discard_below(first[1])
        self._release()

    def on_lost(self, offset: int, length: int, fin: bool) -> None:
        """Queue the unacknowledged parts of a lost frame for retransmission."""
        if self._reset:
            return
        if fin and not self._fin_acked:
            self._fin_lost = True
        end = min(offset + length, self._sent_offset)
        start = max(offset, self._acked_floor)
        if start >= end:
            return
        lost = self._lost
        for lo, hi in self._acked.gaps(start, end):
            lost.add(lo, hi)

    def _release(self) -> None:
        """Drop the chunks that lie wholly below the lowest unacknowledged offset."""
        starts, chunks = self._starts, self._chunks
        head, floor = self._head, self._acked_floor
        while head < len(chunks) and starts[head] + len(chunks[head]) <= floor:
            chunks[head] = b""
            head += 1
        if head > 32 and head * 2 > len(chunks):
            del starts[:head]
            del chunks[:head]
            head = 0
        self._head = head


__all__ = ["COALESCE", "SMALL", "SendBuffer"]
