"""Tests for kwik_twisted.core.paths.congestion_detector: signals, trend, global report."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.paths.congestion_detector import (
    CongestionDetector,
    CongestionKind,
    CongestionReport,
    CongestionState,
    linear_slope,
    state_of,
    weighted_mean,
)
from kwik_twisted.core.paths.metrics import PathMetrics


def metrics(
    path_id: int = 1,
    *,
    srtt: float = 0.020,
    min_rtt: float = 0.020,
    loss: float = 0.0,
    bandwidth: float = 1e6,
    in_flight: int = 0,
) -> PathMetrics:
    """A PathMetrics with the figures the detector reads."""
    return PathMetrics(
        path_id=path_id, smoothed_rtt=srtt, min_rtt=min_rtt, latest_rtt=srtt, rttvar=0.001,
        jitter=0.0, bandwidth=bandwidth, loss_rate=loss, congestion=0.0, reliability=1.0,
        cost=0.0, cwnd=20000, bytes_in_flight=in_flight,
    )  # fmt: skip


class SignalTests(SynchronousTestCase):
    """The three per-path signals."""

    def test_an_idle_path_is_not_congested(self) -> None:
        """No queueing delay, no loss, nothing beyond the BDP: level 0, state NONE."""
        report = CongestionDetector().analyze_path(metrics(), now=0.0)
        self.assertEqual(report.level, 0.0)
        self.assertEqual(report.state, CongestionState.NONE)
        self.assertEqual(report.kind, CongestionKind.NONE)

    def test_queueing_delay_is_the_delay_signal(self) -> None:
        """An RTT 60% above its minimum gives a delay signal of 0.6: MODERATE, by delay."""
        report = CongestionDetector().analyze_path(metrics(srtt=0.032), now=0.0)
        self.assertAlmostEqual(report.delay_signal, 0.6)
        self.assertAlmostEqual(report.queueing_delay, 0.012)
        self.assertEqual(report.state, CongestionState.MODERATE)
        self.assertEqual(report.kind, CongestionKind.DELAY)

    def test_the_inflation_limit_scales_the_delay_signal(self) -> None:
        """With rtt_inflation_limit=2 the same delay is half the signal."""
        detector = CongestionDetector(rtt_inflation_limit=2.0)
        self.assertAlmostEqual(detector.analyze_path(metrics(srtt=0.032), now=0.0).level, 0.3)

    def test_loss_is_the_loss_signal(self) -> None:
        """Nine percent loss is a 0.9 loss signal: SEVERE, by loss."""
        report = CongestionDetector().analyze_path(metrics(loss=0.09), now=0.0)
        self.assertAlmostEqual(report.loss_signal, 0.9)
        self.assertEqual(report.state, CongestionState.SEVERE)
        self.assertEqual(report.kind, CongestionKind.LOSS)

    def test_data_beyond_the_bdp_is_the_queue_signal(self) -> None:
        """With twice the BDP in flight the queue signal is 1; within the BDP it is 0."""
        bdp = int(1e6 * 0.020)
        detector = CongestionDetector()
        full = detector.analyze_path(metrics(in_flight=2 * bdp), now=0.0)
        self.assertEqual(full.queue_signal, 1.0)
        self.assertEqual(full.kind, CongestionKind.QUEUE)
        half = detector.analyze_path(metrics(in_flight=bdp + bdp // 2), now=0.0)
        self.assertAlmostEqual(half.queue_signal, 0.5, places=3)
        self.assertEqual(detector.analyze_path(metrics(in_flight=bdp), now=0.0).queue_signal, 0.0)
        unknown = detector.analyze_path(metrics(bandwidth=0.0, in_flight=10**6), now=0.0)
        self.assertEqual(unknown.queue_signal, 0.0)

    def test_states_bucket_the_level(self) -> None:
        """Levels map to NONE, LIGHT, MODERATE and SEVERE at 0.2, 0.5 and 0.8."""
        self.assertEqual(
            [state_of(x) for x in (0.0, 0.19, 0.2, 0.5, 0.79, 0.8, 1.0)],
            [CongestionState.NONE, CongestionState.NONE, CongestionState.LIGHT,
             CongestionState.MODERATE, CongestionState.MODERATE, CongestionState.SEVERE,
             CongestionState.SEVERE],
        )  # fmt: skip


class TrendTests(SynchronousTestCase):
    """The linear-fit predictor of queueing delay."""

    def test_linear_slope_of_a_line(self) -> None:
        """The least-squares slope of points on a line is its slope; degenerate inputs give 0."""
        self.assertAlmostEqual(linear_slope([(0, 1), (1, 3), (2, 5), (3, 7)]), 2.0)
        self.assertEqual(linear_slope([(1, 1)]), 0.0)
        self.assertEqual(linear_slope([(1, 1), (1, 5)]), 0.0)

    def test_growing_queueing_delay_predicts_more_congestion(self) -> None:
        """Queueing delay growing 10 ms per 100 ms has that trend and a higher predicted level."""
        detector = CongestionDetector()
        for i in range(8):
            report = detector.analyze_path(metrics(srtt=0.040 + 0.010 * i), now=0.1 * i)
        self.assertAlmostEqual(report.trend, 0.1)
        self.assertAlmostEqual(report.predicted_queueing_delay, 0.090 + 0.1 * 0.110)
        self.assertGreater(report.predicted_level, report.level - 1e-12)
        detector = CongestionDetector(rtt_inflation_limit=10.0)
        for i in range(8):
            report = detector.analyze_path(metrics(srtt=0.040 + 0.010 * i), now=0.1 * i)
        self.assertGreater(report.predicted_level, report.level)

    def test_shrinking_queueing_delay_predicts_relief(self) -> None:
        """A draining queue has a negative trend and a lower predicted level, never below 0."""
        detector = CongestionDetector()
        for i in range(8):
            report = detector.analyze_path(metrics(srtt=0.040 - 0.002 * i), now=0.1 * i)
        self.assertLess(report.trend, 0.0)
        self.assertLess(report.predicted_level, report.level)
        self.assertGreaterEqual(report.predicted_queueing_delay, 0.0)

    def test_no_trend_from_too_few_samples(self) -> None:
        """Two samples are not enough to fit a trend."""
        detector = CongestionDetector()
        detector.analyze_path(metrics(srtt=0.020), now=0.0)
        report = detector.analyze_path(metrics(srtt=0.030), now=0.1)
        self.assertEqual(report.trend, 0.0)

    def test_history_is_bounded(self) -> None:
        """Only the last `history` samples are fitted: an old ramp stops counting."""
        detector = CongestionDetector(history=4)
        for i in range(8):
            detector.analyze_path(metrics(srtt=0.020 + 0.010 * i), now=0.1 * i)
        for i in range(8, 12):
            report = detector.analyze_path(metrics(srtt=0.050), now=0.1 * i)
        self.assertAlmostEqual(report.trend, 0.0)


class GlobalReportTests(SynchronousTestCase):
    """The connection-wide report."""

    def test_global_level_weighs_paths_by_bandwidth(self) -> None:
        """A congested narrow path next to a clean wide one leaves the connection mostly clear."""
        report = CongestionDetector().detect(
            [metrics(1, loss=0.2, bandwidth=1e6), metrics(2, bandwidth=9e6)], now=0.0
        )
        self.assertIsInstance(report, CongestionReport)
        self.assertAlmostEqual(report.level, 0.1)
        self.assertEqual(report.state, CongestionState.NONE)
        self.assertEqual(report.congested_paths, (1,))
        self.assertEqual(report.for_path(1).state, CongestionState.SEVERE)
        self.assertIsNone(report.for_path(3))

    def test_without_bandwidth_the_global_level_is_the_plain_mean(self) -> None:
        """Paths of unknown bandwidth count equally."""
        report = CongestionDetector().detect(
            [metrics(1, loss=0.1, bandwidth=0.0), metrics(2, bandwidth=0.0)], now=0.0
        )
        self.assertAlmostEqual(report.level, 0.5)
        self.assertEqual(report.state, CongestionState.MODERATE)

    def test_an_empty_report(self) -> None:
        """No paths: level 0 and no path reports; a generator of metrics is accepted."""
        report = CongestionDetector().detect(iter([]), now=3.0)
        self.assertEqual((report.time, report.paths, report.level), (3.0, (), 0.0))
        report = CongestionDetector().detect((m for m in [metrics(1)]), now=3.0)
        self.assertEqual(len(report.paths), 1)

    def test_paths_left_out_are_forgotten(self) -> None:
        """A path missing from detect() loses its history: its trend restarts."""
        detector = CongestionDetector()
        for i in range(5):
            detector.detect([metrics(1, srtt=0.020 + 0.01 * i), metrics(2)], now=0.1 * i)
        detector.detect([metrics(2)], now=0.5)
        report = detector.detect([metrics(1, srtt=0.080), metrics(2)], now=0.6)
        self.assertEqual(report.for_path(1).trend, 0.0)

    def test_forget_drops_one_path(self) -> None:
        """forget() drops the history of one path."""
        detector = CongestionDetector()
        for i in range(5):
            detector.analyze_path(metrics(1, srtt=0.020 + 0.01 * i), now=0.1 * i)
        detector.forget(1)
        detector.forget(99)
        self.assertEqual(detector.analyze_path(metrics(1, srtt=0.1), now=0.6).trend, 0.0)

    def test_weighted_mean(self) -> None:
        """weighted_mean weighs values, falls back to the plain mean, and is 0 for nothing."""
        self.assertAlmostEqual(weighted_mean([1.0, 0.0], [3.0, 1.0]), 0.75)
        self.assertAlmostEqual(weighted_mean([1.0, 0.0], [0.0, 0.0]), 0.5)
        self.assertEqual(weighted_mean([], []), 0.0)
