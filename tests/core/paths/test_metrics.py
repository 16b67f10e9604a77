"""Tests for kwik_twisted.core.paths.metrics: delivery rate, loss, reliability, snapshots."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.paths.metrics import (
    LOSS_GAIN,
    MAX_ACK_EVENTS,
    DeliveryRateEstimator,
    PathMetrics,
    PathMetricsTracker,
    PathTracker,
    congestion_signal,
)

MSS = 1350


@dataclass
class FakeRtt:
    """An RTT estimator's figures."""

    smoothed_rtt: float = 0.030
    min_rtt: float = 0.020
    latest_rtt: float = 0.032
    rttvar: float = 0.004
    jitter: float = 0.002


@dataclass
class FakeController:
    """A controller reduced to its window."""

    cwnd: int = 20000


@dataclass
class FakeRecovery:
    """Loss recovery reduced to what metrics read."""

    rtt: FakeRtt
    controller: FakeController
    bytes_in_flight: int = 5000


@dataclass
class FakePath:
    """A path as the metrics tracker sees it."""

    id: int
    recovery: FakeRecovery


def steady_acks(estimator: DeliveryRateEstimator, start: float, interval: float, count: int,
                srtt: float = 0.020) -> float:  # fmt: skip
    """Feed ``count`` MSS-sized ACKs ``interval`` apart; answer the time of the last one."""
    now = start
    for i in range(count):
        now = start + i * interval
        estimator.on_ack(MSS, now=now, smoothed_rtt=srtt)
    return now


class DeliveryRateTests(SynchronousTestCase):
    """The sliding-window mean of acknowledged bytes."""

    def test_no_estimate_before_two_acks(self) -> None:
        """One ACK cannot make a rate; the estimate stays 0."""
        estimator = DeliveryRateEstimator()
        self.assertEqual(estimator.bandwidth, 0.0)
        estimator.on_ack(MSS, now=1.0)
        self.assertEqual(estimator.bandwidth, 0.0)

    def test_steady_stream_gives_its_rate(self) -> None:
        """An MSS acknowledged every millisecond is 1.35 MB/s."""
        estimator = DeliveryRateEstimator()
        steady_acks(estimator, 0.0, 0.001, 200)
        self.assertAlmostEqual(estimator.bandwidth, MSS / 0.001, places=3)

    def test_window_slides_to_a_new_rate(self) -> None:
        """After a window of slower ACKs the estimate is the new rate: the old one is forgotten."""
        estimator = DeliveryRateEstimator()
        end = steady_acks(estimator, 0.0, 0.001, 200)
        steady_acks(estimator, end + 0.002, 0.002, 200)  # 0.4 s >> 4 * 20 ms
        self.assertAlmostEqual(estimator.bandwidth, MSS / 0.002, places=3)

    def test_the_window_covers_a_few_rtts_not_everything(self) -> None:
        """Halfway through a rate change the estimate lies between the old and the new rate."""
        estimator = DeliveryRateEstimator()
        end = steady_acks(estimator, 0.0, 0.001, 200, srtt=0.050)
        steady_acks(estimator, end + 0.002, 0.002, 50, srtt=0.050)  # 0.1 s of a 0.2 s window
        self.assertGreater(estimator.bandwidth, MSS / 0.002 * 1.05)
        self.assertLess(estimator.bandwidth, MSS / 0.001 * 0.95)

    def test_estimate_is_held_across_an_idle_gap(self) -> None:
        """ACKs resuming after a long silence do not count the silence as slow delivery."""
        estimator = DeliveryRateEstimator()
        end = steady_acks(estimator, 0.0, 0.001, 100)
        before = estimator.bandwidth
        estimator.on_ack(MSS, now=end + 10.0, smoothed_rtt=0.020)
        self.assertEqual(estimator.bandwidth, before)
        steady_acks(estimator, end + 10.001, 0.001, 50)
        self.assertAlmostEqual(estimator.bandwidth, MSS / 0.001, places=3)

    def test_memory_is_bounded(self) -> None:
        """However many ACKs arrive in a window, the estimator keeps a bounded number."""
        estimator = DeliveryRateEstimator()
        steady_acks(estimator, 0.0, 1e-6, 10 * MAX_ACK_EVENTS, srtt=1.0)
        self.assertLessEqual(len(estimator.events), MAX_ACK_EVENTS)
        self.assertApproximates(estimator.bandwidth, MSS / 1e-6, 1.0)

    def test_empty_acks_are_ignored(self) -> None:
        """An ACK of zero bytes changes nothing."""
        estimator = DeliveryRateEstimator()
        steady_acks(estimator, 0.0, 0.001, 10)
        before = estimator.bandwidth
        estimator.on_ack(0, now=0.5)
        self.assertEqual(estimator.bandwidth, before)


