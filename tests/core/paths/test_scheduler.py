"""Tests for kwik_twisted.core.paths.scheduler: the shared rules, ECF, and each scheduler."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.paths.metrics import PathMetricsTracker
from kwik_twisted.core.paths.scheduler import (
    CRITICAL,
    DEFAULT_CRITERIA,
    DEFAULT_SCHEDULER,
    HIGH,
    NORMAL,
    CompletionTimeGate,
    CriteriaWeights,
    FrameRequirements,
    LowestRtt,
    MultiCriteria,
    Redundant,
    Scheduler,
    WeightedRoundRobin,
    available_schedulers,
    create,
    criteria_score,
    register,
    unregister,
    would_arrive_later,
)
from kwik_twisted.errors import ConfigurationError
from tests.core.paths.test_metrics import Bottleneck

MSS = 1350
SCHEDULERS = ("lowest-rtt", "multi-criteria", "redundant", "wrr")


@dataclass
class FakeRtt:
    """The RTT figures a scheduler reads."""

    smoothed_rtt: float
    rttvar: float
    min_rtt: float
    latest_rtt: float
    jitter: float = 0.0


@dataclass
class FakeController:
    """A congestion controller reduced to its window."""

    cwnd: int


@dataclass
class FakeRecovery:
    """Loss recovery reduced to what schedulers read."""

    rtt: FakeRtt
    controller: FakeController
    bytes_in_flight: int = 0
    pto_count: int = 0


@dataclass
class FakeMetrics:
    """Fixed path metrics."""

    bandwidth: float = 0.0
    loss_rate: float = 0.0
    cost: float = 0.0


@dataclass
class FakePath:
    """A path as schedulers see it."""

    id: int
    recovery: FakeRecovery
    usable: bool = True
    is_backup: bool = False
    metrics: object = field(default_factory=FakeMetrics)
    pacing_deadline: float | None = None


def make_path(
    path_id: int,
    srtt: float,
    *,
    cwnd: int = 10 * MSS,
    full: bool = False,
    rttvar: float | None = None,
    jitter: float = 0.0,
    bandwidth: float = 0.0,
    loss: float = 0.0,
    cost: float = 0.0,
    backup: bool = False,
    usable: bool = True,
) -> FakePath:
    """A fake path; ``full`` fills its congestion window."""
    rtt = FakeRtt(srtt, srtt / 10 if rttvar is None else rttvar, srtt, srtt, jitter)
    recovery = FakeRecovery(rtt, FakeController(cwnd), cwnd if full else 0)
    metrics = FakeMetrics(bandwidth, loss, cost)
    return FakePath(path_id, recovery, usable, backup, metrics)


def normal(size: int = MSS, backlog: int = 0) -> FrameRequirements:
    """Requirements of normal-priority data."""
    return FrameRequirements(priority=NORMAL, size=size, backlog=backlog)


class RegistryTests(SynchronousTestCase):
    """Schedulers are found by name."""

    def test_the_four_schedulers_are_listed_sorted(self) -> None:
        """available_schedulers() names every built-in scheduler, sorted."""
        names = available_schedulers()
        for name in SCHEDULERS:
            self.assertIn(name, names)
        self.assertEqual(names, sorted(names))

    def test_create_by_name_case_insensitively(self) -> None:
        """create() makes the class registered under the name, ignoring case."""
        self.assertIsInstance(create("lowest-rtt"), LowestRtt)
        self.assertIsInstance(create("WRR"), WeightedRoundRobin)
        self.assertIsInstance(create("redundant"), Redundant)
        self.assertIsInstance(create("Multi-Criteria"), MultiCriteria)
        self.assertEqual(create("wrr").name, "wrr")

    def test_the_default_is_lowest_rtt(self) -> None:
        """Without a name, create() makes the lowest-RTT scheduler."""
        self.assertEqual(DEFAULT_SCHEDULER, "lowest-rtt")
        self.assertIsInstance(create(), LowestRtt)

    def test_unknown_name_is_a_configuration_error_listing_known_names(self) -> None:
        """An unknown name raises ConfigurationError that names every known scheduler."""
        error = self.assertRaises(ConfigurationError, create, "fastest-please")
        self.assertIn("fastest-please", str(error))
        for name in available_schedulers():
            self.assertIn(name, str(error))

    def test_bad_options_are_a_configuration_error(self) -> None:
        """Unknown or out-of-range options raise ConfigurationError."""
        self.assertRaises(ConfigurationError, create, "lowest-rtt", colour="blue")
        self.assertRaises(ConfigurationError, create, "wrr", adaptation_rate=0.0)
        self.assertRaises(ConfigurationError, create, "wrr", min_weight=1.5)
        self.assertRaises(ConfigurationError, create, "lowest-rtt", beta=-1.0)

    def test_register_and_unregister(self) -> None:
        """A registered class is created by name until it is unregistered; names are unique."""

        @register("test-first")
        class First(LowestRtt):
            """Always the first ready path."""

            def choose(self, ready, requirements, *, now):  # type: ignore[no-untyped-def]
                """The first ready path."""
                return ready[0]

        self.addCleanup(unregister, "test-first")
        self.assertIsInstance(create("test-first"), First)

        class Other(LowestRtt):
            """A second class wanting the same name."""

        self.assertRaises(ConfigurationError, register("test-first"), Other)
        unregister("test-first")
        self.assertNotIn("test-first", available_schedulers())


class SharedRuleTests(SynchronousTestCase):
    """Rules every scheduler applies around its own choice."""

    def test_backup_is_not_used_while_a_primary_is_usable(self) -> None:
        """A faster backup path is ignored while a non-backup path is usable."""
        primary = make_path(1, 0.050, bandwidth=1e6)
        backup = make_path(2, 0.010, backup=True, bandwidth=1e7)
        for name in SCHEDULERS:
            chosen = create(name).select([backup, primary], normal(), now=0.0)
            self.assertIs(chosen, primary, name)

    def test_backup_is_not_used_when_the_primary_is_only_window_limited(self) -> None:
        """A usable primary with a full window still excludes backups: nothing is sent."""
        primary = make_path(1, 0.050, full=True)
        backup = make_path(2, 0.010, backup=True)
        for name in SCHEDULERS:
            self.assertIsNone(create(name).select([primary, backup], normal(), now=0.0), name)

    def test_backup_is_used_when_no_primary_is_usable(self) -> None:
        """When every non-backup path is unusable, a backup path carries the data."""
        primary = make_path(1, 0.010, usable=False)
        backup = make_path(2, 0.050, backup=True)
        for name in SCHEDULERS:
            self.assertIs(create(name).select([primary, backup], normal(), now=0.0), backup, name)

    def test_unusable_paths_are_never_chosen(self) -> None:
        """A path that is not usable is skipped even if it is the only one."""
        dead = make_path(1, 0.010, usable=False)
        for name in SCHEDULERS:
            self.assertIsNone(create(name).select([dead], normal(), now=0.0), name)
            self.assertIsNone(create(name).select([], normal(), now=0.0), name)

    def test_paths_without_window_room_are_skipped(self) -> None:
        """A path whose bytes in flight reach its window is never chosen."""
        full = make_path(1, 0.010, full=True, bandwidth=1e8)
        room = make_path(2, 0.012, bandwidth=1e6)
        for name in SCHEDULERS:
            scheduler = create(name, ecf=False)
            for _ in range(5):
                self.assertIs(scheduler.select([full, room], normal(), now=0.0), room, name)

    def test_nothing_is_chosen_when_every_window_is_full(self) -> None:
        """With no window room anywhere, select answers None."""
        paths = [make_path(1, 0.010, full=True), make_path(2, 0.020, full=True)]
        for name in SCHEDULERS:
            self.assertIsNone(create(name).select(paths, normal(), now=0.0), name)


class CompletionTimeTests(SynchronousTestCase):
    """The ECF rule: wait for the fast path when that completes earlier."""

    def setUp(self) -> None:
        """A 10 ms fast path with a full window and a 100 ms slow path with room."""
        self.fast = make_path(1, 0.010, rttvar=0.001, full=True)
        self.slow = make_path(2, 0.100, rttvar=0.005)
        self.cwnd = self.fast.recovery.controller.cwnd

    def test_a_fast_path_in_probe_timeout_is_not_waited_for(self) -> None:
        """
        The lowest-RTT scheduler waits for the full fast path, unless its probe timer fired
        (a path that just died keeps its low RTT): then the slow path gets the packet.
        """
        scheduler = create("lowest-rtt")
        self.assertIsNone(scheduler.select([self.fast, self.slow], normal(), now=0.0))
        self.fast.recovery.pto_count = 1
        self.assertIs(scheduler.select([self.fast, self.slow], normal(), now=0.0), self.slow)

    def test_small_backlog_waits_for_the_fast_path(self) -> None:
        """One packet arrives later on the slow path than after the fast path's window opens."""
        self.assertTrue(would_arrive_later(self.slow, self.fast, MSS, now=0.0))

    def test_large_backlog_uses_the_slow_path(self) -> None:
        """When the fast path is saturated for longer than the slow path's RTT, use the slow one."""
        self.assertFalse(would_arrive_later(self.slow, self.fast, 100 * self.cwnd, now=0.0))

    def test_comparable_paths_do_not_wait(self) -> None:
        """A path barely slower than the full fast one is used at once."""
        near = make_path(3, 0.012, rttvar=0.001)
        self.assertFalse(would_arrive_later(near, self.fast, MSS, now=0.0))

    def test_the_boundary_follows_the_ecf_inequality(self) -> None:
        """The first condition flips where (1 + k/cwnd_f) * srtt_f crosses srtt_s + delta."""
        # n * 0.010 < 0.105  <=>  n < 10.5  <=>  k / cwnd < 9.5
        self.assertTrue(would_arrive_later(self.slow, self.fast, 9 * self.cwnd, now=0.0))
        self.assertFalse(would_arrive_later(self.slow, self.fast, 10 * self.cwnd, now=0.0))

    def test_hysteresis_keeps_waiting_until_the_slow_path_is_clearly_better(self) -> None:
        """After a decision to wait, the slow path must look better by beta before it is used."""
        borderline = 11 * self.cwnd  # n * srtt_f = 0.120: above 0.105, below 1.25 * 0.105
        fresh = CompletionTimeGate()
        self.assertFalse(fresh.should_wait(self.slow, self.fast, borderline, now=0.0))
        self.assertFalse(fresh.waiting)
        gate = CompletionTimeGate()
        self.assertTrue(gate.should_wait(self.slow, self.fast, MSS, now=0.0))
        self.assertTrue(gate.waiting)
        self.assertTrue(gate.should_wait(self.slow, self.fast, borderline, now=0.0))
        self.assertFalse(gate.should_wait(self.slow, self.fast, 100 * self.cwnd, now=0.0))
        self.assertFalse(gate.waiting)
        self.assertFalse(gate.should_wait(self.slow, self.fast, borderline, now=0.0))

    def test_stateless_test_takes_the_hysteresis_state(self) -> None:
        """would_arrive_later with waiting=True applies the (1 + beta) margin."""
        borderline = 11 * self.cwnd
        self.assertFalse(would_arrive_later(self.slow, self.fast, borderline, now=0.0))
        self.assertTrue(
            would_arrive_later(self.slow, self.fast, borderline, now=0.0, waiting=True)
        )

    def test_fast_path_pacing_delay_counts(self) -> None:
        """A fast path held by its pacer for longer than the slow RTT does not win."""
        self.fast.pacing_deadline = 5.0
        self.assertFalse(would_arrive_later(self.slow, self.fast, MSS, now=4.5))
        self.assertTrue(would_arrive_later(self.slow, self.fast, MSS, now=5.0))

    def test_scheduler_refuses_the_slow_path_and_then_allows_it(self) -> None:
        """select answers None for a short backlog and the slow path for a long one."""
        scheduler = create("lowest-rtt")
        paths = [self.fast, self.slow]
        self.assertIsNone(scheduler.select(paths, normal(), now=0.0))
        long = normal(backlog=100 * self.cwnd)
        self.assertIs(scheduler.select(paths, long, now=0.0), self.slow)

    def test_gate_is_not_consulted_when_the_fast_path_has_room(self) -> None:
        """ECF only arbitrates when the fastest path is window-limited."""
        self.fast.recovery.bytes_in_flight = 0
        self.assertIs(create("lowest-rtt").select([self.slow, self.fast], normal(), now=0.0),
                      self.fast)  # fmt: skip

    def test_ecf_can_be_switched_off(self) -> None:
        """With ecf=False the slow path is used whenever the fast one is full."""
        scheduler = create("lowest-rtt", ecf=False)
        self.assertIsNone(scheduler.gate)
        self.assertIs(scheduler.select([self.fast, self.slow], normal(), now=0.0), self.slow)


