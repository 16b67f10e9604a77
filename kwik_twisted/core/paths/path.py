"""
A path: one (local address, remote address) pair of a connection, and everything that is per path.

Theory of operation.  Kwik gives each path its own sequence-number space (protocol.rst, "Path packet
header"), so everything RFC 9002 keeps per packet-number space is kept here per path: the sender's
:class:`~kwik_twisted.core.recovery.loss.LossRecovery` (with its RTT estimator and congestion
controller), a pacer, and the receiver's :class:`AckTracker`.  Validation (PATH_CHALLENGE /
PATH_RESPONSE, RFC 9000 §8.2) and the anti-amplification budget (§8.1) are per path too, as in the
multipath QUIC draft. A single-path connection is a connection with one of these.
"""

from __future__ import annotations

from enum import Enum

from ...wire import AckFrame, PathState
from ..recovery.loss import LossRecovery
from ..recovery.pacing import Pacer
from .validation import MAX_CHALLENGE_ATTEMPTS, MAX_PENDING_RESPONSES, PathValidation

__all__ = [
    "AMPLIFICATION_FACTOR",
    "MAX_CHALLENGE_ATTEMPTS",
    "MAX_PENDING_RESPONSES",
    "AckTracker",
    "Path",
    "PathPhase",
]

#: How many ranges of received sequence numbers a path remembers (protocol.rst, "Acknowledgements").
MAX_ACK_RANGES_TRACKED = 32
#: Ack-eliciting packets received before an ACK is sent at once.
ACK_ELICITING_THRESHOLD = 2
AMPLIFICATION_FACTOR = 3


class AckTracker:
    """
    Which sequence numbers arrived on a path, and when an ACK is due.

    Ranges are kept ascending as ``[first, last]`` lists, at most :data:`MAX_ACK_RANGES_TRACKED`;
    numbers below ``floor`` count as received (they were forgotten, or acknowledged in an ACK the
    peer confirmed).
    """

    __slots__ = (
        "ranges",
        "floor",
        "largest",
        "largest_time",
        "eliciting_since_ack",
        "ack_deadline",
        "max_ack_delay",
        "immediate",
    )

    def __init__(self, max_ack_delay: float) -> None:
        self.ranges: list[list[int]] = []
        self.floor = 0
        self.largest = -1
        self.largest_time = 0.0
        self.eliciting_since_ack = 0
        self.ack_deadline: float | None = None
        self.max_ack_delay = max_ack_delay
        self.immediate = False

    def is_duplicate(self, seq: int) -> bool:
        """Whether ``seq`` was already received (a replay or a duplicate)."""
        if seq < self.floor:
            return True
        for first, last in reversed(self.ranges):
            if seq > last:
                return False
            if seq >= first:
                return True
        return False

    def on_received(self, seq: int, ack_eliciting: bool, *, now: float) -> None:
        """Record ``seq`` and update when the next ACK is due."""
        out_of_order = seq != self.largest + 1
        self._insert(seq)
        if seq > self.largest:
            self.largest = seq
            self.largest_time = now
        if not ack_eliciting:
            return
        self.eliciting_since_ack += 1
        if out_of_order or self.eliciting_since_ack >= ACK_ELICITING_THRESHOLD:
            self.immediate = True
            self.ack_deadline = now
        elif self.ack_deadline is None:
            self.ack_deadline = now + self.max_ack_delay

    def _insert(self, seq: int) -> None:
        ranges = self.ranges
        if ranges and seq == ranges[-1][1] + 1:  # the common case: the next in order
            ranges[-1][1] = seq
            return
        i = len(ranges)
        while i and ranges[i - 1][0] > seq:
            i -= 1
        if i and ranges[i - 1][1] + 1 >= seq:
            ranges[i - 1][1] = max(ranges[i - 1][1], seq)
        else:
            ranges.insert(i, [seq, seq])
            i += 1
        # Merge with the following range if now adjacent.
        if i < len(ranges) and ranges[i - 1][1] + 1 >= ranges[i][0]:
            ranges[i - 1][1] = max(ranges[i - 1][1], ranges[i][1])
            del ranges[i]
        if len(ranges) > MAX_ACK_RANGES_TRACKED:
            dropped = ranges.pop(0)
            self.floor = dropped[1] + 1

    def build_ack(self, path_id: int, *, now: float) -> AckFrame | None:
        """The ACK frame for this path's received packets (``None`` before anything arrived)."""
        if not self.ranges:
            return None
        delay = int(max(0.0, now - self.largest_time) * 1e6)
        ranges = tuple((first, last) for first, last in reversed(self.ranges))
        return AckFrame(path_id, ranges, delay)

    def on_delay_expired(self) -> None:
        """The ACK delay passed: the pending ACK is due now."""
        self.immediate = True

    def on_ack_sent(self) -> None:
        """An ACK went out: nothing is due until more ack-eliciting packets arrive."""
        self.eliciting_since_ack = 0
        self.ack_deadline = None
        self.immediate = False

    def on_ack_acked(self, largest: int) -> None:
        """
        The peer confirmed an ACK whose largest was ``largest``: stop reporting ranges below it.

        The range containing ``largest`` stays; everything older goes, and ``floor`` rises to its
        start.
        """
        ranges = self.ranges
        keep = 0
        while keep < len(ranges) and ranges[keep][1] < largest:
            keep += 1
        if keep and keep < len(ranges) + 1:
            del ranges[:keep]
            if ranges:
                self.floor = max(self.floor, ranges[0][0])
            else:
                self.floor = max(self.floor, largest + 1)


class PathPhase(Enum):
    """Where a path stands."""

    VALIDATING = "validating"
    ACTIVE = "active"
    FAILED = "failed"
    ABANDONED = "abandoned"


