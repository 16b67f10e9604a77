"""
Issue 15's acceptance, in simulated time: each QoS promise kept across paths, or reported once.

Every scenario runs the harness of :mod:`kwik_twisted.testing.qos` (deterministic, seeded) with
the issue's links and traffic; the comparison without QoS (lowest-rtt, no policies) runs the same
traffic and shows what the promise would cost without the enforcer.  Durations are shortened for
the default suite (the figures are steady well within them); ``benchmarks/qos.py`` runs the full
20 s versions and docs/qos.rst lists its figures.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.testing.qos import scenarios
from kwik_twisted.testing.qos.model import BulkFlow, MessageFlow, PathSpec, RateFlow
from kwik_twisted.testing.qos.run import run_scenario
from kwik_twisted.wire import QosPolicy


class LatencyContractTests(SynchronousTestCase):
    """1 and 2: a latency budget on heterogeneous paths, and bufferbloat setting in."""

    def test_interactive_p99_within_budget_and_bulk_keeps_the_links(self) -> None:
        """10 Mbit/s paths at 10 and 25 ms with 100 ms queues, bulk saturating both, 200-byte
        messages every 20 ms with max_latency 40 ms: p99 <= 40 ms, bulk >= 85% of the link sum,
        no violation; without QoS the same messages sit in the full queues (p99 > 100 ms)."""
        result = scenarios.scenario_latency(qos=True, duration=8.0)
        figures = result.figures
        self.assertLessEqual(figures["interactive_p99_ms"], 40.0, figures)
        self.assertGreaterEqual(figures["bulk_share_of_capacity"], 0.85, figures)
        self.assertEqual(result.violations_of(side="client", after=result.warmup), [])
        plain = scenarios.scenario_latency(qos=False, duration=8.0)
        self.assertGreater(plain.figures["interactive_p99_ms"], 100.0, plain.figures)

    def test_bufferbloat_is_detected_and_the_stream_moves_off_the_path(self) -> None:
        """At t = 10 s the 10 ms path drops to 2 Mbit/s with a 300 ms queue: the client's
        detector reports it congested within 3 of its RTTs (60 ms), the interactive p99 over the
        next 10 s stays <= 40 ms, and no QoSViolated is raised (the 25 ms path meets the budget)."""
        result = scenarios.scenario_bufferbloat(qos=True, duration=20.0)
        figures = result.figures
        self.assertIsNotNone(figures["detected_after_s"], figures)
        self.assertLessEqual(figures["detected_after_s"], 0.060 + 1e-9, figures)
        self.assertLessEqual(figures["interactive_p99_after_drop_ms"], 40.0, figures)
        self.assertEqual(result.violations_of(side="client", after=result.warmup), [])

    def test_one_violation_when_no_path_can_meet_the_budget(self) -> None:
        """As in 2, but the 25 ms path also becomes 45 ms one-way at the drop: no path can meet
        40 ms, and exactly one QoSViolated(max_latency) reaches the client, with the measured
        delay above the bound."""

        def degrade(network, ctx) -> None:
            ctx.set_path(0, rate_bps=2e6, queue_ms=300)
            ctx.set_path(1, direction="both", delay=0.045)

        flows = [BulkFlow("bulk"), MessageFlow("interactive", qos=QosPolicy(max_latency_ms=40))]
        paths = [PathSpec(0.010, 10e6, queue_ms=100), PathSpec(0.025, 10e6, queue_ms=100)]
        result = run_scenario(paths=paths, flows=flows, duration=14.0, events=[(8.0, degrade)])
        violations = result.violations_of(side="client", after=result.warmup)
        self.assertEqual([v.event.metric for v in violations], ["max_latency"], violations)
        event = violations[0].event
        self.assertGreater(event.measured, event.bound)
        self.assertEqual(event.bound, 0.040)
        self.assertGreaterEqual(violations[0].time, 8.0)


class GuaranteedRateTests(SynchronousTestCase):
    """3: min_bandwidth is a guaranteed rate served before fair sharing, with admission."""

    def test_the_guaranteed_stream_gets_its_rate(self) -> None:
        """One 10 Mbit/s path, four bulk streams and one stream offering 4 Mbit/s with
        min_bandwidth 4 Mbit/s: it receives >= 3.9 Mbit/s; fair sharing alone gives it about 2."""
        result = scenarios.scenario_guaranteed_rate(qos=True, duration=8.0)
        self.assertGreaterEqual(result.figures["rate_mbps"], 3.9, result.figures)
        self.assertEqual(result.violations_of(side="client"), [])
        plain = scenarios.scenario_guaranteed_rate(qos=False, duration=8.0)
        self.assertLess(plain.figures["rate_mbps"], 2.5, plain.figures)

    def test_oversubscribed_guarantees_raise_violations(self) -> None:
        """Three 4 Mbit/s guarantees on 10 Mbit/s cannot all be served: QoSViolated
        (min_bandwidth) for the one admission leaves out, once, with its bound."""
        result = scenarios.scenario_guaranteed_rate(qos=True, duration=8.0, guaranteed=3)
        violations = result.violations_of(side="client", metric="min_bandwidth")
        self.assertGreaterEqual(len(violations), 1, result.figures)
        flows = [v.flow for v in violations]
        self.assertEqual(len(flows), len(set(flows)), "one report per episode and stream")
        self.assertTrue(all(v.event.bound == 4e6 for v in violations))
        self.assertLessEqual(len(violations), 2)


class LossThresholdTests(SynchronousTestCase):
    """4: a loss threshold the lossy path cannot meet."""

    def test_messages_avoid_the_lossy_path(self) -> None:
        """5% loss on the 10 ms path, a clean 30 ms path; loss_threshold 0.1% with max_latency
        80 ms: at most 0.1% of the messages arrive later than 80 ms, redundant bytes at most the
        stream's own, bulk >= 85% of the clean capacity; without QoS most messages are late."""
        result = scenarios.scenario_loss_threshold(qos=True, duration=8.0)
        figures = result.figures
        self.assertLessEqual(figures["late_fraction"], 0.001, figures)
        self.assertLessEqual(figures["redundancy"], 1.0, figures)
        self.assertGreaterEqual(figures["bulk_share_of_clean"], 0.85, figures)
        plain = scenarios.scenario_loss_threshold(qos=False, duration=8.0)
        self.assertGreater(plain.figures["late_fraction"], 0.5, plain.figures)


