"""Tests for kwik_twisted.core.qos.model: criteria terms, the PerformanceModel's periods, its
multiplicative-weights rule, its bounds and its determinism."""

from __future__ import annotations

import dataclasses
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.paths.scheduler import CRITICAL, DEFAULT_CRITERIA, HIGH, NORMAL
from kwik_twisted.core.qos.model import (
    CRITERIA,
    LEARNING_RATE,
    MAX_WEIGHT,
    MIN_WEIGHT,
    CriteriaWeights,
    Figures,
    PerformanceModel,
    bounded,
    criteria_losses,
    criteria_terms,
    learn,
)

RTT = 0.020
LATENCY = CRITERIA.index("latency")


def figures(rtt: float = RTT, bandwidth: float = 1e6, **kw) -> Figures:
    """Figures of a path: ``rtt`` and ``bandwidth``, the rest as given (else clean)."""
    return Figures(rtt, bandwidth, kw.get("loss", 0.0), kw.get("jitter", 0.0),
                   kw.get("cost", 0.0), kw.get("reliability", 1.0),
                   kw.get("congestion", 0.0))  # fmt: skip


def new_model() -> PerformanceModel:
    """A model over a copy of the default weights."""
    return PerformanceModel(dict(DEFAULT_CRITERIA))


def period(
    model: PerformanceModel,
    now: float,
    predicted: dict[int, Figures],
    achieved_rtt: dict[int, float],
    *,
    priority: int = CRITICAL,
    chosen: int = 1,
    acks: int = 3,
    rate: float = 0.0,
) -> float:
    """One period of traffic: predictions for every path, a selection of ``chosen``, then
    ``acks`` ACKs per path with the achieved RTTs, 1 ms apart; return the time after it."""
    for pid, f in predicted.items():
        if model.wants_prediction(pid):
            model.predict(pid, f)
    model.selected(chosen, priority)
    for _ in range(acks):
        for pid, rtt in achieved_rtt.items():
            model.achieved(pid, now=now, latest_rtt=rtt, min_rtt=predicted[pid].rtt,
                           smoothed_rtt=RTT, rate=rate, lost=0, sent=100)  # fmt: skip
        now += 0.001
    return now + RTT


def understated(model: PerformanceModel, periods: int = 30) -> float:
    """Path 1 is predicted at 20 ms (path 2 at 40 ms) but delivers in 80 ms, period after
    period; return the time after it."""
    predicted = {1: figures(0.020), 2: figures(0.040)}
    now = 0.0
    for _ in range(periods):
        now = period(model, now, predicted, {1: 0.080, 2: 0.040})
    return now


class TermTests(SynchronousTestCase):
    """criteria_terms: the seven terms of the score."""

    def test_field_order_matches_the_criteria(self) -> None:
        """CriteriaWeights' fields are the criteria, in the order the terms come."""
        self.assertEqual(tuple(f.name for f in dataclasses.fields(CriteriaWeights)), CRITERIA)

    def test_the_documented_formulas(self) -> None:
        """latency best/rtt, bandwidth share, loss, jitter, cost, reliability, 1 - congestion."""
        f = Figures(0.040, 5e5, 0.05, 0.010, 1.0, 0.75, 0.2)
        terms = criteria_terms(f, best_rtt=0.010, top_bandwidth=1e6)
        for got, want in zip(terms, (0.25, 0.5, 0.5, 0.5, 0.5, 0.75, 0.8)):
            self.assertAlmostEqual(got, want)

    @settings(max_examples=100)
    @given(st.floats(1e-4, 10), st.floats(0, 1e10), st.floats(0, 1), st.floats(0, 10),
           st.floats(0, 1e6), st.floats(-1, 2), st.floats(-1, 2))  # fmt: skip
    def test_terms_are_fractions(self, rtt, bandwidth, loss, jitter, cost, rel, cong) -> None:
        """Whatever the figures, every term is within 0..1 when normalised within its set."""
        f = Figures(rtt, bandwidth, loss, jitter, cost, rel, cong)
        for term in criteria_terms(f, best_rtt=rtt, top_bandwidth=max(bandwidth, 1.0)):
            self.assertTrue(0.0 <= term <= 1.0, term)


