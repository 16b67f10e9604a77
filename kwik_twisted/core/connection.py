"""
The Kwik connection: a sans-I/O state machine driven by datagrams, deadlines and application calls.

Theory of operation.  The owner (the Twisted glue, the simulator, a test) calls in and then collects
what the connection wants done:

* :meth:`Connection.receive_datagram` when a datagram arrives, with the addresses it travelled
  between;
* :meth:`Connection.datagrams_to_send` after every call in, to take the datagrams to put on the
  wire;
* :meth:`Connection.next_deadline` after every call in, to (re)arm its one timer, and
  :meth:`Connection.handle_deadline` when that timer fires;
* :meth:`Connection.next_event` until it returns ``None``, to hand events to the application.

Time is the ``now`` argument of each call (seconds, any epoch); randomness comes from the injected
:class:`~kwik_twisted.core.entropy.Entropy`.  Errors: a :class:`~kwik_twisted.errors.DroppedPacket`
is counted and forgotten; a :class:`~kwik_twisted.errors.ProtocolError` is caught in exactly one
place (:meth:`receive_datagram`, and :meth:`handle_deadline` for a timer that finds the connection
unusable), which sends CONNECTION_CLOSE with its code and emits
:class:`~kwik_twisted.events.ConnectionTerminated`.

The connection is an orchestrator; the work is done by collaborators that get only what they need
(an event sink, the control-frame queue, a requeue callable, counters), never the connection:

* :class:`~kwik_twisted.core.lifecycle.Lifecycle`: HANDSHAKE → ESTABLISHED → CLOSING (we closed)
  or DRAINING (the peer did) → CLOSED after three PTOs; an idle timeout goes straight to CLOSED.
* :class:`~kwik_twisted.core.keys.KeySchedule`: packet keys, the epoch choice, early packets.
* :class:`~kwik_twisted.core.handshake.Handshake`: TLS 1.3 in HANDSHAKE frames, transport
  parameters.
* :class:`~kwik_twisted.core.paths.manager.PathManager`: the
  :class:`~kwik_twisted.core.paths.path.Path` objects, path 0 being the handshake's.
* :class:`~kwik_twisted.core.streams.manager.StreamManager`: streams and flow control.
* :class:`~kwik_twisted.core.sender.Sender` with :mod:`~kwik_twisted.core.sending`: when, where
  and what to send, and what ACKs and losses mean;
  :class:`~kwik_twisted.core.retransmit.RecordRouter`: what to send again.
* :mod:`~kwik_twisted.core.timers`: every deadline, each written once.
* :class:`~kwik_twisted.core.qos.enforcer.QoSEnforcer` (``Connection.qos``): the streams' QoS
  policies kept across paths, and the congestion report.
"""

from __future__ import annotations

from collections import Counter, deque

from ..config import MIN_DATAGRAM_SIZE, ConnectionConfig
from ..errors import (
    DroppedPacket,
    ErrorCode,
    HandshakeFailed,
    MalformedPacket,
    ProtocolError,
)
from ..events import ConnectionTerminated, Event
from ..wire import (
    CID_LENGTH,
    FRAME_TYPE_STREAM,
    ConnectionCloseFrame,
    ControlType,
    Epoch,
    StreamFrame,
    decode_packet,
    decode_payload,
)
from ..wire.packets import INITIAL_BYTE
from .cids import ConnectionIds, on_new_connection_id, on_retire_connection_id, reset_tokens
from .congestion import controller_factory
from .crypto.protection import PacketProtection
from .datagrams import DatagramChannel
from .entropy import Entropy
from .handshake import (
    DEFAULT_PEER_DATAGRAM_SIZE,
    MAX_HANDSHAKE_BUFFER,
    Handshake,
    check_config,
    local_parameters,
)
from .keys import MAX_EARLY_BYTES, MAX_EARLY_PACKETS, KeySchedule
from .lb import new_cid
from .lifecycle import Lifecycle, State
from .paths.manager import DEFAULT_PEER_MAX_PATHS, PathManager, check_path_ids
from .paths.metrics import PathMetrics
from .paths.path import Path
from .paths.scheduler import create as create_scheduler
from .qos.enforcer import QoSEnforcer
from .retransmit import RecordRouter
from .sender import BURST_LIMIT, SKIP_ONE_IN, Sender
from .sending import PacketContext
from .stateless import KEYS_USED_UP, end_statelessly, on_long_answer
from .streams.manager import (
    UNCHANGED,
    StreamManager,
)
from .streams.sendbuffer import SendBuffer
from .streams.view import StreamView
from .timers import IdleTimer, TimerKind, timers
from .trace import tracing

