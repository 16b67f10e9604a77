"""Tests for kwik_twisted.core.paths.metrics: bottleneck bandwidth (BBR's delivery-rate samples and
windowed max, application-limited samples), its prediction, goodput, loss, reliability, the
congestion detector's feed, snapshots."""

from __future__ import annotations

import dataclasses
import math
import sys
from collections import deque
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.paths.metrics import (
    BW_WINDOW_RTTS,
    LOSS_GAIN,
    MAX_ACK_EVENTS,
    DeliveryRateEstimator,
    PathMetrics,
    PathMetricsTracker,
    PathTracker,
    WindowedMax,
    congestion_signal,
)
from kwik_twisted.core.recovery.loss import SentPacket

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


class Bottleneck:
    """
    One path through a loss-free bottleneck in simulated time, feeding a tracker as the sender
    does: MSS packets go out while the window ``cwnd`` allows (and, with ``offered``, as fast as
    the application hands them over), each stamped by ``tracker.on_sent``; the link serialises
    them at ``capacity`` bytes per second and each is acknowledged ``rtt`` after it leaves the
    link (``tracker.on_ack`` with that packet as the newest).  Deterministic.
    """

    def __init__(self, tracker: PathMetricsTracker, *, capacity: float, rtt: float, cwnd: int,
                 now: float = 0.0) -> None:  # fmt: skip
        self.tracker = tracker
        self.capacity = capacity
        self.cwnd = cwnd
        self.rtt = FakeRtt(smoothed_rtt=rtt, min_rtt=rtt, latest_rtt=rtt)
        self.now = self.link_free = self.next_offer = now
        self.in_flight = 0
        self.flight: deque[tuple[float, SentPacket]] = deque()
        self.seq = 0
        self.sent = 0

    def run(self, until: float, *, offered: float | None = None,
            app_limited: bool | None = None) -> Bottleneck:  # fmt: skip
        """
        Simulate up to ``until``.  ``offered``: the application's rate in bytes per second
        (``None``: a backlog).  ``app_limited``: the sender's mark on every packet (by default
        whether ``offered`` is given, as the send loop marks a path it runs out of data for).
        """
        mark = offered is not None if app_limited is None else app_limited
        self.next_offer = max(self.next_offer, self.now)
        while True:
            while self.in_flight + MSS <= self.cwnd and (
                offered is None or self.next_offer <= self.now
            ):
                self.send(mark)
                if offered is not None:
                    self.next_offer += MSS / offered
            next_ack = self.flight[0][0] if self.flight else math.inf
            next_send = math.inf
            if offered is not None and self.in_flight + MSS <= self.cwnd:
                next_send = self.next_offer
            at = min(next_ack, next_send)
            if at > until:
                self.now = until
                return self
            self.now = at
            if next_ack <= at:
                _, packet = self.flight.popleft()
                self.in_flight -= packet.size
                self.tracker.on_ack(packet.size, now=at, newest=packet, rtt=self.rtt,
                                    bytes_in_flight=self.in_flight)  # fmt: skip

    def send(self, app_limited: bool) -> SentPacket:
        """Send one MSS packet now."""
        packet = SentPacket(self.seq, self.now, MSS)
        self.seq += 1
        self.tracker.on_sent(packet, self.in_flight, app_limited)
        self.in_flight += MSS
        self.sent += MSS
        leaves = max(self.now, self.link_free) + MSS / self.capacity
        self.link_free = leaves
        self.flight.append((leaves + self.rtt.min_rtt, packet))
        return packet


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
        """A tracker with some history (0.1 s through a 1.35 MB/s bottleneck) and a fake path."""
        self.path = FakePath(7, FakeRecovery(FakeRtt(), FakeController()))
        self.tracker = PathMetricsTracker(now=0.0, usable=True, cost=2.5)
        Bottleneck(self.tracker, capacity=MSS / 0.001, rtt=0.020, cwnd=40 * MSS).run(0.1)
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
        self.assertApproximates(m.bandwidth, MSS / 0.001, 0.01 * MSS / 0.001)
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


C = 1e6  # a 1 MB/s bottleneck
RTT = 0.020
BDP = int(C * RTT)


def saturated(now: float = 0.0) -> tuple[PathMetricsTracker, Bottleneck]:
    """A tracker after 0.5 s of a backlog through a 1 MB/s, 20 ms bottleneck (window 2 BDP)."""
    tracker = PathMetricsTracker(now=now, usable=True)
    link = Bottleneck(tracker, capacity=C, rtt=RTT, cwnd=2 * BDP, now=now).run(now + 0.5)
    return tracker, link


