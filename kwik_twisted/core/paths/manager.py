"""
Path management: opening, validating, failing over, recovering, backup status and abandonment.

Theory of operation (after the multipath QUIC draft, draft-ietf-quic-multipath, and RFC 9000 §8-9):

* Only the client opens paths.  :meth:`PathManager.open` gives a new path the next path ID and
  queues a PATH_CHALLENGE on it; the server learns of it from the first authenticated packet
  carrying the new path ID (the ID is in the AEAD nonce, so only the key holder can make one),
  answers the challenge and challenges back.  A path carries stream data once its own challenge was
  answered; until the server has validated the client's address on a path it also keeps to the 3x
  amplification budget.
* Failover: a path whose probe timer fired :data:`FAILURE_PTOS` times in a row while another path is
  usable is *failed*: its in-flight frames go back to the send queues at once (and so out on the
  remaining paths), and it is probed with a PING every :data:`PROBE_INTERVAL` seconds (or its PTO,
  if longer).  An acknowledgement of anything sent on it brings it back (fresh congestion state).
* Backup: PATH_STATUS marks a path a backup; schedulers use backups only while no other path is
  usable.
* PATH_ABANDON ends a path for good; its in-flight frames move to the other paths.  The last path
  cannot be abandoned (a connection needs one): locally that is a :class:`ValueError`, from the
  peer a PROTOCOL_VIOLATION; to stop, close the connection.
"""

from __future__ import annotations

from ipaddress import ip_address
from typing import TYPE_CHECKING

from ...errors import ProtocolViolation
from ...events import (
    AddressAdvertised,
    PathAbandoned,
    PathAdded,
    PathFailed,
    PathRecovered,
    PathValidated,
)
from ...wire import AddAddressFrame, PathAbandonFrame, PathState, PathStatusFrame
from .path import Path, PathPhase

if TYPE_CHECKING:  # pragma: no cover
    from ..connection import Connection

#: Consecutive probe timeouts after which a path is declared failed (if another path is usable).
FAILURE_PTOS = 2
#: Seconds between probes of a failed path (at least its PTO).
PROBE_INTERVAL = 1.0