__all__ = [
    "BURST_LIMIT", "DEFAULT_PEER_DATAGRAM_SIZE", "DEFAULT_PEER_MAX_PATHS", "MAX_EARLY_BYTES",
    "MAX_EARLY_PACKETS", "MAX_HANDSHAKE_BUFFER", "MIN_DATAGRAM_SIZE", "SKIP_ONE_IN", "UNCHANGED",
    "Connection", "State", "StreamView",
]

_CLOSING, _CLOSED = State.CLOSING, State.CLOSED
_APPLICATION = int(Epoch.APPLICATION)


class Connection:
    """
    One Kwik connection, either role.

    Build one with :meth:`client` or :meth:`server` (the server side normally through
    :class:`~kwik_twisted.core.dispatcher.ServerDispatcher`).
    """

    def __init__(
        self,
        config: ConnectionConfig,
        *,
        is_client: bool,
        entropy: Entropy,
        tls,
        local_cid: bytes,
        peer_cid: bytes,
        original_dcid: bytes,
        local_addr: tuple,
        remote_addr: tuple,
        now: float,
        tracer=None,
    ) -> None:
        check_config(config)
        self.config = config
        self.is_client = is_client
        self.entropy = entropy
        self.tls = tls
        self.local_cid = local_cid
        self.original_dcid = original_dcid
        self.lifecycle = Lifecycle()
        self.stats: Counter[str] = Counter()
        self.trace, self._events = tracing(tracer, is_client, original_dcid, now, lambda: self._now)
        self._control: deque = deque()  # connection-level control frames (reliable)
        self._now = now
        self._receiving_epoch = Epoch.INITIAL
        self._peer_cid_learned = not is_client
        emit = self._events.append
        self.streams = StreamManager(is_client=is_client, emit=emit, config=config)
        self.keys = KeySchedule(original_dcid, is_client=is_client, stats=self.stats)
        self.cids = ConnectionIds(  # our CIDs and the peer's, per path (core/cids.py)
            local_cid=local_cid, limit=config.active_connection_id_limit, control=self._control,
            new_cid=lambda: entropy.random_bytes(CID_LENGTH) if is_client else new_cid(
                config, entropy), reset_token=reset_tokens(config, entropy),
            is_retired=lambda path_id: self.path_manager.is_forgotten(path_id))
        self.idle = IdleTimer(
            config.idle_timeout, config.keep_alive, lambda: bool(self.streams.streams), now=now
        )
        self.path_manager = PathManager(
            config,
            is_client=is_client,
            emit=emit,
            control=self._control,
            requeue=lambda packets: self.records.requeue(packets),
            stats=self.stats,
            new_controller=controller_factory(config.congestion_control, config.max_datagram_size),
            new_challenge=lambda: entropy.random_bytes(8),
            cids=self.cids,
        )
        self.paths: dict[int, Path] = self.path_manager.paths
        self.scheduler = create_scheduler(config.scheduler)
        self.datagrams = DatagramChannel(config.max_datagram_frame_size, emit, self.stats)
        self._wire_sending(peer_cid)
        self.sender.qos = self.qos = QoSEnforcer(  # routes, caps, violations (docs/qos.rst)
            streams=self.streams, paths=self.path_manager, emit=emit, stats=self.stats,
            max_datagram_size=lambda: self._out.max_datagram_size)
        if tracer is not None:  # qlog (core/trace.py): events, packets and recovery are traced
            self._events.handshake, self.sender.trace = self.handshake, self.trace
            self.qos.trace = self.trace
            self.keys.on_update = lambda gen, local, _: self.trace.key_updated(
                is_client, gen, local, self._now)
        path = self.path_manager.add(0, local_addr, remote_addr, validated=True, now=now)
        path.address_validated = is_client  # a server must not amplify before the handshake
        # Until the server has validated our address it may be stuck at its amplification limit
        # waiting for us: the client keeps probing even with nothing in flight (RFC 9002 6.2.2.1).
        path.recovery.probe_when_idle = is_client

    def _wire_sending(self, peer_cid: bytes) -> None:
        """The handshake, the packet assembler's view, the record router and the sender: they
        share the handshake send buffer and the control queue."""
        crypto_send = SendBuffer(1 << 30)
        self._out = PacketContext(
            is_client=self.is_client,
            local_cid=self.local_cid,
            peer_cid=peer_cid,
            max_datagram_size=min(self.config.max_datagram_size, DEFAULT_PEER_DATAGRAM_SIZE),
            keys=self.keys,
            crypto_send=crypto_send,
            control=self._control,
            streams=self.streams,
            stats=self.stats, datagrams=self.datagrams,
        )
        self.handshake = Handshake(
            self.tls,
            config=self.config,
            is_client=self.is_client,
            original_dcid=self.original_dcid,
            send=crypto_send,
            keys=self.keys,
            lifecycle=self.lifecycle,
            paths=self.path_manager,
            streams=self.streams,
            ctx=self._out,
            idle=self.idle,
            control=self._control,
            emit=self._events.append,
            local_parameters=lambda: local_parameters(self.config),
        )
        self.records = RecordRouter(
            streams=self.streams,
            crypto_send=crypto_send,
            control=self._control,
            ack_tracker=lambda path_id: getattr(self.paths.get(path_id), "ack", None),
            status_sequence=lambda: self.path_manager.status_sequence,
            stats=self.stats,
        )
        self.sender = Sender(
            ctx=self._out,
            paths=self.path_manager,
            scheduler=self.scheduler,
            records=self.records,
            idle=self.idle,
            entropy=self.entropy,
            stats=self.stats,
        )

    # -- construction ----------------------------------------------------------------

    @classmethod
    def client(
        cls,
        config: ConnectionConfig,
        *,
        local_addr: tuple,
        remote_addr: tuple,
        entropy: Entropy,
        now: float,
        tls_factory=None,
        new_tracer=None,
    ) -> Connection:
        """A client connection; its ClientHello is ready in :meth:`datagrams_to_send`.
        ``new_tracer(original_dcid)`` makes its qlog tracer (see :mod:`.trace`), if given."""
        from .crypto.handshake import TlsSession

        tls = (tls_factory or TlsSession)(config.tls, is_client=True)
        original_dcid = entropy.random_bytes(CID_LENGTH)
        conn = cls(
            config,
            is_client=True,
            entropy=entropy,
            tls=tls,
            local_cid=entropy.random_bytes(CID_LENGTH),
            peer_cid=original_dcid,
            original_dcid=original_dcid,
            local_addr=local_addr,
            remote_addr=remote_addr,
            now=now,
            tracer=new_tracer and new_tracer(original_dcid),
        )
        try:
            conn.handshake.start()
        except HandshakeFailed as e:
            conn._fail(e, now)
        return conn

    @classmethod
    def server(
        cls,
        config: ConnectionConfig,
        *,
        original_dcid: bytes,
        peer_cid: bytes,
        local_addr: tuple,
        remote_addr: tuple,
        entropy: Entropy,
        now: float,
        tls_factory=None,
        new_tracer=None,
        local_cid: bytes | None = None,
    ) -> Connection:
        """A server connection for a client whose first datagram named these CIDs (``local_cid``:
        ours, by default a fresh one laid out for load balancers, core/lb.py)."""
        from .crypto.handshake import TlsSession

        tls = (tls_factory or TlsSession)(config.tls, is_client=False)
        return cls(
            config,
            is_client=False,
            entropy=entropy,
            tls=tls,
            local_cid=local_cid or new_cid(config, entropy),
            peer_cid=peer_cid,
            original_dcid=original_dcid,
            local_addr=local_addr,
            remote_addr=remote_addr,
            now=now,
            tracer=new_tracer and new_tracer(original_dcid),
        )

    # -- public API: the owner's calls ---------------------------------------------------

    def receive_datagram(
        self, data: bytes, local_addr: tuple, remote_addr: tuple, *, now: float
    ) -> None:
        """
        Process one datagram that arrived from ``remote_addr`` on ``local_addr``.

        Call :meth:`datagrams_to_send`, :meth:`next_deadline` and :meth:`next_event` afterwards.
        """
        self._now = now
        if self.lifecycle.state is _CLOSED:
            return
        try:
            self._receive(data, local_addr, remote_addr, now)
        except DroppedPacket as e:
            self.stats["dropped_" + type(e).__name__] += 1
            if self.cids.is_reset(data):
                end_statelessly(self, ErrorCode.STATELESS_RESET, "stateless reset", now)
        except ProtocolError as e:
            self._fail(e, now)

    def datagrams_to_send(self, *, now: float) -> list[tuple[bytes, tuple, tuple]]:
        """Return ``(datagram, local_addr, remote_addr)`` triples to send now."""
        self._now = now
        lifecycle = self.lifecycle
        if not lifecycle.is_ending:
            if self.keys.phases is not None and self.keys.phases.exhausted:  # RFC 9001 6.6
                end_statelessly(self, ErrorCode.AEAD_LIMIT_REACHED, KEYS_USED_UP, now, False)
                return []
            return self.sender.send(now=now)
        frame = lifecycle.take_close() if lifecycle.state is _CLOSING else None
        return [] if frame is None else self.sender.send_close(frame, now=now)

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`handle_deadline` must be called, or ``None``."""
        deadlines = timers(self, now=self._now)
        return min((deadline for _kind, _path, deadline in deadlines), default=None)

    def handle_deadline(self, *, now: float) -> None:
        """Run the timers that are due at ``now`` (calling early is harmless)."""
        self._now = now
        lifecycle = self.lifecycle
        try:
            for kind, path, deadline in timers(self, now=now):
                if now >= deadline:
                    _TIMER_HANDLERS[kind](self, path, now)
                    if lifecycle.state is _CLOSED:
                        return
        except ProtocolError as e:  # a timer found the connection unusable (NO_VIABLE_PATH)
            self._fail(e, now)

    @property
    def has_events(self) -> bool:
        """Whether :meth:`next_event` has something."""
        return bool(self._events)

    def next_event(self) -> Event | None:
        """The next event for the application, or ``None``."""
        return self._events.popleft() if self._events else None

    # -- public API: the application's calls ----------------------------------------------

    def open_stream(self, *, priority: int = 0, ordered: bool = True, compress=None, qos=None,
                    paths=None, max_rate=None) -> int:
        """
        Open a bidirectional stream and return its ID.

        ``priority`` (0 normal, 1 high, 2 critical) rides on its every frame; ``ordered`` False
        lets the peer deliver pieces; ``compress`` ``None`` follows ``config.compression``;
        ``qos`` (a :class:`~kwik_twisted.wire.QosPolicy`) is announced to the peer and kept
        (docs/qos.rst); ``paths`` pins it (its frames use those paths while any is usable, others
        only while none is); ``max_rate`` caps our sending rate on it (bits per second).

        :raises ConfigurationError: ``paths`` names a path that is neither open nor pending.
        """
        pinned = check_path_ids(paths, self.path_manager)
        return self.streams.open(priority=priority, ordered=ordered, compress=compress, qos=qos,
                                 paths=pinned, max_rate=max_rate)

    def stream(self, stream_id: int) -> StreamView | None:
        """A read-only :class:`~kwik_twisted.core.streams.view.StreamView` of an open stream
        (priority, QoS, ordering, paths, progress), or ``None``; it reads the live stream, so one
        taken while the stream was open still answers after it closed, with the final figures."""
        return self.streams.view(stream_id)

    def update_stream(self, stream_id: int, *, priority=UNCHANGED, qos=UNCHANGED, paths=UNCHANGED,
                      max_rate=UNCHANGED) -> None:
        """
        Change a stream's priority, QoS policy or paths; an argument left out stays as it is.

        A priority applies to the frames we send from then on; a policy (``None`` withdraws it)
        goes to the peer on the stream's next frame; either makes the stream's priority and
        policy the local side's, which the peer's requests no longer change.  ``paths`` pins the
        stream as in :meth:`open_stream` (``None``: any path); ``max_rate`` sets or (``None``)
        lifts its rate cap.

        :raises StreamStateError: the stream is not open.
        :raises ConfigurationError: ``paths`` names a path that is neither open nor pending.
        :raises ValueError: a priority other than 0, 1 or 2.
        """
        if paths is not UNCHANGED:
            paths = check_path_ids(paths, self.path_manager)
        self.streams.update(stream_id, priority=priority, qos=qos, paths=paths, max_rate=max_rate)

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Queue ``data`` on a stream; ``end_stream`` sends FIN after it."""
        self.streams.write(stream_id, data, end_stream)

    def reset_stream(self, stream_id: int, error_code: int = 0) -> None:
        """Abandon our direction of a stream."""
        self.streams.reset(stream_id, error_code)

    def stop_sending(self, stream_id: int, error_code: int = 0) -> None:
        """Ask the peer to stop sending on a stream."""
        self.streams.stop_sending(stream_id, error_code)

    def pause_reading(self, stream_id: int, paused: bool = True) -> None:
        """Stop or resume delivering a stream's data (flow control pushes back on the peer)."""
        self.streams.pause(stream_id, paused, now=self._now)

    def stream_writable(self, stream_id: int) -> bool:
        """Whether a stream's send buffer has room (producers pause while it does not)."""
        return self.streams.writable(stream_id)

    def close(self, error_code: int = 0, reason: str = "", *, application: bool = True) -> None:
        """Close the connection: CONNECTION_CLOSE goes out, then the state drains away."""
        if self.lifecycle.is_ending:
            return
        frame = ConnectionCloseFrame(error_code, reason, application=application)
        self.lifecycle.close(frame, deadline=self._now + 3 * self.path_manager.pto())
        self._events.append(ConnectionTerminated(error_code, reason, False, None, application))

    def open_path(self, local_addr: tuple, remote_addr: tuple) -> int:
        """Open another path (client only); it carries data once validated. Returns its ID."""
        return self.path_manager.open(local_addr, remote_addr, now=self._now)

    def set_path_backup(self, path_id: int, backup: bool = True) -> None:
        """Mark a path as a backup (used only while no other path is usable), or not."""
        self.path_manager.set_backup(path_id, backup)
        self.trace is None or self.trace.path_backup(path_id, backup, self._now)

    def abandon_path(self, path_id: int, error_code: int = 0) -> None:
        """Stop using a path for good."""
        self.path_manager.abandon(path_id, error_code, now=self._now)

    def path_metrics(self) -> dict[int, PathMetrics]:
        """A snapshot of every live path's metrics (the seed's PathMetrics), by path ID."""
        return self.path_manager.metrics(now=self._now)

    # -- public API: reading ------------------------------------------------------------

    @property
    def state(self) -> State:
        """The lifecycle :class:`State`."""
        return self.lifecycle.state

    @property
    def is_closed(self) -> bool:
        """Whether the connection is gone (nothing more will be sent)."""
        return self.lifecycle.state is _CLOSED

    @property
    def handshake_complete(self) -> bool:
        """Whether application keys exist."""
        return self.keys.complete

    @property
    def handshake_confirmed(self) -> bool:
        """Whether the handshake is confirmed (HANDSHAKE_DONE sent or received)."""
        return self.keys.confirmed

    @property
    def idle_timeout(self) -> float:
        """The idle timeout in force: ours, or the peer's once its parameters say it is shorter."""
        return self.idle.timeout

    @property
    def peer_cid(self) -> bytes:
        """The peer's CID: our random guess until the server's own arrives (client side)."""
        return self._out.peer_cid

    @property
    def max_datagram_size(self) -> int:
        """The largest datagram we send: ours, and the peer's limit once its parameters say."""
        return self._out.max_datagram_size

    @property
    def peer_max_paths(self) -> int:
        """The peer's ``max_paths`` (its default until its parameters arrive)."""
        return self.path_manager.peer_max_paths

    @peer_max_paths.setter
    def peer_max_paths(self, value: int) -> None:
        self.path_manager.peer_max_paths = value

    @property
    def early_bytes(self) -> int:
        """Bytes of not-yet-decryptable datagrams held until the application keys exist."""
        return self.keys.early_bytes

    def send_keys(self, epoch: int) -> PacketProtection:
        """The sealing keys for ``epoch`` (test peers use them to forge well-sealed packets)."""
        return self.keys.send_keys(epoch)

    # -- receiving -------------------------------------------------------------------

    def _receive(self, data: bytes, local_addr: tuple, remote_addr: tuple, now: float) -> None:
        if data and data[0] & 0x80 and data[0] != INITIAL_BYTE:  # a Retry or a Version Negotiation
            return on_long_answer(self, data, now)
        packet = decode_packet(data)
        header = packet.header
        if header.scid is None:  # a short envelope: the path is the one its DCID names
            header.path_id = self.cids.path_of(header.dcid)
        keys = self.keys.header_keys(header, data, local_addr, remote_addr)
        path = self.paths.get(header.path_id)
        if path is None:
            path = self._new_peer_path(packet, keys, local_addr, remote_addr, now)
        if path.ack.is_duplicate(header.seq):
            raise DroppedPacket("duplicate or replayed packet")
        plaintext = keys.open(header.path_id, header.seq, packet.aad, packet.payload)
        if self.is_client and header.scid is not None and not self._peer_cid_learned:
            self._out.peer_cid = header.scid  # the server's own CID replaces our random first guess
            self._peer_cid_learned = True
        lifecycle = self.lifecycle
        if lifecycle.is_ending:
            lifecycle.on_packet()  # answer with CLOSE again (CLOSING), no more
            return
        self.keys.on_authenticated(header.epoch, now, header.key_phase)
        self._on_authenticated(path, len(data), remote_addr, header, now)
        frames = decode_payload(
            plaintext,
            frame_count=header.frame_count,
            packet_type=header.packet_type,
            compression=header.compression,
            epoch=header.epoch,
        )
        self._receiving_epoch = header.epoch
        if self.trace is not None:
            self.trace.packet_received(header, len(data), frames, now)
        eliciting = False
        for frame in frames:
            if type(frame) is StreamFrame:  # the bulk and small packets' data: no general dispatch
                _on_stream_frame(self.streams, frame, now)
                eliciting = True
            else:
                eliciting = self._on_frame(frame, path, now) or eliciting
        path.ack.on_received(header.seq, eliciting, now=now)
        if lifecycle.state is _CLOSING:
            lifecycle.on_packet()
        if self.keys.replay_due:  # the handshake completed in this packet
            for early in self.keys.take_early():
                self.receive_datagram(*early, now=now)

    def _new_peer_path(self, packet, keys, local_addr: tuple, remote_addr: tuple, now: float):
        """A packet names a path we do not know: accept it if it authenticates (server side)."""
        header = packet.header
        if header.epoch != _APPLICATION or self.is_client:
            raise MalformedPacket(f"unknown path {header.path_id}")
        keys.open(header.path_id, header.seq, packet.aad, packet.payload)  # raises if forged
        path = self.path_manager.accept(header.path_id, local_addr, remote_addr, now=now)
        if path is None:
            raise MalformedPacket(f"path {header.path_id} refused")
        return path

    def _on_authenticated(
        self, path: Path, size: int, remote_addr: tuple, header, now: float
    ) -> None:
        self.idle.last_received = now
        path.packets_received += 1
        self.path_manager.on_heard(path, header.packet_type, header.seq, now=now)
        if (
            remote_addr != path.remote_addr
            and header.seq > path.ack.largest
            and header.epoch == _APPLICATION
        ):
            self.path_manager.on_rebinding(path, remote_addr)
        path.bytes_received += size

    def _on_frame(self, frame, path: Path, now: float) -> bool:
        """Handle one frame; return whether it was ack-eliciting."""
        if isinstance(frame, StreamFrame):
            _on_stream_frame(self.streams, frame, now)
            return True
        handler = _HANDLERS.get(frame.type)
        try:
            handler(self, frame, path, now)
        except ProtocolError as e:
            if e.frame_type is None:
                e.frame_type = frame.type
            raise
        return frame.ack_eliciting

    # -- timers and closing ------------------------------------------------------------

    def _fail(self, error: ProtocolError, now: float) -> None:
        """The one place a protocol error ends the connection."""
        if self.lifecycle.is_ending:
            return
        self.stats["protocol_errors"] += 1
        frame_type = error.frame_type if error.frame_type is not None else 0x3F
        frame = ConnectionCloseFrame(error.code, error.reason, frame_type)
        self.lifecycle.close(frame, deadline=now + 3 * self.path_manager.pto())
        self._events.append(
            ConnectionTerminated(error.code, error.reason, False, error.frame_type, False)
        )