class BottleneckBandwidthTests(SynchronousTestCase):
    """BBR's delivery-rate samples and their windowed maximum: PathMetricsTracker.bandwidth."""

    def test_a_backlog_measures_the_bottleneck_rate(self) -> None:
        """A sender with a window of two BDPs and data to send measures the link's rate."""
        tracker, _ = saturated()
        self.assertApproximates(tracker.bandwidth, C, 0.01 * C)
        self.assertFalse(tracker.sample_app_limited)

    def test_a_small_window_measures_the_window_rate(self) -> None:
        """With a window of half a BDP the path delivers cwnd / rtt, and that is the estimate."""
        tracker = PathMetricsTracker(now=0.0, usable=True)
        cwnd = 10 * MSS
        Bottleneck(tracker, capacity=C, rtt=RTT, cwnd=cwnd).run(0.5)
        expected = cwnd / (RTT + MSS / C)  # each round trip also serialises one packet
        self.assertApproximates(tracker.bandwidth, expected, 0.02 * expected)

    def test_application_limited_samples_do_not_lower_the_estimate(self) -> None:
        """After a saturated phase, two seconds (100 RTTs) of the application offering a third
        of the capacity leave the estimate at the capacity: those samples are marked and lower."""
        tracker, link = saturated()
        link.run(2.5, offered=C / 3)
        self.assertApproximates(tracker.rate_sample, C / 3, 0.05 * C)
        self.assertTrue(tracker.sample_app_limited)
        self.assertApproximates(tracker.bandwidth, C, 0.01 * C)

    def test_unmarked_low_samples_lower_the_estimate_after_the_window(self) -> None:
        """The same samples not marked application-limited replace the estimate once the
        filter's 10 RTTs have passed (what the mark protects against)."""
        tracker, link = saturated()
        link.run(2.5, offered=C / 3, app_limited=False)
        self.assertApproximates(tracker.bandwidth, C / 3, 0.05 * C)

    def test_application_limited_samples_may_raise_the_estimate(self) -> None:
        """From nothing, an application-limited flow's samples are the best known: they count."""
        tracker = PathMetricsTracker(now=0.0, usable=True)
        Bottleneck(tracker, capacity=C, rtt=RTT, cwnd=2 * BDP).run(0.5, offered=C / 2)
        self.assertApproximates(tracker.bandwidth, C / 2, 0.05 * C)

    def test_a_capacity_drop_shows_after_the_filter_window(self) -> None:
        """When the link halves, the old maximum holds for the filter's window (10 RTTs), then
        the estimate is the new rate."""
        tracker, link = saturated()
        link.capacity = C / 2
        window = BW_WINDOW_RTTS * RTT
        link.run(0.5 + 0.5 * window)
        self.assertApproximates(tracker.bandwidth, C, 0.02 * C)
        link.run(0.5 + 3 * window)
        self.assertApproximates(tracker.bandwidth, C / 2, 0.02 * C)

    def test_the_bubble_marks_packets_until_its_data_is_delivered(self) -> None:
        """The sender's mark opens a bubble up to ``delivered + in flight + packet``; packets
        sent before that much was delivered are app-limited, and it closes once passed."""
        tracker = PathMetricsTracker(now=0.0, usable=True)
        first = SentPacket(0, 0.0, MSS)
        tracker.on_sent(first, 0, True)
        self.assertEqual(tracker.app_limited_until, MSS)
        self.assertTrue(first.app_limited)
        second = SentPacket(1, 0.001, MSS)
        tracker.on_sent(second, MSS, False)
        self.assertTrue(second.app_limited)
        tracker.on_ack(MSS, now=0.02, newest=first)
        self.assertEqual(tracker.app_limited_until, MSS)  # delivered == mark: not passed yet
        tracker.on_ack(MSS, now=0.021, newest=second)
        self.assertEqual(tracker.app_limited_until, 0)
        third = SentPacket(2, 0.022, MSS)
        tracker.on_sent(third, 0, False)
        self.assertFalse(third.app_limited)
        self.assertEqual((third.delivered, third.delivered_time), (2 * MSS, 0.022))

    def test_ack_compression_is_discounted_by_the_send_interval(self) -> None:
        """Packets sent 10 ms apart whose ACKs come in one burst: the sample spans the longer of
        the send and ACK intervals, so it is the send rate, not the burst's."""
        tracker = PathMetricsTracker(now=0.0, usable=True)
        rtt = FakeRtt(smoothed_rtt=0.01, min_rtt=0.01, latest_rtt=0.01)
        packets = []

        def send(at: float) -> None:
            packet = SentPacket(len(packets), at, MSS)
            in_flight = (len(packets) - tracker.delivered // MSS) * MSS
            tracker.on_sent(packet, in_flight, False)
            packets.append(packet)

        for i in range(10):
            send(0.01 * i)
        tracker.on_ack(MSS, now=0.05, newest=packets[0], rtt=rtt)
        for i in range(10):
            send(0.1 + 0.01 * i)
        tracker.on_ack(19 * MSS, now=0.2, newest=packets[-1], rtt=rtt)  # 19 packets at once
        # send interval 0.19 s (packet 0 to packet 19) beats the ACK interval 0.15 s
        self.assertAlmostEqual(tracker.rate_sample, 19 * MSS / 0.19)

    def test_samples_shorter_than_the_min_rtt_are_discarded(self) -> None:
        """An interval below min_rtt says nothing reliable: no sample, no estimate."""
        tracker = PathMetricsTracker(now=0.0, usable=True)
        rtt = FakeRtt(smoothed_rtt=0.05, min_rtt=0.05, latest_rtt=0.05)
        packet = SentPacket(0, 0.0, MSS)
        tracker.on_sent(packet, 0, False)
        tracker.on_ack(MSS, now=0.01, newest=packet, rtt=rtt)
        self.assertEqual((tracker.rate_sample, tracker.bandwidth), (0.0, 0.0))

    def test_an_unstamped_packet_gives_no_sample(self) -> None:
        """A packet the sender did not stamp (delivered = -1) is counted but not sampled."""
        tracker = PathMetricsTracker(now=0.0, usable=True)
        tracker.on_ack(MSS, now=1.0, newest=SentPacket(0, 0.0, MSS))
        self.assertEqual(tracker.delivered, MSS)
        self.assertEqual(tracker.bandwidth, 0.0)

    def test_goodput_is_what_was_delivered(self) -> None:
        """The sliding mean still reports what the application-limited path carried."""
        tracker, link = saturated()
        link.run(2.5, offered=C / 3)
        self.assertApproximates(tracker.goodput, C / 3, 0.05 * C)
        self.assertIs(tracker.goodput, tracker.delivery.bandwidth)

    def test_state_stays_bounded(self) -> None:
        """A minute of traffic leaves the tracker with the same fields and no growing container
        but the goodput window's bounded deque."""
        tracker, link = saturated()
        before = {name: sys.getsizeof(getattr(tracker, name)) for name in tracker.__slots__}
        link.run(60.0)
        self.assertLessEqual(len(tracker.delivery.events), MAX_ACK_EVENTS)
        for name in tracker.__slots__:
            if name != "delivery":
                self.assertLessEqual(sys.getsizeof(getattr(tracker, name)), before[name] + 64)


class WindowedMaxTests(SynchronousTestCase):
    """Kathleen Nichols' windowed maximum."""

    def test_a_new_maximum_is_taken_at_once(self) -> None:
        """A sample above the maximum replaces it immediately."""
        f = WindowedMax()
        f.update(5.0, now=0.0, window=1.0)
        self.assertEqual(f.update(7.0, now=0.1, window=1.0), 7.0)

    def test_the_maximum_expires_after_the_window(self) -> None:
        """A maximum older than the window gives way to the best of the later samples."""
        f = WindowedMax()
        f.update(10.0, now=0.0, window=1.0)
        for i in range(1, 20):
            f.update(5.0 + (i % 3), now=0.1 * i, window=1.0)
        self.assertEqual(f.value, 7.0)

    def test_an_empty_window_restarts_from_the_sample(self) -> None:
        """After a silence longer than the window, the next sample is the maximum."""
        f = WindowedMax()
        f.update(10.0, now=0.0, window=1.0)
        self.assertEqual(f.update(2.0, now=5.0, window=1.0), 2.0)

    @settings(max_examples=100)
    @given(st.lists(st.tuples(st.floats(0.0, 0.5), st.floats(0.0, 1e9)), min_size=1, max_size=80))
    def test_the_maximum_is_a_recent_sample_and_at_least_the_latest(self, steps) -> None:
        """Whatever the samples, the value is one taken within the window, at least the newest."""
        f = WindowedMax()
        now, history = 0.0, []
        for dt, value in steps:
            now += dt
            history.append((now, value))
            result = f.update(value, now=now, window=1.0)
            self.assertGreaterEqual(result, value)
            self.assertIn(result, [v for t, v in history if now - t <= 1.0])


class PredictionTests(SynchronousTestCase):
    """predicted_bandwidth and rtt_drift."""

    def test_a_steady_path_is_predicted_at_its_estimate(self) -> None:
        """Without a trend the prediction is the estimate, whatever the horizon."""
        tracker, link = saturated()
        for horizon in (0.0, 0.1, 1.0):
            predicted = tracker.predicted_bandwidth(horizon, now=link.now)
            self.assertApproximates(predicted, tracker.bandwidth, 0.02 * C)

    def test_a_falling_capacity_is_predicted_before_the_filter_forgets(self) -> None:
        """Halfway into the filter's window after the link halved, the estimate still holds the
        old rate but the trend predicts well under it, never under zero."""
        tracker, link = saturated()
        link.capacity = C / 2
        link.run(0.5 + 0.5 * BW_WINDOW_RTTS * RTT)
        self.assertApproximates(tracker.bandwidth, C, 0.02 * C)
        predicted = tracker.predicted_bandwidth(RTT, now=link.now)
        self.assertLess(predicted, 0.8 * C)
        self.assertGreaterEqual(tracker.predicted_bandwidth(100.0, now=link.now), 0.0)

    def test_the_prediction_never_exceeds_the_estimate(self) -> None:
        """In slow start the trend rises; the forecast is clamped to what was measured."""
        tracker = PathMetricsTracker(now=0.0, usable=True)
        link = Bottleneck(tracker, capacity=C, rtt=RTT, cwnd=2 * MSS)
        for step in range(1, 8):
            link.cwnd *= 2
            link.run(0.05 * step)
            self.assertLessEqual(tracker.predicted_bandwidth(1.0, now=link.now),
                                 tracker.bandwidth)  # fmt: skip

    def test_a_stale_trend_is_not_extrapolated(self) -> None:
        """Long after the last sample the prediction is the estimate, however steep the trend."""
        tracker, link = saturated()
        link.capacity = C / 2
        link.run(0.6)
        self.assertEqual(tracker.predicted_bandwidth(0.1, now=100.0), tracker.bandwidth)

    def test_rtt_drift_comes_from_the_detector(self) -> None:
        """The queueing delay the detector forecasts minus the one it sees; 0 without one."""
        tracker = PathMetricsTracker(now=0.0)
        self.assertEqual(tracker.rtt_drift(0.1, now=1.0), 0.0)
        tracker.detector = RecordingDetector(queueing_delay=0.010, predicted=0.030)
        self.assertAlmostEqual(tracker.rtt_drift(0.1, now=1.0), 0.020)


class RecordingDetector:
    """A congestion detector that records what it is fed and answers fixed figures."""

    def __init__(self, *, queueing_delay: float = 0.0, predicted: float = 0.0,
                 congestion: float = 0.0) -> None:  # fmt: skip
        self.queueing_delay = queueing_delay
        self.predicted = predicted
        self.congestion = congestion
        self.acks: list[dict] = []
        self.losses: list[tuple[int, float]] = []

    def on_ack(self, **kw) -> None:
        """Record one ACK's keywords."""
        self.acks.append(kw)

    def on_loss(self, packets: int, *, now: float) -> None:
        """Record one loss report."""
        self.losses.append((packets, now))

    def predicted_queueing_delay(self, *, now: float, horizon: float) -> float:
        """The fixed forecast."""
        return self.predicted


class DetectorFeedTests(SynchronousTestCase):
    """The tracker feeds its congestion detector and reads congestion from it."""

    def test_acks_feed_the_detector_with_the_path_figures(self) -> None:
        """Each ACK gives the detector the RTTs, bytes in flight, the delivery-rate sample and
        whether it was application-limited."""
        tracker, link = saturated()
        tracker.detector = detector = RecordingDetector()
        link.run(0.6)
        ack = detector.acks[-1]
        self.assertEqual(ack["now"], tracker.delivered_time)
        self.assertEqual(ack["acked_bytes"], MSS)
        self.assertEqual(ack["packets"], 1)
        self.assertEqual(ack["bytes_in_flight"], link.in_flight - MSS)  # one packet refilled it
        self.assertEqual((ack["latest_rtt"], ack["smoothed_rtt"], ack["min_rtt"]), (RTT,) * 3)
        self.assertApproximates(ack["delivery_rate"], C, 0.02 * C)
        self.assertFalse(ack["app_limited"])
        link.run(1.0, offered=C / 4)
        self.assertTrue(detector.acks[-1]["app_limited"])

    def test_losses_feed_the_detector(self) -> None:
        """on_loss passes the lost packets on; zero packets is not a report."""
        tracker = PathMetricsTracker(now=0.0)
        tracker.detector = detector = RecordingDetector()
        tracker.on_loss(3, now=1.5)
        tracker.on_loss(0, now=1.6)
        self.assertEqual(detector.losses, [(3, 1.5)])

    def test_congestion_comes_from_the_detector_when_there_is_one(self) -> None:
        """Without a detector congestion is the RTT and loss signal; with one, its figure, in the
        live property and in snapshots."""
        tracker, _ = saturated()
        path = FakePath(1, FakeRecovery(FakeRtt(), FakeController()))
        self.assertEqual(tracker.congestion, congestion_signal(RTT, RTT, tracker.loss_rate))
        tracker.detector = RecordingDetector(congestion=0.7)
        self.assertEqual(tracker.congestion, 0.7)
        self.assertEqual(tracker.snapshot(path, now=1.0).congestion, 0.7)
