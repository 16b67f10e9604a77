"""Tests for kwik_twisted.core.qos.detector: the trend predictor, the three congestion detectors,
episodes and reports, on synthetic, deterministic sample streams."""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.qos import detector as detector_module
from kwik_twisted.core.qos.detector import (
    ASSUMED_PACKET_SIZE,
    LOSS_SATURATION,
    QUEUE_SHARE,
    CongestionDetector,
    CongestionLevel,
    CongestionReport,
    CongestionType,
    PathCongestionReport,
    TrendPredictor,
    global_report,
)
from kwik_twisted.errors import ConfigurationError

MIN_RTT = 0.020
MSS = ASSUMED_PACKET_SIZE


def assert_near(case: SynchronousTestCase, value: float, expected: float, tolerance: float) -> None:
    """Fail ``case`` unless ``value`` is within ``tolerance`` of ``expected`` (trial's
    assertAlmostEqual has no ``delta``)."""
    case.assertLessEqual(abs(value - expected), tolerance, f"{value} != {expected} +- {tolerance}")


def constant(value: float) -> Callable[[float], float]:
    """A signal that is ``value`` at every time."""
    return lambda t: value


STEADY_RTT = constant(MIN_RTT)
STEADY_INFLIGHT = constant(20000)
STEADY_RATE = constant(1e6)


class Driver:
    """
    Feeds a detector one ACK every ``interval`` seconds from signals of time: the RTT sample,
    the bytes in flight and the delivery rate; keeps the smoothed and min RTT as an RFC 9002
    estimator would, and records the level and episode after every ACK.
    """

    def __init__(self, detector: CongestionDetector, *, interval: float = 0.001) -> None:
        self.detector = detector
        self.interval = interval
        self.now = 0.0
        self.srtt = MIN_RTT
        self.min_rtt = MIN_RTT
        self.history: list[tuple[float, CongestionLevel, float | None]] = []

    def run(
        self,
        duration: float,
        *,
        rtt: Callable[[float], float] = STEADY_RTT,
        inflight: Callable[[float], float] = STEADY_INFLIGHT,
        rate: Callable[[float], float] = STEADY_RATE,
        app_limited: bool = False,
    ) -> None:
        """Feed ACKs for ``duration`` seconds."""
        end = self.now + duration
        while self.now < end - 1e-12:
            self.now += self.interval
            t = self.now
            sample = rtt(t)
            self.min_rtt = min(self.min_rtt, sample)
            self.srtt += (sample - self.srtt) / 8
            self.detector.on_ack(
                now=t,
                acked_bytes=MSS,
                bytes_in_flight=int(inflight(t)),
                latest_rtt=sample,
                smoothed_rtt=self.srtt,
                min_rtt=self.min_rtt,
                delivery_rate=rate(t),
                app_limited=app_limited,
            )
            self.history.append((t, self.detector.level, self.detector.since))

    def first(self, predicate: Callable[[CongestionLevel], bool]) -> float | None:
        """The time of the first recorded ACK whose level satisfies ``predicate``."""
        for t, level, _ in self.history:
            if predicate(level):
                return t
        return None

    def level_changes(self) -> int:
        """How many times the recorded level changed."""
        levels = [level for _, level, _ in self.history]
        return sum(1 for a, b in zip(levels, levels[1:]) if a != b)

    def episodes(self) -> list[float]:
        """The distinct ``since`` values recorded, in order."""
        seen: list[float] = []
        for _, _, since in self.history:
            if since is not None and (not seen or seen[-1] != since):
                seen.append(since)
        return seen


def ramp(start: float, slope: float = 1.0, top: float = 1.0) -> Callable[[float], float]:
    """An RTT that is ``MIN_RTT`` until ``start``, then grows by ``slope`` seconds per second
    (a filling queue) up to ``top`` seconds of queueing."""
    return lambda t: MIN_RTT + min(top, max(0.0, (t - start) * slope))


