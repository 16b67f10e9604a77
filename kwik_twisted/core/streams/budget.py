"""
One connection's receive memory: the bytes and pieces every stream's reassembler holds.

Flow control bounds the *bytes* a peer can make us hold (protocol.rst, "Flow control"), but not the
objects they are held in: one byte at every other offset costs a ``bytes`` object, an offset and
list slots per byte, about 100 times the byte itself, and a per-stream piece limit multiplies by
the number of streams.  So every reassembler of a connection reports to one
:class:`ReceiveBudget`:

* ``bytes``: stream bytes held, ready to read or out of order, on every stream;
* ``pieces``: separate out-of-order pieces held (ordered streams) and received runs plus queued
  pieces (unordered streams): the objects whose number a peer controls;
* ``chunks``: contiguous chunks waiting to be read (small ones are coalesced as they arrive, so
  there are at most about two per KiB waiting).

:attr:`ReceiveBudget.used` is ``bytes + PIECE_OVERHEAD * (pieces + chunks)``, the memory figure
tests and operators look at.  The budget enforces one bound itself, :data:`MAX_HELD_PIECES` across
the connection: past it the reassembler that crossed it joins its touching pieces into runs; if the
connection still holds more than half the bound, every holder joins its pieces, and if that does
not bring the connection under half the bound it is a FLOW_CONTROL_ERROR.  An honest sender makes
one run per gap that loss or reordering opened, each at least one packet long, so it stays far
below (8,192 separate runs is more than 10 MiB of missing data below data already received).

The bytes need no bound of their own here: they are bounded by the connection's receive window,
because credit is only returned for bytes the application consumed or that a reset released (the
reassembler's :meth:`discard` drops a reset stream's buffers at once).
"""

from __future__ import annotations

from typing import Protocol

from kwik_twisted.errors import FlowControlError

#: Bytes of bookkeeping counted per held piece or queued chunk: a small ``bytes`` object (33 bytes
#: plus its data, rounded up by the allocator), its offset (an ``int``, 28-32 bytes) and two list
#: slots, or a range's two ``int`` bounds; measured 88-136 bytes per one-byte piece.
PIECE_OVERHEAD = 100

#: Separate pieces a connection may hold across all its streams before they are joined into runs;
#: after joining, more than half (8,192 runs) is a FLOW_CONTROL_ERROR.  16,384 pieces cost about
#: 1.6 MiB of bookkeeping, and keep every sorted-list insert below 5 microseconds.
MAX_HELD_PIECES = 16384


#: The members of a set nothing joined yet: empty, shared (an empty set costs about 200 bytes, and
#: a connection has several that stay empty while it idles).  Add with :func:`with_member`.
NO_MEMBERS: frozenset = frozenset()


def with_member(group: set | frozenset, item) -> set:
    """``group`` with ``item`` added: ``group`` itself, or a new set in place of
    :data:`NO_MEMBERS`; store the result back."""
    if group is NO_MEMBERS:
        return {item}
    group.add(item)  # type: ignore[union-attr]
    return group  # type: ignore[return-value]


class PieceHolder(Protocol):
    """A reassembler that can join its touching pieces when the connection holds too many."""

    def join_pieces(self) -> None:
        """Join touching held pieces into runs (updating the budget)."""


class ReceiveBudget:
    """
    The receive-side memory of one connection, across all its streams.

    Worst case per connection with the default configuration: the receive window (4 MiB at
    first, up to ``max_data_window``, 32 MiB) of held bytes, plus 16,384 pieces x 100 bytes
    (1.6 MiB), plus about 20% of the waiting bytes in chunk bookkeeping.

    :ivar bytes: stream bytes held (ready or out of order) on all streams.
    :ivar pieces: separate out-of-order pieces / runs held on all streams.
    :ivar chunks: contiguous chunks waiting to be read on all streams.
    :ivar max_pieces: the bound on ``pieces`` (:data:`MAX_HELD_PIECES`).
    """

    __slots__ = ("bytes", "pieces", "chunks", "max_pieces", "holders")

    def __init__(self, max_pieces: int = MAX_HELD_PIECES) -> None:
        self.bytes = 0
        self.pieces = 0
        self.chunks = 0
        self.max_pieces = max_pieces
        #: Reassemblers holding pieces now (they add themselves, and leave when they hold none).
        self.holders: set[PieceHolder] = NO_MEMBERS  # type: ignore[assignment]

    @property
    def used(self) -> int:
        """The memory held, in bytes: data plus :data:`PIECE_OVERHEAD` per piece and chunk."""
        return self.bytes + PIECE_OVERHEAD * (self.pieces + self.chunks)

    @property
    def crowded(self) -> bool:
        """Whether the connection holds more pieces than :attr:`max_pieces`."""
        return self.pieces > self.max_pieces

    def join_all(self) -> None:
        """
        Have every holder join its touching pieces; the connection must then hold at most half
        of :attr:`max_pieces`.

        Called only once :attr:`crowded`: the pieces fall to half the bound or the connection
        ends, so the joins cost amortised O(1) per piece received.

        :raises FlowControlError: more than half the bound remain as separate runs.
        """
        for holder in list(self.holders):
            holder.join_pieces()
        limit = self.max_pieces // 2
        if self.pieces > limit:
            raise FlowControlError(
                f"{self.pieces} separate out-of-order pieces held on the connection (limit {limit})"
            )

    def __repr__(self) -> str:
        return (
            f"<ReceiveBudget bytes={self.bytes} pieces={self.pieces} chunks={self.chunks} "
            f"used={self.used}>"
        )


__all__ = ["MAX_HELD_PIECES", "PIECE_OVERHEAD", "PieceHolder", "ReceiveBudget"]