class PathManager:
    """The paths of one connection beyond their per-path state."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.next_path_id = 1
        #: The highest path ID the peer has opened (server side); lower IDs are never reused.
        self.highest_peer_path = 0
        self.status_sequence = 0
        self.pending: list[tuple[int, tuple, tuple]] = []
        #: Backup status asked for paths still pending, by path ID.
        self.pending_backup: dict[int, bool] = {}
        #: PATH_STATUS frames for paths not seen yet, by path ID.
        self.early_status: dict[int, PathStatusFrame] = {}
        #: Addresses the server advertised, by address ID (client side).
        self.advertised: dict[int, tuple] = {}

    # -- opening --------------------------------------------------------------------

    def open(self, local_addr: tuple, remote_addr: tuple, *, now: float) -> int:
        """
        Open a path (client only) and return its ID; it carries data once validated.

        Until the handshake has completed and the peer's transport parameters (its
        ``max_paths``) have arrived, the path is only reserved.
        """
        conn = self.conn
        if not conn.is_client:
            raise ValueError("only the client opens paths")
        limit = self.max_paths()
        if len(conn.paths) + len(self.pending) >= limit:
            raise ValueError(f"already {len(conn.paths)} paths; max_paths is {limit}")
        path_id = self.next_path_id
        self.next_path_id += 1
        if not (conn.handshake_complete and conn.peer_parameters_known):
            self.pending.append((path_id, local_addr, remote_addr))
            return path_id
        self._start(path_id, local_addr, remote_addr, now=now)
        return path_id

    def max_paths(self) -> int:
        """Paths this connection may have at once: ours and, once known, the peer's limit."""
        return min(self.conn.config.max_paths, self.conn.peer_max_paths)

    def start_pending(self, *, now: float) -> None:
        """
        The peer's transport parameters arrived: start the paths opened before them.

        Those beyond the peer's ``max_paths`` (known only now) are dropped with a
        :class:`~kwik_twisted.events.PathAbandoned` event instead of being refused by the peer.
        """
        pending, self.pending = self.pending, []
        for path_id, local_addr, remote_addr in pending:
            if len(self.conn.paths) >= self.max_paths():
                self.conn.stats["paths_refused"] += 1
                self.pending_backup.pop(path_id, None)
                self.conn._events.append(PathAbandoned(path_id, local_addr, remote_addr))
                continue
            self._start(path_id, local_addr, remote_addr, now=now)

    def _start(self, path_id: int, local_addr: tuple, remote_addr: tuple, *, now: float) -> None:
        conn = self.conn
        path = conn._add_path(path_id, local_addr, remote_addr, validated=False, now=now)
        path.address_validated = True  # we chose the server's address; no amplification concern
        path.recovery.handshake_confirmed = conn.handshake_confirmed
        conn._challenge(path)
        conn._events.append(PathAdded(path_id, local_addr, remote_addr))
        backup = self.pending_backup.pop(path_id, None)
        if backup is not None:
            self.set_backup(path_id, backup)

    def accept(
        self, path_id: int, local_addr: tuple, remote_addr: tuple, *, now: float
    ) -> Path | None:
        """
        A packet for an unknown path ID authenticated: the client opened a path (server side).

        Returns the new path, or ``None`` if we refuse it (too many paths, or we are the client).
        """
        conn = self.conn
        if conn.is_client or path_id <= self.highest_peer_path:
            conn.stats["paths_refused"] += 1  # IDs only grow: an old one is a late or replayed path
            return None
        if len(conn.paths) >= conn.config.max_paths:
            conn.stats["paths_refused"] += 1
            return None
        self.highest_peer_path = path_id
        path = conn._add_path(path_id, local_addr, remote_addr, validated=False, now=now)
        path.recovery.handshake_confirmed = True
        early = self.early_status.pop(path_id, None)
        if early is not None:
            self.on_status(early)
        conn._challenge(path)
        conn._events.append(PathAdded(path_id, local_addr, remote_addr))
        return path

    def on_validation_failed(self, path: Path, *, now: float) -> None:
        """
        A path's challenge went unanswered :data:`~.path.MAX_CHALLENGE_ATTEMPTS` times.

        A new path (the peer refused it, or it does not reach the peer) is abandoned; a path that
        moved to a new address (rebinding) stops challenging and stays held to the amplification
        budget, which the peer's own packets from that address keep refilling.
        """
        self.conn.stats["validations_failed"] += 1
        path.challenge = path.challenge_sent_at = None
        if path.phase is PathPhase.VALIDATING and len(self.conn.paths) > 1:
            self.abandon(path.id, now=now)

    def live(self) -> list[Path]:
        """Paths not abandoned."""
        return [p for p in self.conn.paths.values() if p.phase is not PathPhase.ABANDONED]

    def on_validated(self, path: Path, *, now: float) -> None:
        """Its challenge was answered."""
        path.address_validated = True
        if path.phase is PathPhase.VALIDATING:
            path.phase = PathPhase.ACTIVE
            path.metrics.on_phase_change(True, now=now)
            self.conn._events.append(PathValidated(path.id, path.local_addr, path.remote_addr))

    # -- failure and recovery -------------------------------------------------------------

    def on_probe_timeout(self, path: Path, *, now: float) -> None:
        """A PTO fired on ``path``: fail it if it keeps timing out and another path can take
        over."""
        if path.phase is not PathPhase.ACTIVE or path.recovery.pto_count < FAILURE_PTOS:
            return
        others = [p for p in self.conn.paths.values() if p is not path and p.usable]
        if not others:
            return
        self.fail(path, now=now)

    def fail(self, path: Path, *, now: float) -> None:
        """Declare ``path`` failed and move its in-flight frames to the other paths."""
        path.phase = PathPhase.FAILED
        path.failed_at = now
        path.metrics.on_phase_change(False, now=now)
        path.next_probe = now + self._probe_interval(path)
        self.conn._requeue_packets(path, path.recovery.abandon())
        # Out of the coupled group while failed (its window would skew the others' increase);
        # it rejoins with fresh state when it recovers (Connection._reset_congestion).
        leave = getattr(path.recovery.controller, "leave", None)
        if leave is not None:
            leave()
        self.conn.stats["paths_failed"] += 1
        self.conn._events.append(PathFailed(path.id, path.local_addr, path.remote_addr))

    def _probe_interval(self, path: Path) -> float:
        return max(PROBE_INTERVAL, path.recovery.rtt.pto_interval())

    def probe_deadline(self, path: Path) -> float | None:
        """When a failed path is probed next."""
        return path.next_probe if path.phase is PathPhase.FAILED else None

    def on_probe_due(self, path: Path, *, now: float) -> None:
        """Time to probe a failed path."""
        if path.phase is PathPhase.FAILED and now >= path.next_probe:
            path.probes_pending = 1
            path.next_probe = now + self._probe_interval(path)

    def on_acked(self, path: Path, *, now: float) -> None:
        """Something sent on ``path`` was acknowledged: a failed path is back."""
        if path.phase is not PathPhase.FAILED:
            return
        path.phase = PathPhase.ACTIVE
        path.failed_at = None
        path.metrics.on_phase_change(True, now=now)
        path.recovery.pto_count = 0
        self.conn._reset_congestion(path)
        self.conn.stats["paths_recovered"] += 1
        self.conn._events.append(PathRecovered(path.id, path.local_addr, path.remote_addr))

    # -- status and abandonment -------------------------------------------------------------

    def set_backup(self, path_id: int, backup: bool) -> None:
        """Mark a path backup (or available) and tell the peer with PATH_STATUS."""
        if any(pending[0] == path_id for pending in self.pending):
            self.pending_backup[path_id] = backup  # applied when the path starts
            return
        path = self._known(path_id)
        path.status = PathState.BACKUP if backup else PathState.AVAILABLE
        self.status_sequence += 1
        self.conn._control.append(PathStatusFrame(path_id, self.status_sequence, path.status))

    def _known(self, path_id: int) -> Path:
        path = self.conn.paths.get(path_id)
        if path is None:
            raise ValueError(f"no path {path_id}; paths are {sorted(self.conn.paths)}")
        return path

    def on_status(self, frame: PathStatusFrame) -> None:
        """
        The peer's PATH_STATUS.

        It may overtake the first packet of the path it names (it travels on another path), so a
        status for a path not seen yet is kept until the path arrives (at most ``max_paths`` of
        them).
        """
        path = self.conn.paths.get(frame.path_id)
        if path is None:
            early = self.early_status
            if frame.path_id in early or len(early) < self.conn.config.max_paths:
                previous = early.get(frame.path_id)
                if previous is None or frame.sequence > previous.sequence:
                    early[frame.path_id] = frame
            return
        if frame.sequence <= path.peer_status_seq:
            return
        path.peer_status_seq = frame.sequence
        path.peer_status = frame.status

    def abandon(
        self, path_id: int, error_code: int = 0, *, now: float, notify: bool = True
    ) -> None:
        """
        Stop using a path for good; its in-flight frames move to the other paths.

        The last path cannot go (there would be nowhere to send even a CONNECTION_CLOSE): asked
        locally that raises :class:`ValueError`; from the peer (``notify=False``) it is a
        :class:`~kwik_twisted.errors.ProtocolViolation`.
        """
        path = self._known(path_id) if notify else self.conn.paths.get(path_id)
        if path is None or path.phase is PathPhase.ABANDONED:
            return
        if len(self.conn.paths) == 1:
            if notify:
                raise ValueError(f"path {path_id} is the last path; close the connection instead")
            raise ProtocolViolation(f"PATH_ABANDON for the last path ({path_id})")
        if notify:
            self.conn._control.append(PathAbandonFrame(path_id, error_code))
        path.phase = PathPhase.ABANDONED
        path.metrics.on_phase_change(False, now=now)
        self.conn._requeue_packets(path, path.recovery.abandon())
        leave = getattr(path.recovery.controller, "leave", None)
        if leave is not None:
            leave()
        # Forgotten at once: late packets for the ID are dropped (IDs are never reused), late
        # ACKs for it ignored, and a peer cannot grow our memory by opening and abandoning paths.
        del self.conn.paths[path.id]
        self.conn._events.append(PathAbandoned(path.id, path.local_addr, path.remote_addr))

    def on_abandon(self, frame: PathAbandonFrame, *, now: float) -> None:
        """The peer abandoned a path."""
        self.abandon(frame.path_id, frame.error_code, now=now, notify=False)

    # -- advertised addresses ----------------------------------------------------------

    def advertise(self) -> None:
        """Server: announce the configured extra addresses (called when the handshake completes)."""
        for address_id, (host, port) in enumerate(self.conn.config.advertise, start=1):
            frame = AddAddressFrame(address_id, ip_address(host), int(port))
            self.conn._control.append(frame)

    def on_add_address(self, frame: AddAddressFrame, *, now: float) -> None:
        """Client: the server advertised an address; open a path to it if configured to."""
        conn = self.conn
        if not conn.is_client or frame.address_id in self.advertised:
            return
        if len(self.advertised) >= conn.config.max_paths * 4:
            return  # bounded: a peer cannot make us remember unlimited addresses
        address = (str(frame.host), frame.port)
        self.advertised[frame.address_id] = address
        conn._events.append(AddressAdvertised(frame.address_id, address))
        known = {p.remote_addr for p in conn.paths.values()}
        if conn.config.use_advertised and address not in known:
            if len(conn.paths) + len(self.pending) < conn.config.max_paths:
                local = next(iter(conn.paths.values())).local_addr
                self.open(local, address, now=now)