class TrendPredictorTests(SynchronousTestCase):
    """Holt's linear smoothing over irregular sample times."""

    def test_linear_ramp_forecast(self) -> None:
        """On a perfect ramp the level and trend are exact, so the forecast is too."""
        predictor = TrendPredictor()
        for i in range(20):
            t = i * 0.01
            predictor.update(3.0 + 2.0 * t, now=t)
        self.assertAlmostEqual(predictor.trend, 2.0, places=9)
        self.assertAlmostEqual(predictor.level, 3.0 + 2.0 * 0.19, places=9)
        self.assertAlmostEqual(predictor.forecast(1.19), 3.0 + 2.0 * 1.19, places=9)
        self.assertEqual(predictor.samples, 20)

    def test_irregular_intervals(self) -> None:
        """Irregularly spaced samples of a ramp still give its slope and exact forecasts."""
        predictor = TrendPredictor(alpha=0.3, beta=0.2)
        times = [0.0, 0.001, 0.0013, 0.009, 0.0095, 0.03, 0.031, 0.07, 0.0701, 0.2]
        for t in times:
            predictor.update(-1.0 + 0.5 * t, now=t)
        self.assertAlmostEqual(predictor.trend, 0.5, places=9)
        self.assertAlmostEqual(predictor.forecast(0.7), -1.0 + 0.5 * 0.7, places=9)

    def test_trend_follows_a_change_of_slope(self) -> None:
        """After a ramp turns flat the trend decays towards zero and the level to the plateau."""
        predictor = TrendPredictor()
        for i in range(10):
            predictor.update(float(i), now=float(i))
        for i in range(10, 60):
            predictor.update(9.0, now=float(i))
        self.assertLess(abs(predictor.trend), 1e-3)
        self.assertAlmostEqual(predictor.level, 9.0, places=3)

    def test_time_to_cross_on_a_ramp(self) -> None:
        """A ramp at 2/s now at 5 reaches 9 in 2 s; a bound already reached answers 0.0."""
        predictor = TrendPredictor()
        predictor.update(3.0, now=0.0)
        predictor.update(5.0, now=1.0)
        self.assertAlmostEqual(predictor.time_to_cross(9.0, now=1.0), 2.0)
        self.assertAlmostEqual(predictor.time_to_cross(9.0, now=1.5), 1.5)
        self.assertEqual(predictor.time_to_cross(5.0, now=1.0), 0.0)
        self.assertEqual(predictor.time_to_cross(4.0, now=1.0), 0.0)

    def test_flat_or_falling_series_never_crosses(self) -> None:
        """A flat or falling series never reaches a bound above it; no samples: None."""
        predictor = TrendPredictor()
        self.assertIsNone(predictor.time_to_cross(1.0, now=0.0))
        for i in range(10):
            predictor.update(0.5, now=i * 0.1)
        self.assertEqual(predictor.trend, 0.0)
        self.assertIsNone(predictor.time_to_cross(1.0, now=1.0))
        falling = TrendPredictor()
        for i in range(10):
            falling.update(1.0 - i * 0.05, now=i * 0.1)
        self.assertIsNone(falling.time_to_cross(2.0, now=1.0))

    def test_same_time_sample_moves_the_level_only(self) -> None:
        """A second sample at the same time cannot make a slope: the level moves, not the trend."""
        predictor = TrendPredictor(alpha=0.5)
        predictor.update(1.0, now=0.0)
        predictor.update(2.0, now=1.0)
        predictor.update(4.0, now=1.0)
        self.assertEqual(predictor.trend, 1.0)
        self.assertEqual(predictor.level, 3.0)
        self.assertEqual(predictor.last, 1.0)

    def test_bad_gains_are_refused(self) -> None:
        """Gains outside their ranges are configuration errors."""
        self.assertRaises(ConfigurationError, TrendPredictor, alpha=0.0)
        self.assertRaises(ConfigurationError, TrendPredictor, beta=1.5)


