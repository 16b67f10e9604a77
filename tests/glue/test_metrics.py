"""
Live metrics (issue 14): ``/metrics`` (Prometheus text, read back with prometheus_client's parser)
and ``/status`` (JSON) of :mod:`kwik_twisted.glue.metrics`, during a two-path transfer on the real
loopback interface; and the ``twistd kwik --metrics`` option.

The pages are fetched over a real loopback TCP connection (a plain HTTP/1.0 GET) from a
twisted.web site on an ephemeral port, as Prometheus would.
"""

from __future__ import annotations

import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted import tap
from kwik_twisted.endpoints import KwikClientEndpoint
from kwik_twisted.glue.metrics import STATES, metricsSite
from kwik_twisted.glue.registry import LIVE
from kwik_twisted.testing.pair import client_config
from tests.glue.test_multipath_glue import LoopbackTestCase, payload
from tests.polling import until

MiB = 1 << 20


def samples(text: str, name: str, **labels: str) -> list:
    """The samples named ``name`` whose labels include ``labels``."""
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                found.append(sample)
    return found


class _HttpGet(Protocol):
    """Sends one HTTP/1.0 GET; ``done`` fires with the whole response once the server closes."""

    def __init__(self, path: bytes) -> None:
        self.path = path
        self.data = b""
        self.done: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(b"GET " + self.path + b" HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason) -> None:
        self.done.callback(self.data)


class MetricsPagesTests(LoopbackTestCase):
    """A client with paths from 127.0.0.1 and 127.0.0.2 streams to the server."""

    timeout = 30

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        http = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            metricsSite(reactor=reactor)
        )
        self.addCleanup(http.stopListening)
        self.httpPort = http.getHost().port

    @defer.inlineCallbacks
    def get(self, path: bytes) -> Any:
        """GET ``path``; return (content type, body text)."""
        client = _HttpGet(path)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.httpPort)
        yield connectProtocol(endpoint, client)
        raw = yield client.done
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.assertIn(" 200 ", lines[0])
        headers = dict(line.split(": ", 1) for line in lines[1:])
        kind = {k.lower(): v for k, v in headers.items()}["content-type"]
        return kind, body.decode("utf-8")

    @defer.inlineCallbacks
    def transferring(self) -> Any:
        """Start a two-path transfer and wait until both paths carried data each way; return
        the client's KwikConnection, its peer label and the server connection's peer label."""
        port = yield self.listen()
        endpoint = KwikClientEndpoint(
            reactor, "127.0.0.1", port, config=client_config(scheduler="wrr"), reuse=False,
            paths=["127.0.0.2"],
        )
        proto = yield endpoint.connect(Factory.forProtocol(Protocol))
        proto.transport.write(payload(8 * MiB))
        conn = proto.transport.kwikConnection

        def bothPaths() -> bool:
            metrics = conn.pathMetrics()
            return sorted(metrics) == [0, 1] and all(
                m.bytes_sent > 20000 and m.bytes_received > 0 for m in metrics.values()
            )

        yield until(bothPaths, 10.0)
        local = conn.core.paths[0].local_addr
        self.proto = proto
        return conn, f"127.0.0.1:{port}", f"{local[0]}:{local[1]}"

    @defer.inlineCallbacks
    def test_scrape_during_transfer_then_series_gone(self) -> Any:
        """
        During the transfer ``/metrics`` parses and has nonzero bytes sent for both paths of
        the client and bytes received on both paths of the server connection, each path's
        state (``active`` = 1, the others 0) and RTT; once the connection ended on both sides,
        no series names either peer.
        """
        conn, serverPeer, clientPeer = yield self.transferring()
        kind, text = yield self.get(b"/metrics")
        self.assertIn("text/plain", kind)
        for path in ("0", "1"):
            sent = samples(text, "kwik_path_sent_bytes_total", side="client", peer=serverPeer,
                           path=path)
            self.assertEqual(len(sent), 1, text)
            self.assertGreater(sent[0].value, 0)
            received = samples(text, "kwik_path_received_bytes_total", side="server",
                               peer=clientPeer, path=path)
            self.assertEqual(len(received), 1, text)
            self.assertGreater(received[0].value, 0)
            state = samples(text, "kwik_path_state", side="client", peer=serverPeer, path=path)
            self.assertEqual({s.labels["state"]: s.value for s in state},
                             {name: 1.0 if name == "active" else 0.0 for name in STATES})
            self.assertEqual(len(samples(text, "kwik_path_rtt_seconds", peer=serverPeer,
                                         path=path)), 1)
            self.assertEqual(len(samples(text, "kwik_path_cwnd_bytes", peer=serverPeer,
                                         path=path)), 1)
        self.assertGreaterEqual(samples(text, "kwik_connections_open", side="client")[0].value, 1)
        self.assertGreaterEqual(samples(text, "kwik_connections_accepted_total")[0].value, 1)

        server = [c for c in LIVE.connections() if not c.core.is_client and c.core.paths
                  and c.core.paths[0].remote_addr == conn.core.paths[0].local_addr]
        self.assertEqual(len(server), 1)
        conn.close(0, "test over")
        yield until(lambda: conn.dead and server[0].dead, 10.0)
        kind, text = yield self.get(b"/metrics")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.assertNotIn(sample.labels.get("peer"), (serverPeer, clientPeer), sample)
        self.assertTrue(samples(text, "kwik_connections_accepted_total"))

    @defer.inlineCallbacks
    def test_status_is_json_with_paths_and_shares(self) -> Any:
        """``/status`` is JSON: the client connection's peer, side, age, bytes, and both paths
        with addresses, state, RTT, loss and a share of the bytes, the shares adding up to 1."""
        conn, serverPeer, _clientPeer = yield self.transferring()
        kind, text = yield self.get(b"/status")
        self.assertEqual(kind, "application/json")
        document = json.loads(text)
        mine = [c for c in document["connections"]
                if c["peer"] == serverPeer and c["side"] == "client"]
        self.assertEqual(len(mine), 1, document)
        entry = mine[0]
        self.assertGreaterEqual(entry["age"], 0.0)
        self.assertGreater(entry["bytes_sent"], 40000)
        self.assertGreater(entry["bytes_received"], 0)
        self.assertEqual([p["id"] for p in entry["paths"]], [0, 1])
        for path in entry["paths"]:
            self.assertEqual(path["state"], "active")
            self.assertIn("rtt", path)
            self.assertIn("loss_rate", path)
            self.assertGreater(path["share"], 0.0)
        self.assertTrue(entry["paths"][1]["local"].startswith("127.0.0.2:"))
        self.assertAlmostEqual(sum(p["share"] for p in entry["paths"]), 1.0)
        self.assertIn("connections_accepted", document)
        self.assertIn("handshakes_failed", document)
        conn.close(0, "test over")
        yield until(lambda: conn.dead, 10.0)