class LowestRttTests(SynchronousTestCase):
    """The default scheduler."""

    def test_picks_the_faster_path(self) -> None:
        """Of two paths with room, the one with the lower smoothed RTT is chosen."""
        slow, fast = make_path(1, 0.080), make_path(2, 0.020)
        scheduler = create("lowest-rtt")
        for _ in range(3):
            self.assertIs(scheduler.select([slow, fast], normal(), now=0.0), fast)

    def test_select_all_is_the_selected_path(self) -> None:
        """select_all of a non-duplicating scheduler is the one selected path, or nothing."""
        fast = make_path(1, 0.020)
        scheduler = create("lowest-rtt")
        req = FrameRequirements(priority=CRITICAL, size=MSS)
        self.assertEqual(scheduler.select_all([fast], req, now=0.0), [fast])
        self.assertEqual(scheduler.select_all([], req, now=0.0), [])


class RedundantTests(SynchronousTestCase):
    """Every packet of stream data goes on every eligible path with window room."""

    def setUp(self) -> None:
        """Three paths of distinct RTTs."""
        self.paths = [make_path(1, 0.050), make_path(2, 0.010), make_path(3, 0.030)]
        self.scheduler = create("redundant")

    def test_every_priority_goes_on_every_path_fastest_first(self) -> None:
        """select_all answers the fastest path, then the others by RTT, whatever the priority;
        select answers the fastest (the primary)."""
        for priority in (NORMAL, HIGH, CRITICAL):
            req = FrameRequirements(priority=priority, size=MSS)
            chosen = self.scheduler.select_all(self.paths, req, now=0.0)
            self.assertEqual([p.id for p in chosen], [2, 3, 1])
        self.assertIs(self.scheduler.select(self.paths, normal(), now=0.0), self.paths[1])

    def test_the_duplicate_needs_window_room(self) -> None:
        """A second path without room is not used; with one path there is no duplicate."""
        req = normal()
        fast, full = make_path(1, 0.010), make_path(2, 0.020, full=True)
        self.assertEqual(self.scheduler.select_all([fast, full], req, now=0.0), [fast])
        self.assertEqual(self.scheduler.select_all([fast], req, now=0.0), [fast])

    def test_the_duplicate_is_never_a_backup_while_a_primary_is_usable(self) -> None:
        """Duplication does not bring a backup path into use."""
        req = FrameRequirements(priority=CRITICAL, size=MSS)
        fast, backup = make_path(1, 0.010), make_path(2, 0.020, backup=True)
        self.assertEqual(self.scheduler.select_all([fast, backup], req, now=0.0), [fast])