class DelayDetectorTests(SynchronousTestCase):
    """The RTT-based detector, its hysteresis, its episode and its forecasts."""

    def test_filling_queue_is_moderate_within_three_rtts(self) -> None:
        """RTT growing by 5 ms per 5 ms (a queue filling at 2 Mbit/s) on a 20 ms path reads
        MODERATE delay congestion within 60 ms of the ramp's start, whether ACKs come every
        5 ms or every 0.3 ms, and not before the ramp."""
        for interval in (0.005, 0.001, 0.0003):
            driver = Driver(CongestionDetector(1, now=0.0), interval=interval)
            driver.run(0.5)
            driver.run(0.2, rtt=ramp(0.5))
            onset = driver.first(lambda level: level >= CongestionLevel.MODERATE)
            assert onset is not None
            self.assertGreater(onset, 0.5)
            self.assertLessEqual(onset - 0.5, 0.060, interval)
            self.assertEqual(driver.episodes(), [onset])
            self.assertIn(CongestionType.DELAY, driver.detector.types)

    def test_steady_rtt_is_not_congestion(self) -> None:
        """An RTT that stays at the minimum reads NONE with no queueing and no congestion."""
        detector = CongestionDetector(1, now=0.0)
        driver = Driver(detector)
        driver.run(2.0)
        self.assertEqual(driver.first(lambda level: level > CongestionLevel.NONE), None)
        self.assertEqual(detector.queueing_delay, 0.0)
        self.assertEqual(detector.congestion, 0.0)
        self.assertEqual(detector.types, frozenset())
        self.assertIsNone(detector.since)

    def test_episode_ends_after_drain_without_flapping(self) -> None:
        """A queue that fills to 150 ms, stays, then drains: one episode, SEVERE at its worst,
        over once the delay is gone for a smoothed RTT; the level changes only on the way up
        and down, never back and forth."""
        detector = CongestionDetector(1, now=0.0)
        driver = Driver(detector)
        driver.run(0.2)
        driver.run(0.15, rtt=ramp(0.2))  # up to 150 ms of queueing
        driver.run(0.3, rtt=constant(MIN_RTT + 0.150))
        drain_start = driver.now
        driver.run(0.15, rtt=lambda t: MIN_RTT + max(0.0, 0.150 - (t - drain_start)))
        drained = driver.now
        driver.run(1.0)
        self.assertEqual(len(driver.episodes()), 1)
        self.assertIsNone(detector.since)
        self.assertEqual(max(level for _, level, _ in driver.history), CongestionLevel.SEVERE)
        self.assertLessEqual(driver.level_changes(), 6)
        ended = next(t for t, _, since in driver.history if t > drain_start and since is None)
        self.assertLess(ended - drained, 0.1)
        self.assertEqual(detector.level, CongestionLevel.NONE)

    def test_brief_calm_keeps_the_episode(self) -> None:
        """A queue that empties for less than a smoothed RTT and fills again is one episode:
        the level reads NONE in between, but ``since`` holds."""
        detector = CongestionDetector(1, now=0.0)
        driver = Driver(detector)
        driver.run(0.1)
        driver.run(0.2, rtt=constant(MIN_RTT + 0.05))
        first = detector.since
        self.assertIsNotNone(first)
        dip = len(driver.history)
        driver.run(0.035)
        self.assertIn(CongestionLevel.NONE, [level for _, level, _ in driver.history[dip:]])
        driver.run(0.2, rtt=constant(MIN_RTT + 0.05))
        self.assertEqual(driver.episodes(), [first])
        self.assertEqual(detector.since, first)

    def test_hysteresis_near_a_threshold(self) -> None:
        """A queueing delay jittering around the LIGHT threshold (5 ms on a 20 ms path) does
        not flap the level: once LIGHT it stays LIGHT until the delay falls well below."""
        detector = CongestionDetector(1, now=0.0)
        driver = Driver(detector)
        driver.run(0.1)
        driver.run(1.0, rtt=lambda t: MIN_RTT + (0.0057 if round(t * 1000) % 2 else 0.0045))
        self.assertEqual(detector.level, CongestionLevel.LIGHT)
        self.assertEqual(driver.level_changes(), 1)
        driver.run(0.2, rtt=constant(MIN_RTT + 0.003))
        self.assertEqual(detector.level, CongestionLevel.NONE)

    def test_forecast_on_a_ramp(self) -> None:
        """Halfway up a 1 s/s ramp the forecast 50 ms ahead is about 50 ms above the estimate,
        and a 200 ms budget is forecast to be crossed about when the ramp crosses it."""
        detector = CongestionDetector(1, now=0.0)
        driver = Driver(detector)
        driver.run(0.1)
        driver.run(0.1, rtt=ramp(0.1))
        now = driver.now
        estimate = detector.queueing_delay
        assert_near(self, estimate, 0.090, 0.003)  # lags the raw 100 ms by tau
        predicted = detector.predicted_queueing_delay(now=now, horizon=0.050)
        assert_near(self, predicted - estimate, 0.050, 0.005)
        crossing = detector.time_to_cross(0.200, now=now)
        assert crossing is not None
        assert_near(self, crossing, 0.110, 0.010)
        self.assertEqual(detector.time_to_cross(0.050, now=now), 0.0)

    def test_forecast_never_negative(self) -> None:
        """A draining queue's forecast far ahead is 0, not negative, and never crosses up."""
        detector = CongestionDetector(1, now=0.0)
        driver = Driver(detector)
        driver.run(0.1, rtt=constant(MIN_RTT + 0.05))
        driver.run(0.03, rtt=lambda t: MIN_RTT + max(0.0, 0.05 - (t - 0.1)))
        self.assertEqual(detector.predicted_queueing_delay(now=driver.now, horizon=10.0), 0.0)
        self.assertIsNone(detector.time_to_cross(0.2, now=driver.now))

    def test_predictor_is_rate_limited(self) -> None:
        """The predictor takes at most one sample per quarter min RTT however many ACKs come."""
        detector = CongestionDetector(1, now=0.0)
        driver = Driver(detector, interval=0.0001)
        driver.run(0.1)
        self.assertLessEqual(detector.predictor.samples, 0.1 / (MIN_RTT / 4) + 1)
        self.assertGreaterEqual(detector.predictor.samples, 0.1 / (MIN_RTT / 4) - 1)

    def test_reset_forgets_the_episode(self) -> None:
        """on_reset clears the level, the episode, the estimate and the trend."""
        detector = CongestionDetector(1, now=0.0)
        driver = Driver(detector)
        driver.run(0.2, rtt=ramp(0.0))
        self.assertTrue(detector.congested)
        detector.on_reset(now=driver.now)
        self.assertEqual(detector.level, CongestionLevel.NONE)
        self.assertIsNone(detector.since)
        self.assertEqual(detector.queueing_delay, 0.0)
        self.assertEqual(detector.predictor.samples, 0)
        self.assertEqual(detector.predicted_queueing_delay(now=driver.now, horizon=1.0), 0.0)


