"""
Loss detection and probe timeouts for one path (RFC 9002 §6, §7.6), with
optimistic-ACK defence (RFC 9000 §21.4).

Each path numbers its packets from 0 in its own 64-bit space, so it has its
own :class:`LossRecovery`.  Sent packets are kept in a dict ``seq -> packet``
plus a list of their numbers in send order (ascending), of which a prefix
already gone is skipped by a head index and stale entries left by removals
are compacted away once they outnumber the live ones.  Acknowledging a range
bisects that list, so an ACK costs O(ranges * log n + packets acked), never a
walk over every number of a huge range; acking the oldest packets in order,
the common case, costs O(packets acked).

Loss detection (§6.1): an outstanding packet below the largest acknowledged
one is lost when three later packets were acknowledged (kPacketThreshold) or
when it was sent more than ``9/8 * max(srtt, latest_rtt)`` (at least 1 ms)
ago.  Packets are sent with non-decreasing times, so the lost packets are
always a prefix of the outstanding ones and detection stops at the first
survivor, whose deadline becomes :meth:`LossRecovery.loss_deadline`.

Probe timeout (§6.2): ``pto_interval * 2**pto_count`` after the last
ack-eliciting packet; when it fires the caller sends probes (two ack-eliciting
packets) and the backoff doubles; an ACK that acknowledges something resets it.

Persistent congestion (§7.6): ack-eliciting packets lost in one batch, sent
after the first RTT sample, with no acknowledged packet between them (only
skipped numbers may separate them), spanning more than
``3 * (srtt + max(4 rttvar, 1 ms) + max_ack_delay)``.

An ACK naming a number never sent (above the largest sent, or one skipped on
purpose with :meth:`LossRecovery.skip_sequence_number`) is a
:class:`~kwik_twisted.errors.ProtocolViolation`: a peer acknowledging packets
it never received to inflate our window is caught.  Repeated ACKs of numbers
already acknowledged or declared lost are harmless.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import NamedTuple

from kwik_twisted.core.congestion.base import CongestionController
from kwik_twisted.core.recovery.rtt import RttEstimator
from kwik_twisted.errors import InternalError, ProtocolViolation

#: kPacketThreshold of RFC 9002 §6.1.1.
PACKET_THRESHOLD = 3
#: kPersistentCongestionThreshold of RFC 9002 §7.6.1.
PERSISTENT_CONGESTION_THRESHOLD = 3
#: Probes to send when the PTO fires (RFC 9002 §6.2.4 allows up to two).
PROBE_COUNT = 2
#: Exponent cap of the PTO backoff, so the deadline stays finite.
MAX_PTO_BACKOFF = 16
#: How many skipped-number intervals are remembered (the oldest are forgotten).
MAX_SKIPPED = 1024
MAX_SEQUENCE = (1 << 64) - 1
_COMPACT_SLACK = 64
#: How many outstanding packets :meth:`LossRecovery.oldest_unacked_time` looks through.
OLDEST_SCAN = 64


class SentPacket:
    """
    A packet sent on a path and not yet acknowledged or declared lost.

    :ivar seq: the packet's number in the path's sequence space.
    :ivar sent_time: when it was sent.
    :ivar size: its size in bytes.
    :ivar ack_eliciting: whether it elicits an ACK.
    :ivar in_flight: whether it counts in bytes in flight.
    :ivar frames: what the connection needs to retransmit or acknowledge.
    :ivar is_probe: whether it was sent as a PTO probe.
    :ivar mtu_probe: whether it is a path MTU probe (its loss is no congestion signal).
    :ivar delivered: the path's delivered-bytes count when it was sent (-1: not stamped, it gives
        no delivery-rate sample); with ``delivered_time``, ``first_sent_time`` and
        ``app_limited``, written by
        :meth:`~kwik_twisted.core.paths.metrics.PathMetricsTracker.on_sent` and read back when
        it is acknowledged (draft-cheng-iccrg-delivery-rate-estimation).
    """

    __slots__ = ("seq", "sent_time", "size", "ack_eliciting", "in_flight", "frames", "is_probe",
                 "delivered", "delivered_time", "first_sent_time", "app_limited",
                 "mtu_probe")  # fmt: skip

    def __init__(
        self,
        seq: int,
        sent_time: float,
        size: int,
        ack_eliciting: bool = True,
        in_flight: bool = True,
        frames: list | None = None,
        is_probe: bool = False,
    ) -> None:
        self.seq = seq
        self.sent_time = sent_time
        self.size = size
        self.ack_eliciting = ack_eliciting
        self.in_flight = in_flight
        self.frames = frames if frames is not None else []
        self.is_probe = is_probe
        self.delivered = -1
        self.delivered_time = self.first_sent_time = sent_time
        self.app_limited = False
        self.mtu_probe = False

    def __repr__(self) -> str:
        return f"<SentPacket seq={self.seq} t={self.sent_time} size={self.size}>"


class AckResult(NamedTuple):
    """What an ACK frame changed."""

    newly_acked: list[SentPacket]
    lost: list[SentPacket]
    rtt_sample_taken: bool


class TimeoutResult(NamedTuple):
    """What a loss-detection timeout asks for: lost packets, or probes to send."""

    lost: list[SentPacket]
    probes: int


_NOTHING = TimeoutResult([], 0)


class LossRecovery:
    """
    Loss detection, probe timeouts and bytes in flight for one path.

    :ivar rtt: the path's RTT estimator.
    :ivar controller: the path's congestion controller.
    :ivar max_ack_delay: the peer's max_ack_delay, in seconds.
    :ivar handshake_confirmed: whether the handshake is confirmed (ACK delays
        are then capped by ``max_ack_delay``, and the PTO includes it).
    :ivar probe_when_idle: arm the PTO even with nothing in flight
        (RFC 9002 §6.2.2.1 anti-deadlock, before the peer validated us).
    :ivar bytes_in_flight: bytes of in-flight packets outstanding.
    :ivar largest_acked: the largest number acknowledged, or -1.
    :ivar largest_sent: the largest number sent, or -1.
    :ivar pto_count: consecutive PTOs without an acknowledgment.
    """

    __slots__ = (
        "rtt",
        "controller",
        "max_ack_delay",
        "handshake_confirmed",
        "probe_when_idle",
        "bytes_in_flight",
        "largest_acked",
        "largest_sent",
        "pto_count",
        "first_rtt_sample",
        "_sent",
        "_order",
        "_head",
        "_next_seq",
        "_ack_eliciting_in_flight",
        "_last_ack_eliciting_time",
        "_last_send_time",
        "_loss_time",
        "_skip_starts",
        "_skip_ends",
    )

    def __init__(
        self,
        controller: CongestionController,
        rtt: RttEstimator | None = None,
        *,
        max_ack_delay: float = 0.025,
        handshake_confirmed: bool = True,
    ) -> None:
        self.controller = controller
        self.rtt = rtt if rtt is not None else RttEstimator()
        self.max_ack_delay = max_ack_delay
        self.handshake_confirmed = handshake_confirmed
        self.probe_when_idle = False
        self.bytes_in_flight = 0
        self.largest_acked = -1
        self.largest_sent = -1
        self.pto_count = 0
        self.first_rtt_sample: float | None = None
        self._sent: dict[int, SentPacket] = {}
        self._order: list[int] = []
        self._head = 0
        self._next_seq = 0
        self._ack_eliciting_in_flight = 0
        self._last_ack_eliciting_time: float | None = None
        self._last_send_time: float | None = None
        self._loss_time: float | None = None
        self._skip_starts: list[int] = []
        self._skip_ends: list[int] = []

    # -- sending ---------------------------------------------------------------

    @property
    def next_sequence_number(self) -> int:
        """The smallest number the next packet may use."""
        return self._next_seq

    @property
    def outstanding(self) -> int:
        """How many sent packets are neither acknowledged nor declared lost."""
        return len(self._sent)

    def skip_sequence_number(self) -> int:
        """Skip the next number on purpose (an ACK of it is then a violation); return it."""
        seq = self._next_seq
        self._record_skip(seq, seq)
        self._next_seq = seq + 1
        return seq

    def _record_skip(self, first: int, last: int) -> None:
        starts, ends = self._skip_starts, self._skip_ends
        if ends and ends[-1] == first - 1:
            ends[-1] = last
            return
        starts.append(first)
        ends.append(last)
        if len(starts) > MAX_SKIPPED:
            del starts[0], ends[0]

    def on_packet_sent(self, packet: SentPacket) -> None:
        """
        Record a sent packet.  Numbers must increase; a gap counts as skipped.

        :raises InternalError: if the number does not increase or overflows.
        """
        seq = packet.seq
        if seq < self._next_seq or seq > MAX_SEQUENCE:
            raise InternalError(f"packet number {seq} sent out of order (next {self._next_seq})")
        if seq > self._next_seq:
            self._record_skip(self._next_seq, seq - 1)
        self._next_seq = seq + 1
        self.largest_sent = seq
        self._last_send_time = packet.sent_time
        self._sent[seq] = packet
        self._order.append(seq)
        if packet.in_flight:
            if packet.ack_eliciting:
                self._ack_eliciting_in_flight += 1
                self._last_ack_eliciting_time = packet.sent_time
            self.bytes_in_flight += packet.size
            self.controller.on_packet_sent(
                packet.size, now=packet.sent_time, bytes_in_flight=self.bytes_in_flight
            )

    def _forget(self, packet: SentPacket) -> None:
        """Stop counting ``packet`` in flight (it left ``_sent`` already)."""
        if packet.in_flight:
            self.bytes_in_flight -= packet.size
            if packet.ack_eliciting:
                self._ack_eliciting_in_flight -= 1

    # -- acknowledgments ---------------------------------------------------------

    def on_ack_received(
        self, ranges: Sequence[tuple[int, int]], ack_delay: float, *, now: float
    ) -> AckResult:
        """
        Process an ACK frame for this path.

        :param ranges: inclusive ``(first, last)`` ranges, in descending order.
        :param ack_delay: the ACK delay the peer reported, in seconds.
        :raises ProtocolViolation: if a range names a number never sent, or
            the ranges are not descending and disjoint.
        """
        if not ranges:
            return AckResult([], [], False)
        self._check_ranges(ranges)
        largest = ranges[0][1]
        if largest > self.largest_acked:
            self.largest_acked = largest
        newly_acked = self._remove_ranges(ranges)
        if not newly_acked:
            return AckResult(newly_acked, [], False)
        sampled = self._maybe_sample_rtt(newly_acked, largest, ack_delay, now)
        lost = self.detect_lost(now=now)
        self.pto_count = 0
        if len(newly_acked) == 1:  # an echo's ACK: one packet, no list to filter
            acked_in_flight = newly_acked if newly_acked[0].in_flight else None
        else:
            acked_in_flight = [p for p in newly_acked if p.in_flight]
        if acked_in_flight:
            self.controller.on_packets_acked(acked_in_flight, now=now, rtt=self.rtt)
        return AckResult(newly_acked, lost, sampled)

    def _check_ranges(self, ranges: Sequence[tuple[int, int]]) -> None:
        """Reject malformed ranges and numbers never sent, before changing anything."""
        largest = ranges[0][1]
        if largest > self.largest_sent:
            raise ProtocolViolation(
                f"ACK of packet {largest}, above the largest sent {self.largest_sent}"
            )
        limit = largest
        starts, ends = self._skip_starts, self._skip_ends
        for first, last in ranges:
            if first < 0 or first > last:
                raise ProtocolViolation(f"malformed ACK range [{first}, {last}]")
            if last > limit:
                raise ProtocolViolation("ACK ranges overlap or are not in descending order")
            if starts:
                i = bisect_right(starts, last) - 1
                if i >= 0 and ends[i] >= first:
                    skipped = max(first, starts[i])
                    raise ProtocolViolation(f"ACK of packet {skipped}, which was never sent")
            limit = first - 1

    def _remove_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[SentPacket]:
        """Take the outstanding packets inside ``ranges`` out; return them, ascending."""
        order, sent, head = self._order, self._sent, self._head
        end = len(order)
        if head == end:
            return []
        lowest = order[head]
        acked: list[SentPacket] = []
        pop = sent.pop
        for first, last in ranges:
            if last < lowest:
                break
            hi = bisect_right(order, last, head, end)
            lo = bisect_left(order, first, head, hi)
            for i in range(hi - 1, lo - 1, -1):
                packet = pop(order[i], None)
                if packet is not None:
                    acked.append(packet)
                    if packet.in_flight:  # _forget, inline: once per acknowledged packet
                        self.bytes_in_flight -= packet.size
                        if packet.ack_eliciting:
                            self._ack_eliciting_in_flight -= 1
            end = lo
        acked.reverse()
        self._tidy()
        return acked

    def _tidy(self) -> None:
        """Advance the head past removed packets; compact when stale entries pile up."""
        order, sent, head = self._order, self._sent, self._head
        n = len(order)
        while head < n and order[head] not in sent:
            head += 1
        if head > _COMPACT_SLACK and head * 2 > n:
            del order[:head]
            head = 0
            n = len(order)
        elif n - head - len(sent) > len(sent) + _COMPACT_SLACK:
            order[:] = [seq for seq in order[head:] if seq in sent]
            head = 0
        self._head = head

    def _maybe_sample_rtt(
        self, acked: list[SentPacket], largest: int, ack_delay: float, now: float
    ) -> bool:
        """Take an RTT sample if the largest acknowledged is newly acked (§5.1)."""
        newest = acked[-1]
        if newest.seq != largest:
            return False
        if not newest.ack_eliciting and not any(p.ack_eliciting for p in acked):
            return False
        if ack_delay < 0.0:
            ack_delay = 0.0
        self.rtt.update(
            now - newest.sent_time,
            ack_delay,
            max_ack_delay=self.max_ack_delay,
            handshake_confirmed=self.handshake_confirmed,
        )
        if self.first_rtt_sample is None:
            self.first_rtt_sample = now
        return True

    # -- loss detection ----------------------------------------------------------

    def detect_lost(self, *, now: float) -> list[SentPacket]:
        """Declare lost what the packet or time threshold says (§6.1); tell the controller."""
        self._loss_time = None
        largest_acked = self.largest_acked
        if largest_acked < 0:
            return []
        delay = self.rtt.loss_delay()
        lost_before = now - delay
        seq_limit = largest_acked - PACKET_THRESHOLD
        order, sent = self._order, self._sent
        lost: list[SentPacket] = []
        i, n = self._head, len(order)
        while i < n:
            seq = order[i]
            if seq >= largest_acked:
                break
            packet = sent.get(seq)
            if packet is not None:
                if seq > seq_limit and packet.sent_time > lost_before:
                    self._loss_time = packet.sent_time + delay
                    break
                del sent[seq]
                self._forget(packet)
                lost.append(packet)
            i += 1
        self._head = i
        if lost:
            self._tidy()
            self._on_lost(lost, now)
        return lost

    def _on_lost(self, lost: list[SentPacket], now: float) -> None:
        # A lost path MTU probe says nothing about congestion (RFC 9000 14.4): left out.
        in_flight = [p for p in lost if p.in_flight and not p.mtu_probe]
        if not in_flight:
            return
        if len(in_flight) < len(lost):
            lost = [p for p in lost if not p.mtu_probe]
        self.controller.on_packets_lost(in_flight, now=now)
        if self._persistent_congestion(lost):
            self.controller.on_persistent_congestion(now=now)

    def _persistent_congestion(self, lost: list[SentPacket]) -> bool:
        """Whether ``lost`` (ascending) shows persistent congestion (§7.6)."""
        if self.first_rtt_sample is None:
            return False
        duration = self.rtt.pto_interval(self.max_ack_delay) * PERSISTENT_CONGESTION_THRESHOLD
        start: float | None = None
        previous = -2
        for packet in lost:
            if packet.sent_time <= self.first_rtt_sample:
                previous = -2
                continue
            if start is not None and not self._only_skipped_between(previous, packet.seq):
                start = None
            previous = packet.seq
            if not packet.ack_eliciting:
                continue
            if start is None:
                start = packet.sent_time
            elif packet.sent_time - start > duration:
                return True
        return False

    def _only_skipped_between(self, low: int, high: int) -> bool:
        """Whether every number strictly between ``low`` and ``high`` was skipped."""
        if high == low + 1:
            return True
        starts = self._skip_starts
        i = bisect_right(starts, low + 1) - 1
        return i >= 0 and self._skip_ends[i] >= high - 1

    # -- timers ------------------------------------------------------------------

    def loss_deadline(self) -> float | None:
        """When an outstanding packet crosses the time threshold, or ``None``."""
        return self._loss_time

    def pto_deadline(self, *, now: float) -> float | None:
        """When the probe timeout fires, or ``None`` if nothing needs probing."""
        if self._ack_eliciting_in_flight == 0:
            if not self.probe_when_idle:
                return None
            # Anchored at the last send, not at ``now``: a deadline that moves with the clock
            # would never arrive (RFC 9002 §6.2.2.1 anti-deadlock probe).
            base = self._last_send_time if self._last_send_time is not None else now
        else:
            base = self._last_ack_eliciting_time  # type: ignore[assignment]
        max_ack_delay = self.max_ack_delay if self.handshake_confirmed else 0.0
        backoff = 1 << min(self.pto_count, MAX_PTO_BACKOFF)
        return base + self.rtt.pto_interval(max_ack_delay) * backoff

    def deadline(self, *, now: float) -> float | None:
        """The loss-detection timer: the loss deadline if set, else the PTO (§6.2.1)."""
        if self._loss_time is not None:
            return self._loss_time
        return self.pto_deadline(now=now)

    def on_timeout(self, *, now: float) -> TimeoutResult:
        """
        Handle the loss-detection timer; calling it early is harmless.

        Returns the packets declared lost, or how many probes to send (the
        caller sends them ack-eliciting, retransmitting data if it can).
        """
        if self._loss_time is not None:
            if now < self._loss_time:
                return _NOTHING
            return TimeoutResult(self.detect_lost(now=now), 0)
        deadline = self.pto_deadline(now=now)
        if deadline is None or now < deadline:
            return _NOTHING
        self.pto_count += 1
        return TimeoutResult([], PROBE_COUNT)

    # -- path teardown -----------------------------------------------------------

    def oldest_unacked_time(self) -> float | None:
        """When the oldest packet still counted in flight was sent (``None``: none is, or none
        among the first :data:`OLDEST_SCAN` outstanding packets: ACK-only packets, never in
        flight, are skipped, at a bounded cost)."""
        if not self.bytes_in_flight:
            return None
        order, sent = self._order, self._sent
        for i in range(self._head, min(len(order), self._head + OLDEST_SCAN)):
            packet = sent.get(order[i])
            if packet is not None and packet.in_flight:
                return packet.sent_time
        return None

    def in_flight_packets(self) -> list[SentPacket]:
        """The packets still counted in flight, oldest first (O(outstanding packets))."""
        return [p for p in self._sent.values() if p.in_flight]

    def abandon(self) -> list[SentPacket]:
        """
        Forget every outstanding packet, for a path that is given up.

        Returns the in-flight ones, ascending, so their frames can be sent on
        another path.  The controller is not told (the path is gone).
        """
        packets = [p for p in self._sent.values() if p.in_flight]
        packets.sort(key=_seq_of)
        self._sent.clear()
        self._order.clear()
        self._head = 0
        self.bytes_in_flight = 0
        self._ack_eliciting_in_flight = 0
        self._loss_time = None
        self.pto_count = 0
        return packets

    def __repr__(self) -> str:
        return (
            f"<LossRecovery outstanding={len(self._sent)} in_flight={self.bytes_in_flight} "
            f"largest_sent={self.largest_sent} largest_acked={self.largest_acked} "
            f"pto_count={self.pto_count}>"
        )


def _seq_of(packet: SentPacket) -> int:
    return packet.seq