class WeightedRoundRobinTests(SynchronousTestCase):
    """Smooth WRR over weights adapted to bandwidth shares."""

    def test_weights_converge_to_capacity_ratio_from_bandwidth_samples(self) -> None:
        """Two saturated bottlenecks of 8 and 2 MB/s with jittery links: after 4 s of
        adaptations the weights are within 10% of 0.8 / 0.2."""
        rng = random.Random(7)
        paths, links = self.bottlenecks({1: 8e6, 2: 2e6})
        scheduler = WeightedRoundRobin(adapt_interval=0.02)
        now = 0.0
        for _ in range(200):  # 4 seconds in 20 ms steps
            now += 0.02
            for link in links.values():
                link.rtt.min_rtt = link.rtt.smoothed_rtt = 0.020 * rng.uniform(0.9, 1.1)
                link.run(now)
            scheduler.adapt(paths, now=now)
        weights = scheduler.weights
        self.assertApproximates(weights[1], 0.8, 0.08)
        self.assertApproximates(weights[2], 0.2, 0.02)
        self.assertApproximates(weights[1] / weights[2], 4.0, 0.4)

    def test_weights_hold_while_a_path_is_given_less_than_it_can_carry(self) -> None:
        """
        The drift WRR had: after a saturated second, the sender offers 5 MB/s split evenly (as
        when the scheduler's split or the application, not the paths, decide): the 2 MB/s path
        stays saturated while the 8 MB/s one delivers the 2.5 MB/s it is given.  Its samples are
        application-limited, so its estimate, and the weights, keep the capacity ratio (an
        estimator counting them would move path 1's weight towards 2.5 / 4.5 = 0.56).
        """
        paths, links = self.bottlenecks({1: 8e6, 2: 2e6})
        scheduler = WeightedRoundRobin(adapt_interval=0.02)
        now = 0.0
        for step in range(200):
            now += 0.02
            for path_id, link in links.items():
                if step < 50:
                    link.run(now)
                else:
                    link.run(now, offered=2.5e6, app_limited=path_id == 1)
            scheduler.adapt(paths, now=now)
        self.assertApproximates(paths[0].metrics.goodput, 2.5e6, 0.1e6)
        self.assertApproximates(scheduler.weights[1], 0.8, 0.08)

    def bottlenecks(self, capacities: dict[int, float]) -> tuple[list, dict]:
        """A path with a real metrics tracker behind a :class:`Bottleneck` (20 ms, window of two
        BDPs) per capacity."""
        paths, links = [], {}
        for path_id, capacity in capacities.items():
            path = make_path(path_id, 0.020)
            path.metrics = PathMetricsTracker(now=0.0, usable=True)
            cwnd = int(2 * capacity * 0.020)
            links[path_id] = Bottleneck(path.metrics, capacity=capacity, rtt=0.020, cwnd=cwnd)
            paths.append(path)
        return paths, links

    def test_weights_follow_the_seed_moving_average(self) -> None:
        """One adaptation moves each weight from 1/n by a * (share - w)."""
        paths = [make_path(1, 0.01, bandwidth=3e6), make_path(2, 0.01, bandwidth=1e6)]
        scheduler = WeightedRoundRobin(adaptation_rate=0.5)
        scheduler.adapt(paths, now=0.0)
        self.assertAlmostEqual(scheduler.weights[1], 0.5 * 0.5 + 0.5 * 0.75)
        self.assertAlmostEqual(scheduler.weights[2], 0.5 * 0.5 + 0.5 * 0.25)

    def test_minimum_weight_keeps_a_path_in_use(self) -> None:
        """A path with a negligible share keeps the minimum weight and is still chosen."""
        paths = [make_path(1, 0.01, bandwidth=1e9), make_path(2, 0.01, bandwidth=1.0)]
        scheduler = WeightedRoundRobin(adaptation_rate=1.0, min_weight=0.1, adapt_interval=1e9)
        scheduler.adapt(paths, now=0.0)
        self.assertAlmostEqual(scheduler.weights[2], 0.1)
        chosen = [scheduler.select(paths, normal(), now=1.0).id for _ in range(100)]
        self.assertGreater(chosen.count(2), 5)

    def test_selection_shares_follow_the_weights_smoothly(self) -> None:
        """With weights 2:1 the sequence is A B A, repeated: never three of one path in a row."""
        paths = [make_path(1, 0.01, bandwidth=2e6), make_path(2, 0.01, bandwidth=1e6)]
        scheduler = WeightedRoundRobin(adaptation_rate=1.0, adapt_interval=1e9)
        chosen = [scheduler.select(paths, normal(), now=0.0).id for _ in range(30)]
        self.assertEqual(chosen.count(1), 20)
        self.assertEqual(chosen[:3], [1, 2, 1])
        for i in range(len(chosen) - 2):
            self.assertNotEqual(len(set(chosen[i : i + 3])), 1)

    def test_adaptation_is_due_once_per_fastest_rtt_by_default(self) -> None:
        """select re-adapts the weights only after the fastest path's smoothed RTT has passed."""
        paths = [make_path(1, 0.01, bandwidth=1e6), make_path(2, 0.01, bandwidth=1e6)]
        scheduler = WeightedRoundRobin(adaptation_rate=1.0)
        scheduler.select(paths, normal(), now=0.0)
        paths[0].metrics.bandwidth = 3e6
        scheduler.select(paths, normal(), now=0.005)
        self.assertAlmostEqual(scheduler.weights[1], 0.5)
        scheduler.select(paths, normal(), now=0.010)
        self.assertAlmostEqual(scheduler.weights[1], 0.75)

    def test_vanished_paths_are_forgotten(self) -> None:
        """A path absent from an adaptation loses its weight."""
        paths = [make_path(1, 0.01, bandwidth=1e6), make_path(2, 0.01, bandwidth=1e6)]
        scheduler = WeightedRoundRobin()
        scheduler.adapt(paths, now=0.0)
        scheduler.adapt(paths[:1], now=1.0)
        self.assertEqual(set(scheduler.weights), {1})

    def test_without_metrics_the_window_rate_is_the_bandwidth(self) -> None:
        """A path without a metrics tracker is weighted by cwnd / srtt."""
        fast, slow = make_path(1, 0.010), make_path(2, 0.030)
        fast.metrics = slow.metrics = None
        scheduler = WeightedRoundRobin(adaptation_rate=1.0)
        scheduler.adapt([fast, slow], now=0.0)
        self.assertAlmostEqual(scheduler.weights[1], 0.75)


