"""
One stream: its send buffer, reassembler, windows and state machines in one place.

A :class:`Stream` is plain state; the :class:`~kwik_twisted.core.streams.manager.StreamManager`
drives it.  Stream IDs follow protocol.rst ("Streams"): the two low bits give the initiator and the
type (v3 uses bidirectional streams only).
"""

from __future__ import annotations

from ...wire import QosPolicy
from .budget import ReceiveBudget
from .flow_control import ReceiveWindow, SendCredit
from .reassembly import Reassembler, UnorderedReassembler
from .sendbuffer import SendBuffer
from .state import RecvStateMachine, SendStateMachine

#: The stream-ID bit of unidirectional streams (v3 has none: a frame naming one is an error).
UNIDIRECTIONAL = 0x2


class Stream:
    """
    The state of one bidirectional stream.

    :ivar id: the stream ID.
    :ivar priority: 0 normal, 1 high, 2 critical (the seed's levels).
    :ivar ordered: the ORDERED flag we put on our frames (a peer stream mirrors the peer's).
    :ivar peer_ordered: the ORDERED flag of the peer's first frame on this stream, or ``None``
        before it; the peer may not change it.
    :ivar recv: the receive reassembler, chosen once: unordered for a stream we opened unordered,
        or for a peer stream whose first frame had ORDERED clear when the configuration accepts
        unordered delivery; ordered otherwise.
    :ivar compress: whether to try lz4 on this stream's frames.
    :ivar qos: the seed's QoS policy in force for our frames, or ``None``: ours on a stream we
        opened or once we set one, else the peer's (its QOS extension).
    :ivar qos_sent: whether :attr:`qos` needs no (new) QOS extension on our next frame.
    :ivar peer_priority: the priority of the peer's latest frame on this stream (0 before any).
    :ivar peer_qos: the policy of the peer's latest QOS extension, or ``None``.
    :ivar fixed: whether the local side chose :attr:`priority` and :attr:`qos` (it opened the
        stream, or set them since): the peer's requests no longer change them.
    :ivar pin: the path IDs the application pinned this stream to (a frozenset), or ``None``.
    :ivar route: the path IDs the QoS enforcer routes this stream on, or ``None``.
    :ivar paths: the restriction in force, :attr:`pin` if set, else :attr:`route` (``None``: any
        path); :class:`~.sendqueue.SendQueue` keeps it.
    :ivar max_rate: the application's cap on our sending rate, bits per second, or ``None``
        (local only: never on the wire).
    :ivar shaping: the shaper's state while it tracks the stream
        (:class:`~kwik_twisted.core.qos.shaper.Shaping`), else ``None``.
    :ivar received_at_reset: the highest offset received before the peer's RESET_STREAM (whose
        final size the reassembler then takes as received), or ``None``.
    :ivar paused: the application asked us to stop delivering (back-pressure on the peer).
    """

    __slots__ = (
        "id",
        "priority",
        "ordered",
        "peer_ordered",
        "compress",
        "qos",
        "qos_sent",
        "peer_priority",
        "peer_qos",
        "fixed",
        "pin",
        "route",
        "paths",
        "max_rate",
        "shaping",
        "received_at_reset",
        "send",
        "recv",
        "credit",
        "window",
        "send_state",
        "recv_state",
        "paused",
        "fin_delivered",
        "reset_pending",
        "stop_sending_pending",
        "was_writable",
        "queued",
        "blocked",
        "local",
        "announce",
    )

    def __init__(
        self,
        stream_id: int,
        *,
        local: bool,
        send_limit: int,
        peer_max_stream_data: int,
        initial_window: int,
        max_window: int,
        priority: int = 0,
        ordered: bool = True,
        compress: bool = False,
        qos: QosPolicy | None = None,
        budget: ReceiveBudget | None = None,
        paths: frozenset[int] | None = None,
    ) -> None:
        self.id = stream_id
        self.local = local
        self.priority = priority
        self.ordered = ordered
        self.peer_ordered: bool | None = None
        self.compress = compress
        self.qos = qos
        self.qos_sent = qos is None
        self.peer_priority = 0
        self.peer_qos: QosPolicy | None = None
        self.fixed = local
        self.pin = self.paths = paths
        self.route: frozenset[int] | None = None
        self.max_rate: float | None = None
        self.shaping = None
        self.received_at_reset: int | None = None
        self.send = SendBuffer(send_limit)
        reassembler = Reassembler if ordered else UnorderedReassembler
        self.recv: Reassembler | UnorderedReassembler = reassembler(initial_window, budget)
        self.credit = SendCredit(peer_max_stream_data)
        self.window = ReceiveWindow(initial_window, max_window)
        self.send_state = SendStateMachine()
        self.recv_state = RecvStateMachine()
        self.paused = False
        self.fin_delivered = False
        #: (error_code, final_size) of a RESET_STREAM to (re)send, or None.
        self.reset_pending: tuple[int, int] | None = None
        #: error code of a STOP_SENDING to (re)send, or None.
        self.stop_sending_pending: int | None = None
        self.was_writable = True
        self.queued = False
        self.blocked = False
        #: A stream we opened is announced to the peer with an empty frame if no data goes first,
        #: so a peer that speaks first (a server greeting) learns of it at once.
        self.announce = local

    @property
    def closed(self) -> bool:
        """Whether both directions reached a terminal state."""
        return self.send_state.terminal and self.recv_state.terminal

    def __repr__(self) -> str:
        return (
            f"<Stream {self.id} prio={self.priority} send={self.send_state.state.name} "
            f"recv={self.recv_state.state.name}>"
        )
