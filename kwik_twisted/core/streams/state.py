"""
Stream state machines as explicit transition tables (RFC 9000 §3).

A stream has a sending part (§3.1) and a receiving part (§3.2), each a small
machine.  Events are one :class:`StreamEvent` enum; a table maps
``(state, event)`` to the next state, and anything not in the table raises
:class:`StreamStateError` (the h11/h2 style: the table *is* the
specification).  The connection feeds peer-caused events (a STREAM frame on a
reset stream...) and local ones (the application writing after FIN); it maps
the error to a CONNECTION_CLOSE or to an application error as appropriate.

Late or duplicated frames are ordinary on a lossy multipath network, so
terminal states accept the retransmissions the RFC tolerates (a STREAM frame
after the stream was read, a second RESET_STREAM...) as self-loops.  Events
that carry no state change but are only legal in some states (STOP_SENDING,
MAX_STREAM_DATA, STREAM_DATA_BLOCKED) are self-loops where allowed.
"""

from __future__ import annotations

from enum import Enum

from kwik_twisted.errors import StreamStateError


class StreamEvent(Enum):
    """Inputs to the stream state machines."""

    # Sending part.
    SEND_DATA = "send_data"
    SEND_FIN = "send_fin"
    ALL_ACKED = "all_acked"
    SEND_RESET = "send_reset"
    RESET_ACKED = "reset_acked"
    RECV_STOP_SENDING = "recv_stop_sending"
    RECV_MAX_STREAM_DATA = "recv_max_stream_data"
    # Receiving part.
    RECV_DATA = "recv_data"
    RECV_FIN = "recv_fin"
    ALL_RECEIVED = "all_received"
    APP_READ_ALL = "app_read_all"
    RECV_RESET = "recv_reset"
    APP_READ_RESET = "app_read_reset"
    SEND_STOP_SENDING = "send_stop_sending"
    RECV_STREAM_DATA_BLOCKED = "recv_stream_data_blocked"


class SendState(Enum):
    """States of the sending part (RFC 9000 Figure 2)."""

    READY = "ready"
    SEND = "send"
    DATA_SENT = "data_sent"
    DATA_RECVD = "data_recvd"
    RESET_SENT = "reset_sent"
    RESET_RECVD = "reset_recvd"


class RecvState(Enum):
    """States of the receiving part (RFC 9000 Figure 3)."""

    RECV = "recv"
    SIZE_KNOWN = "size_known"
    DATA_RECVD = "data_recvd"
    DATA_READ = "data_read"
    RESET_RECVD = "reset_recvd"
    RESET_READ = "reset_read"


E = StreamEvent
S = SendState
R = RecvState

#: The sending part: (state, event) -> next state.
SEND_TRANSITIONS: dict[tuple[SendState, StreamEvent], SendState] = {
    (S.READY, E.SEND_DATA): S.SEND,
    (S.READY, E.SEND_FIN): S.DATA_SENT,
    (S.READY, E.SEND_RESET): S.RESET_SENT,
    (S.READY, E.RECV_STOP_SENDING): S.READY,
    (S.READY, E.RECV_MAX_STREAM_DATA): S.READY,
    (S.SEND, E.SEND_DATA): S.SEND,
    (S.SEND, E.SEND_FIN): S.DATA_SENT,
    (S.SEND, E.SEND_RESET): S.RESET_SENT,
    (S.SEND, E.RECV_STOP_SENDING): S.SEND,
    (S.SEND, E.RECV_MAX_STREAM_DATA): S.SEND,
    # Retransmissions of data and FIN happen in DATA_SENT.
    (S.DATA_SENT, E.SEND_DATA): S.DATA_SENT,
    (S.DATA_SENT, E.SEND_FIN): S.DATA_SENT,
    (S.DATA_SENT, E.ALL_ACKED): S.DATA_RECVD,
    (S.DATA_SENT, E.SEND_RESET): S.RESET_SENT,
    (S.DATA_SENT, E.RECV_STOP_SENDING): S.DATA_SENT,
    (S.DATA_SENT, E.RECV_MAX_STREAM_DATA): S.DATA_SENT,
    (S.DATA_RECVD, E.ALL_ACKED): S.DATA_RECVD,
    (S.DATA_RECVD, E.RECV_STOP_SENDING): S.DATA_RECVD,
    (S.DATA_RECVD, E.RECV_MAX_STREAM_DATA): S.DATA_RECVD,
    # RESET_STREAM may be retransmitted; acks of data sent earlier may still arrive.
    (S.RESET_SENT, E.SEND_RESET): S.RESET_SENT,
    (S.RESET_SENT, E.RESET_ACKED): S.RESET_RECVD,
    (S.RESET_SENT, E.ALL_ACKED): S.RESET_SENT,
    (S.RESET_SENT, E.RECV_STOP_SENDING): S.RESET_SENT,
    (S.RESET_SENT, E.RECV_MAX_STREAM_DATA): S.RESET_SENT,
    (S.RESET_RECVD, E.RESET_ACKED): S.RESET_RECVD,
    (S.RESET_RECVD, E.ALL_ACKED): S.RESET_RECVD,
    (S.RESET_RECVD, E.RECV_STOP_SENDING): S.RESET_RECVD,
    (S.RESET_RECVD, E.RECV_MAX_STREAM_DATA): S.RESET_RECVD,
}