class MultiCriteriaTests(SynchronousTestCase):
    """The seed's EnhancedScheduler: a weighted score per priority."""

    def setUp(self) -> None:
        """A low-latency narrow path and a high-latency wide one."""
        self.quick = make_path(1, 0.010, bandwidth=1e6)
        self.wide = make_path(2, 0.080, bandwidth=1e7)
        self.scheduler = create("multi-criteria")

    def test_critical_data_prefers_low_latency(self) -> None:
        """Critical frames go on the low-latency path."""
        req = FrameRequirements(priority=CRITICAL, size=MSS)
        self.assertIs(self.scheduler.select([self.wide, self.quick], req, now=0.0), self.quick)

    def test_normal_data_prefers_high_bandwidth(self) -> None:
        """Normal frames go on the high-bandwidth path."""
        self.assertIs(self.scheduler.select([self.quick, self.wide], normal(), now=0.0), self.wide)

    def test_critical_data_avoids_a_lossy_path(self) -> None:
        """Between equally fast paths, critical data takes the one without loss."""
        lossy = make_path(1, 0.010, bandwidth=1e6, loss=0.08)
        clean = make_path(2, 0.011, bandwidth=1e6)
        req = FrameRequirements(priority=CRITICAL, size=MSS)
        self.assertIs(self.scheduler.select([lossy, clean], req, now=0.0), clean)

    def test_normal_data_prefers_the_cheaper_path(self) -> None:
        """Between equal paths, normal data takes the one of lower cost."""
        dear = make_path(1, 0.010, bandwidth=1e6, cost=5.0)
        cheap = make_path(2, 0.010, bandwidth=1e6)
        self.assertIs(self.scheduler.select([dear, cheap], normal(), now=0.0), cheap)

    def test_custom_weights_override_a_priority(self) -> None:
        """criteria= replaces the weights of the priorities it names."""
        latency_only = CriteriaWeights(latency=1.0, bandwidth=0.0, loss=0.0, jitter=0.0, cost=0.0)
        scheduler = create("multi-criteria", criteria={NORMAL: latency_only})
        self.assertIs(scheduler.select([self.quick, self.wide], normal(), now=0.0), self.quick)

    def test_score_formula(self) -> None:
        """criteria_score adds the weighted, normalised terms of the documented formula."""
        weights = CriteriaWeights(latency=1.0, bandwidth=2.0, loss=3.0, jitter=4.0, cost=5.0)
        score = criteria_score(
            weights, srtt=0.020, bandwidth=5e5, loss_rate=0.05, jitter=0.010, cost=1.0,
            best_rtt=0.010, top_bandwidth=1e6,
        )  # fmt: skip
        expected = 1.0 * 0.5 + 2.0 * 0.5 + 3.0 * 0.5 + 4.0 / 2.0 + 5.0 / 2.0
        self.assertAlmostEqual(score, expected)

    def test_critical_weights_favour_latency_and_loss(self) -> None:
        """By default latency and loss weigh most for critical data, bandwidth for normal."""
        critical, normal_ = DEFAULT_CRITERIA[CRITICAL], DEFAULT_CRITERIA[NORMAL]
        self.assertGreater(critical.latency + critical.loss, 0.7)
        self.assertEqual(max(vars_of(normal_), key=vars_of(normal_).get), "bandwidth")

    def test_reliability_and_congestion_terms(self) -> None:
        """A less reliable path and a congested one score lower, by weight times the share."""
        weights = CriteriaWeights(latency=1.0, bandwidth=0.0, loss=0.0, jitter=0.0, cost=0.0,
                                  reliability=6.0, congestion=7.0)  # fmt: skip
        figures = dict(srtt=0.010, bandwidth=1e6, loss_rate=0.0, jitter=0.0, cost=0.0,
                       best_rtt=0.010, top_bandwidth=1e6)  # fmt: skip
        self.assertAlmostEqual(criteria_score(weights, **figures), 1.0 + 6.0 + 7.0)
        score = criteria_score(weights, **figures, reliability=0.5, congestion=0.25)
        self.assertAlmostEqual(score, 1.0 + 6.0 * 0.5 + 7.0 * 0.75)

    def test_a_congested_path_loses_to_an_equal_calm_one(self) -> None:
        """Between paths alike in every figure, the one whose detector reads congestion loses."""
        congested = make_path(1, 0.010, bandwidth=1e6)
        congested.metrics = PredictingMetrics(bandwidth=1e6, congestion=0.6)
        calm = make_path(2, 0.010, bandwidth=1e6)
        calm.metrics = PredictingMetrics(bandwidth=1e6)
        self.assertIs(self.scheduler.select([congested, calm], normal(), now=0.0), calm)

    def test_an_often_failed_path_loses_to_an_equal_reliable_one(self) -> None:
        """Between paths alike in every figure, the one usable for less of its life loses."""
        flaky = make_path(1, 0.010, bandwidth=1e6)
        flaky.metrics = PredictingMetrics(bandwidth=1e6, usable_share=0.5)
        steady = make_path(2, 0.010, bandwidth=1e6)
        steady.metrics = PredictingMetrics(bandwidth=1e6)
        req = FrameRequirements(priority=CRITICAL, size=MSS)
        self.assertIs(self.scheduler.select([flaky, steady], req, now=0.0), steady)

    def test_the_score_reads_predicted_rate_and_rtt(self) -> None:
        """Normal data goes to the path predicted wider even when the estimates are equal, and
        critical data avoids a path whose queue is forecast to grow."""
        falling = make_path(1, 0.010)
        falling.metrics = PredictingMetrics(bandwidth=1e7, predicted=2e6)
        steady = make_path(2, 0.010)
        steady.metrics = PredictingMetrics(bandwidth=1e7)
        self.assertIs(self.scheduler.select([falling, steady], normal(), now=0.0), steady)
        filling = make_path(3, 0.010)
        filling.metrics = PredictingMetrics(bandwidth=1e7, drift=0.050)
        req = FrameRequirements(priority=CRITICAL, size=MSS)
        self.assertIs(self.scheduler.select([filling, steady], req, now=0.0), steady)

    def test_selections_and_outcomes_train_the_weights(self) -> None:
        """Fed through the hooks, a quick path that keeps delivering far above its RTT estimate
        costs the latency criterion trust for critical data (the model's rule, in
        tests/core/qos/test_model.py); the other priorities, never selected, keep theirs."""
        quick, wide = make_path(1, 0.010, bandwidth=1e6), make_path(2, 0.040, bandwidth=1e6)
        quick.recovery.rtt.latest_rtt = 0.090  # it delivers in 90 ms
        req = FrameRequirements(priority=CRITICAL, size=MSS)
        before = self.scheduler.criteria[CRITICAL]
        now = 0.0
        for _ in range(20):
            chosen = self.scheduler.select([quick, wide], req, now=now)
            self.scheduler.on_sent(chosen, MSS, now=now)
            for path in (quick, wide):
                self.scheduler.on_acked(path, MSS, now=now)
            now += 0.050
        after = self.scheduler.criteria[CRITICAL]
        self.assertGreater(self.scheduler.model.updates, 5)
        self.assertLess(after.latency, before.latency * 0.8)
        self.assertEqual(self.scheduler.criteria[NORMAL], DEFAULT_CRITERIA[NORMAL])

    def test_learning_can_be_switched_off(self) -> None:
        """learn=False: no model, the weights never change, the hooks do nothing."""
        scheduler = create("multi-criteria", learn=False)
        self.assertIsNone(scheduler.model)
        quick = make_path(1, 0.010)
        scheduler.on_sent(quick, MSS, now=0.0)
        scheduler.on_acked(quick, MSS, now=0.0)
        self.assertEqual(scheduler.criteria, dict(DEFAULT_CRITERIA))