class LossDetectorTests(SynchronousTestCase):
    """The loss rate against its learnt baseline."""

    def feed(self, detector: CongestionDetector, rng: random.Random, loss: float, packets: int,
             start: float, *, rtt: float = MIN_RTT) -> tuple[float, list[bool]]:  # fmt: skip
        """Send ``packets`` packets, 0.1 ms apart, each lost with probability ``loss``; answer
        the time after the last one and whether the path was congested after each."""
        congested = []
        now = start
        for _ in range(packets):
            now += 0.0001
            if rng.random() < loss:
                detector.on_loss(1, now=now)
            else:
                detector.on_ack(now=now, acked_bytes=MSS, bytes_in_flight=20000, latest_rtt=rtt,
                                smoothed_rtt=rtt, min_rtt=MIN_RTT, delivery_rate=1e6)  # fmt: skip
            congested.append(detector.congested)
        return now, congested

    def test_steady_random_loss_is_not_congestion(self) -> None:
        """Steady 5 % random loss is learnt by the baseline and never reads as congestion after
        it, though it shows in loss_rate."""
        for seed in range(3):
            detector = CongestionDetector(1, now=0.0)
            rng = random.Random(seed)
            now, _ = self.feed(detector, rng, 0.05, 2000, 0.0)
            _, congested = self.feed(detector, rng, 0.05, 30000, now)
            self.assertFalse(any(congested), seed)
            assert_near(self, detector.loss.baseline, 0.05, 0.01)
            self.assertGreater(detector.loss.rate, 0.01)
            self.assertLess(detector.loss.rate, 0.10)
            self.assertIsNone(detector.since)
            self.assertAlmostEqual(detector.report(now=now).loss_rate, detector.loss.rate)

    def test_warm_up_learns_quickly(self) -> None:
        """A path lossy from its first packet (5 %) is learnt by the warm-up's running mean
        before the loss EWMA climbs: it never reads congested after the first 200 packets."""
        for seed in range(5):
            detector = CongestionDetector(1, now=0.0)
            _, congested = self.feed(detector, random.Random(seed), 0.05, 3000, 0.0)
            self.assertFalse(any(congested[200:]), seed)

    def test_jump_in_loss_is_congestion(self) -> None:
        """A clean path whose loss jumps to 20 % reads LOSS congestion within 50 packets."""
        for seed in range(5):
            detector = CongestionDetector(1, now=0.0)
            rng = random.Random(seed)
            now, congested = self.feed(detector, rng, 0.0, 5000, 0.0)
            self.assertFalse(any(congested))
            _, congested = self.feed(detector, rng, 0.20, 50, now)
            self.assertTrue(any(congested), seed)
            self.assertIn(CongestionType.LOSS, detector.types)
            self.assertEqual(detector.types, frozenset({CongestionType.LOSS}))

    def test_one_loss_is_light(self) -> None:
        """On a clean path one or two lost packets read LIGHT, not congested; three in a row
        MODERATE."""
        detector = CongestionDetector(1, now=0.0)
        now, _ = self.feed(detector, random.Random(0), 0.0, 3000, 0.0)
        for _ in range(2):
            detector.on_loss(1, now=now)
            self.assertEqual(detector.level, CongestionLevel.LIGHT)
            self.assertFalse(detector.congested)
            self.assertIsNone(detector.since)
        detector.on_loss(1, now=now)
        self.assertEqual(detector.level, CongestionLevel.MODERATE)
        self.assertEqual(detector.since, now)

    def test_baseline_does_not_learn_during_delay_congestion(self) -> None:
        """Losses that come with a standing queue (delay MODERATE) are not learnt."""
        detector = CongestionDetector(1, now=0.0)
        rng = random.Random(7)
        now, _ = self.feed(detector, rng, 0.01, 2000, 0.0)
        now, congested = self.feed(detector, rng, 0.0, 1000, now, rtt=MIN_RTT + 0.05)
        self.assertTrue(congested[-1])
        baseline = detector.loss.baseline
        self.assertGreater(baseline, 0.0)
        _, congested = self.feed(detector, rng, 0.10, 5000, now, rtt=MIN_RTT + 0.05)
        self.assertTrue(all(congested))
        self.assertEqual(detector.loss.baseline, baseline)
        self.assertGreater(detector.loss.rate, 0.05)

    def test_packets_default_from_bytes(self) -> None:
        """An ACK of ten packets' bytes decays the loss rate like an explicit count of ten."""
        by_bytes = CongestionDetector(1, now=0.0)
        by_count = CongestionDetector(2, now=0.0)
        for detector in (by_bytes, by_count):
            detector.on_loss(3, now=0.0)
        by_bytes.on_ack(now=0.01, acked_bytes=10 * MSS, bytes_in_flight=0, latest_rtt=MIN_RTT,
                        smoothed_rtt=MIN_RTT, min_rtt=MIN_RTT, delivery_rate=0.0)  # fmt: skip
        by_count.on_ack(now=0.01, acked_bytes=1, bytes_in_flight=0, latest_rtt=MIN_RTT,
                        smoothed_rtt=MIN_RTT, min_rtt=MIN_RTT, delivery_rate=0.0,
                        packets=10)  # fmt: skip
        self.assertAlmostEqual(by_bytes.loss.rate, by_count.loss.rate)
        self.assertLess(by_bytes.loss.rate, 1 - (1 - 1 / 64) ** 3)


