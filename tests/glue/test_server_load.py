"""
Choosing a server address by load (:mod:`kwik_twisted.glue.dualstack`): the ordering function, the
endpoint's bounded, expiring cache of reported loads, and, on the fake UDP reactor with real Kwik
handshakes, a client that learnt one address's server is full trying the other address first.
"""

from __future__ import annotations

from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.entropy import SeededEntropy
from kwik_twisted.endpoints import KwikClientEndpoint, KwikServerEndpoint
from kwik_twisted.glue.dualstack import (
    ATTEMPT_DELAY,
    LOAD_LIFETIME,
    MAX_LOADS,
    ServerLoads,
    orderByLoad,
)
from kwik_twisted.testing.pair import client_config, server_config

from .fakes import SERVER_PORT, FakeUDPReactor


class OrderByLoadTests(SynchronousTestCase):
    """orderByLoad: lower load first, unknown in the middle, ties in the resolver's order."""

    def test_known_lower_loads_go_first(self) -> None:
        """Three known loads are tried lowest first, whatever the resolver's order."""
        loads = {"a": 0.9, "b": 0.1, "c": 0.45}
        self.assertEqual(orderByLoad(["a", "b", "c"], loads), ["b", "c", "a"])

    def test_an_unknown_address_counts_as_half_loaded(self) -> None:
        """An address never heard from goes after a known idle server and before a known busy
        one."""
        self.assertEqual(orderByLoad(["busy", "new"], {"busy": 0.8}), ["new", "busy"])
        self.assertEqual(orderByLoad(["new", "idle"], {"idle": 0.2}), ["idle", "new"])

    def test_loads_in_the_same_tenth_keep_the_resolvers_order(self) -> None:
        """0.31 and 0.3 (and 0.39) count as equal, so the resolver's preference (IPv6 first,
        here) stands; 0.29 is a tenth lower and goes first."""
        addresses = ["2001:db8::1", "192.0.2.1"]
        self.assertEqual(orderByLoad(addresses, {"2001:db8::1": 0.31, "192.0.2.1": 0.3}),
                         addresses)
        self.assertEqual(orderByLoad(addresses, {"2001:db8::1": 0.39, "192.0.2.1": 0.3}),
                         addresses)
        self.assertEqual(orderByLoad(addresses, {"2001:db8::1": 0.3, "192.0.2.1": 0.29}),
                         ["192.0.2.1", "2001:db8::1"])

    def test_nothing_known_changes_nothing(self) -> None:
        """With no loads known the order is the resolver's."""
        self.assertEqual(orderByLoad(["c", "a", "b"], {}), ["c", "a", "b"])


class ServerLoadsTests(SynchronousTestCase):
    """The endpoint's cache: address -> (load, when), bounded and expiring."""

    def test_a_report_is_kept_until_it_expires(self) -> None:
        """A load is returned for LOAD_LIFETIME seconds after it arrived, then forgotten."""
        loads = ServerLoads()
        loads.record("192.0.2.1", 0.7, now=100.0)
        self.assertEqual(loads.get("192.0.2.1", now=100.0 + LOAD_LIFETIME - 1), 0.7)
        self.assertIsNone(loads.get("192.0.2.1", now=100.0 + LOAD_LIFETIME))
        self.assertEqual(len(loads), 0)

    def test_a_new_report_replaces_the_old_and_restarts_its_life(self) -> None:
        """The latest report of an address counts, and lives LOAD_LIFETIME from its arrival."""
        loads = ServerLoads()
        loads.record("a", 0.9, now=0.0)
        loads.record("a", 0.2, now=50.0)
        self.assertEqual(loads.get("a", now=50.0 + LOAD_LIFETIME - 1), 0.2)

    def test_the_cache_is_bounded_forgetting_the_oldest(self) -> None:
        """Past MAX_LOADS addresses, the least recently reported are forgotten first."""
        loads = ServerLoads()
        for n in range(MAX_LOADS + 5):
            loads.record(f"192.0.2.{n}", 0.5, now=float(n) / 100)
        self.assertEqual(len(loads), MAX_LOADS)
        self.assertIsNone(loads.get("192.0.2.4", now=1.0))
        self.assertEqual(loads.get("192.0.2.5", now=1.0), 0.5)

    def test_out_of_range_reports_are_clamped(self) -> None:
        """A load is kept within 0..1."""
        loads = ServerLoads()
        loads.record("a", 1.5, now=0.0)
        loads.record("b", -1.0, now=0.0)
        self.assertEqual((loads.get("a", now=0.0), loads.get("b", now=0.0)), (1.0, 0.0))

    def test_order_uses_only_live_reports(self) -> None:
        """order() puts a known idle address first, but not once its report expired."""
        loads = ServerLoads()
        loads.record("b", 0.0, now=0.0)
        self.assertEqual(loads.order(["a", "b"], now=1.0), ["b", "a"])
        self.assertEqual(loads.order(["a", "b"], now=LOAD_LIFETIME + 1), ["a", "b"])