class RuleTests(SynchronousTestCase):
    """criteria_losses, learn and bounded."""

    def test_a_discordant_pair_costs_its_achieved_difference(self) -> None:
        """Predicted 1 > 0.5 but achieved 0.4 < 1: the criterion loses 0.6; agreeing ones 0."""
        predicted = {1: (1.0, 0.5), 2: (0.5, 0.2)}
        achieved = {1: (0.4, 0.9), 2: (1.0, 0.3)}
        losses = criteria_losses(_pad(predicted), _pad(achieved))
        self.assertAlmostEqual(losses[0], 0.6)
        self.assertEqual(losses[1], 0.0)

    def test_ties_test_nothing(self) -> None:
        """A criterion predicting a tie, or achieving one, is not tested (None)."""
        predicted = {1: (1.0, 0.5), 2: (1.0, 0.2)}
        achieved = {1: (0.4, 0.3), 2: (1.0, 0.3)}
        self.assertEqual(criteria_losses(_pad(predicted), _pad(achieved))[:2], [None, None])

    def test_hedge_then_renormalise(self) -> None:
        """A refuted criterion is multiplied by exp(-rate * loss), then all sum to 1."""
        weights = CriteriaWeights(0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05)
        new = learn(weights, [1.0] + [None] * 6)
        scaled = [0.4 * 2.718281828459045**-LEARNING_RATE, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05]
        for got, want in zip(dataclasses.astuple(new), scaled):
            self.assertAlmostEqual(got, want / sum(scaled))

    def test_bounded_clips_one_scaling(self) -> None:
        """Values are scaled to sum to 1 with those past 0.02..0.8 held at the bound; all-zero
        values share equally."""
        out = bounded([100.0, 1.0, 0.0, 0.0])
        self.assertEqual(out[0], MAX_WEIGHT)
        self.assertEqual(out[2:], [MIN_WEIGHT, MIN_WEIGHT])
        self.assertAlmostEqual(out[1], 1.0 - MAX_WEIGHT - 2 * MIN_WEIGHT)
        self.assertEqual(bounded([0.0] * 4), [0.25] * 4)
        for got, want in zip(bounded([5.0, 0.0, 0.0]), [MAX_WEIGHT, 0.1, 0.1]):
            self.assertAlmostEqual(got, want)

    @settings(max_examples=200)
    @given(st.lists(st.floats(-1.0, 1e6), min_size=7, max_size=7))
    def test_bounded_always_sums_to_one_within_bounds(self, values) -> None:
        """For any seven values the result sums to 1, each within 0.02..0.8, order kept."""
        out = bounded(values)
        self.assertAlmostEqual(sum(out), 1.0)
        for value in out:
            self.assertTrue(MIN_WEIGHT - 1e-12 <= value <= MAX_WEIGHT + 1e-12, out)
        for a, b in zip(values, out):
            for c, d in zip(values, out):
                if a > c:
                    self.assertGreaterEqual(b, d - 1e-12)


def _pad(terms: dict[int, tuple]) -> dict[int, tuple]:
    """Two-criterion terms padded to seven with ties."""
    return {pid: t + (1.0,) * (len(CRITERIA) - len(t)) for pid, t in terms.items()}