class Path:
    """
    Per-path state.

    :ivar id: the path ID (0 for the handshake path).
    :ivar local_addr: our address on this path.
    :ivar remote_addr: the peer's address on this path.
    :ivar recovery: sent-packet tracking, RTT, congestion controller.
    :ivar ack: received-packet tracking.
    :ivar phase: a :class:`PathPhase`.
    :ivar status: AVAILABLE or BACKUP (ours; ``peer_status`` is the peer's wish).
    :ivar address_validated: whether the peer's address is proven (no amplification limit).
    :ivar validation: our PATH_CHALLENGE and the PATH_RESPONSEs we owe (a
        :class:`~kwik_twisted.core.paths.validation.PathValidation`).
    :ivar traffic_heard_at: when the peer's last packet carrying more than ACKs and PINGs arrived
        on this path (its creation or recovery until then); see
        :meth:`~kwik_twisted.core.paths.manager.PathManager.deadline`.
    :ivar silence_probed: whether the current silence was already probed (once per silence).
    :ivar suspect: probed for its silence, and nothing at all heard on it since.
    :ivar next_probe: when a failed path is probed next; ``probe_backoff`` doublings so far.
    :ivar packets_sent: packets sent on the path, ``bytes_sent`` their bytes (likewise received,
        lost, and retransmitted: lost packets whose frames were queued again); cumulative over
        the path's life, for :class:`~kwik_twisted.core.paths.metrics.PathMetrics`.
    :ivar last_activity: when the last authenticated packet arrived (``None``: none yet).
    :ivar max_datagram_size: the path's datagram size found by path MTU discovery, kept by
        ``mtu`` (a :class:`~kwik_twisted.core.paths.pmtud.PathMtu`); 0 until it starts (and with
        ``pmtud`` off): the connection-wide size applies.
    """

    __slots__ = (
        "id",
        "local_addr",
        "remote_addr",
        "recovery",
        "pacer",
        "ack",
        "phase",
        "status",
        "peer_status",
        "peer_status_seq",
        "address_validated",
        "bytes_received",
        "bytes_sent",
        "validation",
        "dcid",
        "probes_pending",
        "packets_sent",
        "packets_received",
        "packets_lost",
        "bytes_acked",
        "metrics",
        "pacing_deadline",
        "next_probe",
        "probe_backoff",
        "traffic_heard_at",
        "silence_probed",
        "suspect",
        "bytes_lost",
        "packets_retransmitted",
        "bytes_retransmitted",
        "last_activity",
        "amplification_base",
        "max_datagram_size",
        "mtu",
    )

    def __init__(
        self,
        path_id: int,
        local_addr: tuple,
        remote_addr: tuple,
        *,
        recovery: LossRecovery,
        pacer: Pacer,
        max_ack_delay: float,
        validated: bool,
        now: float,
        dcid: bytes = b"",
    ) -> None:
        self.id = path_id
        self.local_addr = local_addr
        self.remote_addr = remote_addr
        self.recovery = recovery
        self.pacer = pacer
        self.ack = AckTracker(max_ack_delay)
        self.phase = PathPhase.ACTIVE if validated else PathPhase.VALIDATING
        self.status = PathState.AVAILABLE
        self.peer_status = PathState.AVAILABLE
        self.peer_status_seq = -1
        self.address_validated = validated
        self.bytes_received = 0
        self.bytes_sent = 0
        self.validation = PathValidation()
        self.dcid = dcid
        self.probes_pending = 0
        self.packets_sent = 0
        self.packets_received = 0
        self.packets_lost = 0
        self.bytes_acked = 0
        self.metrics = None
        self.pacing_deadline: float | None = None
        self.next_probe = 0.0
        self.probe_backoff = 0
        self.traffic_heard_at = now
        self.silence_probed = False
        self.suspect = False
        self.bytes_lost = 0
        self.packets_retransmitted = 0
        self.bytes_retransmitted = 0
        self.last_activity: float | None = None
        self.amplification_base = (0, 0)  # (received, sent) when validation last restarted
        self.max_datagram_size = 0  # PMTUD's size once it runs (0: the connection's)
        self.mtu = None  # its PathMtu (core/paths/pmtud.py), set by PathManager.add

    @property
    def usable(self) -> bool:
        """Whether the path may carry stream data."""
        return self.phase is PathPhase.ACTIVE

    @property
    def is_backup(self) -> bool:
        """Whether either side asked for this path to be a backup."""
        return self.status is PathState.BACKUP or self.peer_status is PathState.BACKUP

    def amplification_room(self) -> int | None:
        """Bytes we may still send before the peer's address is validated (``None``: no limit)."""
        if self.address_validated:
            return None
        received, sent = self.amplification_base
        received = self.bytes_received - received
        return max(0, AMPLIFICATION_FACTOR * received - (self.bytes_sent - sent))

    def count_lost(self, packets: list) -> list:
        """Count ``packets`` (sent on this path) as lost, and those carrying more than ACKs as
        retransmitted (their frames are queued again); return ``packets``."""
        for packet in packets:
            self.packets_lost += 1
            self.bytes_lost += packet.size
            if packet.ack_eliciting:
                self.packets_retransmitted += 1
                self.bytes_retransmitted += packet.size
        return packets

    def restart_amplification(self) -> None:
        """The peer's address changed: the anti-amplification budget counts from now (the byte
        counters themselves keep counting)."""
        self.address_validated = False
        self.amplification_base = (self.bytes_received, self.bytes_sent)

    def __repr__(self) -> str:
        return (
            f"<Path {self.id} {self.local_addr}->{self.remote_addr} {self.phase.name} "
            f"cwnd={self.recovery.controller.cwnd} inflight={self.recovery.bytes_in_flight}>"
        )
