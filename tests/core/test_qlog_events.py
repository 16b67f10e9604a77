"""
The core's qlog hooks (kwik_twisted/core/trace.py): which events a traced connection reports, and
their shapes, in simulated time with a tracer that only collects.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.connection import Connection
from kwik_twisted.core.entropy import SeededEntropy
from kwik_twisted.core.trace import LOSS_TRIGGERS
from kwik_twisted.testing import LinkConfig
from kwik_twisted.testing.pair import CLIENT_ADDR, SERVER_ADDR, client_config
from kwik_twisted.testing.transfer import run_transfers

SERVER = ("10.0.0.1", 4433)
KiB = 1 << 10


class Collector:
    """A tracer that keeps ``(time, name, data)`` triples."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, dict]] = []

    def event(self, time: float, name: str, data: dict) -> None:
        self.events.append((time, name, data))

    def named(self, name: str) -> list[dict]:
        """The data of every event called ``name``."""
        return [data for _time, event_name, data in self.events if event_name == name]

    def names(self) -> set[str]:
        return {name for _time, name, _data in self.events}


def link(delay: float = 0.015) -> LinkConfig:
    return LinkConfig(delay=delay, rate_bps=10e6, queue_bytes=40000)


def traced_transfer(size: int, **kwargs) -> tuple[Collector, Collector, object]:
    """Upload ``size`` bytes with both sides traced; return (client, server, result)."""
    tracers: dict[bool, Collector] = {}

    def new_tracer(odcid: bytes, is_client: bool) -> Collector:
        tracers[is_client] = Collector()
        return tracers[is_client]

    result = run_transfers(size=size, link=link(), new_tracer=new_tracer, **kwargs)
    return tracers[True], tracers[False], result