def _on_stream_frame(streams: StreamManager, frame: StreamFrame, now: float) -> None:
    try:
        streams.on_stream_frame(frame, now=now)
    except ProtocolError as e:
        e.frame_type = FRAME_TYPE_STREAM if e.frame_type is None else e.frame_type
        raise


def _on_connection_close(conn: Connection, frame: ConnectionCloseFrame, path, now: float) -> None:
    lifecycle = conn.lifecycle
    if lifecycle.state is _CLOSED:
        return
    ending = lifecycle.is_ending
    lifecycle.peer_closed(deadline=now + 3 * conn.path_manager.pto())
    if not ending:
        conn._events.append(
            ConnectionTerminated(
                frame.error_code, frame.reason, True, frame.frame_type, frame.application
            )
        )


def _on_idle_timeout(conn: Connection, path: None, now: float) -> None:
    conn._events.append(
        ConnectionTerminated(ErrorCode.IDLE_TIMEOUT, "idle timeout", False, None, False)
    )
    conn.lifecycle.idle_timeout()


def _on_keep_alive(conn: Connection, path: None, now: float) -> None:
    # Counted as done even if no path can carry the PING now (none usable, or no
    # amplification room): the next one is an interval away, never a deadline left due.
    conn.idle.pinged = now
    conn.path_manager.probe_usable()