def growth(base: float, per_window: float, window: float = MIN_RTT) -> Callable[[float], float]:
    """A signal growing by the factor ``per_window`` each ``window`` seconds from ``base``."""
    return lambda t: base * per_window ** (t / window)


class QueueDetectorTests(SynchronousTestCase):
    """The standing-queue detector: flat delivery rate, growing bytes in flight."""

    def test_flat_rate_growing_inflight_is_a_queue(self) -> None:
        """In flight +20 % per RTT at a flat rate reads QUEUE within 4 RTTs; the RTT detector
        sees nothing (the RTT stays at its minimum), so QUEUE alone makes it congested."""
        detector = CongestionDetector(1, now=0.0)
        driver = Driver(detector)
        driver.run(0.1)
        driver.run(0.1, inflight=growth(20000, 1.2))
        onset = driver.first(lambda level: level >= CongestionLevel.MODERATE)
        assert onset is not None
        self.assertLessEqual(onset - 0.1, 4 * MIN_RTT + 0.002)
        self.assertEqual(detector.types, frozenset({CongestionType.QUEUE}))
        self.assertEqual(detector.congestion, QUEUE_SHARE)
        driver.run(0.1)  # in flight falls back: the queue is gone
        self.assertEqual(detector.queue.level, 0)

    def test_slow_start_is_not_a_queue(self) -> None:
        """Rate and in flight both doubling per RTT (slow start) never read QUEUE."""
        driver = Driver(CongestionDetector(1, now=0.0))
        driver.run(0.3, inflight=growth(2000, 2.0), rate=growth(1e5, 2.0))
        self.assertIsNone(driver.first(lambda level: level > CongestionLevel.NONE))

    def test_app_limited_windows_do_not_count(self) -> None:
        """The same growth, but application-limited, never reads QUEUE."""
        driver = Driver(CongestionDetector(1, now=0.0))
        driver.run(0.2, inflight=growth(20000, 1.2), app_limited=True)
        self.assertIsNone(driver.first(lambda level: level > CongestionLevel.NONE))

    def test_slow_growth_is_not_a_queue(self) -> None:
        """In flight growing 5 % per RTT (under the 10 % threshold) does not read QUEUE."""
        driver = Driver(CongestionDetector(1, now=0.0))
        driver.run(0.3, inflight=growth(20000, 1.05))
        self.assertIsNone(driver.first(lambda level: level > CongestionLevel.NONE))

    def test_long_queue_growth_is_severe(self) -> None:
        """Four consecutive queue-building windows read SEVERE."""
        driver = Driver(CongestionDetector(1, now=0.0))
        driver.run(0.2, inflight=growth(20000, 1.3))
        self.assertEqual(driver.detector.level, CongestionLevel.SEVERE)