class PerformanceModelTests(SynchronousTestCase):
    """The model fed through its recording calls."""

    def test_an_understated_rtt_shifts_trust_from_latency(self) -> None:
        """The path predicted fastest keeps delivering slowest: critical data's latency weight
        falls (to the floor), every other criterion gains in proportion."""
        model = new_model()
        before = model.table[CRITICAL]
        understated(model)
        after = model.table[CRITICAL]
        self.assertGreater(model.updates, 20)
        self.assertAlmostEqual(after.latency, MIN_WEIGHT)
        for name in CRITERIA[1:]:
            self.assertGreater(getattr(after, name), getattr(before, name))
        self.assertAlmostEqual(sum(dataclasses.astuple(after)), 1.0)

    def test_accurate_predictions_change_nothing(self) -> None:
        """Paths that deliver as predicted leave the weights where they were."""
        model = new_model()
        predicted = {1: figures(0.020), 2: figures(0.040)}
        now = 0.0
        for _ in range(30):
            now = period(model, now, predicted, {1: 0.021, 2: 0.041})
        for priority, weights in DEFAULT_CRITERIA.items():
            for got, want in zip(dataclasses.astuple(model.table[priority]),
                                 dataclasses.astuple(weights)):  # fmt: skip
                self.assertAlmostEqual(got, want)

    def test_only_the_priorities_that_selected_learn(self) -> None:
        """Critical data chose the paths: the normal and high weights are untouched."""
        model = new_model()
        understated(model)
        self.assertEqual(model.table[NORMAL], DEFAULT_CRITERIA[NORMAL])
        self.assertEqual(model.table[HIGH], DEFAULT_CRITERIA[HIGH])

    def test_at_most_one_update_per_rtt(self) -> None:
        """A thousand ACKs within one smoothed RTT (20 ms) make no update; the first ACK after
        it makes one."""
        model = new_model()
        model.achieved(1, now=0.0, latest_rtt=0.080, min_rtt=0.02, smoothed_rtt=RTT, rate=0.0,
                       lost=0, sent=0)  # fmt: skip  (opens the first period, until 20 ms)
        model.predict(1, figures(0.020))
        model.predict(2, figures(0.040))
        model.selected(1, CRITICAL)
        for i in range(1000):
            pid = 1 + i % 2
            model.achieved(pid, now=0.001 + i * 1e-5, latest_rtt=0.080 if pid == 1 else 0.040,
                           min_rtt=0.02, smoothed_rtt=RTT, rate=0.0, lost=0, sent=0)  # fmt: skip
        self.assertEqual(model.updates, 0)
        model.achieved(1, now=RTT, latest_rtt=0.080, min_rtt=0.02, smoothed_rtt=RTT, rate=0.0,
                       lost=0, sent=0)  # fmt: skip
        self.assertEqual(model.updates, 1)

    def test_one_path_alone_teaches_nothing(self) -> None:
        """Ranking needs two paths with outcomes: a lone path never updates the weights."""
        model = new_model()
        now = 0.0
        for _ in range(20):
            now = period(model, now, {1: figures(0.020)}, {1: 0.200})
        self.assertEqual((model.updates, model.table), (0, dict(DEFAULT_CRITERIA)))

    def test_silent_paths_are_forgotten(self) -> None:
        """A path neither predicted nor acknowledged for a period leaves the records."""
        model = new_model()
        now = understated(model, periods=3)
        for _ in range(3):
            now = period(model, now, {1: figures(0.020), 3: figures(0.030)},
                         {1: 0.020, 3: 0.030})  # fmt: skip
        self.assertEqual(sorted(model.records), [1, 3])

    def test_the_same_inputs_give_the_same_weights(self) -> None:
        """No randomness: two models fed the same selections and ACKs agree exactly."""
        tables = []
        for _ in range(2):
            model = new_model()
            rng = random.Random(5)
            now = 0.0
            for _ in range(50):
                predicted = {pid: figures(rng.uniform(0.01, 0.1), rng.uniform(1e5, 1e7),
                                          loss=rng.uniform(0, 0.1)) for pid in (1, 2, 3)}
                achieved = {pid: rng.uniform(0.01, 0.2) for pid in (1, 2, 3)}
                now = period(model, now, predicted, achieved, rate=rng.uniform(1e5, 1e7),
                             priority=rng.choice((NORMAL, HIGH, CRITICAL)))  # fmt: skip
            tables.append(model.table)
        self.assertEqual(tables[0], tables[1])
        self.assertNotEqual(tables[0], dict(DEFAULT_CRITERIA))

    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.tuples(st.floats(1e-4, 5), st.floats(1e-4, 5), st.floats(0, 1e9),
                              st.floats(0, 1e9), st.floats(0, 1), st.floats(-1, 2),
                              st.integers(0, 2)),
                    min_size=1, max_size=60))  # fmt: skip
    def test_weights_stay_bounded_under_any_input(self, steps) -> None:
        """Whatever the predictions and outcomes, each weight stays within 0.02..0.8 and each
        priority's weights sum to 1 once learnt."""
        model = new_model()
        now = 0.0
        for rtt1, rtt2, rate1, rate2, loss, congestion, priority in steps:
            predicted = {1: figures(rtt1, rate1, loss=loss, congestion=congestion),
                         2: figures(rtt2, rate2)}  # fmt: skip
            now = period(model, now, predicted, {1: rtt2, 2: rtt1}, rate=rate2,
                         priority=priority)  # fmt: skip
            for weights in model.table.values():
                values = dataclasses.astuple(weights)
                if weights not in DEFAULT_CRITERIA.values():
                    self.assertAlmostEqual(sum(values), 1.0)
                    for value in values:
                        self.assertTrue(MIN_WEIGHT - 1e-9 <= value <= MAX_WEIGHT + 1e-9, values)