@dataclass
class PredictingMetrics(FakeMetrics):
    """Fixed metrics with a prediction, a queueing-delay drift, congestion and reliability."""

    predicted: float | None = None
    drift: float = 0.0
    congestion: float = 0.0
    usable_share: float = 1.0

    def predicted_bandwidth(self, horizon: float, *, now: float) -> float:
        """The fixed prediction (the bandwidth by default)."""
        return self.bandwidth if self.predicted is None else self.predicted

    def rtt_drift(self, horizon: float, *, now: float) -> float:
        """The fixed drift."""
        return self.drift

    def reliability(self, *, now: float) -> float:
        """The fixed reliability."""
        return self.usable_share


class PredictedCompletionTests(SynchronousTestCase):
    """ECF with predicted rates and RTTs (time to carry k bytes = rtt + max(k, cwnd) / rate)."""

    def setUp(self) -> None:
        """The CompletionTimeTests paths: a full 10 ms fast path, a 100 ms slow one."""
        self.fast = make_path(1, 0.010, rttvar=0.001, full=True)
        self.slow = make_path(2, 0.100, rttvar=0.005)
        self.cwnd = self.fast.recovery.controller.cwnd

    def test_a_fast_path_delivering_less_than_its_window_is_not_waited_for_as_long(self) -> None:
        """Nine windows wait for the fast path at its window rate (0.1 s < 0.105 s), not when it
        is predicted to deliver half that (0.19 s)."""
        backlog = 9 * self.cwnd
        window_rate = self.cwnd / 0.010
        self.fast.metrics = PredictingMetrics(bandwidth=window_rate)
        self.assertTrue(would_arrive_later(self.slow, self.fast, backlog, now=0.0))
        self.fast.metrics = PredictingMetrics(bandwidth=window_rate, predicted=window_rate / 2)
        self.assertFalse(would_arrive_later(self.slow, self.fast, backlog, now=0.0))

    def test_a_queue_forecast_on_the_fast_path_counts(self) -> None:
        """One packet waits for the fast path, unless its queueing delay is forecast to grow by
        100 ms (its predicted RTT then exceeds the slow path's)."""
        self.fast.metrics = PredictingMetrics(drift=0.0)
        self.assertTrue(would_arrive_later(self.slow, self.fast, MSS, now=0.0))
        self.fast.metrics = PredictingMetrics(drift=0.100)
        self.assertFalse(would_arrive_later(self.slow, self.fast, MSS, now=0.0))

    def test_a_slow_path_predicted_wide_is_used(self) -> None:
        """The slow path at its window rate takes 0.1 s per window: wait; predicted at 10 MB/s
        it carries the window in 1.35 ms, sooner than the fast path's two RTTs: send on it."""
        self.assertTrue(would_arrive_later(self.slow, self.fast, MSS, now=0.0))
        self.slow.metrics = PredictingMetrics(bandwidth=1e7)
        self.assertFalse(would_arrive_later(self.slow, self.fast, MSS, now=0.0))


def vars_of(weights: CriteriaWeights) -> dict[str, float]:
    """The fields of a CriteriaWeights as a dict."""
    return {
        name: getattr(weights, name) for name in ("latency", "bandwidth", "loss", "jitter", "cost")
    }


class InterfaceTests(SynchronousTestCase):
    """The Scheduler ABC."""

    def test_hooks_are_callable_no_ops(self) -> None:
        """on_sent and on_acked exist on every scheduler and accept keyword-only now."""
        path = make_path(1, 0.01)
        for name in SCHEDULERS:
            scheduler = create(name)
            self.assertIsInstance(scheduler, Scheduler)
            self.assertIsNone(scheduler.on_sent(path, MSS, now=0.0))
            self.assertIsNone(scheduler.on_acked(path, MSS, now=0.0))

    def test_control_and_critical_data_count_as_critical(self) -> None:
        """``critical`` holds for priority 2 and for control (0xFF), not below."""
        self.assertTrue(FrameRequirements(priority=0xFF).critical)
        self.assertFalse(FrameRequirements(priority=HIGH).critical)
