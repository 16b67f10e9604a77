"""
Tests for :mod:`kwik_twisted.testing.qos`: the QoS scenario harness measures what it says.

Each runs a few simulated seconds over clean links, where the right figures are known from the link
parameters: one-way delay is propagation plus the serialization of one packet, a constant-rate
source is received at its rate, every STREAM byte is attributed to exactly one path, and a link
changed at time t changes what is measured after t.  The issue's scenarios are only run here as a
smoke test of their figures (their targets are the QoS acceptance tests').
"""

from __future__ import annotations

import math

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.testing.qos import (
    HEADER,
    SCENARIOS,
    BulkFlow,
    Delays,
    FlowResult,
    MessageFlow,
    PathSpec,
    RateFlow,
    congested_paths,
    queue_limit,
    run_scenario,
    with_qos,
)
from kwik_twisted.testing.qos.run import _StreamTap
from kwik_twisted.wire import QosPolicy

#: Bytes a packet carrying one small message adds to it (header, frame, AEAD tag), at most.
OVERHEAD = 100


def assertNear(case: SynchronousTestCase, value: float, expected: float, tolerance: float) -> None:
    """``value`` is within ``tolerance`` of ``expected`` (trial ignores a delta=)."""
    case.assertLessEqual(abs(value - expected), tolerance, f"{value!r} vs {expected!r}")


class DelayTests(SynchronousTestCase):
    """One-way delay per message, measured at the server application."""

    def test_clean_path_delay_is_propagation_plus_serialization(self):
        """Alone on a clean 10 Mbit/s, 10 ms path, every 200-byte message takes 10 ms plus the
        serialization of one packet of 200 to 300 bytes, and nothing is late or lost."""
        result = run_scenario(
            paths=[PathSpec(0.010, 10e6, queue_ms=50)],
            flows=[MessageFlow("m", size=200, interval=0.020)],
            duration=3.0,
            warmup=0.5,
        )
        flow = result.flows["m"]
        delays = flow.delays
        self.assertGreaterEqual(len(delays), 120)  # 2.5 s of one message per 20 ms
        low = 0.010 + 200 * 8 / 10e6
        for delay in delays:
            self.assertGreaterEqual(delay, low - 1e-9)
            self.assertLessEqual(delay, low + OVERHEAD * 8 / 10e6)
        self.assertLess(delays.std(), 1e-4)
        self.assertEqual(flow.late_fraction(0.011), 0.0)
        self.assertEqual(flow.late_fraction(0.010), 1.0)
        assertNear(self, flow.goodput_bps(), 200 * 8 / 0.020, 2 * 200 * 8 / 2.5)

    def test_delay_change_at_t_applies_from_t(self):
        """The path's delay goes from 10 ms to 50 ms at t = 1.5 s: messages written before take
        about 10 ms, those written from 1.6 s on about 50 ms."""
        result = run_scenario(
            paths=[PathSpec(0.010, 10e6, queue_ms=50)],
            flows=[MessageFlow("m")],
            duration=3.0,
            warmup=0.5,
            events=[(1.5, lambda network, ctx: ctx.set_path(0, delay=0.050, direction="both"))],
        )
        flow = result.flows["m"]
        before, after = flow.delays_in(0.5, 1.5), flow.delays_in(1.6, 3.0)
        assertNear(self, before.max(), 0.0102, 0.0005)
        assertNear(self, after.p50(), 0.0502, 0.0005)
        assertNear(self, after.max(), 0.0502, 0.0005)

    def test_undelivered_messages_are_late(self):
        """Both links of the only path are cut at 1.5 s: the messages written after it never
        arrive, and late_fraction counts them late; those before were on time."""
        result = run_scenario(
            paths=[PathSpec(0.010, 10e6, queue_ms=50)],
            flows=[MessageFlow("m")],
            duration=3.0,
            warmup=0.5,
            events=[(1.5, lambda network, ctx: ctx.set_path_up(0, False))],
        )
        flow = result.flows["m"]
        self.assertEqual(flow.late_fraction(0.05, 0.5, 1.4), 0.0)
        self.assertEqual(flow.late_fraction(0.05, 1.5, 3.0), 1.0)
        self.assertEqual(len(flow.delays_in(1.5, 3.0)), 0)
        self.assertGreater(flow.max_gap(), 1.4)


