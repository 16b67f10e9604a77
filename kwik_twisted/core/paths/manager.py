"""
Path management: opening, validating, failing over, recovering, backup status and abandonment.

Theory of operation (after the multipath QUIC draft, draft-ietf-quic-multipath, and RFC 9000 §8-9):

* Only the client opens paths.  :meth:`PathManager.open` gives a new path the next path ID and
  queues a PATH_CHALLENGE on it; the server learns of it from the first authenticated packet
  carrying the new path ID (the ID is in the AEAD nonce, so only the key holder can make one),
  answers the challenge and challenges back.  A path carries stream data once its own challenge was
  answered; until the server has validated the client's address on a path it also keeps to the 3x
  amplification budget.
* Failure, detected by both ends whichever way data flows.  Two rules, one per direction:

  - *Sending side*: a path whose probe timer fired :data:`FAILURE_PTOS` times in a row (RFC 9002
    §6.2: ack-eliciting packets unanswered) while another path is usable is *failed*.
  - *Receiving side*: a side that only acknowledges on a path has no probe timer there, so it
    watches arrivals instead.  A path on which none of the peer's *traffic* (any packet but an ACK-
    or PING-only one: those are what probing itself exchanges) arrived for the silence interval
    ``SILENCE_RTTS x max(path srtt, our max_ack_delay)`` while another usable path received traffic
    after that interval is sent one ack-eliciting PING (once per silence), which arms its probe
    timer.  If nothing at all arrives on the path before that timer fires once, the path is failed:
    one PTO, not :data:`FAILURE_PTOS`, since the silence was the first unanswered round (two more
    PTOs, some 6 RTTs, would break the budget of 1 s plus 3 RTTs from the cut beyond about 100 ms
    of RTT).  The interval: a path in use carries the peer's packets at least once per RTT plus
    our ACK delay (the peer waits for our ACKs when its window is full); three of those is a gap
    no working path shows, and the path's own RTT (not the best path's) keeps a slow path from
    being probed for its normal gaps.  Only while *other* paths deliver: an idle connection sends
    nothing, and a single path never fails.  Detection takes the interval, the wait for the next
    arrival elsewhere and one PTO: about ``3 RTT + PTO``, some 6 RTTs (0.2 s at 30 ms RTT), within
    the budget up to about 300 ms of RTT.

  A failed path's in-flight frames go back to the send queues at once (and so out on the remaining
  paths), and it is probed with a PING at one PTO, then at intervals doubling up to
  :data:`MAX_PROBE_INTERVAL` (or its PTO, if longer), so a path that comes back is found within
  about a second.  It recovers (fresh congestion state) when anything sent on it is acknowledged,
  or when a new authenticated packet of the peer's arrives on it (the peer's own probe): the side
  that only receives on a path hears of its return as soon as the side that sends does.
* Backup: PATH_STATUS marks a path a backup; schedulers use backups only while no other path is
  usable.
* Cost: the user's price of sending on a path (a metered link is dearer),
  :meth:`PathManager.set_cost`, 0 by default; it is ours alone (the peer is not told) and lives on
  the path's metrics, where the scheduler reads it.  Like backup status, a cost given for a path
  still pending applies when it starts.
* Server load: the load the server reported in its transport parameters (client side, 0..1, or
  ``None``), kept once per connection (every path reaches the same server process) and shown in
  every path's :class:`~.metrics.PathMetrics`.
* PATH_ABANDON ends a path for good; its in-flight frames move to the other paths.  The last path
  cannot be abandoned (a connection needs one): locally that is a :class:`ValueError`, from the
  peer a PROTOCOL_VIOLATION; to stop, close the connection.

Collaborators.  The manager owns the paths (``paths``, by ID) and knows nothing of the connection:
it is handed an event sink (``emit``), the connection's control-frame queue (``control``), a
``requeue`` callable that sends the frames of packets again, the connection's counters, and two
factories, one for a path's congestion controller and one for a fresh PATH_CHALLENGE token.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from ipaddress import ip_address

from ...config import ConnectionConfig
from ...errors import ConfigurationError, NoViablePath, ProtocolViolation
from ...events import (
    AddressAdvertised,
    Event,
    PathAbandoned,
    PathAdded,
    PathFailed,
    PathRecovered,
    PathValidated,
)
from ...wire import AddAddressFrame, PacketType, PathAbandonFrame, PathState, PathStatusFrame
from ..congestion import CongestionController
from ..recovery.loss import LossRecovery, SentPacket
from ..recovery.pacing import Pacer
from ..recovery.rtt import RttEstimator
from .metrics import PathMetrics, PathMetricsTracker
from .path import Path, PathPhase
from .pmtud import PathMtu

#: Consecutive probe timeouts after which a path is declared failed (if another path is usable).
FAILURE_PTOS = 2
#: The longest wait between probes of a failed path, in seconds (or its PTO, if longer); the
#: first comes one PTO after the failure and the wait doubles up to this.
MAX_PROBE_INTERVAL = 1.0
#: Doublings of the failed-path probe interval counted at most (the cap is reached long before).
MAX_PROBE_BACKOFF = 16
#: A path is silent after this many RTTs (or max_ack_delays, if longer) without peer traffic.
SILENCE_RTTS = 3
#: Packet types that do not count as the peer's traffic on a path: what probing itself exchanges.
PROBE_PACKET_TYPES = frozenset({int(PacketType.ACK), int(PacketType.KEEP_ALIVE)})
#: The peer's max_paths until its transport parameters arrive.
DEFAULT_PEER_MAX_PATHS = 4


class PathManager:
    """
    The paths of one connection beyond their per-path state (see the module docstring).

    :param emit: the event sink.
    :param control: the connection's queue of reliable control frames.
    :param requeue: sends the frames of the given packets again.
    :param stats: the connection's counters.
    :param new_controller: makes a congestion controller for a path.
    :param new_challenge: makes the 8 bytes of a fresh PATH_CHALLENGE.
    :param cids: the connection's CIDs (core/cids.py): a path other than 0 starts only with the
        peer's CID for it, and its CID is retired when it goes.
    :ivar paths: the live paths by ID (abandoned ones are forgotten at once).
    :ivar peer_max_paths: the peer's ``max_paths`` (its default until its parameters arrive).
    :ivar server_load: client side: the load the server reported, 0..1 (``None``: not reported).
    """

    __slots__ = (
        "config", "cids", "is_client", "emit", "control", "requeue", "stats", "new_controller",
        "new_challenge", "paths", "peer_max_paths", "peer_max_ack_delay", "ready", "confirmed",
        "next_path_id", "highest_peer_path", "status_sequence", "pending", "pending_backup",
        "pending_cost", "server_load", "early_status", "advertised", "peer_max_udp_payload",
        "trace"
    )

    def __init__(
        self,
        config: ConnectionConfig,
        *,
        is_client: bool,
        emit: Callable[[Event], None],
        control: deque,
        requeue: Callable[[list[SentPacket]], None],
        stats: Counter,
        new_controller: Callable[[], CongestionController],
        new_challenge: Callable[[], bytes],
        cids=None,
    ) -> None:
        self.config = config
        self.cids = cids
        self.is_client = is_client
        self.emit = emit
        self.control = control
        self.requeue = requeue
        self.stats = stats
        self.new_controller = new_controller
        self.new_challenge = new_challenge
        self.paths: dict[int, Path] = {}
        self.peer_max_paths = DEFAULT_PEER_MAX_PATHS
        #: The peer's max_ack_delay (ours until its parameters say otherwise).
        self.peer_max_ack_delay = config.max_ack_delay
        #: Whether the peer's transport parameters arrived (paths may start).
        self.ready = False
        #: Whether the handshake is confirmed (new paths start with confirmed recovery).
        self.confirmed = False
        self.next_path_id = 1
        #: The highest path ID the peer has opened (server side); lower IDs are never reused.
        self.highest_peer_path = 0
        self.status_sequence = 0
        self.pending: list[tuple[int, tuple, tuple]] = []
        #: Backup status asked for paths still pending, by path ID.
        self.pending_backup: dict[int, bool] = {}
        #: Costs given for paths still pending, by path ID.
        self.pending_cost: dict[int, float] = {}
        self.server_load: float | None = None
        #: PATH_STATUS frames for paths not seen yet, by path ID.
        self.early_status: dict[int, PathStatusFrame] = {}
        #: Addresses the server advertised, by address ID (client side).
        self.advertised: dict[int, tuple] = {}
        #: The peer's max_datagram_size transport parameter (what it can receive): the bound of
        #: path MTU discovery; 0 until its parameters arrive.
        self.peer_max_udp_payload = 0
        #: The connection's qlog Trace (set through the sender), for path MTU updates.
        self.trace = None

    # -- creating paths ------------------------------------------------------------------

    def add(
        self, path_id: int, local_addr: tuple, remote_addr: tuple, *, validated: bool, now: float
    ) -> Path:
        """A new path with fresh recovery, pacer and metrics; its RTT starts from the best known."""
        cfg = self.config
        controller = self.new_controller()
        known = [
            p.recovery.rtt.smoothed_rtt for p in self.paths.values() if p.recovery.rtt.has_sample
        ]
        rtt = RttEstimator(min(known) if known else cfg.initial_rtt)
        recovery = LossRecovery(
            controller, rtt, max_ack_delay=self.peer_max_ack_delay, handshake_confirmed=False
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
        path.mtu = PathMtu(path, enabled=cfg.pmtud, max_udp_payload=cfg.max_udp_payload, owner=self)
        if path_id and self.cids is not None:
            path.dcid = self.cids.peer_cid(path_id)  # path 0 uses the handshake's CID
        self.paths[path_id] = path
        return path

    def challenge(self, path: Path) -> None:
        """(Re)validate ``path``: a fresh PATH_CHALLENGE goes out in its next packet."""
        path.validation.start(self.new_challenge())

    def reset_congestion(self, path: Path) -> None:
        """Fresh congestion state for a path that came back from failure."""
        _leave_group(path)
        path.recovery.controller = self.new_controller()
        path.mtu.refresh()  # the fresh window counts in the path's datagram size
        path.pacer.update(cwnd=path.recovery.controller.cwnd, srtt=path.recovery.rtt.smoothed_rtt)

    # -- the handshake's progress -----------------------------------------------------------

    def confirm(self) -> None:
        """The handshake is confirmed: every path's recovery knows (no probing while idle)."""
        self.confirmed = True
        for path in self.paths.values():
            path.recovery.handshake_confirmed = True
            path.recovery.probe_when_idle = False

    def validate_addresses(self) -> None:
        """The handshake proved the peer's address (server): no amplification limit any more."""
        for path in self.paths.values():  # only path 0 can exist before the handshake ends
            path.address_validated = True

    def on_peer_parameters(
        self,
        max_paths: int,
        max_ack_delay: float | None,
        *,
        now: float,
        server_load: float | None = None,
        max_udp_payload: int = 0,
    ) -> None:
        """The peer's transport parameters arrived: its limits bind; pending paths start; the
        server's load (0..1, checked by the handshake) and the largest datagram it receives
        (``max_udp_payload``, path MTU discovery's bound) are recorded."""
        self.peer_max_paths = max_paths
        self.peer_max_udp_payload = max_udp_payload
        self.server_load = server_load
        self.ready = True
        self.start_pending(now=now)  # they waited for the peer's max_paths
        if max_ack_delay is not None:
            self.peer_max_ack_delay = max_ack_delay
            for path in self.paths.values():
                path.recovery.max_ack_delay = max_ack_delay

    # -- opening --------------------------------------------------------------------

    def open(self, local_addr: tuple, remote_addr: tuple, *, now: float) -> int:
        """
        Open a path (client only) and return its ID; it carries data once validated.

        Until the handshake has completed and the peer's transport parameters (its
        ``max_paths``) have arrived, the path is only reserved.
        """
        if not self.is_client:
            raise ValueError("only the client opens paths")
        limit = self.max_paths()
        if len(self.paths) + len(self.pending) >= limit:
            raise ValueError(f"already {len(self.paths)} paths; max_paths is {limit}")
        path_id = self.next_path_id
        self.next_path_id += 1
        if not self.ready or (self.cids is not None and not self.cids.can_start(path_id)):
            self.pending.append((path_id, local_addr, remote_addr))
            return path_id
        self._start(path_id, local_addr, remote_addr, now=now)
        return path_id

    def start_waiting(self, *, now: float) -> None:
        """CIDs arrived or were issued (core/cids.py): paths that waited for them may start, and
        a path the client opened before its CID for it reached us (server) can now be answered
        (until then the sender leaves it alone: it has no address)."""
        if self.ready and self.pending:
            self.start_pending(now=now)
        for path in self.paths.values():
            if path.dcid is None and path.id:
                path.dcid = self.cids.peer_cid(path.id)

    def max_paths(self) -> int:
        """Paths this connection may have at once: ours and, once known, the peer's limit."""
        return min(self.config.max_paths, self.peer_max_paths)

    def start_pending(self, *, now: float) -> None:
        """
        The peer's transport parameters arrived: start the paths opened before them.

        Those beyond the peer's ``max_paths`` (known only now) are dropped with a
        :class:`~kwik_twisted.events.PathAbandoned` event instead of being refused by the peer.
        """
        pending, self.pending = self.pending, []
        for path_id, local_addr, remote_addr in pending:
            if self.cids is not None and not self.cids.can_start(path_id):
                self.pending.append((path_id, local_addr, remote_addr))  # waits for its CIDs
                continue
            if len(self.paths) >= self.max_paths():
                self.stats["paths_refused"] += 1
                self.pending_backup.pop(path_id, None)
                self.pending_cost.pop(path_id, None)
                self.emit(PathAbandoned(path_id, local_addr, remote_addr))
                continue
            self._start(path_id, local_addr, remote_addr, now=now)

    def _start(self, path_id: int, local_addr: tuple, remote_addr: tuple, *, now: float) -> None:
        path = self.add(path_id, local_addr, remote_addr, validated=False, now=now)
        path.address_validated = True  # we chose the server's address; no amplification concern
        path.recovery.handshake_confirmed = self.confirmed
        self.challenge(path)
        self.emit(PathAdded(path_id, local_addr, remote_addr))
        backup = self.pending_backup.pop(path_id, None)
        if backup is not None:
            self.set_backup(path_id, backup)
        cost = self.pending_cost.pop(path_id, None)
        if cost is not None:
            path.metrics.cost = cost

    def accept(
        self, path_id: int, local_addr: tuple, remote_addr: tuple, *, now: float
    ) -> Path | None:
        """
        A packet for an unknown path ID authenticated: the client opened a path (server side).

        Returns the new path, or ``None`` if we refuse it (too many paths, or we are the client).
        """
        if self.is_client or path_id <= self.highest_peer_path:
            self.stats["paths_refused"] += 1  # IDs only grow: an old one is a late or replayed path
            return None
        if len(self.paths) >= self.config.max_paths:
            self.stats["paths_refused"] += 1
            return None
        self.highest_peer_path = path_id
        path = self.add(path_id, local_addr, remote_addr, validated=False, now=now)
        path.recovery.handshake_confirmed = True
        early = self.early_status.pop(path_id, None)
        if early is not None:
            self.on_status(early)
        self.challenge(path)
        self.emit(PathAdded(path_id, local_addr, remote_addr))
        return path

    def is_forgotten(self, path_id: int) -> bool:
        """Whether ``path_id`` names a path that existed and was abandoned (its late frames mean
        nothing now); ``False`` for an ID never used, or one still waiting to start."""
        if path_id in self.paths or any(p[0] == path_id for p in self.pending):
            return False
        return path_id < self.next_path_id or path_id <= self.highest_peer_path

    # -- validation ------------------------------------------------------------------------

    def on_response(self, path: Path, data: bytes, *, now: float) -> None:
        """A PATH_RESPONSE arrived on ``path``: validated if it answers our challenge."""
        if path.validation.on_response(data):
            self.on_validated(path, now=now)

    def on_validated(self, path: Path, *, now: float) -> None:
        """Its challenge was answered."""
        path.address_validated = True
        if path.phase is PathPhase.VALIDATING:
            path.phase = PathPhase.ACTIVE
            path.metrics.on_phase_change(True, now=now)
            self.emit(PathValidated(path.id, path.local_addr, path.remote_addr))

    def on_challenge_timeout(self, path: Path, *, now: float) -> None:
        """Three PTOs passed since the challenge went out: send it again, or fail validation."""
        if path.validation.on_timeout():
            self.on_validation_failed(path, now=now)

    def on_validation_failed(self, path: Path, *, now: float) -> None:
        """
        A path's challenge went unanswered :data:`~.validation.MAX_CHALLENGE_ATTEMPTS` times.

        A new path (the peer refused it, or it does not reach the peer) is abandoned; a path that
        moved to a new address (rebinding) stops challenging and stays held to the amplification
        budget, which the peer's own packets from that address keep refilling.  A new path that is
        the last one left (the peer abandoned every validated path) leaves nothing to carry the
        connection: that is NO_VIABLE_PATH.

        :raises NoViablePath: the last path of the connection was never validated.
        """
        self.stats["validations_failed"] += 1
        path.validation.stop()
        if path.phase is not PathPhase.VALIDATING:
            return
        if len(self.paths) > 1:
            self.abandon(path.id, now=now)
        else:
            raise NoViablePath(f"path {path.id}, the only one left, failed validation")

    def on_rebinding(self, path: Path, remote_addr: tuple) -> None:
        """The peer's address changed (NAT rebinding): revalidate before trusting it."""
        self.stats["rebindings"] += 1
        path.remote_addr = remote_addr
        path.restart_amplification()
        self.challenge(path)

    # -- failure and recovery -------------------------------------------------------------

    def on_probe_timeout(self, path: Path, *, now: float) -> None:
        """
        A PTO fired on ``path``: fail it if it keeps timing out and another path can take over.

        A path probed for its silence with nothing heard since fails at the probe's first PTO:
        the silence was already the first unanswered round.
        """
        needed = 1 if path.suspect else FAILURE_PTOS
        if path.phase is not PathPhase.ACTIVE or path.recovery.pto_count < needed:
            return
        others = [p for p in self.paths.values() if p is not path and p.usable]
        if not others:
            return
        self.fail(path, now=now)

    def fail(self, path: Path, *, now: float) -> None:
        """Declare ``path`` failed and move its in-flight frames to the other paths."""
        path.phase = PathPhase.FAILED
        path.metrics.on_phase_change(False, now=now)
        path.probe_backoff = 0
        path.next_probe = now + self._probe_interval(path)
        self.requeue(path.count_lost(path.recovery.abandon()))  # in flight on a failed path: lost
        # Out of the coupled group while failed (its window would skew the others' increase);
        # it rejoins with fresh state when it recovers (reset_congestion).
        _leave_group(path)
        self.stats["paths_failed"] += 1
        self.emit(PathFailed(path.id, path.local_addr, path.remote_addr))

    def _probe_interval(self, path: Path) -> float:
        """One PTO, doubled ``probe_backoff`` times, at most :data:`MAX_PROBE_INTERVAL` (or PTO)."""
        pto = path.recovery.rtt.pto_interval()
        return min(max(MAX_PROBE_INTERVAL, pto), pto * (1 << path.probe_backoff))

    def silence_interval(self, path: Path) -> float:
        """How long ``path`` may go without the peer's traffic before it is probed."""
        return SILENCE_RTTS * max(path.recovery.rtt.smoothed_rtt, path.ack.max_ack_delay)

    def deadline(self, path: Path) -> float | None:
        """
        When :meth:`on_probe_due` has work for ``path``: the next probe of a failed path, or the
        end of an active path's silence once another usable path heard traffic after it (then it
        is already due: the deadline appears with the arrival that makes it true).
        """
        if path.phase is PathPhase.FAILED:
            return path.next_probe
        if path.phase is not PathPhase.ACTIVE or path.silence_probed:
            return None
        silent_from = path.traffic_heard_at + self.silence_interval(path)
        for other in self.paths.values():
            if other is not path and other.traffic_heard_at >= silent_from and other.usable:
                return silent_from
        return None

    def on_probe_due(self, path: Path, *, now: float) -> None:
        """:meth:`deadline` passed: probe ``path``, a failed path or a silent one (once)."""
        path.probes_pending = max(path.probes_pending, 1)
        if path.phase is PathPhase.FAILED:
            path.probe_backoff = min(path.probe_backoff + 1, MAX_PROBE_BACKOFF)
            path.next_probe = now + self._probe_interval(path)
        else:
            path.silence_probed = path.suspect = True
            self.stats["silence_probes"] += 1

    def on_heard(self, path: Path, packet_type: int, seq: int, *, now: float) -> None:
        """
        An authenticated packet of the peer's arrived on ``path`` (before its frames are handled).

        Any packet clears the suspicion of a silence probe; anything but ACKs and PINGs is traffic
        and ends the silence; a new packet (not a late one from before the failure) brings a failed
        path back.
        """
        path.suspect = False
        path.last_activity = now
        if packet_type not in PROBE_PACKET_TYPES:
            path.traffic_heard_at = now
            path.silence_probed = False
        if path.phase is PathPhase.FAILED and seq > path.ack.largest:
            self.recover(path, now=now)

    def on_acked(self, path: Path, *, now: float) -> None:
        """Something sent on ``path`` was acknowledged: a failed path is back."""
        if path.phase is PathPhase.FAILED:
            self.recover(path, now=now)

    def recover(self, path: Path, *, now: float) -> None:
        """A failed path answered: back in use with fresh congestion state, its silence reset."""
        path.phase = PathPhase.ACTIVE
        path.metrics.on_phase_change(True, now=now)
        path.recovery.pto_count = 0
        path.traffic_heard_at = now
        path.silence_probed = path.suspect = False
        self.reset_congestion(path)
        self.stats["paths_recovered"] += 1
        self.emit(PathRecovered(path.id, path.local_addr, path.remote_addr))

    # -- status and abandonment -------------------------------------------------------------

    def set_backup(self, path_id: int, backup: bool) -> None:
        """Mark a path backup (or available) and tell the peer with PATH_STATUS."""
        if any(pending[0] == path_id for pending in self.pending):
            self.pending_backup[path_id] = backup  # applied when the path starts
            return
        path = self._known(path_id)
        path.status = PathState.BACKUP if backup else PathState.AVAILABLE
        self.status_sequence += 1
        self.control.append(PathStatusFrame(path_id, self.status_sequence, path.status))

    def set_cost(self, path_id: int, cost: float) -> None:
        """
        Set the cost of sending on a path (0 by default; a metered link is dearer).

        Local only (the peer is not told); a path still pending takes it when it starts.

        :raises ConfigurationError: ``cost`` is not a finite number >= 0.
        :raises ValueError: no such path.
        """
        cost = check_cost(cost)
        if any(pending[0] == path_id for pending in self.pending):
            self.pending_cost[path_id] = cost  # bounded: one per pending path, at most max_paths
            return
        self._known(path_id).metrics.cost = cost

    def _known(self, path_id: int) -> Path:
        path = self.paths.get(path_id)
        if path is None:
            raise ValueError(f"no path {path_id}; paths are {sorted(self.paths)}")
        return path

    def on_status(self, frame: PathStatusFrame) -> None:
        """
        The peer's PATH_STATUS.

        It may overtake the first packet of the path it names (it travels on another path), so a
        status for a path not seen yet is kept until the path arrives (at most ``max_paths`` of
        them).
        """
        path = self.paths.get(frame.path_id)
        if path is None:
            early = self.early_status
            if frame.path_id in early or len(early) < self.config.max_paths:
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
        path = self._known(path_id) if notify else self.paths.get(path_id)
        if path is None and not notify and not self.is_client and path_id > self.highest_peer_path:
            # The client gave up a path we never heard on: its ID is used up, and the client's
            # CID for it retired, or the client would never issue another (core/cids.py).
            if self.cids is not None and self.cids.peer_cid(path_id) is not None:
                self.highest_peer_path = path_id
                self.cids.retire_peer(path_id)
        if path is None or path.phase is PathPhase.ABANDONED:
            return
        if len(self.paths) == 1:
            if notify:
                raise ValueError(f"path {path_id} is the last path; close the connection instead")
            raise ProtocolViolation(f"PATH_ABANDON for the last path ({path_id})")
        if notify:
            self.control.append(PathAbandonFrame(path_id, error_code))
        path.phase = PathPhase.ABANDONED
        path.metrics.on_phase_change(False, now=now)
        self.requeue(path.recovery.abandon())
        _leave_group(path)
        # Forgotten at once: late packets for the ID are dropped (IDs are never reused), late
        # ACKs for it ignored, and a peer cannot grow our memory by opening and abandoning paths.
        del self.paths[path.id]
        if self.cids is not None:
            self.cids.retire_peer(path.id)
        self.emit(PathAbandoned(path.id, path.local_addr, path.remote_addr))

    def on_abandon(self, frame: PathAbandonFrame, *, now: float) -> None:
        """The peer abandoned a path."""
        self.abandon(frame.path_id, frame.error_code, now=now, notify=False)

    # -- advertised addresses ----------------------------------------------------------

    def advertise(self) -> None:
        """Server: announce the configured extra addresses (called when the handshake completes)."""
        for address_id, (host, port) in enumerate(self.config.advertise, start=1):
            frame = AddAddressFrame(address_id, ip_address(host), int(port))
            self.control.append(frame)

    def on_add_address(self, frame: AddAddressFrame, *, now: float) -> None:
        """Client: the server advertised an address; open a path to it if configured to."""
        if not self.is_client or frame.address_id in self.advertised:
            return
        if len(self.advertised) >= self.config.max_paths * 4:
            return  # bounded: a peer cannot make us remember unlimited addresses
        address = (str(frame.host), frame.port)
        self.advertised[frame.address_id] = address
        self.emit(AddressAdvertised(frame.address_id, address))
        known = {p.remote_addr for p in self.paths.values()}
        if self.config.use_advertised and address not in known:
            if len(self.paths) + len(self.pending) < self.config.max_paths:
                local = next(iter(self.paths.values())).local_addr
                self.open(local, address, now=now)

    def probe_usable(self) -> None:
        """Make every usable path send an ack-eliciting packet (a keep-alive PING)."""
        for path in self.paths.values():
            if path.usable:
                path.probes_pending = max(path.probes_pending, 1)

    def pto(self) -> float:
        """The connection's PTO, for closing: path 0's (or any path's, once 0 is gone)."""
        path = self.paths.get(0) or next(iter(self.paths.values()))  # never empty: see abandon()
        return path.recovery.rtt.pto_interval(self.config.max_ack_delay)

    # -- reading --------------------------------------------------------------------------

    def metrics(self, *, now: float) -> dict[int, PathMetrics]:
        """A snapshot of every path's metrics, by path ID (with the server's load, if known)."""
        snapshots = {p.id: p.metrics.snapshot(p, now=now) for p in self.paths.values()}
        if self.server_load is not None:
            load = self.server_load
            snapshots = {pid: replace(m, server_load=load) for pid, m in snapshots.items()}
        return snapshots


