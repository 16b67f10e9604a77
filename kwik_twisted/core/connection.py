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
    is
counted and forgotten; a :class:`~kwik_twisted.errors.ProtocolError` is caught in exactly one place
(:meth:`receive_datagram`), which sends CONNECTION_CLOSE with its code and emits
:class:`~kwik_twisted.events.ConnectionTerminated`.

Lifecycle (RFC 9000 §10 adapted): HANDSHAKE → ESTABLISHED → CLOSING (we closed) or DRAINING (the
peer did) → CLOSED after three PTOs; an idle timeout goes straight to CLOSED.  The handshake is TLS
1.3 in HANDSHAKE frames (protocol.rst, "Handshake"); paths are
:class:`~kwik_twisted.core.paths.path.Path` objects from the first line, path 0 being the
handshake's.
"""

from __future__ import annotations

from collections import Counter, deque
from enum import Enum

from ..config import KEEP_ALIVE_AUTO, ConnectionConfig
from ..errors import (
    ConfigurationError,
    DecryptionFailed,
    DroppedPacket,
    ErrorCode,
    FlowControlError,
    HandshakeBufferExceeded,
    HandshakeFailed,
    MalformedPacket,
    ProtocolError,
    ProtocolViolation,
    TransportParameterError,
)
from ..events import (
    ConnectionTerminated,
    Event,
    HandshakeCompleted,
)
from ..wire import (
    CID_LENGTH,
    FRAME_TYPE_STREAM,
    AckFrame,
    AddAddressFrame,
    ConnectionCloseFrame,
    ControlType,
    Epoch,
    HandshakeDoneFrame,
    HandshakeFrame,
    PathAbandonFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PathStatusFrame,
    StreamFrame,
    TransportParameter,
    TransportParametersFrame,
    decode_packet,
    decode_payload,
)
from .congestion import create as create_controller
from .congestion.coupled import CoupledGroup
from .crypto.protection import PacketProtection, initial_protections
from .entropy import Entropy, random_below
from .paths.manager import PathManager
from .paths.metrics import PathMetrics, PathMetricsTracker
from .paths.path import MAX_CHALLENGE_ATTEMPTS, Path, PathPhase
from .paths.scheduler import FrameRequirements
from .paths.scheduler import create as create_scheduler
from .recovery.loss import LossRecovery, SentPacket
from .recovery.pacing import Pacer
from .recovery.rtt import RttEstimator
from .sending import AckRecord, HandshakeRecord, build_packet
from .streams.manager import (
    DEFAULT_MAX_DATA,
    DEFAULT_MAX_STREAM_DATA,
    DEFAULT_MAX_STREAMS,
    StreamManager,
    StreamRecord,
)
from .streams.reassembly import Reassembler
from .streams.sendbuffer import SendBuffer

#: Handshake bytes buffered past the read offset at most (protocol.rst, HANDSHAKE).
MAX_HANDSHAKE_BUFFER = 64 * 1024
#: Undecryptable application packets a server holds until its keys exist, and their bytes at most:
#: an honest client's first application flight (its initial window, ten packets) can overtake its
#: Finished; nothing in this queue is authenticated, so a forger must not be able to grow it.
MAX_EARLY_PACKETS = 16
MAX_EARLY_BYTES = 24 * 1024
#: One in this many packets skips a sequence number (optimistic-ACK defence).
SKIP_ONE_IN = 256
#: The peer's max_paths and max_datagram_size until its transport parameters arrive.
DEFAULT_PEER_MAX_PATHS = 4
DEFAULT_PEER_DATAGRAM_SIZE = 1350
MIN_DATAGRAM_SIZE = 1200
#: Controllers that couple the paths of a connection (they share a group).
COUPLED = frozenset({"lia", "olia"})
#: Packets sent in one go per path before the owner gets control back.
BURST_LIMIT = 64


class State(Enum):
    """Connection lifecycle states."""

    HANDSHAKE = "handshake"
    ESTABLISHED = "established"
    CLOSING = "closing"
    DRAINING = "draining"
    CLOSED = "closed"


# Plain names for the per-packet path: an Enum member lookup costs about 80 ns in CPython 3.11.
_CLOSED, _CLOSING, _DRAINING = State.CLOSED, State.CLOSING, State.DRAINING
_INITIAL, _APPLICATION = int(Epoch.INITIAL), int(Epoch.APPLICATION)


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
    ) -> None:
        _check_config(config)
        self.config = config
        self.is_client = is_client
        self.entropy = entropy
        self.tls = tls
        self.local_cid = local_cid
        self.peer_cid = peer_cid
        self.original_dcid = original_dcid
        self.state = State.HANDSHAKE
        self.paths: dict[int, Path] = {}
        self.stats: Counter[str] = Counter()
        self._events: deque[Event] = deque()
        self.streams = StreamManager(is_client=is_client, emit=self._events.append, config=config)
        self.crypto_send = SendBuffer(1 << 30)
        self.crypto_recv = Reassembler(MAX_HANDSHAKE_BUFFER)
        self._initial_send, self._initial_recv = initial_protections(
            original_dcid, is_client=is_client
        )
        self._app_send: PacketProtection | None = None
        self._app_recv: PacketProtection | None = None
        self._early: list[tuple[bytes, tuple, tuple]] = []
        self._early_bytes = 0
        self._control: deque = deque()  # connection-level control frames (reliable)
        self._handshake_confirmed = False
        self._replay_early = False
        self._peer_has_app_keys = False
        self._receiving_epoch = Epoch.INITIAL
        #: The first sequence number sent on path 0 under application keys: an ACK that arrives
        #: under (public) initial keys may acknowledge nothing from there on.
        self._first_app_seq: int | None = None
        self._peer_max_ack_delay = config.max_ack_delay
        self._peer_cid_learned = not is_client
        self._peer_params: dict[int, int] | None = None
        #: The peer's limits (protocol.rst, "Transport parameters"): its defaults until its
        #: parameters arrive.  Datagrams we send are at most ``max_datagram_size``.
        self.peer_max_paths = DEFAULT_PEER_MAX_PATHS
        self.max_datagram_size = min(config.max_datagram_size, DEFAULT_PEER_DATAGRAM_SIZE)
        self._idle_timeout = config.idle_timeout
        self._last_received = now
        self._last_sent = now
        self._keep_alive_at = now
        self._close_frame: ConnectionCloseFrame | None = None
        self._close_pending = False
        self._close_deadline: float | None = None
        self._now = now
        self._skip_countdown = 1 + random_below(entropy, 2 * SKIP_ONE_IN)
        self._coupled_group = CoupledGroup()
        self.path_manager = PathManager(self)
        self.scheduler = create_scheduler(config.scheduler)
        self._requirements = FrameRequirements()
        path = self._add_path(0, local_addr, remote_addr, validated=True, now=now)
        path.address_validated = is_client  # a server must not amplify before the handshake
        # Until the server has validated our address it may be stuck at its amplification limit
        # waiting for us: the client keeps probing even with nothing in flight (RFC 9002 6.2.2.1).
        path.recovery.probe_when_idle = is_client

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
    ) -> Connection:
        """A client connection; its ClientHello is ready in :meth:`datagrams_to_send`."""
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
        )
        conn._start_handshake()
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
    ) -> Connection:
        """A server connection for a client whose first datagram named these CIDs."""
        from .crypto.handshake import TlsSession

        tls = (tls_factory or TlsSession)(config.tls, is_client=False)
        return cls(
            config,
            is_client=False,
            entropy=entropy,
            tls=tls,
            local_cid=entropy.random_bytes(CID_LENGTH),
            peer_cid=peer_cid,
            original_dcid=original_dcid,
            local_addr=local_addr,
            remote_addr=remote_addr,
            now=now,
        )

    def _start_handshake(self) -> None:
        try:
            hello = self.tls.start()
        except HandshakeFailed as e:
            self._fail(e, self._now)
            return
        if hello:
            self.crypto_send.write(hello)

    def _add_path(
        self, path_id: int, local_addr: tuple, remote_addr: tuple, *, validated: bool, now: float
    ) -> Path:
        cfg = self.config
        controller = self._new_controller()
        # A new path of a running connection starts from the best RTT the connection knows.
        known = [
            p.recovery.rtt.smoothed_rtt for p in self.paths.values() if p.recovery.rtt.has_sample
        ]
        rtt = RttEstimator(min(known) if known else cfg.initial_rtt)
        recovery = LossRecovery(
            controller, rtt, max_ack_delay=self._peer_max_ack_delay, handshake_confirmed=False
        )
        pacer = Pacer(cwnd=controller.cwnd, srtt=0.0, max_datagram_size=cfg.max_datagram_size)
        path = Path(
            path_id,
            local_addr,
            remote_addr,
            recovery=recovery,
            pacer=pacer,
            max_ack_delay=cfg.max_ack_delay,
            validated=validated,
            now=now,
        )
        path.metrics = PathMetricsTracker(now=now, usable=path.usable)
        self.paths[path_id] = path
        return path

    def _new_controller(self):
        cfg = self.config
        extra = {"group": self._coupled_group} if cfg.congestion_control in COUPLED else {}
        return create_controller(
            cfg.congestion_control, max_datagram_size=cfg.max_datagram_size, **extra
        )

    def _reset_congestion(self, path: Path) -> None:
        """Fresh congestion state for a path that came back from failure."""
        leave = getattr(path.recovery.controller, "leave", None)
        if leave is not None:
            leave()
        path.recovery.controller = self._new_controller()
        path.pacer.update(cwnd=path.recovery.controller.cwnd, srtt=path.recovery.rtt.smoothed_rtt)

    # -- public API: the owner's calls ---------------------------------------------------

    def receive_datagram(
        self, data: bytes, local_addr: tuple, remote_addr: tuple, *, now: float
    ) -> None:
        """
        Process one datagram that arrived from ``remote_addr`` on ``local_addr``.

        Call :meth:`datagrams_to_send`, :meth:`next_deadline` and :meth:`next_event` afterwards.
        """
        self._now = now
        if self.state is _CLOSED:
            return
        try:
            self._receive(data, local_addr, remote_addr, now)
        except DroppedPacket as e:
            self.stats["dropped_" + type(e).__name__] += 1
        except ProtocolError as e:
            self._fail(e, now)

    def datagrams_to_send(self, *, now: float) -> list[tuple[bytes, tuple, tuple]]:
        """Return ``(datagram, local_addr, remote_addr)`` triples to send now."""
        self._now = now
        if self.state is _CLOSED or self.state is _DRAINING:
            return []
        if self.state is _CLOSING:
            return self._send_close(now)
        out: list[tuple[bytes, tuple, tuple]] = []
        paths = self.paths
        if len(paths) == 1:
            for path in paths.values():
                self._send_on_path(path, out, now)
            return out
        live = [p for p in paths.values() if p.phase is not PathPhase.ABANDONED]
        self._send_multipath(live, out, now)
        return out

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`handle_deadline` must be called, or ``None``."""
        if self.state is State.CLOSED:
            return None
        if self._close_deadline is not None:
            return self._close_deadline
        now = self._now
        deadlines = [self._last_received + self._idle_timeout]
        keep_alive = self._keep_alive_deadline()
        if keep_alive is not None:
            deadlines.append(keep_alive)
        for path in self.paths.values():
            loss = path.recovery.deadline(now=now)
            if loss is not None:
                deadlines.append(loss)
            if path.ack.ack_deadline is not None:
                deadlines.append(path.ack.ack_deadline)
            if path.challenge_sent_at is not None:
                deadlines.append(path.challenge_sent_at + 3 * path.recovery.rtt.pto_interval())
            if path.pacing_deadline is not None:
                deadlines.append(path.pacing_deadline)
            probe = self.path_manager.deadline(path)  # a failed path's probe, a silent path's
            if probe is not None:
                deadlines.append(probe)
        return min(deadlines)

    def handle_deadline(self, *, now: float) -> None:
        """Run the timers that are due at ``now`` (calling early is harmless)."""
        self._now = now
        if self.state is State.CLOSED:
            return
        if self._close_deadline is not None:
            if now >= self._close_deadline:
                self.state = State.CLOSED
            return
        if now >= self._last_received + self._idle_timeout:
            self._terminate(ErrorCode.IDLE_TIMEOUT, "idle timeout", by_peer=False)
            self.state = State.CLOSED
            return
        keep_alive = self._keep_alive_deadline()
        if keep_alive is not None and now >= keep_alive:
            # Counted as done even if no path can carry the PING now (none usable, or no
            # amplification room): the next one is an interval away, never a deadline left due.
            self._keep_alive_at = now
            for path in self.paths.values():
                if path.usable:
                    path.probes_pending = max(path.probes_pending, 1)
        try:
            for path in list(self.paths.values()):
                if path.phase is not PathPhase.ABANDONED:
                    self._path_timers(path, now)
        except ProtocolError as e:  # a timer found the connection unusable (NO_VIABLE_PATH)
            self._fail(e, now)

    def _keep_alive_deadline(self) -> float | None:
        """
        When the next keep-alive PING is due, or ``None`` when none is.

        An explicit ``keep_alive`` interval pings whenever the connection is quiet that long.  The
        default, :data:`~kwik_twisted.config.KEEP_ALIVE_AUTO`, pings at a third of the negotiated
        idle timeout while at least one stream is open: a connection with work in progress (a
        tunnel, an idle SSH session) ends only when the peer is really gone, while one with no
        stream still idles out.  Three pings per timeout survive two losses in a row.
        """
        if self.state is not State.ESTABLISHED:
            return None
        interval = self.config.keep_alive
        if interval == KEEP_ALIVE_AUTO:
            if not self.streams.streams:
                return None
            interval = self._idle_timeout / 3
        elif interval is None:
            return None
        return max(self._last_sent, self._last_received, self._keep_alive_at) + interval

    @property
    def has_events(self) -> bool:
        """Whether :meth:`next_event` has something."""
        return bool(self._events)

    def next_event(self) -> Event | None:
        """The next event for the application, or ``None``."""
        return self._events.popleft() if self._events else None

    # -- public API: the application's calls ----------------------------------------------

    def open_stream(
        self, *, priority: int = 0, ordered: bool = True, compress: bool | None = None, qos=None
    ) -> int:
        """Open a bidirectional stream and return its ID."""
        return self.streams.open(priority=priority, ordered=ordered, compress=compress, qos=qos)

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

    def stream_delivers_pieces(self, stream_id: int) -> bool:
        """
        Whether a stream's data arrives as pieces in arrival order (each event with its offset)
        rather than as the in-order byte stream; ``False`` for a stream that is gone.

        That is the receiver's choice made at the stream's first frame (protocol.rst, "Receive
        ordering and resets"), not the peer's ORDERED flag.
        """
        return self.streams.delivers_pieces(stream_id)

    @property
    def idle_timeout(self) -> float:
        """The idle timeout in force: ours, or the peer's once its parameters say it is shorter."""
        return self._idle_timeout

    def stream_writable(self, stream_id: int) -> bool:
        """Whether a stream's send buffer has room (producers pause while it does not)."""
        return self.streams.writable(stream_id)

    def close(self, error_code: int = 0, reason: str = "", *, application: bool = True) -> None:
        """Close the connection: CONNECTION_CLOSE goes out, then the state drains away."""
        if self.state in (State.CLOSING, State.DRAINING, State.CLOSED):
            return
        self._begin_closing(
            ConnectionCloseFrame(error_code, reason, application=application), self._now
        )
        self._terminate(error_code, reason, by_peer=False, application=application)

    def open_path(self, local_addr: tuple, remote_addr: tuple) -> int:
        """Open another path (client only); it carries data once validated. Returns its ID."""
        return self.path_manager.open(local_addr, remote_addr, now=self._now)

    def set_path_backup(self, path_id: int, backup: bool = True) -> None:
        """Mark a path as a backup (used only while no other path is usable), or not."""
        self.path_manager.set_backup(path_id, backup)

    def abandon_path(self, path_id: int, error_code: int = 0) -> None:
        """Stop using a path for good."""
        self.path_manager.abandon(path_id, error_code, now=self._now)

    @property
    def handshake_confirmed(self) -> bool:
        """Whether the handshake is confirmed (HANDSHAKE_DONE sent or received)."""
        return self._handshake_confirmed

    @property
    def peer_parameters_known(self) -> bool:
        """Whether the peer's TRANSPORT_PARAMETERS arrived (they follow its handshake)."""
        return self._peer_params is not None

    @property
    def handshake_complete(self) -> bool:
        """Whether application keys exist."""
        return self._app_send is not None

    @property
    def is_closed(self) -> bool:
        """Whether the connection is gone (nothing more will be sent)."""
        return self.state is State.CLOSED

    # -- receiving -------------------------------------------------------------------

    def _receive(self, data: bytes, local_addr: tuple, remote_addr: tuple, now: float) -> None:
        packet = decode_packet(data)
        header = packet.header
        if header.epoch == _INITIAL:
            # Initial keys are public to anyone who saw the first datagram: once the handshake no
            # longer needs them, nothing under them is believed (a forged CLOSE, ACK or rebinding).
            if header.path_id != 0 or self._initial_retired():
                raise DroppedPacket("initial-key packet after the handshake, or off path 0")
            keys = self._initial_recv
        else:
            keys = self._app_recv
        if keys is None:
            # The client's first application packets (on any path) can overtake its Finished.
            if not self.is_client:
                self._hold_early(data, local_addr, remote_addr)
            raise DecryptionFailed("no application keys yet")
        path = self.paths.get(header.path_id)
        if path is None:
            path = self._new_peer_path(packet, keys, local_addr, remote_addr, now)
        if path.ack.is_duplicate(header.seq):
            raise DroppedPacket("duplicate or replayed packet")
        plaintext = keys.open(header.path_id, header.seq, packet.aad, packet.payload)
        if self.is_client and header.scid is not None and not self._peer_cid_learned:
            self.peer_cid = header.scid  # the server's own CID replaces our random first guess
            self._peer_cid_learned = True
        if self.state is _CLOSING or self.state is _DRAINING:
            self._close_pending = self.state is _CLOSING  # answer with CLOSE again, no more
            return
        if header.epoch == _APPLICATION:
            self._peer_has_app_keys = True
        self._on_authenticated(path, len(data), remote_addr, header, now)
        frames = decode_payload(
            plaintext,
            frame_count=header.frame_count,
            packet_type=header.packet_type,
            compression=header.compression,
            epoch=header.epoch,
        )
        self._receiving_epoch = header.epoch
        if len(frames) == 1 and type(frames[0]) is StreamFrame:
            self._on_stream_frame(frames[0], now)  # the bulk packet, without the general dispatch
            eliciting = True
        else:
            eliciting = False
            for frame in frames:
                eliciting = self._on_frame(frame, path, now) or eliciting
        path.ack.on_received(header.seq, eliciting, now=now)
        if self.state is _CLOSING:
            self._close_pending = True
        if self._replay_early:
            self._replay_early = False
            early, self._early = self._early, []
            self._early_bytes = 0
            for data, local_addr, remote_addr in early:
                self.receive_datagram(data, local_addr, remote_addr, now=now)

    def _hold_early(self, data: bytes, local_addr: tuple, remote_addr: tuple) -> None:
        """Keep a datagram that may be the client's application data overtaking its Finished,
        within :data:`MAX_EARLY_PACKETS` and :data:`MAX_EARLY_BYTES`; drop it (counted) beyond."""
        if (
            len(self._early) >= MAX_EARLY_PACKETS
            or self._early_bytes + len(data) > MAX_EARLY_BYTES
        ):
            self.stats["early_dropped"] += 1
            return
        self._early.append((data, local_addr, remote_addr))
        self._early_bytes += len(data)

    @property
    def early_bytes(self) -> int:
        """Bytes of not-yet-decryptable datagrams held until the application keys exist."""
        return self._early_bytes

    def _initial_retired(self) -> bool:
        """Whether initial-key packets are no longer accepted (the handshake is confirmed)."""
        return self._handshake_confirmed

    def _new_peer_path(self, packet, keys, local_addr: tuple, remote_addr: tuple, now: float):
        """A packet names a path we do not know: accept it if it authenticates (server side)."""
        header = packet.header
        if keys is None or header.epoch != Epoch.APPLICATION or self.is_client:
            raise MalformedPacket(f"unknown path {header.path_id}")
        keys.open(header.path_id, header.seq, packet.aad, packet.payload)  # raises if forged
        path = self.path_manager.accept(header.path_id, local_addr, remote_addr, now=now)
        if path is None:
            raise MalformedPacket(f"path {header.path_id} refused")
        return path

    def _on_authenticated(
        self, path: Path, size: int, remote_addr: tuple, header, now: float
    ) -> None:
        self._last_received = now
        path.last_activity = now
        path.packets_received += 1
        self.path_manager.on_heard(path, header.packet_type, header.seq, now=now)
        if (
            remote_addr != path.remote_addr
            and header.seq > path.ack.largest
            and header.epoch == _APPLICATION
        ):
            self._on_rebinding(path, remote_addr)
        path.bytes_received += size

    def _on_rebinding(self, path: Path, remote_addr: tuple) -> None:
        """The peer's address changed (NAT rebinding): revalidate before trusting it."""
        self.stats["rebindings"] += 1
        path.remote_addr = remote_addr
        path.address_validated = False
        path.bytes_received = path.bytes_sent = 0
        self._challenge(path)

    def _on_stream_frame(self, frame: StreamFrame, now: float) -> None:
        try:
            self.streams.on_stream_frame(frame, now=now)
        except ProtocolError as e:
            e.frame_type = FRAME_TYPE_STREAM if e.frame_type is None else e.frame_type
            raise

    def _on_frame(self, frame, path: Path, now: float) -> bool:
        """Handle one frame; return whether it was ack-eliciting."""
        if isinstance(frame, StreamFrame):
            self._on_stream_frame(frame, now)
            return True
        handler = _HANDLERS.get(frame.type)
        try:
            handler(self, frame, path, now)
        except ProtocolError as e:
            if e.frame_type is None:
                e.frame_type = frame.type
            raise
        return frame.ack_eliciting

    def _on_ack(self, frame: AckFrame, path: Path, now: float) -> None:
        target = self.paths.get(frame.path_id)
        if target is None:
            if frame.path_id < self.path_manager.next_path_id or (
                frame.path_id <= self.path_manager.highest_peer_path
            ):
                return  # a path abandoned and forgotten: its late ACKs mean nothing now
            raise ProtocolViolation(f"ACK for unknown path {frame.path_id}")
        ranges = frame.ranges
        if self._receiving_epoch == Epoch.INITIAL and self._first_app_seq is not None:
            ranges = _clip_ranges(ranges, self._first_app_seq)
            if not ranges:
                return
        recovery = target.recovery
        result = recovery.on_ack_received(ranges, frame.ack_delay / 1e6, now=now)
        acked = self._on_packets_acked(target, result.newly_acked)
        if acked:
            target.metrics.on_ack(
                acked,
                now=now,
                packets=len(result.newly_acked),
                smoothed_rtt=recovery.rtt.smoothed_rtt,
            )
            self.scheduler.on_acked(target, acked, now=now)
        if result.lost:
            self._on_packets_lost(target, result.lost)
        if recovery.rtt.has_sample:
            target.pacer.update(cwnd=recovery.controller.cwnd, srtt=recovery.rtt.smoothed_rtt)
            self.streams.rtt = recovery.rtt.smoothed_rtt

    def _on_handshake_frame(self, frame: HandshakeFrame, path: Path, now: float) -> None:
        try:
            self.crypto_recv.insert(frame.offset, frame.data)
        except FlowControlError:
            raise HandshakeBufferExceeded("more than 64 KiB of handshake data buffered") from None
        data = self.crypto_recv.read()
        if not data:
            return
        was_complete = self.tls.complete
        out = self.tls.receive(data)
        if out:
            self.crypto_send.write(out)
        if self.tls.complete and not was_complete:
            self._on_handshake_complete(now)

    def _on_handshake_complete(self, now: float) -> None:
        context = self.original_dcid + (
            self.local_cid + self.peer_cid if self.is_client else self.peer_cid + self.local_cid
        )
        self._app_send, self._app_recv = self.tls.application_protections(context)
        self.state = State.ESTABLISHED
        self._control.appendleft(TransportParametersFrame(self._transport_parameters()))
        if not self.is_client:
            self._handshake_confirmed = True
            self._control.append(HandshakeDoneFrame())
            self.path_manager.advertise()
            for path in self.paths.values():  # only path 0 can exist before the handshake ends
                path.address_validated = True
            self._confirm_recovery()
        cert = self.tls.peer_certificate
        subject = cert.subject.rfc4514_string() if cert is not None else None
        self._events.append(HandshakeCompleted(self.tls.alpn, self.tls.cipher, subject))
        self._replay_early = True  # after the packet being processed, not inside its handler

    def _confirm_recovery(self) -> None:
        for path in self.paths.values():
            path.recovery.handshake_confirmed = True
            path.recovery.probe_when_idle = False

    def _on_handshake_done(self, frame, path: Path, now: float) -> None:
        if not self.is_client:
            raise ProtocolViolation("a client sent HANDSHAKE_DONE")
        self._handshake_confirmed = True
        self._confirm_recovery()

    def _on_transport_parameters(
        self, frame: TransportParametersFrame, path: Path, now: float
    ) -> None:
        params = frame.parameters
        if self._peer_params is not None:
            if params != self._peer_params:
                raise ProtocolViolation("TRANSPORT_PARAMETERS changed")
            return
        self._peer_params = params
        max_data = params.get(TransportParameter.INITIAL_MAX_DATA, DEFAULT_MAX_DATA)
        stream_data = params.get(
            TransportParameter.INITIAL_MAX_STREAM_DATA, DEFAULT_MAX_STREAM_DATA
        )
        max_streams = params.get(TransportParameter.INITIAL_MAX_STREAMS, DEFAULT_MAX_STREAMS)
        if (
            max_data < DEFAULT_MAX_DATA
            or stream_data < DEFAULT_MAX_STREAM_DATA
            or (max_streams < DEFAULT_MAX_STREAMS)
        ):
            raise TransportParameterError("flow-control parameters below the spec's minimums")
        self.streams.apply_peer_parameters(max_data, stream_data, max_streams)
        max_paths = params.get(TransportParameter.MAX_PATHS, DEFAULT_PEER_MAX_PATHS)
        datagram = params.get(TransportParameter.MAX_DATAGRAM_SIZE, DEFAULT_PEER_DATAGRAM_SIZE)
        if max_paths < 1 or datagram < MIN_DATAGRAM_SIZE:
            raise TransportParameterError("max_paths below 1 or max_datagram_size below 1200")
        self.peer_max_paths = max_paths
        self.max_datagram_size = min(self.config.max_datagram_size, datagram)
        self.path_manager.start_pending(now=now)  # they waited for the peer's max_paths
        idle = params.get(TransportParameter.MAX_IDLE_TIMEOUT_MS)
        if idle:
            self._idle_timeout = min(self._idle_timeout, idle / 1000)
        ack_delay = params.get(TransportParameter.MAX_ACK_DELAY_MS)
        if ack_delay is not None:
            self._peer_max_ack_delay = ack_delay / 1000
            for p in self.paths.values():
                p.recovery.max_ack_delay = self._peer_max_ack_delay

    def _transport_parameters(self) -> dict[int, int]:
        cfg = self.config
        return {
            TransportParameter.MAX_IDLE_TIMEOUT_MS: int(cfg.idle_timeout * 1000),
            TransportParameter.INITIAL_MAX_DATA: cfg.initial_max_data,
            TransportParameter.INITIAL_MAX_STREAM_DATA: cfg.initial_max_stream_data,
            TransportParameter.INITIAL_MAX_STREAMS: cfg.max_streams,
            TransportParameter.MAX_ACK_DELAY_MS: int(cfg.max_ack_delay * 1000),
            TransportParameter.ACTIVE_CONNECTION_ID_LIMIT: cfg.active_connection_id_limit,
            TransportParameter.MAX_PATHS: cfg.max_paths,
            TransportParameter.MAX_DATAGRAM_SIZE: cfg.max_datagram_size,
        }

    def _on_connection_close(self, frame: ConnectionCloseFrame, path: Path, now: float) -> None:
        if self.state in (State.CLOSING, State.DRAINING, State.CLOSED):
            self.state = State.DRAINING if self.state is State.CLOSING else self.state
            return
        self.state = State.DRAINING
        self._close_deadline = now + 3 * self._pto()
        self._terminate(
            frame.error_code,
            frame.reason,
            by_peer=True,
            frame_type=frame.frame_type,
            application=frame.application,
        )

    def _on_path_challenge(self, frame: PathChallengeFrame, path: Path, now: float) -> None:
        path.responses.append(frame.data)

    def _on_path_response(self, frame: PathResponseFrame, path: Path, now: float) -> None:
        if path.challenge is None or frame.data != path.challenge:
            return  # stale or forged: ignore
        path.challenge = None
        path.challenge_sent_at = None
        self.path_manager.on_validated(path, now=now)

    def _ignore(self, frame, path: Path, now: float) -> None:
        """Frames with nothing to do (PING, PADDING) or not yet used in single-path mode."""

    # -- loss and acknowledgement outcomes -------------------------------------------------

    def _on_packets_acked(self, path: Path, packets: list[SentPacket]) -> int:
        """
        Settle newly acknowledged ``packets`` (ascending); return their total size.

        Fast path, for the bulk case: a packet carrying nothing but one STREAM record that
        continues the previous such packet's range on the same stream (``offset`` equal to the
        run's end) joins a run, and each run is settled by one ``on_record_acked`` call on the
        joined range.  Equivalent to settling the records one by one: ``SendBuffer.on_acked``
        of ``[a, c)`` leaves the same state as ``[a, b)`` then ``[b, c)`` (acknowledged bytes
        are a union, FIN is a sticky flag), the stream's checks (all acked, writable again)
        look at that state and fire at most once, and any other record ends the run first, so
        events keep their order.  A failed path (whose ACKs may revive it) takes the general
        path packet by packet.
        """
        if path.phase is PathPhase.FAILED:
            total = 0
            for packet in packets:
                total += packet.size
                self._on_packet_acked(path, packet)
            return total
        settle = self.streams.on_record_acked
        total = 0
        run: StreamRecord | None = None
        run_end = 0
        run_fin = False
        for packet in packets:
            total += packet.size
            records = packet.frames
            if len(records) == 1 and type(records[0]) is StreamRecord:
                record = records[0]
                if run is not None and record.stream is run.stream and record.offset == run_end:
                    run_end += record.length
                    run_fin = run_fin or record.fin
                    continue
                if run is not None:
                    settle(StreamRecord(run.stream, run.offset, run_end - run.offset, run_fin))
                run, run_end, run_fin = record, record.offset + record.length, record.fin
                continue
            if run is not None:
                settle(StreamRecord(run.stream, run.offset, run_end - run.offset, run_fin))
                run = None
            self._settle_records(records)
        if run is not None:
            settle(StreamRecord(run.stream, run.offset, run_end - run.offset, run_fin))
        path.bytes_acked += total
        return total

    def _on_packet_acked(self, path: Path, packet: SentPacket) -> None:
        path.bytes_acked += packet.size
        if path.phase is PathPhase.FAILED:
            self.path_manager.on_acked(path, now=self._now)
        self._settle_records(packet.frames)

    def _settle_records(self, records: list) -> None:
        """Route each record of an acknowledged packet to the part that sent it."""
        for record in records:
            if isinstance(record, StreamRecord):
                self.streams.on_record_acked(record)
            elif isinstance(record, AckRecord):
                target = self.paths.get(record.path_id)
                if target is not None:
                    target.ack.on_ack_acked(record.largest)
            elif isinstance(record, HandshakeRecord):
                self.crypto_send.on_acked(record.offset, record.length, False)
            else:
                self.streams.on_control_acked(record)

    def _on_packets_lost(self, path: Path, packets: list[SentPacket]) -> None:
        path.metrics.on_loss(len(packets), now=self._now)
        for packet in packets:
            path.packets_lost += 1
            self.stats["packets_lost"] += 1
            for record in packet.frames:
                self._requeue(record)

    def _requeue_packets(self, path: Path, packets: list[SentPacket]) -> None:
        """Send the frames of ``packets`` again (their path failed or was abandoned)."""
        for packet in packets:
            for record in packet.frames:
                self._requeue(record)

    def _requeue(self, record) -> None:
        if isinstance(record, StreamRecord):
            self.streams.on_record_lost(record)
            self.stats["stream_frames_retransmitted"] += 1
        elif isinstance(record, HandshakeRecord):
            self.crypto_send.on_lost(record.offset, record.length, False)
        elif isinstance(record, AckRecord):
            pass
        elif isinstance(record, (TransportParametersFrame, HandshakeDoneFrame, AddAddressFrame)):
            self._control.append(record)
        elif isinstance(record, PathStatusFrame):
            if record.sequence == self.path_manager.status_sequence:  # still the latest word
                self._control.append(record)
        elif isinstance(record, PathAbandonFrame):
            self._control.append(record)
        else:
            self.streams.on_control_lost(record)

    # -- sending -----------------------------------------------------------------------

    def handshake_epoch(self) -> int:
        """
        Which keys carry our handshake bytes now.

        Initial keys until the peer is known to have application keys: for the server, its own
        handshake completing; for the client, the first application-key packet from the server
        (the server drops initial-key packets from then on, so a client that kept using them for
        its retransmitted Finished, and the ACKs riding with it, would never be heard again).
        """
        if self._app_send is None:
            return _INITIAL
        if self._handshake_confirmed or self._peer_has_app_keys:
            return _APPLICATION
        return _INITIAL

    def send_keys(self, epoch: int) -> PacketProtection:
        """The sealing keys for ``epoch``."""
        if epoch == _INITIAL:
            return self._initial_send
        assert self._app_send is not None
        return self._app_send

    def ack_only_allowed(self, builder) -> bool:
        """Whether a packet with only ACK/PADDING frames is worth sending (an ACK was due)."""
        return any(isinstance(f, AckFrame) for f in builder.frames)

    def only_stream_data(self, path: Path) -> bool:
        """
        Whether stream data is all a packet on ``path`` could carry now (the sender's fast path):
        no ACK pending, no path validation under way, no control or handshake data waiting.
        """
        return (
            path.ack.ack_deadline is None
            and not path.responses
            and path.challenge is None
            and not self._control
            and not self.crypto_send.pending
            and not self.streams.has_control
        )

    def add_control_frames(self, builder, path: Path, *, now: float) -> None:
        """Add control frames to ``builder`` (called by the packet assembler)."""
        if builder.epoch != _APPLICATION:
            return
        if path.responses and builder.add_control(PathResponseFrame(path.responses[0])):
            path.responses.popleft()
            self.stats["path_responses_sent"] += 1
        if path.challenge is not None and path.challenge_sent_at is None:
            if builder.add_control(PathChallengeFrame(path.challenge)):
                path.challenge_sent_at = now
                path.challenge_attempts += 1
        if not path.usable:
            return  # a failed or unvalidated path would swallow frames the connection needs
        control = self._control
        while control and not builder.full:
            frame = control[0]
            if not builder.add_control(frame, frame):
                break
            control.popleft()
        for frame in self.streams.pending_control():
            if builder.full or not builder.add_control(frame, frame):
                self.streams.control.append(frame)

    def _send_on_path(self, path: Path, out: list, now: float, *, data: bool = True) -> None:
        """Send what ``path`` may send now; stream data only if ``data``."""
        recovery = path.recovery
        controller = recovery.controller
        pacer = path.pacer
        streams = self.streams
        usable = data and path.usable
        sent = 0
        while sent < BURST_LIMIT:
            probe = path.probes_pending > 0
            cwnd_ok = probe or recovery.bytes_in_flight < controller.cwnd
            pace_at = None if probe else pacer.next_send_time(now=now)
            paced_ok = pace_at is None or pace_at <= now
            has_data = streams.has_data
            path.pacing_deadline = pace_at if cwnd_ok and usable and has_data else None
            allow_data = cwnd_ok and paced_ok and usable
            if not probe and not (allow_data and has_data) and not self._has_other(path):
                break
            if self._send_one(path, out, now, allow_data=allow_data, probe=probe) is None:
                break
            sent += 1
        if usable and not streams.has_data and recovery.bytes_in_flight < controller.cwnd:
            controller.on_app_limited(now=now)

    def _send_one(
        self, path: Path, out: list, now: float, *, allow_data: bool, probe: bool
    ) -> SentPacket | None:
        """Build, seal and record one packet on ``path``; return it (``None``: nothing to send)."""
        recovery = path.recovery
        epoch = self._packet_epoch()
        if epoch == _INITIAL and path.id != 0:
            return None  # only the handshake path carries initial-key packets
        self._maybe_skip(recovery)
        built = build_packet(self, path, now=now, epoch=epoch, allow_data=allow_data, probe=probe)
        if built is None:
            return None
        datagram, packet = built
        if epoch == _APPLICATION and path.id == 0 and self._first_app_seq is None:
            self._first_app_seq = packet.seq
        packet.is_probe = probe
        if probe:
            path.probes_pending -= 1
        recovery.on_packet_sent(packet)
        if packet.in_flight:
            path.pacer.consume(packet.size, now)
        path.bytes_sent += packet.size
        path.packets_sent += 1
        self._last_sent = now
        out.append((datagram, path.local_addr, path.remote_addr))
        self.scheduler.on_sent(path, packet.size, now=now)
        return packet

    def _send_multipath(self, live: list[Path], out: list, now: float) -> None:
        """Control, ACKs and probes on every path; then stream data wherever the scheduler says."""
        for path in live:
            self._send_on_path(path, out, now, data=False)
        streams = self.streams
        budget = BURST_LIMIT * len(live)
        while streams.has_data and budget > 0:
            usable = [p for p in live if p.usable]
            if any(not p.is_backup for p in usable):
                usable = [
                    p for p in usable if not p.is_backup
                ]  # backups wait while a primary works
            candidates = [p for p in usable if self._paced_ok(p, now)]
            targets = self._select_paths(candidates, now) if candidates else []
            if not targets:
                break
            packet = self._send_one(targets[0], out, now, allow_data=True, probe=False)
            if packet is None:
                break
            budget -= 1
            for other in targets[1:]:
                self._duplicate(packet, other, out, now)
        for path in live:
            recovery = path.recovery
            if path.usable and not streams.has_data:
                if recovery.bytes_in_flight < recovery.controller.cwnd:
                    recovery.controller.on_app_limited(now=now)

    def _paced_ok(self, path: Path, now: float) -> bool:
        pace_at = path.pacer.next_send_time(now=now)
        path.pacing_deadline = pace_at
        return pace_at is None or pace_at <= now

    def _duplicate(self, packet: SentPacket, path: Path, out: list, now: float) -> None:
        """Send the stream data of ``packet`` again on ``path`` at once (redundant scheduling)."""
        for record in packet.frames:
            if isinstance(record, StreamRecord):
                self.streams.on_record_lost(record)
        if self._send_one(path, out, now, allow_data=True, probe=False) is not None:
            self.stats["redundant_packets"] += 1

    def _select_paths(self, candidates: list[Path], now: float) -> list[Path]:
        """The paths for the next packet of stream data (the configured scheduler decides)."""
        streams = self.streams
        req = self._requirements
        req.priority = streams.highest_pending_priority() or 0
        req.size = self.max_datagram_size
        req.backlog = streams.backlog()
        return self.scheduler.select_all(candidates, req, now=now)

    def path_metrics(self) -> dict[int, PathMetrics]:
        """A snapshot of every live path's metrics (the seed's PathMetrics), by path ID."""
        now = self._now
        return {
            p.id: p.metrics.snapshot(p, now=now)
            for p in self.paths.values()
            if p.phase is not PathPhase.ABANDONED
        }

    def _maybe_skip(self, recovery: LossRecovery) -> None:
        """Now and then skip a sequence number: a peer acknowledging it is lying (optimistic
        ACK)."""
        self._skip_countdown -= 1
        if self._skip_countdown <= 0:
            recovery.skip_sequence_number()
            self._skip_countdown = 1 + random_below(self.entropy, 2 * SKIP_ONE_IN)

    def _has_other(self, path: Path) -> bool:
        """Whether anything but stream data waits for ``path``: ACKs, validation, control."""
        if self._has_urgent(path) or (self.crypto_send.pending and path.id == 0):
            return True
        return path.usable and bool(self._control or self.streams.has_control)

    def _has_urgent(self, path: Path) -> bool:
        """Whether an ACK or path validation waits on ``path`` (not limited by congestion
        control)."""
        if path.responses or (path.challenge is not None and path.challenge_sent_at is None):
            return True
        ack = path.ack
        return ack.ack_deadline is not None and (ack.immediate or ack.ack_deadline <= self._now)

    def _packet_epoch(self) -> int:
        if self._app_send is None:
            return _INITIAL
        if self._handshake_confirmed and not self.crypto_send.pending:
            return _APPLICATION
        if self.handshake_epoch() == _INITIAL and self.crypto_send.pending:
            return _INITIAL
        return _APPLICATION

    def _challenge(self, path: Path) -> None:
        path.challenge = self.entropy.random_bytes(8)
        path.challenge_sent_at = None
        path.challenges_sent += 1
        path.challenge_attempts = 0

    # -- timers ------------------------------------------------------------------------

    def _path_timers(self, path: Path, now: float) -> None:
        recovery = path.recovery
        deadline = recovery.deadline(now=now)
        if deadline is not None and now >= deadline:
            result = recovery.on_timeout(now=now)
            if result.lost:
                self._on_packets_lost(path, result.lost)
            if result.probes:
                path.probes_pending = result.probes
                self._queue_probe_data(path)
                self.path_manager.on_probe_timeout(path, now=now)
        self.path_manager.on_deadline(path, now=now)
        if path.ack.ack_deadline is not None and now >= path.ack.ack_deadline:
            path.ack.immediate = True
        if path.challenge_sent_at is not None:
            if now >= path.challenge_sent_at + 3 * recovery.rtt.pto_interval():
                if path.challenge_attempts >= MAX_CHALLENGE_ATTEMPTS:
                    self.path_manager.on_validation_failed(path, now=now)
                else:
                    path.challenge_sent_at = None  # resend the challenge

    def _queue_probe_data(self, path: Path) -> None:
        """On PTO during the handshake, send every unacknowledged handshake byte again."""
        if not self._handshake_confirmed and self.crypto_send.sent_offset:
            self.crypto_send.on_lost(0, self.crypto_send.sent_offset, False)

    def _pto(self) -> float:
        path = self.paths.get(0) or next(iter(self.paths.values()))  # never empty: see abandon()
        return path.recovery.rtt.pto_interval(self.config.max_ack_delay)

    # -- closing -------------------------------------------------------------------------

    def _fail(self, error: ProtocolError, now: float) -> None:
        """The one place a protocol error ends the connection."""
        if self.state in (State.CLOSING, State.DRAINING, State.CLOSED):
            return
        self.stats["protocol_errors"] += 1
        frame_type = error.frame_type if error.frame_type is not None else 0x3F
        self._begin_closing(ConnectionCloseFrame(error.code, error.reason, frame_type), now)
        self._terminate(error.code, error.reason, by_peer=False, frame_type=error.frame_type)

    def _begin_closing(self, frame: ConnectionCloseFrame, now: float) -> None:
        self.state = State.CLOSING
        self._close_frame = frame
        self._close_pending = True
        self._close_deadline = now + 3 * self._pto()

    def _send_close(self, now: float) -> list[tuple[bytes, tuple, tuple]]:
        if not self._close_pending or self._close_frame is None:
            return []
        self._close_pending = False
        from .sending import PacketBuilder, _seal, header_overhead

        usable = [p for p in self.paths.values() if p.usable]
        path = usable[0] if usable else (self.paths.get(0) or next(iter(self.paths.values())))
        epoch = Epoch.APPLICATION if self._app_send is not None else Epoch.INITIAL
        frame = self._close_frame
        if epoch == Epoch.INITIAL and frame.application:
            frame = ConnectionCloseFrame(ErrorCode.APPLICATION_ERROR, "", application=False)
        long = epoch == Epoch.INITIAL
        builder = PacketBuilder(
            self.max_datagram_size - header_overhead(path.id, long), epoch
        )
        builder.add_control(frame)
        datagram, packet = _seal(self, path, builder, now, long)
        path.recovery.on_packet_sent(packet)
        return [(datagram, path.local_addr, path.remote_addr)]

    def _terminate(
        self,
        code: int,
        reason: str,
        *,
        by_peer: bool,
        frame_type: int | None = None,
        application: bool = False,
    ) -> None:
        self._events.append(ConnectionTerminated(code, reason, by_peer, frame_type, application))