class RateTests(SynchronousTestCase):
    """Goodput and per-path bytes."""

    def test_rate_flow_is_received_at_its_offered_rate(self):
        """A 2 Mbit/s source on a 10 Mbit/s path: the server application gets 2 Mbit/s (0.5%),
        nothing is skipped, and its chunks take the path's delay plus about a packet's time."""
        result = run_scenario(
            paths=[PathSpec(0.010, 10e6, queue_ms=50)],
            flows=[RateFlow("r", 2e6, chunk=1200)],
            duration=3.0,
            warmup=0.5,
        )
        flow = result.flows["r"]
        assertNear(self, flow.goodput_bps(), 2e6, 2e6 * 0.005)
        self.assertEqual(flow.skipped_bytes, 0)
        assertNear(self, flow.p50(), 0.010 + 1300 * 8 / 10e6, 0.0005)

    def test_rate_change_at_t_applies(self):
        """Bulk on one 10 Mbit/s path, which drops to 2 Mbit/s (200 ms queue) at t = 2 s:
        goodput is over 8 Mbit/s before and about 2 Mbit/s a second after; what the link
        delivered is the flow's bytes plus the packets' overhead."""
        result = run_scenario(
            paths=[PathSpec(0.010, 10e6, queue_ms=50)],
            flows=[BulkFlow("bulk")],
            duration=5.0,
            warmup=0.5,
            events=[(2.0, lambda network, ctx: ctx.set_path(0, rate_bps=2e6, queue_ms=200))],
        )
        flow = result.flows["bulk"]
        self.assertGreater(flow.goodput_bps(0.5, 2.0), 8e6)
        assertNear(self, flow.goodput_bps(3.0, 5.0), 2e6, 0.2e6)
        link = result.network.link(result.client.paths[0].local_addr, ("10.0.0.1", 4433))
        self.assertEqual(link.config.queue_bytes, queue_limit(2e6, 200, None))
        carried = result.paths[0].bytes_up_total
        delivered = flow.bytes_delivered(0.0, result.duration)
        self.assertGreater(delivered, carried * 0.85)
        self.assertLess(delivered, carried)

    def test_per_path_bytes_add_up_to_the_stream(self):
        """Bulk and messages over two 10 Mbit/s paths: for each flow the per-path STREAM bytes
        add up to every byte sent (resends included), each path carried some, the bytes sent
        once cover what was delivered, and no flow's bytes exceed what the links carried."""
        result = run_scenario(
            paths=[PathSpec(0.010, 10e6, queue_ms=50), PathSpec(0.015, 10e6, queue_ms=50)],
            flows=[BulkFlow("bulk"), MessageFlow("m", interval=0.005)],
            duration=3.0,
            warmup=1.0,
        )
        for flow in result.flows.values():
            by_path = flow.bytes_by_path(0.0, result.duration)
            self.assertEqual(sum(by_path.values()), flow.sent_bytes)
            self.assertEqual(set(by_path), {0, 1})
            self.assertGreaterEqual(flow.sent_bytes - flow.resent_bytes,
                                    flow.bytes_delivered(0.0, result.duration))
        bulk = result.flows["bulk"]
        self.assertGreater(bulk.share(1), 0.2)
        for index, path in enumerate(result.paths):
            stream_bytes = sum(f.bytes_by_path()[index] for f in result.flows.values())
            self.assertLess(stream_bytes, path.bytes_up)
            self.assertGreater(stream_bytes, path.bytes_up * 0.9)


class StreamTapTests(SynchronousTestCase):
    """Resend accounting of the tracer hook, on synthetic frames."""

    def tap(self) -> tuple[_StreamTap, FlowResult]:
        flow = FlowResult("f", "BulkFlow", 0, 0.0, 10.0)
        return _StreamTap([("a", 1), ("b", 1)], {0: flow}), flow

    def test_resends_and_cross_path_bytes(self):
        """[0, 1000) first on path 0, [1000, 2000) on path 1; [0, 500) again on path 1 is
        500 resent and 500 cross-path; [500, 1500) again on path 0 is 1000 resent, of which
        the 500 first sent on path 1 are cross-path; new bytes are never resent."""
        tap, flow = self.tap()
        tap._count(flow, 0, 0, 1000, 1.0)
        tap._count(flow, 1, 1000, 1000, 1.1)
        self.assertEqual((flow.resent_bytes, flow.cross_path_bytes), (0, 0))
        tap._count(flow, 1, 0, 500, 1.2)
        self.assertEqual((flow.resent_bytes, flow.cross_path_bytes), (500, 500))
        tap._count(flow, 0, 500, 1000, 1.3)
        self.assertEqual((flow.resent_bytes, flow.cross_path_bytes), (1500, 1000))
        tap._count(flow, 0, 1800, 400, 1.4)  # 200 old (first on path 1), 200 new
        self.assertEqual((flow.resent_bytes, flow.cross_path_bytes), (1700, 1200))
        self.assertEqual(flow.sent_bytes, 3900)
        self.assertAlmostEqual(flow.redundancy, 1700 / 2200)
        self.assertEqual(flow.bytes_by_path(), {0: 2400, 1: 1500})
        self.assertEqual(flow.bytes_by_path(1.15, 1.35), {0: 1000, 1: 500})
        self.assertEqual(flow.first_sent_on(1, 1.15), 1.2)
        self.assertIsNone(flow.first_sent_on(1, 1.25))

    def test_packet_sent_events_reach_the_flow(self):
        """A ``quic:packet_sent`` event's STREAM frames are counted for the flow of their
        stream; other frames, other streams and other events are not."""
        tap, flow = self.tap()
        frames = [
            {"frame_type": "stream", "stream_id": 0, "offset": 0, "length": 700, "fin": False},
            {"frame_type": "stream", "stream_id": 4, "offset": 0, "length": 50, "fin": False},
            {"frame_type": "ack", "path_id": 0},
        ]
        tap.event(1.0, "quic:packet_sent", {"path_id": 0, "frames": frames})
        tap.event(1.0, "quic:packet_received", {"path_id": 0, "frames": frames})
        self.assertEqual(flow.sent_bytes, 700)
        self.assertEqual(flow.bytes_by_path(), {-1: 700})  # no client: path unknown


