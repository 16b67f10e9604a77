"""
The connection lifecycle as a transition table (RFC 9000 §10, adapted).

Theory of operation.  A connection is in one :class:`State`; what moves it is one
:class:`LifecycleEvent`, and :data:`TRANSITIONS` maps ``(state, event)`` to the next state.  A pair
missing from the table is a bug in the caller, not the peer's doing (the peer's frames are not
even read once the connection is ending), so :meth:`Lifecycle.process` raises
:class:`LifecycleError`; the h11 ``_state.py`` style, where the table *is* the specification::

    HANDSHAKE --ESTABLISH--> ESTABLISHED
    HANDSHAKE | ESTABLISHED --CLOSE--> CLOSING        we sent CONNECTION_CLOSE
    any but CLOSED --PEER_CLOSE--> DRAINING           the peer sent it
    HANDSHAKE | ESTABLISHED --IDLE_TIMEOUT--> CLOSED  nothing heard for the idle timeout
    CLOSING | DRAINING --DRAINED--> CLOSED            three PTOs after the close

:class:`Lifecycle` also keeps what belongs to the ending: the CONNECTION_CLOSE frame we send,
whether one is owed (a packet arriving while CLOSING is answered with the frame again, nothing
else), and when the ending is over.  :attr:`Lifecycle.is_ending` is the one test for
"closing, draining or closed".
"""

from __future__ import annotations

from enum import Enum

from ..wire import ConnectionCloseFrame


class State(Enum):
    """Connection lifecycle states."""

    HANDSHAKE = "handshake"
    ESTABLISHED = "established"
    CLOSING = "closing"
    DRAINING = "draining"
    CLOSED = "closed"


class LifecycleEvent(Enum):
    """Inputs to the lifecycle table."""

    ESTABLISH = "establish"
    CLOSE = "close"
    PEER_CLOSE = "peer_close"
    IDLE_TIMEOUT = "idle_timeout"
    DRAINED = "drained"


class LifecycleError(RuntimeError):
    """A lifecycle event the table does not allow in the current state (a bug in the caller)."""


S, E = State, LifecycleEvent

#: ``(state, event) -> next state``; anything else raises :class:`LifecycleError`.
TRANSITIONS: dict[tuple[State, LifecycleEvent], State] = {
    (S.HANDSHAKE, E.ESTABLISH): S.ESTABLISHED,
    (S.HANDSHAKE, E.CLOSE): S.CLOSING,
    (S.ESTABLISHED, E.CLOSE): S.CLOSING,
    (S.HANDSHAKE, E.PEER_CLOSE): S.DRAINING,
    (S.ESTABLISHED, E.PEER_CLOSE): S.DRAINING,
    (S.CLOSING, E.PEER_CLOSE): S.DRAINING,
    (S.DRAINING, E.PEER_CLOSE): S.DRAINING,
    (S.HANDSHAKE, E.IDLE_TIMEOUT): S.CLOSED,
    (S.ESTABLISHED, E.IDLE_TIMEOUT): S.CLOSED,
    (S.CLOSING, E.DRAINED): S.CLOSED,
    (S.DRAINING, E.DRAINED): S.CLOSED,
}

#: The states in which the connection sends nothing but (possibly) CONNECTION_CLOSE.
ENDING = frozenset({S.CLOSING, S.DRAINING, S.CLOSED})


class Lifecycle:
    """
    The state of one connection and the bookkeeping of its ending.

    :ivar state: the current :class:`State`.
    :ivar is_ending: whether ``state`` is in :data:`ENDING`.
    :ivar close_frame: the CONNECTION_CLOSE we send (set by :meth:`close`).
    :ivar close_pending: whether that frame is owed to the peer now.
    :ivar close_deadline: when CLOSING or DRAINING is over (``None`` before).
    """

    __slots__ = ("state", "is_ending", "close_frame", "close_pending", "close_deadline")

    def __init__(self) -> None:
        self.state = State.HANDSHAKE
        #: Whether the connection is closing, draining or closed (kept with ``state``: the
        #: receive path reads it for every packet).
        self.is_ending = False
        self.close_frame: ConnectionCloseFrame | None = None
        self.close_pending = False
        self.close_deadline: float | None = None

    def process(self, event: LifecycleEvent) -> State:
        """
        Apply ``event`` and return the new state.

        :raises LifecycleError: the table has no entry for the pair.
        """
        try:
            state = TRANSITIONS[self.state, event]
        except KeyError:
            raise LifecycleError(f"{event.name} not allowed in state {self.state.name}") from None
        self.state = state
        self.is_ending = state in ENDING
        return state

    def establish(self) -> None:
        """The handshake completed."""
        self.process(E.ESTABLISH)

    def close(self, frame: ConnectionCloseFrame, *, deadline: float) -> None:
        """We end the connection: ``frame`` is owed to the peer; CLOSED at ``deadline``."""
        self.process(E.CLOSE)
        self.close_frame = frame
        self.close_pending = True
        self.close_deadline = deadline

    def peer_closed(self, *, deadline: float) -> None:
        """The peer ended it: drain until ``deadline`` (kept if an ending is already timed)."""
        self.process(E.PEER_CLOSE)
        if self.close_deadline is None:
            self.close_deadline = deadline

    def idle_timeout(self) -> None:
        """Nothing heard for the idle timeout: CLOSED at once, nothing sent."""
        self.process(E.IDLE_TIMEOUT)

    def drained(self) -> None:
        """The close deadline passed."""
        self.process(E.DRAINED)

    def on_packet(self) -> None:
        """A packet authenticated while ending: owe the peer our CLOSE again (CLOSING only)."""
        self.close_pending = self.state is S.CLOSING

    def take_close(self) -> ConnectionCloseFrame | None:
        """The CONNECTION_CLOSE to send now, if one is owed (it is then no longer owed)."""
        if not self.close_pending or self.close_frame is None:
            return None
        self.close_pending = False
        return self.close_frame