class LossRateTests(SynchronousTestCase):
    """The per-packet loss EWMA."""

    def test_one_loss_moves_the_rate_by_the_gain(self) -> None:
        """From no loss, one lost packet makes the rate LOSS_GAIN."""
        tracker = PathMetricsTracker(now=0.0)
        tracker.on_loss(now=0.0)
        self.assertAlmostEqual(tracker.loss_rate, LOSS_GAIN)

    def test_acks_decay_the_rate_per_packet(self) -> None:
        """An ACK of n packets multiplies the rate by (1 - gain) ** n."""
        tracker = PathMetricsTracker(now=0.0)
        tracker.on_loss(4, now=0.0)
        before = tracker.loss_rate
        tracker.on_ack(3 * MSS, now=0.1, packets=3)
        self.assertAlmostEqual(tracker.loss_rate, before * (1 - LOSS_GAIN) ** 3)

    def test_converges_to_the_loss_ratio(self) -> None:
        """One loss in every ten packets settles near a 10% loss rate."""
        tracker = PathMetricsTracker(now=0.0)
        for i in range(2000):
            tracker.on_ack(9 * MSS, now=i * 0.01, packets=9)
            tracker.on_loss(1, now=i * 0.01)
        self.assertTrue(0.09 <= tracker.loss_rate <= 0.11, tracker.loss_rate)

    @settings(max_examples=50)
    @given(st.lists(st.tuples(st.booleans(), st.integers(0, 50)), max_size=50))
    def test_loss_rate_stays_a_fraction(self, events: list[tuple[bool, int]]) -> None:
        """Whatever the sequence of ACKs and losses, the loss rate stays within 0..1."""
        tracker = PathMetricsTracker(now=0.0)
        for lost, count in events:
            if lost:
                tracker.on_loss(count, now=0.0)
            else:
                tracker.on_ack(count * MSS, now=0.0, packets=count)
            self.assertTrue(0.0 <= tracker.loss_rate <= 1.0)


class ReliabilityTests(SynchronousTestCase):
    """The share of time usable."""

    def test_usable_from_birth_is_fully_reliable(self) -> None:
        """A path usable since creation has reliability 1."""
        tracker = PathTracker(now=5.0, usable=True)
        self.assertEqual(tracker.reliability(now=5.0), 1.0)
        self.assertEqual(tracker.reliability(now=25.0), 1.0)
        self.assertEqual(tracker.usable_time(now=25.0), 20.0)

    def test_downtime_lowers_reliability(self) -> None:
        """Usable 0-10 s, down 10-15 s, usable again: 15 of 20 seconds is 0.75."""
        tracker = PathTracker(now=0.0, usable=True)
        tracker.on_phase_change(False, now=10.0)
        self.assertEqual(tracker.usable_time(now=12.0), 10.0)
        tracker.on_phase_change(True, now=15.0)
        self.assertEqual(tracker.usable_time(now=20.0), 15.0)
        self.assertEqual(tracker.reliability(now=20.0), 0.75)

    def test_repeated_reports_of_the_same_phase_change_nothing(self) -> None:
        """Reporting the current phase again neither restarts nor double-counts the interval."""
        tracker = PathTracker(now=0.0, usable=False)
        tracker.on_phase_change(False, now=1.0)
        tracker.on_phase_change(True, now=2.0)
        tracker.on_phase_change(True, now=3.0)
        self.assertEqual(tracker.usable_time(now=4.0), 2.0)
        self.assertEqual(tracker.reliability(now=4.0), 0.5)

    def test_a_validating_path_starts_unreliable(self) -> None:
        """A path not yet usable at its creation has reliability 0."""
        tracker = PathTracker(now=0.0)
        self.assertEqual(tracker.reliability(now=0.0), 0.0)
        self.assertEqual(tracker.reliability(now=3.0), 0.0)