class JitterTests(SynchronousTestCase):
    """5: a jitter bound under bulk load."""

    def test_one_way_delay_std_within_max_jitter(self) -> None:
        """Bulk on both paths of scenario 1, messages with max_jitter 5 ms: their one-way delay
        has a standard deviation <= 5 ms (without QoS about 10 ms)."""
        result = scenarios.scenario_jitter(qos=True, duration=8.0)
        self.assertLessEqual(result.figures["std_ms"], 5.0, result.figures)
        plain = scenarios.scenario_jitter(qos=False, duration=8.0)
        self.assertGreater(plain.figures["std_ms"], 5.0, plain.figures)


class CostTests(SynchronousTestCase):
    """6: a costly path carries data only when the cheap one cannot."""

    def test_costly_path_idle_until_the_cheap_one_fails(self) -> None:
        """An app-limited 2 Mbit/s flow puts < 2% of its bytes on the costly (and faster) path;
        when the cheap path fails, the costly one carries the flow within one PTO of the cheap
        path, and the flow keeps its rate."""
        result = scenarios.scenario_cost(duration=14.0, fail_at=8.0)
        figures = result.figures
        self.assertLess(figures["costly_share"], 0.02, figures)
        self.assertIsNotNone(figures["failover_s"], figures)
        cheap = result.client.paths[result.paths[0].path_id]
        pto = cheap.recovery.rtt.pto_interval(cheap.recovery.max_ack_delay)
        self.assertLessEqual(figures["failover_s"], pto, (figures, pto))
        self.assertGreaterEqual(figures["rate_after_failure_mbps"], 1.9, figures)

    def test_demand_beyond_the_cheap_path_spills_onto_the_costly_one(self) -> None:
        """An offered 14 Mbit/s on a cheap 10 Mbit/s path and a costly one: the costly path
        takes the excess (its share well above 2%) and the flow gets more than the cheap path
        alone could carry."""
        paths = [PathSpec(0.025, 10e6, queue_ms=100), PathSpec(0.010, 10e6, queue_ms=100,
                                                               cost=10.0)]
        result = run_scenario(paths=paths, flows=[RateFlow("video", 14e6)], duration=8.0)
        video = result.flows["video"]
        self.assertGreater(video.share(1, result.warmup, result.duration), 0.2)
        self.assertGreater(video.goodput_bps(), 10.5e6)
