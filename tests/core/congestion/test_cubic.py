"""Tests for kwik_twisted.core.congestion.cubic (RFC 9438)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.congestion.cubic import Cubic

from .helpers import MDS, packets, round_trip, steady_rtt


def after_loss(window_segments: int, **kw: bool) -> Cubic:
    """A CUBIC controller whose window of ``window_segments`` saw a loss at t = 0."""
    controller = Cubic(initial_window=window_segments * MDS, **kw)  # type: ignore[arg-type]
    controller.on_packets_lost(packets(1, -0.1), now=0.0)
    return controller


def expected_w_cubic(t: float, w_max: float, cwnd_epoch: float) -> float:
    """W_cubic(t) in segments, computed independently from RFC 9438 §4.2."""
    k = ((w_max - cwnd_epoch) / 0.4) ** (1 / 3)
    return 0.4 * (t - k) ** 3 + w_max


class CubicTests(SynchronousTestCase):
    """CUBIC's reduction, cubic growth and Reno-friendly region."""

    def assertClose(self, first: float, second: float, *, delta: float) -> None:
        """Fail unless ``first`` and ``second`` differ by at most ``delta``."""
        self.assertTrue(abs(first - second) <= delta, f"{first!r} != {second!r} +- {delta!r}")

    def test_slow_start_is_reno(self) -> None:
        """Before any loss, a full window acked doubles the window."""
        controller = Cubic()
        controller_now = round_trip(controller, 0.0, steady_rtt(0.1))
        self.assertEqual(controller.cwnd, 27000)
        self.assertAlmostEqual(controller_now, 0.1)

    def test_congestion_event_multiplies_window_by_beta(self) -> None:
        """A loss sets cwnd and ssthresh to 0.7 W_max, and K = cbrt(W_max * 0.3 / C)."""
        controller = after_loss(1000)
        self.assertEqual(controller.w_max, 1000 * MDS)
        self.assertEqual(controller.cwnd, 700 * MDS)
        self.assertEqual(controller.ssthresh, 700 * MDS)
        self.assertAlmostEqual(controller.k, (1000 * 0.3 / 0.4) ** (1 / 3))
        self.assertEqual(controller.epoch_start, 0.0)

    def test_window_follows_w_cubic(self) -> None:
        """With a long RTT, the window tracks W_cubic(t) within 1% through the plateau."""
        controller = after_loss(1000)
        rtt = steady_rtt(0.1)
        now = 0.001
        while now < 15.0:
            now = round_trip(controller, now, rtt)
            expected = expected_w_cubic(now, 1000, 700)
            self.assertClose(controller.cwnd / MDS / expected, 1.0, delta=0.01)
        self.assertGreater(controller.cwnd, 1040 * MDS)

    def test_reno_friendly_region_early(self) -> None:
        """
        With a short RTT, the window grows as Reno's estimate does, by
        3 * 0.3 / 1.7 segments per RTT, above the cubic curve.
        """
        controller = after_loss(100)
        rtt = steady_rtt(0.01)
        now = 0.001
        alpha = 3 * 0.3 / 1.7
        for rounds in range(1, 51):
            now = round_trip(controller, now, rtt)
            self.assertClose(controller.cwnd / MDS, 70 + alpha * rounds, delta=1.0)
        self.assertGreater(controller.cwnd / MDS, expected_w_cubic(now, 100, 70) + 5)

    def test_fast_convergence_lowers_w_max(self) -> None:
        """A loss below the previous W_max sets W_max to cwnd * (1 + beta) / 2."""
        controller = after_loss(1000)
        controller.on_packets_lost(packets(1, 1.0), now=1.1)
        self.assertClose(controller.w_max, 700 * MDS * 0.85, delta=1)
        self.assertClose(controller.cwnd, 490 * MDS, delta=1)

    def test_without_fast_convergence_w_max_is_the_window(self) -> None:
        """With fast convergence off, W_max is the window at the loss."""
        controller = after_loss(1000, fast_convergence=False)
        controller.on_packets_lost(packets(1, 1.0), now=1.1)
        self.assertClose(controller.w_max, 700 * MDS, delta=1)

    def test_persistent_congestion_restarts_slow_start(self) -> None:
        """After persistent congestion the window is minimal and slow start resumes."""
        controller = after_loss(100)
        controller.on_persistent_congestion(now=1.0)
        self.assertEqual(controller.cwnd, 2 * MDS)
        self.assertTrue(controller.in_slow_start)
        round_trip(controller, 1.1, steady_rtt(0.1))
        self.assertEqual(controller.cwnd, 4 * MDS)