class CongestionFigureTests(SynchronousTestCase):
    """The combined 0..1 figure."""

    def test_combination(self) -> None:
        """A queueing delay equal to the min RTT gives 0.5; with the loss excess at half its
        saturation, 1 - 0.5 * 0.5 = 0.75."""
        detector = CongestionDetector(1, now=0.0)
        detector.on_ack(now=0.0, acked_bytes=MSS, bytes_in_flight=0, latest_rtt=2 * MIN_RTT,
                        smoothed_rtt=MIN_RTT, min_rtt=MIN_RTT, delivery_rate=0.0,
                        packets=0)  # fmt: skip
        self.assertAlmostEqual(detector.congestion, 0.5)
        detector.loss.rate = detector.loss.baseline + LOSS_SATURATION / 2
        self.assertAlmostEqual(detector.congestion, 0.75)
        detector.loss.rate = 1.0
        self.assertEqual(detector.congestion, 1.0)


class ReportTests(SynchronousTestCase):
    """Per-path and global reports, and their JSON form."""

    def congested_pair(self) -> tuple[CongestionDetector, CongestionDetector, float]:
        """A congested path 1 and a clean path 2."""
        congested = CongestionDetector(1, now=0.0)
        clean = CongestionDetector(2, now=0.0)
        driver = Driver(congested)
        driver.run(0.2)
        driver.run(0.1, rtt=ramp(0.2))
        Driver(clean).run(0.3, rate=constant(5e5))
        return congested, clean, driver.now

    def test_path_report(self) -> None:
        """A path's report carries its figures, its types as sorted strings, and the forecast
        for the horizon asked (one smoothed RTT by default)."""
        detector, _, now = self.congested_pair()
        detector.on_loss(2, now=now)
        report = detector.report(now=now, horizon=0.05)
        self.assertEqual(report.path_id, 1)
        self.assertEqual(report.level, CongestionLevel.SEVERE)
        self.assertEqual(report.types, ("delay", "loss"))
        self.assertEqual({type(kind) for kind in report.types}, {str})
        self.assertEqual(report.queueing_delay, detector.queueing_delay)
        self.assertEqual(
            report.predicted_queueing_delay,
            detector.predicted_queueing_delay(now=now, horizon=0.05),
        )
        self.assertGreater(report.predicted_queueing_delay, report.queueing_delay)
        self.assertEqual(report.since, detector.since)
        self.assertEqual(report.delivery_rate, 1e6)
        self.assertEqual(report.bytes_in_flight, 20000)
        self.assertTrue(0.0 < report.congestion < 1.0)
        self.assertEqual(detector.report(now=now).horizon, detector.smoothed_rtt)

    def test_global_report_and_round_trip(self) -> None:
        """global_report takes the worst level, lists the congested paths and sums the rates;
        as_dict is JSON-serialisable and from_dict gives the same report back."""
        congested, clean, now = self.congested_pair()
        report = global_report(
            [clean.report(now=now), congested.report(now=now)], now=now, actions=("slowdown",)
        )
        self.assertEqual(report.level, congested.level)
        self.assertEqual(report.congested_paths, (1,))
        self.assertEqual(report.total_delivery_rate, 1.5e6)
        self.assertEqual([p.path_id for p in report.paths], [1, 2])
        self.assertEqual(report.path(2), clean.report(now=now))
        self.assertIsNone(report.path(3))
        self.assertEqual(report.actions, ("slowdown",))
        data = json.loads(json.dumps(report.as_dict()))
        self.assertEqual(data["level"], congested.level.name.lower())
        self.assertEqual(data["paths"][0]["types"], ["delay"])
        self.assertEqual(CongestionReport.from_dict(data), report)
        single = congested.report(now=now)
        self.assertEqual(PathCongestionReport.from_dict(json.loads(json.dumps(single.as_dict()))),
                         single)  # fmt: skip

    def test_empty_global_report(self) -> None:
        """Without paths the global level is NONE and nothing is congested."""
        report = global_report([], now=1.0)
        self.assertEqual(report.level, CongestionLevel.NONE)
        self.assertEqual(report.congested_paths, ())
        self.assertEqual(report.total_delivery_rate, 0)
        self.assertEqual(json.loads(json.dumps(report.as_dict()))["paths"], [])