#: The receiving part: (state, event) -> next state.
RECV_TRANSITIONS: dict[tuple[RecvState, StreamEvent], RecvState] = {
    (R.RECV, E.RECV_DATA): R.RECV,
    (R.RECV, E.RECV_FIN): R.SIZE_KNOWN,
    (R.RECV, E.RECV_RESET): R.RESET_RECVD,
    (R.RECV, E.SEND_STOP_SENDING): R.RECV,
    (R.RECV, E.RECV_STREAM_DATA_BLOCKED): R.RECV,
    (R.SIZE_KNOWN, E.RECV_DATA): R.SIZE_KNOWN,
    (R.SIZE_KNOWN, E.RECV_FIN): R.SIZE_KNOWN,
    (R.SIZE_KNOWN, E.ALL_RECEIVED): R.DATA_RECVD,
    (R.SIZE_KNOWN, E.RECV_RESET): R.RESET_RECVD,
    (R.SIZE_KNOWN, E.SEND_STOP_SENDING): R.SIZE_KNOWN,
    (R.SIZE_KNOWN, E.RECV_STREAM_DATA_BLOCKED): R.SIZE_KNOWN,
    (R.DATA_RECVD, E.RECV_DATA): R.DATA_RECVD,
    (R.DATA_RECVD, E.RECV_FIN): R.DATA_RECVD,
    (R.DATA_RECVD, E.APP_READ_ALL): R.DATA_READ,
    (R.DATA_RECVD, E.RECV_RESET): R.RESET_RECVD,
    (R.DATA_RECVD, E.RECV_STREAM_DATA_BLOCKED): R.DATA_RECVD,
    (R.DATA_READ, E.RECV_DATA): R.DATA_READ,
    (R.DATA_READ, E.RECV_FIN): R.DATA_READ,
    (R.DATA_READ, E.RECV_RESET): R.DATA_READ,
    (R.DATA_READ, E.RECV_STREAM_DATA_BLOCKED): R.DATA_READ,
    # Once reset, the RFC lets us keep the reset even if all data turns up.
    (R.RESET_RECVD, E.RECV_DATA): R.RESET_RECVD,
    (R.RESET_RECVD, E.RECV_FIN): R.RESET_RECVD,
    (R.RESET_RECVD, E.RECV_RESET): R.RESET_RECVD,
    (R.RESET_RECVD, E.ALL_RECEIVED): R.RESET_RECVD,
    (R.RESET_RECVD, E.APP_READ_RESET): R.RESET_READ,
    (R.RESET_RECVD, E.RECV_STREAM_DATA_BLOCKED): R.RESET_RECVD,
    (R.RESET_READ, E.RECV_DATA): R.RESET_READ,
    (R.RESET_READ, E.RECV_FIN): R.RESET_READ,
    (R.RESET_READ, E.RECV_RESET): R.RESET_READ,
    (R.RESET_READ, E.RECV_STREAM_DATA_BLOCKED): R.RESET_READ,
}

SEND_TERMINAL = frozenset({S.DATA_RECVD, S.RESET_RECVD})
RECV_TERMINAL = frozenset({R.DATA_READ, R.RESET_READ})


class SendStateMachine:
    """The sending part of a stream; ``state`` starts at READY."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = SendState.READY

    def process(self, event: StreamEvent) -> SendState:
        """
        Apply ``event`` and return the new state.

        :raises StreamStateError: the table has no entry for the pair.
        """
        try:
            self.state = SEND_TRANSITIONS[self.state, event]
        except KeyError:
            raise StreamStateError(
                f"{event.name} not allowed in send state {self.state.name}"
            ) from None
        return self.state

    @property
    def terminal(self) -> bool:
        """Whether the sending part is finished (Data Recvd or Reset Recvd)."""
        return self.state in SEND_TERMINAL

    @property
    def can_send_data(self) -> bool:
        """Whether STREAM frames (new or retransmitted) may be sent."""
        return self.state in (S.READY, S.SEND, S.DATA_SENT)

    @property
    def is_reset(self) -> bool:
        """Whether the sending part was reset."""
        return self.state in (S.RESET_SENT, S.RESET_RECVD)


class RecvStateMachine:
    """The receiving part of a stream; ``state`` starts at RECV."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = RecvState.RECV

    def process(self, event: StreamEvent) -> RecvState:
        """
        Apply ``event`` and return the new state.

        :raises StreamStateError: the table has no entry for the pair.
        """
        try:
            self.state = RECV_TRANSITIONS[self.state, event]
        except KeyError:
            raise StreamStateError(
                f"{event.name} not allowed in receive state {self.state.name}"
            ) from None
        return self.state

    @property
    def terminal(self) -> bool:
        """Whether the receiving part is finished (Data Read or Reset Read)."""
        return self.state in RECV_TERMINAL

    @property
    def is_reset(self) -> bool:
        """Whether the peer reset the stream."""
        return self.state in (R.RESET_RECVD, R.RESET_READ)

    @property
    def size_known(self) -> bool:
        """Whether the final size is known (any state past Recv)."""
        return self.state is not R.RECV


__all__ = [
    "RECV_TERMINAL",
    "RECV_TRANSITIONS",
    "SEND_TERMINAL",
    "SEND_TRANSITIONS",
    "RecvState",
    "RecvStateMachine",
    "SendState",
    "SendStateMachine",
    "StreamEvent",
]