class MetricsOptionTests(SynchronousTestCase):
    """``twistd kwik --metrics ENDPOINT``."""

    def options(self, *argv: str) -> tap.Options:
        options = tap.Options(reactor=MemoryReactor())
        options.parseOptions(list(argv))
        return options

    def test_metrics_option_parses(self) -> None:
        """``--metrics`` takes a server endpoint string."""
        options = self.options("--listen", "tcp:0", "--echo",
                               "--metrics", "tcp:9464:interface=127.0.0.1")
        self.assertEqual(options["metrics"], "tcp:9464:interface=127.0.0.1")

    def test_metrics_is_off_by_default(self) -> None:
        """Without ``--metrics`` there is no metrics service."""
        options = self.options("--listen", "tcp:0", "--echo")
        self.assertIsNone(options["metrics"])
        self.assertEqual([s.name for s in tap.makeService(options)], ["tcp:0"])

    def test_bad_metrics_endpoint_is_a_usage_error(self) -> None:
        """A malformed endpoint string is a usage error naming --metrics."""
        error = self.assertRaises(usage.UsageError, self.options, "--listen", "tcp:0",
                                  "--echo", "--metrics", "nosuchkind:1")
        self.assertIn("--metrics", str(error))

    def test_metrics_service_is_built(self) -> None:
        """makeService adds a service named ``metrics`` listening on the given endpoint."""
        reactor = MemoryReactor()
        options = tap.Options(reactor=reactor)
        options.parseOptions(["--listen", "tcp:0", "--echo", "--metrics", "tcp:9464"])
        top = tap.makeService(options)
        self.assertEqual([s.name for s in top], ["tcp:0", "metrics"])
        top.privilegedStartService()
        top.startService()
        self.addCleanup(top.stopService)
        self.assertEqual(sorted(p[0] for p in reactor.tcpServers), [0, 9464])


class SeriesIdentityTests(SynchronousTestCase):
    """Each live connection has series of its own (found by review: two client connections to
    the same server produced duplicate series)."""

    def test_two_connections_between_the_same_hosts_have_distinct_series(self) -> None:
        """Two client connections to one server (``reuse=False``): no series line of
        ``/metrics`` repeats, and the ``connection`` label tells them apart."""
        from prometheus_client import CollectorRegistry, generate_latest
        from twisted.internet.protocol import Factory, Protocol

        from kwik_twisted.core.entropy import SeededEntropy
        from kwik_twisted.endpoints import KwikClientEndpoint
        from kwik_twisted.glue.metrics import KwikCollector
        from kwik_twisted.glue.registry import LIVE
        from kwik_twisted.testing.pair import client_config

        from .fakes import FakeKwik

        before = set(LIVE.connections())
        kwik = FakeKwik()
        for seed in (9001, 9002):  # seeds no other test uses: connection IDs of their own
            endpoint = KwikClientEndpoint(kwik.reactor, "127.0.0.1", 4433,
                                          config=client_config(), entropy=SeededEntropy(seed),
                                          reuse=False)
            endpoint.connect(Factory.forProtocol(Protocol))
        kwik.pump()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(KwikCollector(LIVE))
        text = generate_latest(registry).decode()
        mine = set(LIVE.connections()) - before  # other tests' connections may still be live
        ids = {f'connection="{conn.core.original_dcid.hex()}"' for conn in mine}
        series = [line.rsplit(" ", 1)[0] for line in text.splitlines()
                  if line.startswith("kwik_path_sent_bytes_total{") and 'side="client"' in line
                  and any(label in line for label in ids)]
        self.assertGreaterEqual(len(series), 2)
        self.assertEqual(len(series), len(set(series)), series)
        for conn in set(LIVE.connections()) - before:  # leave no series to the other tests
            conn.abandon("done")
        self.assertEqual(set(LIVE.connections()), before)