def footprint(obj: object, seen: set[int] | None = None) -> int:
    """The bytes of ``obj`` and of everything its slots hold, recursively (each object once)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if hasattr(obj, name):
                size += footprint(getattr(obj, name), seen)
    return size


class BoundTests(SynchronousTestCase):
    """The detector's memory does not grow with traffic."""

    def test_hundred_thousand_acks(self) -> None:
        """1e5 ACKs and losses with a varying RTT leave every field a scalar and the whole
        detector no bigger than after a thousand."""
        detector = CongestionDetector(1, now=0.0)
        rng = random.Random(3)
        now = 0.0
        sizes = {}
        for i in range(1, 100_001):
            now += 0.0001
            if rng.random() < 0.02:
                detector.on_loss(1, now=now)
            detector.on_ack(now=now, acked_bytes=MSS, bytes_in_flight=rng.randrange(10**6),
                            latest_rtt=MIN_RTT + rng.random() * 0.05, smoothed_rtt=0.04,
                            min_rtt=MIN_RTT, delivery_rate=rng.random() * 1e7)  # fmt: skip
            if i in (1000, 100_000):
                sizes[i] = footprint(detector)
        self.assertLessEqual(sizes[100_000], sizes[1000] + 64)
        scalars = (int, float, bool, str, type(None))
        for part in (detector, detector.delay, detector.loss, detector.queue, detector.predictor):
            for name in type(part).__slots__:
                value = getattr(part, name)
                if not isinstance(value, scalars):
                    self.assertIn(type(value).__module__, (detector_module.__name__,), name)