def _leave_group(path: Path) -> None:
    """Take ``path``'s controller out of its coupled group, if it is in one."""
    leave = getattr(path.recovery.controller, "leave", None)
    if leave is not None:
        leave()


def check_cost(cost: float) -> float:
    """
    A path's cost, checked: a finite number >= 0 (``bool`` is not a number here).

    :raises ConfigurationError: it is not.
    """
    if isinstance(cost, bool) or not isinstance(cost, (int, float)):
        raise ConfigurationError(f"path cost {cost!r}: expected a number")
    if not math.isfinite(cost) or cost < 0:
        raise ConfigurationError(f"path cost {cost!r}: must be a finite number >= 0")
    return float(cost)


def check_path_ids(paths, path_manager: PathManager) -> frozenset[int] | None:
    """The path IDs a stream is pinned to, checked: each must be open or pending (opened by
    :meth:`PathManager.open` before the handshake let it start)."""
    if paths is None:
        return None
    ids = frozenset(paths)
    known = set(path_manager.paths).union(pid for pid, _local, _remote in path_manager.pending)
    unknown = sorted(ids - known)
    if unknown or not ids:
        raise ConfigurationError(
            f"paths {unknown or '(none)'} are not paths of this connection; "
            f"its paths are {sorted(known)}"
        )
    return ids