_HANDLERS = {
    ControlType.PADDING: Connection._ignore,
    ControlType.PING: Connection._ignore,
    ControlType.ACK: Connection._on_ack,
    ControlType.HANDSHAKE: Connection._on_handshake_frame,
    ControlType.RESET_STREAM: lambda c, f, p, now: c.streams.on_reset_stream(f, now=now),
    ControlType.STOP_SENDING: lambda c, f, p, now: c.streams.on_stop_sending(f),
    ControlType.MAX_DATA: lambda c, f, p, now: c.streams.on_max_data(f),
    ControlType.MAX_STREAM_DATA: lambda c, f, p, now: c.streams.on_max_stream_data(f),
    ControlType.MAX_STREAMS: lambda c, f, p, now: c.streams.on_max_streams(f),
    ControlType.DATA_BLOCKED: Connection._ignore,
    ControlType.STREAM_DATA_BLOCKED: lambda c, f, p, now: c.streams.on_stream_data_blocked(f),
    ControlType.STREAMS_BLOCKED: Connection._ignore,
    ControlType.NEW_CONNECTION_ID: Connection._ignore,
    ControlType.RETIRE_CONNECTION_ID: Connection._ignore,
    ControlType.PATH_CHALLENGE: Connection._on_path_challenge,
    ControlType.PATH_RESPONSE: Connection._on_path_response,
    ControlType.PATH_STATUS: lambda c, f, p, now: c.path_manager.on_status(f),
    ControlType.PATH_ABANDON: lambda c, f, p, now: c.path_manager.on_abandon(f, now=now),
    ControlType.ADD_ADDRESS: lambda c, f, p, now: c.path_manager.on_add_address(f, now=now),
    ControlType.CONNECTION_CLOSE: Connection._on_connection_close,
    ControlType.HANDSHAKE_DONE: Connection._on_handshake_done,
    ControlType.TRANSPORT_PARAMETERS: Connection._on_transport_parameters,
}


def _clip_ranges(ranges: tuple, limit: int) -> tuple:
    """The parts of descending inclusive ``ranges`` below ``limit``."""
    return tuple((lo, min(hi, limit - 1)) for lo, hi in ranges if lo < limit)


def _check_config(config: ConnectionConfig) -> None:
    if config.initial_max_data < DEFAULT_MAX_DATA:
        raise ConfigurationError(f"initial_max_data must be at least {DEFAULT_MAX_DATA}")
    if config.initial_max_stream_data < DEFAULT_MAX_STREAM_DATA:
        raise ConfigurationError(
            f"initial_max_stream_data must be at least {DEFAULT_MAX_STREAM_DATA}"
        )
    if config.max_streams < DEFAULT_MAX_STREAMS:
        raise ConfigurationError(f"max_streams must be at least {DEFAULT_MAX_STREAMS}")