class CongestionSignalTests(SynchronousTestCase):
    """The 0..1 congestion figure."""

    def test_no_queue_and_no_loss_is_zero(self) -> None:
        """srtt at min_rtt without loss means no congestion."""
        self.assertEqual(congestion_signal(0.02, 0.02, 0.0), 0.0)

    def test_queueing_share(self) -> None:
        """A doubled RTT is half queue: 0.5."""
        self.assertAlmostEqual(congestion_signal(0.04, 0.02, 0.0), 0.5)

    def test_loss_saturates(self) -> None:
        """Ten percent loss (or more) is full congestion."""
        self.assertEqual(congestion_signal(0.02, 0.02, 0.10), 1.0)
        self.assertEqual(congestion_signal(0.02, 0.02, 0.50), 1.0)

    def test_signals_combine_as_independent(self) -> None:
        """Half queue and half-saturating loss give 1 - 0.5 * 0.5."""
        self.assertAlmostEqual(congestion_signal(0.04, 0.02, 0.05), 0.75)

    @settings(max_examples=50)
    @given(st.floats(0, 10), st.floats(0, 10), st.floats(0, 1))
    def test_signal_is_a_fraction(self, srtt: float, min_rtt: float, loss: float) -> None:
        """For any inputs the congestion figure is within 0..1."""
        self.assertTrue(0.0 <= congestion_signal(srtt, min_rtt, loss) <= 1.0)


class SnapshotTests(SynchronousTestCase):
    """PathMetricsTracker.snapshot freezes everything into PathMetrics."""

    def setUp(self) -> None:
        """A tracker with some history and a fake path."""
        self.path = FakePath(7, FakeRecovery(FakeRtt(), FakeController()))
        self.tracker = PathMetricsTracker(now=0.0, usable=True, cost=2.5)
        for i in range(100):
            self.tracker.on_ack(MSS, now=0.001 * i, smoothed_rtt=0.03)
        self.tracker.on_loss(now=0.1)
        self.tracker.on_phase_change(False, now=0.2)

    def test_snapshot_copies_the_path_figures(self) -> None:
        """RTT figures, window and bytes in flight come from the path."""
        m = self.tracker.snapshot(self.path, now=0.4)
        self.assertEqual(
            (m.path_id, m.smoothed_rtt, m.min_rtt, m.latest_rtt, m.rttvar, m.jitter),
            (7, 0.030, 0.020, 0.032, 0.004, 0.002),
        )
        self.assertEqual((m.cwnd, m.bytes_in_flight), (20000, 5000))
        self.assertEqual(m.latency, 0.030)
        self.assertAlmostEqual(m.queueing_delay, 0.010)

    def test_snapshot_carries_the_tracker_figures(self) -> None:
        """Bandwidth, loss, congestion, reliability and cost come from the tracker."""
        m = self.tracker.snapshot(self.path, now=0.4)
        self.assertAlmostEqual(m.bandwidth, MSS / 0.001, places=3)
        self.assertEqual(m.bandwidth, self.tracker.bandwidth)
        self.assertAlmostEqual(m.loss_rate, LOSS_GAIN)
        self.assertAlmostEqual(m.congestion, congestion_signal(0.030, 0.020, LOSS_GAIN))
        self.assertAlmostEqual(m.reliability, 0.5)
        self.assertEqual(m.cost, 2.5)

    def test_snapshot_is_frozen(self) -> None:
        """A PathMetrics cannot be changed."""
        m = self.tracker.snapshot(self.path, now=0.4)
        self.assertIsInstance(m, PathMetrics)
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, m, "cost", 0.0)
        self.assertFalse(hasattr(m, "__dict__"))