class SinglePathEventTests(SynchronousTestCase):
    """One path: the QUIC events a traced transfer produces."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.client, cls.server, cls.result = traced_transfer(256 * KiB)

    def test_transfer_completes_while_traced(self) -> None:
        """Tracing changes nothing about the transfer: it completes byte-exact."""
        self.assertTrue(self.result.all_intact)
        self.assertEqual(len(self.result.finished), 1)

    def test_connection_started_first_on_both_sides(self) -> None:
        """Each side's first event is ``quic:connection_started`` naming the same ODCID and its
        role."""
        for tracer, is_client in ((self.client, True), (self.server, False)):
            _time, name, data = tracer.events[0]
            self.assertEqual(name, "quic:connection_started")
            self.assertEqual(data["is_client"], is_client)
        self.assertEqual(self.client.events[0][2]["odcid"], self.server.events[0][2]["odcid"])

    def test_parameters_set_for_both_owners(self) -> None:
        """Each side traces its own transport parameters and the peer's, by qlog name."""
        for tracer in (self.client, self.server):
            owners = {p["owner"]: p for p in tracer.named("quic:parameters_set")}
            self.assertEqual(set(owners), {"local", "remote"})
            for params in owners.values():
                self.assertIn("initial_max_data", params)
                self.assertIn("max_idle_timeout", params)
                self.assertIn("max_paths", params)

    def test_packet_sent_has_header_frames_and_path_id(self) -> None:
        """``quic:packet_sent`` carries the header (type, number, path), the size and the frames;
        STREAM frames name stream, offset, length and fin, and the last one has fin."""
        sent = self.client.named("quic:packet_sent")
        self.assertGreater(len(sent), 256 * KiB // 1400)
        self.assertEqual(sent[0]["header"]["packet_type"], "initial")
        numbers = [p["header"]["packet_number"] for p in sent]
        self.assertEqual(numbers, sorted(numbers))
        for packet in sent:
            self.assertEqual(packet["path_id"], 0)
            self.assertEqual(packet["header"]["path_id"], 0)
            self.assertGreater(packet["raw"]["length"], 0)
            self.assertTrue(packet["frames"])
        streams = [f for p in sent for f in p["frames"] if f["frame_type"] == "stream"]
        self.assertEqual(set(streams[0]), {"frame_type", "stream_id", "offset", "length", "fin"})
        end = max(f["offset"] + f["length"] for f in streams)
        self.assertEqual(end, 256 * KiB)
        self.assertTrue(any(f["fin"] for f in streams))

    def test_packet_received_mirrors_the_peers_packet_sent(self) -> None:
        """The server receives, as ``quic:packet_received``, packet numbers the client sent."""
        sent = {p["header"]["packet_number"] for p in self.client.named("quic:packet_sent")}
        received = [p["header"]["packet_number"] for p in self.server.named("quic:packet_received")]
        self.assertTrue(received)
        self.assertLessEqual(set(received), sent)

    def test_acks_and_recovery_metrics(self) -> None:
        """``quic:packets_acked`` names packets that were sent on its path; recovery metrics are
        in milliseconds (a 30 ms RTT link) with the window and bytes in flight."""
        sent = {p["header"]["packet_number"] for p in self.client.named("quic:packet_sent")}
        acked = self.client.named("quic:packets_acked")
        self.assertTrue(acked)
        for event in acked:
            self.assertEqual(event["path_id"], 0)
            self.assertLessEqual(set(event["packet_numbers"]), sent)
        metrics = self.client.named("quic:recovery_metrics_updated")
        first = metrics[0]
        for field in ("smoothed_rtt", "min_rtt", "latest_rtt", "congestion_window"):
            self.assertIn(field, first)
        self.assertEqual(first["path_id"], 0)
        self.assertGreater(first["min_rtt"], 29.0)
        self.assertLess(first["min_rtt"], 60.0)

    def test_congestion_state_starts_in_slow_start(self) -> None:
        """The first ``quic:congestion_state_updated`` of a path says slow_start."""
        states = self.client.named("quic:congestion_state_updated")
        self.assertEqual(states[0], {"path_id": 0, "new": "slow_start"})
        for state in states:
            self.assertIn(state["new"], ("slow_start", "congestion_avoidance", "recovery"))

    def test_event_data_is_plain_json(self) -> None:
        """Every event's data serializes as JSON without NaN or infinity."""
        for tracer in (self.client, self.server):
            json.dumps([data for _t, _n, data in tracer.events], allow_nan=False)

    def test_times_never_go_backwards(self) -> None:
        """Events come in the order of the connection's clock."""
        times = [t for t, _n, _d in self.client.events]
        self.assertEqual(times, sorted(times))


class MultipathEventTests(SynchronousTestCase):
    """Two paths, one of them cut: path IDs and path events in the trace."""

    @classmethod
    def setUpClass(cls) -> None:
        holder: list[Connection] = []

        def setup(network) -> None:
            network.at(
                0.4, lambda: network.set_link_up(holder[0].paths[0].local_addr, SERVER, False)
            )

        cls.client, cls.server, cls.result = traced_transfer(
            1024 * KiB, extra_paths=[(link(), None)], setup=setup, on_start=holder.extend
        )

    def test_packets_on_both_paths(self) -> None:
        """A two-path transfer traces packets sent and received with path IDs 0 and 1, on both
        sides."""
        for tracer in (self.client, self.server):
            for name in ("quic:packet_sent", "quic:packet_received"):
                paths = {p["path_id"] for p in tracer.named(name)}
                self.assertEqual(paths, {0, 1}, name)

    def test_path_added_and_validated(self) -> None:
        """Path 1 appears as ``kwik:path_added`` then ``kwik:path_validated`` with its
        addresses."""
        for tracer in (self.client, self.server):
            names = [
                n for _t, n, d in tracer.events if n.startswith("kwik:path_") and d["path_id"] == 1
            ]
            self.assertEqual(names[:2], ["kwik:path_added", "kwik:path_validated"])
        added = self.client.named("kwik:path_added")[0]
        self.assertEqual(added["local_addr"]["ip"], "10.2.0.1")
        self.assertEqual(added["remote_addr"], {"ip": SERVER[0], "port": SERVER[1]})

    def test_path_failure_appears_as_kwik_path_failed(self) -> None:
        """Cutting path 0's links makes the client trace ``kwik:path_failed`` for path 0, and
        the losses before it as ``quic:packet_lost`` on path 0 with a qlog trigger."""
        self.assertTrue(self.result.all_intact)
        failed = self.client.named("kwik:path_failed")
        self.assertEqual([f["path_id"] for f in failed], [0])
        lost = self.client.named("quic:packet_lost")
        self.assertIn(0, {p["path_id"] for p in lost})
        for packet in lost:
            self.assertIn(packet["trigger"], LOSS_TRIGGERS)
            self.assertEqual(packet["header"]["path_id"], packet["path_id"])

    def test_recovery_events_carry_path_ids(self) -> None:
        """Recovery metrics and congestion states are traced per path, for both paths."""
        for name in ("quic:recovery_metrics_updated", "quic:congestion_state_updated"):
            self.assertEqual({e["path_id"] for e in self.client.named(name)}, {0, 1}, name)

    def test_scheduler_decisions_are_sampled(self) -> None:
        """``kwik:scheduler_decision`` names the chosen path and, sampled (not one per packet),
        how many packets each path got."""
        decisions = self.client.named("kwik:scheduler_decision")
        self.assertTrue(decisions)
        self.assertLess(len(decisions), len(self.client.named("quic:packet_sent")) // 10)
        shares = {k for d in decisions for k in d["packets"]}
        self.assertEqual(shares, {"0", "1"})


class KeyUpdateEventTests(SynchronousTestCase):
    """``quic:key_updated`` for every key update, with who started it."""

    def test_key_updates_are_traced_on_both_sides(self) -> None:
        """With keyUpdate=200 on the client, a 1 MiB upload traces local updates on the client
        and remote ones on the server, one event per key type and generation, generations in
        order; the transfer is exact."""
        client, server, result = traced_transfer(
            1024 * KiB, client_options={"key_update_interval": 200}
        )
        self.assertTrue(result.all_intact)
        ours = client.named("quic:key_updated")
        theirs = server.named("quic:key_updated")
        self.assertGreater(len(ours), 4)
        self.assertEqual({e["trigger"] for e in ours}, {"local_update"})
        self.assertEqual({e["trigger"] for e in theirs}, {"remote_update"})
        self.assertEqual({e["key_type"] for e in ours},
                         {"client_1rtt_secret", "server_1rtt_secret"})
        generations = [e["key_phase"] for e in ours if e["key_type"] == "client_1rtt_secret"]
        self.assertEqual(generations, list(range(1, len(generations) + 1)))


class CloseAndOffTests(SynchronousTestCase):
    """Closing is traced; without a tracer nothing is."""

    def client(self, new_tracer=None) -> Connection:
        return Connection.client(
            client_config(),
            local_addr=CLIENT_ADDR,
            remote_addr=SERVER_ADDR,
            entropy=SeededEntropy(7),
            now=5.0,
            new_tracer=new_tracer,
        )

    def test_close_is_traced_with_code_reason_and_trigger(self) -> None:
        """``close()`` traces ``quic:connection_closed`` with the owner, application code,
        reason and trigger."""
        tracer = Collector()
        odcids = []
        conn = self.client(lambda odcid: odcids.append(odcid) or tracer)
        conn.close(42, "bye")
        closed = tracer.named("quic:connection_closed")
        self.assertEqual(
            closed,
            [{"owner": "local", "application_code": 42, "reason": "bye", "trigger": "application"}],
        )
        self.assertEqual(tracer.named("quic:connection_started")[0]["odcid"], odcids[0].hex())

    def test_tracer_factory_returning_none_means_untraced(self) -> None:
        """A ``new_tracer`` that returns ``None`` (a file that could not be made) leaves the
        connection untraced and working."""
        conn = self.client(lambda odcid: None)
        self.assertIsNone(conn.trace)
        self.assertTrue(conn.datagrams_to_send(now=5.0))

    def test_no_tracer_no_trace(self) -> None:
        """Without ``new_tracer`` the connection has no trace."""
        self.assertIsNone(self.client().trace)


class QosRequestTests(SynchronousTestCase):
    """A stream's QoS policy, as its opener asked for it, is traced on both sides."""

    def test_the_qos_extension_is_traced_as_kwik_qos_requested(self) -> None:
        """A STREAM frame carrying the QOS extension gives ``kwik:qos_requested`` with the owner
        (local when sent, remote when received) and the policy in the wire's units; a frame
        without it gives none."""
        from types import SimpleNamespace

        from kwik_twisted.core.trace import Trace
        from kwik_twisted.wire import QosPolicy, StreamFrame

        tracer = Collector()
        trace = Trace(tracer, is_client=True, odcid=bytes(8), now=0.0)
        policy = QosPolicy(2000, 50, 10, 10000)
        asked = StreamFrame(4, 0, b"x", qos=policy)
        plain = StreamFrame(8, 0, b"y")
        trace.packet_sent(0, 1, SimpleNamespace(seq=7, size=60), [asked, plain], 1.0)
        header = SimpleNamespace(epoch=1, seq=3, path_id=1)
        trace.packet_received(header, 60, [asked], 2.0)
        expected = {
            "stream_id": 4,
            "min_bandwidth_kbps": 2000,
            "max_latency_ms": 50,
            "max_jitter_ms": 10,
            "loss_threshold_ppm": 10000,
        }
        self.assertEqual(
            tracer.named("kwik:qos_requested"),
            [{"owner": "local", **expected}, {"owner": "remote", **expected}],
        )


class QosEventTests(SynchronousTestCase):
    """The QoS data plane's qlog events: violations and congestion reports."""

    def test_a_violation_is_traced_as_kwik_qos_violated(self) -> None:
        """A QoSViolated event the connection emits becomes ``kwik:qos_violated`` with the
        stream, the metric, the measured figure and the bound."""
        from kwik_twisted.core.trace import Trace
        from kwik_twisted.events import QoSViolated

        tracer = Collector()
        trace = Trace(tracer, is_client=True, odcid=bytes(8), now=0.0)
        trace.on_event(QoSViolated(4, "max_latency", 0.052, 0.04), 1.5)
        self.assertEqual(
            tracer.named("kwik:qos_violated"),
            [{"stream_id": 4, "metric": "max_latency", "measured": 0.052, "bound": 0.04}],
        )

    def test_a_congestion_report_is_traced_as_json(self) -> None:
        """``congestion_report`` writes ``kwik:congestion_report``: the global level and each
        path's report, JSON-serialisable, with the path's queueing delay and its forecast."""
        from kwik_twisted.core.qos.detector import CongestionDetector, global_report
        from kwik_twisted.core.trace import Trace

        detector = CongestionDetector(1, now=0.0)
        for i in range(50):
            now = 0.001 * i
            detector.on_ack(now=now, acked_bytes=1350, bytes_in_flight=20000,
                            latest_rtt=0.020 + now, smoothed_rtt=0.020 + now / 2,
                            min_rtt=0.020, delivery_rate=1.25e6)
        report = global_report([detector.report(now=0.05)], now=0.05, actions=("cap path 1",))
        tracer = Collector()
        Trace(tracer, is_client=True, odcid=bytes(8), now=0.0).congestion_report(report, 0.05)
        [data] = tracer.named("kwik:congestion_report")
        json.dumps(data)
        [path] = data["paths"]
        self.assertEqual(path["path_id"], 1)
        self.assertGreater(path["queueing_delay"], 0.0)
        self.assertIn("predicted_queueing_delay", path)
        self.assertEqual(data["actions"], ["cap path 1"])