class ValueTests(SynchronousTestCase):
    """The small pieces."""

    def test_delays_statistics(self):
        """Nearest-rank percentiles, population std, and nan when empty."""
        delays = Delays([0.01 * k for k in range(1, 101)])
        self.assertAlmostEqual(delays.p50(), 0.50)
        self.assertAlmostEqual(delays.p99(), 0.99)
        self.assertAlmostEqual(delays.mean(), 0.505)
        self.assertAlmostEqual(delays.max(), 1.0)
        self.assertAlmostEqual(Delays([1.0, 3.0]).std(), 1.0)
        self.assertTrue(math.isnan(Delays().p99()))

    def test_with_qos_removes_only_the_policies(self):
        """Disabled, every flow loses its policy and keeps the rest; enabled, nothing changes."""
        policy = QosPolicy(max_latency_ms=40)
        flows = [MessageFlow("m", qos=policy, priority=1), BulkFlow("b", qos=policy)]
        self.assertEqual(with_qos(flows, True), flows)
        off = with_qos(flows, False)
        self.assertEqual([f.qos for f in off], [None, None])
        self.assertEqual(off[0].priority, 1)
        self.assertEqual(off[0].name, "m")

    def test_path_spec_links(self):
        """queue_ms is a time of the rate; only the client-to-server side is rate limited."""
        spec = PathSpec(0.025, 8e6, queue_ms=100, loss=0.01)
        self.assertEqual(spec.up_link().queue_bytes, 100_000)
        self.assertEqual(spec.up_link().loss, 0.01)
        self.assertIsNone(spec.down_link().rate_bps)
        self.assertEqual(spec.down_link().delay, 0.025)
        self.assertEqual(PathSpec(queue_bytes=5000).up_link().queue_bytes, 5000)
        with self.assertRaises(ValueError):
            MessageFlow("tiny", size=HEADER.size - 1)

    def test_congested_paths_reads_report_shapes(self):
        """An attribute, a key at any depth, an ``as_dict()``; ``None`` when there is none."""

        class Report:
            congested_paths = (1,)

        class Wrapper:
            def as_dict(self):
                return {"congestion": {"congested_paths": [0, 2]}}

        self.assertEqual(congested_paths(Report()), {1})
        self.assertEqual(congested_paths(Wrapper()), {0, 2})
        self.assertEqual(congested_paths({"a": [{"congested_paths": []}]}), frozenset())
        self.assertIsNone(congested_paths({"paths": {}}))
        self.assertIsNone(congested_paths(None))


class ScenarioSmokeTests(SynchronousTestCase):
    """The issue's scenarios run and fill their figures (short runs, QoS off)."""

    def test_each_scenario_reports_its_figures(self):
        """Every scenario, 4 simulated seconds without QoS: its figures are there and every
        flow delivered in the measured second."""
        short = {"bufferbloat": {"drop_at": 3.5}, "cost": {"fail_at": 3.5}}
        for name, scenario in SCENARIOS.items():
            result = scenario(qos=False, duration=4.0, **short.get(name, {}))
            self.assertIsNotNone(result.ready_at, name)
            self.assertTrue(result.figures, name)
            for flow in result.flows.values():
                self.assertGreater(flow.goodput_bps(), 0, (name, flow.name))
        self.assertLess(result.figures["costly_share"], 1.01)
