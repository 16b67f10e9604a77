"""Tests for kwik_twisted.core.recovery.loss: loss detection, PTO, persistent congestion."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.congestion.newreno import NewReno
from kwik_twisted.core.recovery.loss import LossRecovery, SentPacket
from kwik_twisted.errors import InternalError, ProtocolViolation

SIZE = 1000


def make_recovery(**kw: object) -> LossRecovery:
    """A LossRecovery with a NewReno controller and max_ack_delay 25 ms."""
    return LossRecovery(NewReno(), **kw)  # type: ignore[arg-type]


def send(recovery: LossRecovery, seq: int, now: float, **kw: object) -> SentPacket:
    """Send one packet of SIZE bytes numbered ``seq`` at ``now``."""
    packet = SentPacket(seq, now, SIZE, **kw)  # type: ignore[arg-type]
    recovery.on_packet_sent(packet)
    return packet


def seqs(packets: list[SentPacket]) -> list[int]:
    """The numbers of ``packets``."""
    return [p.seq for p in packets]


class AckTests(SynchronousTestCase):
    """Acknowledging packets."""

    def test_ack_removes_packets_and_bytes_in_flight(self) -> None:
        """Acked packets are returned ascending and leave bytes in flight."""
        recovery = make_recovery()
        for seq in range(5):
            send(recovery, seq, 0.0)
        result = recovery.on_ack_received([(3, 4), (0, 1)], 0.0, now=0.1)
        self.assertEqual(seqs(result.newly_acked), [0, 1, 3, 4])
        self.assertEqual(recovery.bytes_in_flight, SIZE)
        self.assertTrue(result.rtt_sample_taken)
        self.assertAlmostEqual(recovery.rtt.latest_rtt, 0.1)

    def test_repeated_ack_is_idempotent(self) -> None:
        """Acking the same packets again changes nothing and takes no RTT sample."""
        recovery = make_recovery()
        for seq in range(3):
            send(recovery, seq, 0.0)
        recovery.on_ack_received([(0, 2)], 0.0, now=0.1)
        result = recovery.on_ack_received([(0, 2)], 0.0, now=0.5)
        self.assertEqual(result.newly_acked, [])
        self.assertFalse(result.rtt_sample_taken)
        self.assertEqual(recovery.rtt.samples, 1)
        self.assertEqual(recovery.bytes_in_flight, 0)

    def test_no_rtt_sample_unless_largest_is_newly_acked(self) -> None:
        """An ACK whose largest number was acked before gives no RTT sample (§5.1)."""
        recovery = make_recovery()
        for seq in range(3):
            send(recovery, seq, 0.0)
        recovery.on_ack_received([(2, 2)], 0.0, now=0.1)
        result = recovery.on_ack_received([(2, 2), (1, 1)], 0.0, now=0.2)
        self.assertEqual(seqs(result.newly_acked), [1])
        self.assertFalse(result.rtt_sample_taken)

    def test_no_rtt_sample_for_only_non_ack_eliciting_packets(self) -> None:
        """Acking only packets that elicit no ACK gives no RTT sample."""
        recovery = make_recovery()
        send(recovery, 0, 0.0, ack_eliciting=False, in_flight=False)
        result = recovery.on_ack_received([(0, 0)], 0.0, now=0.1)
        self.assertFalse(result.rtt_sample_taken)
        self.assertEqual(recovery.bytes_in_flight, 0)

    def test_ack_grows_the_congestion_window(self) -> None:
        """Acked in-flight bytes are passed to the congestion controller."""
        recovery = make_recovery()
        before = recovery.controller.cwnd
        send(recovery, 0, 0.0)
        recovery.on_ack_received([(0, 0)], 0.0, now=0.1)
        self.assertEqual(recovery.controller.cwnd, before + SIZE)

    def test_ten_thousand_range_ack_is_processed_correctly(self) -> None:
        """An ACK of every even number in 10,000 ranges acks exactly those packets."""
        recovery = make_recovery()
        for seq in range(20000):
            send(recovery, seq, 0.0)
        ranges = [(seq, seq) for seq in range(19998, -1, -2)]
        result = recovery.on_ack_received(ranges, 0.0, now=0.1)
        self.assertEqual(seqs(result.newly_acked), list(range(0, 20000, 2)))
        # Odd numbers at least three below the largest acked (19998) are lost.
        self.assertEqual(seqs(result.lost), list(range(1, 19996, 2)))
        self.assertEqual(recovery.outstanding, 2)
        self.assertEqual(recovery.bytes_in_flight, 2 * SIZE)

    def test_packets_sent_with_gap_are_tracked(self) -> None:
        """Numbers may jump; acking the sent ones works across the gap."""
        recovery = make_recovery()
        send(recovery, 0, 0.0)
        send(recovery, 1000, 0.0)
        result = recovery.on_ack_received([(1000, 1000), (0, 0)], 0.0, now=0.1)
        self.assertEqual(seqs(result.newly_acked), [0, 1000])

    def test_sending_out_of_order_is_an_internal_error(self) -> None:
        """Reusing or lowering a packet number is our own bug: InternalError."""
        recovery = make_recovery()
        send(recovery, 5, 0.0)
        self.assertRaises(InternalError, send, recovery, 5, 0.0)
        self.assertRaises(InternalError, send, recovery, 4, 0.0)


class OptimisticAckTests(SynchronousTestCase):
    """ACKs of numbers never sent are protocol violations (RFC 9000 §21.4)."""

    def assertViolation(self, recovery: LossRecovery, ranges: list[tuple[int, int]]) -> None:
        """The ACK raises ProtocolViolation and leaves the state unchanged."""
        before = (recovery.bytes_in_flight, recovery.outstanding, recovery.largest_acked)
        self.assertRaises(ProtocolViolation, recovery.on_ack_received, ranges, 0.0, now=0.1)
        after = (recovery.bytes_in_flight, recovery.outstanding, recovery.largest_acked)
        self.assertEqual(before, after)

    def test_ack_above_largest_sent_is_a_violation(self) -> None:
        """Acking a number above the largest sent raises ProtocolViolation."""
        recovery = make_recovery()
        send(recovery, 0, 0.0)
        send(recovery, 1, 0.0)
        self.assertViolation(recovery, [(2, 2)])
        self.assertViolation(recovery, [(0, 5)])

    def test_ack_before_anything_sent_is_a_violation(self) -> None:
        """Acking packet 0 on a path that sent nothing raises ProtocolViolation."""
        self.assertViolation(make_recovery(), [(0, 0)])

    def test_ack_of_skipped_number_is_a_violation(self) -> None:
        """A number skipped on purpose cannot be acknowledged."""
        recovery = make_recovery()
        send(recovery, 0, 0.0)
        skipped = recovery.skip_sequence_number()
        self.assertEqual(skipped, 1)
        self.assertEqual(recovery.next_sequence_number, 2)
        send(recovery, 2, 0.0)
        self.assertViolation(recovery, [(0, 2)])
        self.assertViolation(recovery, [(1, 1)])
        self.assertViolation(recovery, [(2, 2), (1, 1)])
        result = recovery.on_ack_received([(2, 2), (0, 0)], 0.0, now=0.1)
        self.assertEqual(seqs(result.newly_acked), [0, 2])

    def test_ack_of_number_jumped_over_is_a_violation(self) -> None:
        """Numbers jumped over when sending count as skipped."""
        recovery = make_recovery()
        send(recovery, 0, 0.0)
        send(recovery, 10, 0.0)
        self.assertViolation(recovery, [(3, 3)])
        self.assertViolation(recovery, [(9, 10)])

    def test_malformed_ranges_are_violations(self) -> None:
        """Inverted, overlapping or ascending ranges raise ProtocolViolation."""
        recovery = make_recovery()
        for seq in range(10):
            send(recovery, seq, 0.0)
        self.assertViolation(recovery, [(5, 3)])
        self.assertViolation(recovery, [(5, 8), (4, 6)])
        self.assertViolation(recovery, [(1, 2), (5, 6)])
        self.assertViolation(recovery, [(-1, 2)])


class LossDetectionTests(SynchronousTestCase):
    """Packet- and time-threshold loss detection (RFC 9002 §6.1)."""

    def test_lost_packet_is_declared_after_three_later_acks(self) -> None:
        """A packet three numbers below the largest acked is lost; two below is not."""
        recovery = make_recovery()
        for seq in range(5):
            send(recovery, seq, 0.0)
        result = recovery.on_ack_received([(2, 3)], 0.0, now=0.1)
        self.assertEqual(seqs(result.lost), [0])
        self.assertEqual(recovery.outstanding, 2)
        self.assertEqual(recovery.bytes_in_flight, 2 * SIZE)
        self.assertIsNotNone(recovery.loss_deadline())

    def test_loss_by_time_threshold(self) -> None:
        """An unacked packet below the largest acked is lost 9/8 RTT after it was sent."""
        recovery = make_recovery()
        send(recovery, 0, 0.0)
        send(recovery, 1, 0.0)
        result = recovery.on_ack_received([(1, 1)], 0.0, now=0.1)
        self.assertEqual(result.lost, [])
        self.assertAlmostEqual(recovery.loss_deadline(), 0.1125)
        self.assertEqual(recovery.deadline(now=0.1), recovery.loss_deadline())
        self.assertEqual(recovery.on_timeout(now=0.11), ([], 0))
        timeout = recovery.on_timeout(now=0.1125)
        self.assertEqual(seqs(timeout.lost), [0])
        self.assertEqual(timeout.probes, 0)
        self.assertIsNone(recovery.loss_deadline())
        self.assertEqual(recovery.bytes_in_flight, 0)

    def test_detect_lost_by_time_on_later_call(self) -> None:
        """detect_lost declares a packet lost once enough time passed."""
        recovery = make_recovery()
        send(recovery, 0, 0.0)
        send(recovery, 1, 0.0)
        recovery.on_ack_received([(1, 1)], 0.0, now=0.1)
        self.assertEqual(recovery.detect_lost(now=0.11), [])
        self.assertEqual(seqs(recovery.detect_lost(now=0.2)), [0])

    def test_loss_reduces_the_congestion_window(self) -> None:
        """Lost in-flight packets start a congestion event."""
        recovery = make_recovery()
        before = recovery.controller.cwnd
        for seq in range(5):
            send(recovery, seq, 0.0)
        recovery.on_ack_received([(3, 4)], 0.0, now=0.1)
        self.assertLess(recovery.controller.cwnd, before)
        self.assertFalse(recovery.controller.in_slow_start)

    def test_packets_above_largest_acked_are_never_lost(self) -> None:
        """Loss detection leaves packets sent after the largest acked alone."""
        recovery = make_recovery()
        for seq in range(6):
            send(recovery, seq, 0.0)
        recovery.on_ack_received([(1, 1)], 0.0, now=0.1)
        self.assertEqual(seqs(recovery.detect_lost(now=100.0)), [0])
        self.assertEqual(recovery.outstanding, 4)


class ProbeTimeoutTests(SynchronousTestCase):
    """The probe timeout (RFC 9002 §6.2)."""

    def test_no_pto_without_ack_eliciting_packets_in_flight(self) -> None:
        """Nothing in flight, nothing to probe."""
        recovery = make_recovery()
        self.assertIsNone(recovery.pto_deadline(now=0.0))
        send(recovery, 0, 0.0, ack_eliciting=False)
        self.assertIsNone(recovery.pto_deadline(now=0.0))

    def test_pto_when_idle_for_anti_deadlock(self) -> None:
        """With probe_when_idle, the PTO is armed from now even with nothing in flight."""
        recovery = make_recovery()
        recovery.probe_when_idle = True
        self.assertAlmostEqual(recovery.pto_deadline(now=5.0), 5.0 + 1.024)

    def test_pto_backoff_doubles_and_resets_on_ack(self) -> None:
        """Each PTO doubles the next one; an ACK resets the backoff."""
        recovery = make_recovery()
        send(recovery, 0, 0.0)
        self.assertAlmostEqual(recovery.pto_deadline(now=0.0), 1.024)
        self.assertEqual(recovery.on_timeout(now=1.0), ([], 0))
        self.assertEqual(recovery.on_timeout(now=1.024), ([], 2))
        self.assertEqual(recovery.pto_count, 1)
        self.assertAlmostEqual(recovery.pto_deadline(now=1.024), 2.048)
        self.assertEqual(recovery.on_timeout(now=2.048).probes, 2)
        self.assertAlmostEqual(recovery.pto_deadline(now=2.048), 4.096)
        send(recovery, 1, 2.048, is_probe=True)
        self.assertAlmostEqual(recovery.pto_deadline(now=2.048), 2.048 + 4.096)
        recovery.on_ack_received([(1, 1)], 0.0, now=2.148)
        self.assertEqual(recovery.pto_count, 0)
        send(recovery, 2, 2.2)
        self.assertAlmostEqual(
            recovery.pto_deadline(now=2.2), 2.2 + recovery.rtt.pto_interval(0.025)
        )

    def test_pto_excludes_max_ack_delay_before_confirmation(self) -> None:
        """Before the handshake is confirmed, the PTO does not include max_ack_delay."""
        recovery = make_recovery(handshake_confirmed=False)
        send(recovery, 0, 0.0)
        self.assertAlmostEqual(recovery.pto_deadline(now=0.0), 0.999)


#: The initial window (13500) plus the first acked packet, halved by one loss event.
HALVED = (13500 + SIZE) // 2


class PersistentCongestionTests(SynchronousTestCase):
    """Persistent congestion (RFC 9002 §7.6)."""

    def lose_run(self, send_times: list[float], extra_ack: list[tuple[int, int]]) -> LossRecovery:
        """
        Take an RTT sample of 100 ms, send packets at ``send_times``, then ack
        one later packet (and ``extra_ack``) so that all the others are lost.
        """
        recovery = make_recovery()
        send(recovery, 0, 0.0)
        recovery.on_ack_received([(0, 0)], 0.0, now=0.1)
        for i, t in enumerate(send_times, start=1):
            send(recovery, i, t)
        last = len(send_times) + 1
        send(recovery, last, send_times[-1] + 0.1)
        recovery.on_ack_received([(last, last), *extra_ack], 0.0, now=send_times[-1] + 0.2)
        return recovery

    def test_persistent_congestion_collapses_window_to_minimum(self) -> None:
        """
        Losses spanning more than 3 * PTO (0.975 s here) collapse cwnd to 2 * mds.

        As in RFC 9002's pseudocode, losses are handled before the acked packet,
        which then grows the collapsed window by its size (slow start).
        """
        recovery = self.lose_run([0.2, 0.5, 0.8, 1.1, 1.4], [])
        controller = recovery.controller
        self.assertEqual(controller.minimum_window, 2 * 1350)
        self.assertEqual(controller.cwnd, controller.minimum_window + SIZE)

    def test_short_loss_run_only_halves(self) -> None:
        """Losses spanning less than the persistent congestion duration just halve cwnd."""
        recovery = self.lose_run([0.2, 0.3, 0.4, 0.5, 0.6], [])
        self.assertEqual(recovery.controller.cwnd, HALVED)

    def test_acked_packet_between_losses_prevents_persistent_congestion(self) -> None:
        """An acknowledged packet inside the run means the path was not persistently congested."""
        recovery = self.lose_run([0.2, 0.5, 0.8, 1.1, 1.4], [(3, 3)])
        self.assertEqual(recovery.controller.cwnd, HALVED)

    def test_skipped_number_between_losses_keeps_the_run(self) -> None:
        """A number skipped on purpose does not break a run of losses."""
        recovery = make_recovery()
        send(recovery, 0, 0.0)
        recovery.on_ack_received([(0, 0)], 0.0, now=0.1)
        send(recovery, 1, 0.2)
        recovery.skip_sequence_number()
        send(recovery, 3, 1.4)
        send(recovery, 4, 1.5)
        recovery.on_ack_received([(4, 4)], 0.0, now=1.6)
        self.assertEqual(recovery.controller.cwnd, recovery.controller.minimum_window + SIZE)

    def test_no_persistent_congestion_before_first_rtt_sample(self) -> None:
        """Packets sent before the first RTT sample cannot establish persistent congestion."""
        recovery = make_recovery()
        for i, t in enumerate([0.0, 1.0, 2.0, 3.0, 4.0]):
            send(recovery, i, t)
        recovery.on_ack_received([(4, 4)], 0.0, now=4.1)
        self.assertEqual(recovery.controller.cwnd, 13500 // 2)


class AbandonTests(SynchronousTestCase):
    """Abandoning a path hands back its in-flight packets."""

    def test_abandon_returns_in_flight_packets_and_clears_state(self) -> None:
        """abandon() returns in-flight packets with their frames, ascending."""
        recovery = make_recovery()
        send(recovery, 0, 0.0, frames=["a"])
        send(recovery, 1, 0.0, ack_eliciting=False, in_flight=False)
        send(recovery, 2, 0.0, frames=["b"])
        recovery.on_ack_received([(0, 0)], 0.0, now=0.1)
        send(recovery, 3, 0.2, frames=["c"])
        packets = recovery.abandon()
        self.assertEqual(seqs(packets), [2, 3])
        self.assertEqual([p.frames for p in packets], [["b"], ["c"]])
        self.assertEqual((recovery.bytes_in_flight, recovery.outstanding), (0, 0))
        self.assertIsNone(recovery.deadline(now=0.2))
        self.assertEqual(recovery.on_ack_received([(3, 3)], 0.0, now=0.3).newly_acked, [])


@st.composite
def operations(draw: st.DrawFn) -> list[tuple]:
    """A sequence of sends, skips, acks (as subsets of numbers) and timeouts."""
    kinds = st.sampled_from(["send", "send", "send", "skip", "ack", "timeout", "detect"])
    ops = []
    for _ in range(draw(st.integers(0, 40))):
        kind = draw(kinds)
        if kind == "send":
            flags = (draw(st.booleans()), draw(st.booleans()))
            ops.append(("send", draw(st.integers(1, 1500)), *flags))
        elif kind == "ack":
            ops.append(("ack", draw(st.lists(st.integers(0, 60), max_size=10))))
        else:
            ops.append((kind, draw(st.floats(0.0, 0.5))))
    return ops


def ack_ranges(numbers: set[int]) -> list[tuple[int, int]]:
    """Descending inclusive ranges covering ``numbers``."""
    ranges: list[tuple[int, int]] = []
    for seq in sorted(numbers, reverse=True):
        if ranges and ranges[-1][0] == seq + 1:
            ranges[-1] = (seq, ranges[-1][1])
        else:
            ranges.append((seq, seq))
    return ranges


class BytesInFlightPropertyTests(SynchronousTestCase):
    """bytes_in_flight stays the sum of outstanding in-flight sizes."""

    @settings(max_examples=60, deadline=None)
    @given(operations())
    def test_bytes_in_flight_matches_outstanding_packets(self, ops: list[tuple]) -> None:
        """Any sends, acks and timeouts keep bytes_in_flight exact and non-negative."""
        recovery = make_recovery()
        outstanding: dict[int, SentPacket] = {}
        sendable: list[int] = []
        now = 0.0
        for op in ops:
            gone: list[SentPacket] = []
            if op[0] == "send":
                seq = recovery.next_sequence_number
                packet = SentPacket(seq, now, op[1], op[2], op[3])
                recovery.on_packet_sent(packet)
                outstanding[seq] = packet
                sendable.append(seq)
            elif op[0] == "skip":
                recovery.skip_sequence_number()
            elif op[0] == "ack":
                numbers = {sendable[i] for i in op[1] if i < len(sendable)}
                if numbers:
                    result = recovery.on_ack_received(ack_ranges(numbers), 0.001, now=now)
                    for packet in result.newly_acked:
                        self.assertIn(packet.seq, numbers)
                    gone = result.newly_acked + result.lost
            elif op[0] == "timeout":
                now += op[1]
                gone = recovery.on_timeout(now=now).lost
            else:
                now += op[1]
                gone = recovery.detect_lost(now=now)
            for packet in gone:
                self.assertIs(outstanding.pop(packet.seq), packet)
            expected = sum(p.size for p in outstanding.values() if p.in_flight)
            self.assertEqual(recovery.bytes_in_flight, expected)
            self.assertGreaterEqual(recovery.bytes_in_flight, 0)
            self.assertEqual(recovery.outstanding, len(outstanding))


class AckShortcutPropertyTests(SynchronousTestCase):
    """The shortcuts of on_ack_received (one packet acknowledged, the newest packet eliciting)
    against the general rules."""

    @settings(max_examples=60, deadline=None)
    @given(operations())
    def test_controller_and_rtt_see_what_the_general_rules_say(self, ops: list[tuple]) -> None:
        """The controller is told of exactly the in-flight packets newly acknowledged, and an RTT
        sample is taken exactly when the largest is newly acked with an eliciting packet."""
        recovery = make_recovery()
        told: list[list[int]] = []
        original = recovery.controller.on_packets_acked

        def on_packets_acked(packets, **kw):
            told.append(seqs(packets))
            return original(packets, **kw)

        recovery.controller.on_packets_acked = on_packets_acked
        sendable: list[int] = []
        now = 0.0
        for op in ops:
            now += 0.001
            if op[0] == "send":
                seq = recovery.next_sequence_number
                recovery.on_packet_sent(SentPacket(seq, now, op[1], op[2], op[3]))
                sendable.append(seq)
            elif op[0] == "skip":
                recovery.skip_sequence_number()
            elif op[0] == "ack":
                numbers = {sendable[i] for i in op[1] if i < len(sendable)}
                if not numbers:
                    continue
                told.clear()
                result = recovery.on_ack_received(ack_ranges(numbers), 0.001, now=now)
                in_flight = [p.seq for p in result.newly_acked if p.in_flight]
                self.assertEqual(told, [in_flight] if in_flight else [])
                newly = result.newly_acked
                expected = bool(newly) and newly[-1].seq == max(numbers) and any(
                    p.ack_eliciting for p in newly
                )
                self.assertEqual(result.rtt_sample_taken, expected)
            else:
                now += op[1]
                recovery.detect_lost(now=now)


class IdleProbeTests(SynchronousTestCase):
    """The anti-deadlock probe (RFC 9002 §6.2.2.1)."""

    def test_idle_probe_fires_a_pto_after_the_last_send(self):
        """With nothing in flight and probe_when_idle set, the PTO counts from the last send."""
        from kwik_twisted.core.congestion import create
        from kwik_twisted.core.recovery.loss import LossRecovery, SentPacket

        recovery = LossRecovery(create("newreno"), handshake_confirmed=False)
        recovery.probe_when_idle = True
        recovery.on_packet_sent(SentPacket(0, 1.0, 100, ack_eliciting=False, in_flight=False))
        deadline = recovery.deadline(now=1.5)
        self.assertEqual(deadline, recovery.deadline(now=1.9), "the deadline moved with the clock")
        self.assertGreater(deadline, 1.0)
        self.assertEqual(recovery.on_timeout(now=deadline).probes, 2)