class LoadOrderedRaceTests(SynchronousTestCase):
    """Real handshakes on the fake network: the client learns a server is full and avoids it."""

    def setUp(self) -> None:
        self.reactor = FakeUDPReactor()
        self.reactor.names["dual.example"] = ["::1", "127.0.0.1"]
        for interface in ("::1", "127.0.0.1"):
            KwikServerEndpoint(self.reactor, SERVER_PORT, config=server_config(),
                               interface=interface, entropy=SeededEntropy(1)).listen(
                Factory.forProtocol(Protocol))
        self.endpoint = KwikClientEndpoint(self.reactor, "dual.example", SERVER_PORT,
                                           config=client_config(), entropy=SeededEntropy(7),
                                           timeout=5, reuse=False)

    def dispatcher(self, host: str):
        """The dispatcher of the server listening on ``host``."""
        return self.reactor.ports[(host, SERVER_PORT)].protocol.dispatcher

    def connect(self, seconds: float) -> Protocol:
        """connect() and run the network ``seconds``; the connected protocol."""
        results: list = []
        self.endpoint.connect(Factory.forProtocol(Protocol)).addBoth(results.append)
        self.reactor.pump(seconds)
        (protocol,) = results
        self.assertIsInstance(protocol, Protocol)
        return protocol

    def test_a_full_server_is_tried_after_the_others(self) -> None:
        """
        The server on ::1 takes one connection (its limit): the first connect() reaches it (the
        resolver's first address) and learns its load, 1.0, which the path metrics show too.  The
        second connect() tries 127.0.0.1 first and connects at once, well within the head start
        ::1 would have had (the full server would have dropped the attempt silently).
        """
        self.dispatcher("::1").max_connections = 1
        first = self.connect(seconds=1.0)
        self.assertEqual(first.transport.getPeer().host, "::1")
        metrics = first.transport.kwikConnection.pathMetrics()
        self.assertEqual(metrics[0].server_load, 1.0)
        self.assertEqual(self.endpoint._serverLoads.get("::1", self.reactor.seconds()), 1.0)
        started = self.reactor.seconds()
        second = self.connect(seconds=ATTEMPT_DELAY / 2)
        self.assertEqual(second.transport.getPeer().host, "127.0.0.1")
        self.assertLess(self.reactor.seconds() - started, ATTEMPT_DELAY)
        self.assertEqual(self.dispatcher("::1").stats["refused_too_many"], 0)
        self.assertEqual(self.endpoint._serverLoads.get("127.0.0.1", self.reactor.seconds()),
                         second.transport.kwikConnection.pathMetrics()[0].server_load)

    def test_without_a_known_load_the_resolvers_order_stands(self) -> None:
        """Two idle servers: consecutive connections both go to the resolver's first address
        (an idle server's load, 0, keeps it first)."""
        hosts = [self.connect(seconds=1.0).transport.getPeer().host for _ in range(2)]
        self.assertEqual(hosts, ["::1", "::1"])
        self.assertEqual(self.endpoint._serverLoads.get("::1", self.reactor.seconds()), 0.0)