def _ignore(conn: Connection, frame, path: Path, now: float) -> None:
    """Frames with nothing to do (PING, PADDING) or not used yet."""


#: What each control frame does, by type (STREAM frames are handled before this table).
_HANDLERS = {
    ControlType.PADDING: _ignore,
    ControlType.PING: _ignore,
    ControlType.ACK: lambda c, f, p, now: c.sender.on_ack(f, c._receiving_epoch, now=now),
    ControlType.HANDSHAKE: lambda c, f, p, now: c.handshake.on_frame(f, now=now),
    ControlType.RESET_STREAM: lambda c, f, p, now: c.streams.on_reset_stream(f, now=now),
    ControlType.STOP_SENDING: lambda c, f, p, now: c.streams.on_stop_sending(f),
    ControlType.MAX_DATA: lambda c, f, p, now: c.streams.on_max_data(f),
    ControlType.MAX_STREAM_DATA: lambda c, f, p, now: c.streams.on_max_stream_data(f),
    ControlType.MAX_STREAMS: lambda c, f, p, now: c.streams.on_max_streams(f),
    ControlType.DATA_BLOCKED: _ignore,
    ControlType.STREAM_DATA_BLOCKED: lambda c, f, p, now: c.streams.on_stream_data_blocked(f),
    ControlType.STREAMS_BLOCKED: _ignore,
    ControlType.NEW_CONNECTION_ID: on_new_connection_id,
    ControlType.RETIRE_CONNECTION_ID: on_retire_connection_id,
    ControlType.PATH_CHALLENGE: lambda c, f, p, now: p.validation.on_challenge(f.data),
    ControlType.PATH_RESPONSE: lambda c, f, p, now: c.path_manager.on_response(p, f.data, now=now),
    ControlType.PATH_STATUS: lambda c, f, p, now: c.path_manager.on_status(f),
    ControlType.PATH_ABANDON: lambda c, f, p, now: c.path_manager.on_abandon(f, now=now),
    ControlType.ADD_ADDRESS: lambda c, f, p, now: c.path_manager.on_add_address(f, now=now),
    ControlType.CONNECTION_CLOSE: _on_connection_close,
    ControlType.HANDSHAKE_DONE: lambda c, f, p, now: c.handshake.on_done(),
    ControlType.TRANSPORT_PARAMETERS: lambda c, f, p, now: c.handshake.on_parameters(f, now=now),
    ControlType.DATAGRAM: lambda c, f, p, now: c.datagrams.on_frame(f),
}

#: What each timer does when due (:func:`~kwik_twisted.core.timers.timers` says when).
_TIMER_HANDLERS = {
    TimerKind.CLOSE: lambda c, p, now: c.lifecycle.drained(),
    TimerKind.IDLE: _on_idle_timeout,
    TimerKind.KEEP_ALIVE: _on_keep_alive,
    TimerKind.LOSS_DETECTION: lambda c, p, now: c.sender.on_loss_timer(p, now=now),
    TimerKind.PATH_PROBE: lambda c, p, now: c.path_manager.on_probe_due(p, now=now),
    TimerKind.ACK_DELAY: lambda c, p, now: p.ack.on_delay_expired(),
    TimerKind.PATH_CHALLENGE: lambda c, p, now: c.path_manager.on_challenge_timeout(p, now=now),
    TimerKind.PACING: lambda c, p, now: None,  # a wake-up: datagrams_to_send does the sending
    TimerKind.SHAPER: lambda c, p, now: None,  # a wake-up: the send round unparks capped streams
}

