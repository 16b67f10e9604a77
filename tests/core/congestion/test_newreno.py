"""Tests for kwik_twisted.core.congestion.newreno (RFC 9002 §7, Appendix B)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.congestion.newreno import NewReno

from .helpers import MDS, packets, round_trip, steady_rtt


class NewRenoTests(SynchronousTestCase):
    """NewReno's slow start, congestion avoidance and recovery periods."""

    def test_slow_start_doubles_per_rtt(self) -> None:
        """Acking a full window in slow start doubles the window, round after round."""
        controller = NewReno()
        rtt = steady_rtt(0.1)
        now = 0.0
        for expected in (27000, 54000, 108000):
            now = round_trip(controller, now, rtt)
            self.assertEqual(controller.cwnd, expected)
            self.assertTrue(controller.in_slow_start)

    def test_loss_halves_window_once_per_recovery_period(self) -> None:
        """Losses of packets sent before the recovery period began reduce only once."""
        controller = NewReno()
        controller.on_packets_lost(packets(1, 0.5), now=1.0)
        self.assertEqual(controller.cwnd, 6750)
        self.assertEqual(controller.ssthresh, 6750)
        self.assertFalse(controller.in_slow_start)
        controller.on_packets_lost(packets(3, 0.9), now=1.1)
        controller.on_packets_lost(packets(1, 1.0), now=1.2)
        self.assertEqual(controller.cwnd, 6750)
        controller.on_packets_lost(packets(1, 1.05), now=1.3)
        self.assertEqual(controller.cwnd, 3375)

    def test_window_never_falls_below_minimum(self) -> None:
        """Repeated congestion events stop at 2 * mds."""
        controller = NewReno()
        for i in range(10):
            controller.on_packets_lost(packets(1, float(i) + 0.5), now=float(i + 1))
        self.assertEqual(controller.cwnd, 2 * MDS)

    def test_packets_sent_before_recovery_do_not_grow_the_window(self) -> None:
        """Acks of packets sent before the recovery period began are ignored."""
        controller = NewReno()
        rtt = steady_rtt(0.1)
        controller.on_packets_lost(packets(1, 0.5), now=1.0)
        controller.on_packets_acked(packets(1, 0.9, size=20000), now=1.1, rtt=rtt)
        self.assertEqual(controller.cwnd, 6750)
        controller.on_packets_acked(packets(1, 1.01, size=6750), now=1.2, rtt=rtt)
        self.assertEqual(controller.cwnd, 6750 + MDS)

    def test_congestion_avoidance_adds_one_datagram_per_window(self) -> None:
        """After a loss, acking a full window adds exactly one maximum datagram."""
        controller = NewReno()
        rtt = steady_rtt(0.1)
        controller.on_packets_lost(packets(1, 0.5), now=1.0)
        cwnd = controller.cwnd
        controller.on_packets_acked(packets(1, 2.0, size=cwnd - 1), now=2.1, rtt=rtt)
        self.assertEqual(controller.cwnd, cwnd)
        controller.on_packets_acked(packets(1, 2.0, size=1), now=2.1, rtt=rtt)
        self.assertEqual(controller.cwnd, cwnd + MDS)

    def test_slow_start_stops_at_ssthresh(self) -> None:
        """Growth beyond ssthresh continues at the congestion avoidance rate."""
        controller = NewReno()
        rtt = steady_rtt(0.1)
        controller.on_packets_lost(packets(1, 0.0), now=0.0)
        controller.on_persistent_congestion(now=0.0)
        self.assertTrue(controller.in_slow_start)
        controller.on_packets_acked(packets(1, 1.0, size=4050 + 100), now=1.1, rtt=rtt)
        self.assertEqual(controller.cwnd, 6750)
        self.assertFalse(controller.in_slow_start)
