"""
Dual-stack name lookup in the client endpoint (:mod:`kwik_twisted.glue.dualstack`), on the fake
UDP reactor: every IPv6 and IPv4 address of a name comes from the reactor's ``nameResolver``, and
handshakes to them start in turn with a head start, the first to complete winning.  Deterministic:
real Kwik handshakes in fake time.
"""

from __future__ import annotations

from twisted.internet import error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.entropy import SeededEntropy
from kwik_twisted.endpoints import KwikClientEndpoint, KwikServerEndpoint
from kwik_twisted.glue.dualstack import ATTEMPT_DELAY, AddressRace, resolveAddresses
from kwik_twisted.testing.pair import client_config, server_config

from .fakes import SERVER_PORT, FakeNameResolver, FakeUDPReactor


class Echo(Protocol):
    """Echoes."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class DualStackNetwork(SynchronousTestCase):
    """A fake network whose name resolver knows ``names``; servers listen where told."""

    def setUp(self) -> None:
        self.reactor = FakeUDPReactor()
        self.built: list = []

    def listen(self, interface: str) -> None:
        """A Kwik echo server on ``interface``, port SERVER_PORT."""
        factory = Factory.forProtocol(Echo)
        server = KwikServerEndpoint(self.reactor, SERVER_PORT, config=server_config(),
                                    interface=interface, entropy=SeededEntropy(1))
        server.listen(factory)

    def connect(self, host: str, seconds: float = 0.0) -> list:
        """connect() to ``host``; run the network ``seconds``; return what the Deferred fired
        with (empty if it did not)."""
        endpoint = KwikClientEndpoint(self.reactor, host, SERVER_PORT, config=client_config(),
                                      entropy=SeededEntropy(7), timeout=5)
        results: list = []
        endpoint.connect(Factory.forProtocol(Protocol)).addBoth(results.append)
        self.reactor.pump(seconds)
        return results

    def clientPorts(self) -> list[tuple]:
        """The addresses of the UDP ports still bound other than the servers'."""
        return sorted(addr for addr in self.reactor.ports if addr[1] != SERVER_PORT)


class ResolutionTests(DualStackNetwork):
    """Names resolve to all their addresses, through the reactor's name resolver."""

    def test_an_ipv6_only_name_resolves_and_connects(self) -> None:
        """A name with only an IPv6 address reaches a server listening on ::1; the stream's
        peer is an IPv6Address."""
        self.reactor.names["v6only.example"] = ["::1"]
        self.listen("::1")
        (protocol,) = self.connect("v6only.example")
        peer = protocol.transport.getPeer()
        self.assertIsInstance(peer, IPv6Address)
        self.assertEqual((peer.host, peer.port), ("::1", SERVER_PORT))
        self.assertEqual(self.reactor.nameResolver.asked, ["v6only.example"])

    def test_localhost_reaches_a_server_on_ipv6_loopback(self) -> None:
        """``localhost`` resolving to ::1 and 127.0.0.1 reaches a server that listens only on
        ::1."""
        self.reactor.names["localhost"] = ["::1", "127.0.0.1"]
        self.listen("::1")
        (protocol,) = self.connect("localhost")
        self.assertEqual(protocol.transport.getPeer().host, "::1")

    def test_localhost_means_both_loopbacks_whatever_the_resolver_says(self) -> None:
        """A hosts file that maps ``localhost`` to 127.0.0.1 only (as this machine's does) still
        reaches a server listening only on ::1 (RFC 6761, 6.3): the missing loopback is added
        after the resolver's answers, and a name under ``.localhost`` is treated the same."""
        self.reactor.names["localhost"] = ["127.0.0.1"]
        self.listen("::1")
        (protocol,) = self.connect("localhost")
        self.assertEqual(protocol.transport.getPeer().host, "::1")
        results: list = []
        resolveAddresses(self.reactor, "localhost", 443).addCallback(results.append)
        resolveAddresses(self.reactor, "App.Localhost.", 443).addCallback(results.append)
        self.assertEqual(results, [["127.0.0.1", "::1"], ["::1", "127.0.0.1"]])

    def test_resolve_addresses_asks_for_both_families_in_resolver_order(self) -> None:
        """resolveAddresses reports every address once, in the resolver's order, asking for
        IPv4 and IPv6 datagram addresses."""
        self.reactor.names["dual.example"] = ["2001:db8::1", "192.0.2.1", "2001:db8::1"]
        results: list = []
        resolveAddresses(self.reactor, "dual.example", 443).addCallback(results.append)
        self.assertEqual(results, [["2001:db8::1", "192.0.2.1"]])

    def test_an_unknown_name_is_a_dns_lookup_error(self) -> None:
        """A name the resolver knows no address of fails the connect with DNSLookupError."""
        (failure,) = self.connect("nowhere.example")
        self.assertTrue(failure.check(error.DNSLookupError))
        self.assertEqual(self.clientPorts(), [])

    def test_a_resolver_that_raises_is_a_dns_lookup_error(self) -> None:
        """A resolver raising at once fails the connect with DNSLookupError, not a crash."""

        class Broken(FakeNameResolver):
            def resolveHostName(self, *args, **kwargs):
                raise OSError("resolver gone")

        self.reactor.installNameResolver(Broken({}))
        (failure,) = self.connect("any.example")
        self.assertTrue(failure.check(error.DNSLookupError))


class RaceTests(DualStackNetwork):
    """Handshakes to the addresses of a name race; the first to complete wins."""

    def test_a_refused_first_address_hands_over_at_once(self) -> None:
        """Nothing on ::1 (ICMP refused): the IPv4 attempt starts at once, not after the head
        start, and wins; the refused attempt's port is stopped."""
        self.reactor.names["localhost"] = ["::1", "127.0.0.1"]
        self.listen("127.0.0.1")
        (protocol,) = self.connect("localhost")
        self.assertIsInstance(protocol.transport.getPeer(), IPv4Address)
        self.assertLess(self.reactor.seconds(), ATTEMPT_DELAY)
        self.assertEqual([addr[0] for addr in self.clientPorts()], ["127.0.0.1"])

    def test_a_silent_first_address_gets_its_head_start_then_the_next_wins(self) -> None:
        """When the first address never answers, the second starts after ATTEMPT_DELAY and
        wins; the silent attempt is abandoned and its port stopped."""
        self.reactor.names["localhost"] = ["::1", "127.0.0.1"]
        self.listen("::1")
        self.listen("127.0.0.1")
        self.reactor.drop = lambda source, destination, data: destination[0] == "::1"
        results = self.connect("localhost", seconds=ATTEMPT_DELAY - 0.01)
        self.assertEqual(results, [])
        self.assertEqual([addr[0] for addr in self.clientPorts()], ["::1"])
        self.reactor.pump(0.02)
        (protocol,) = results
        self.assertEqual(protocol.transport.getPeer().host, "127.0.0.1")
        self.assertEqual([addr[0] for addr in self.clientPorts()], ["127.0.0.1"])

    def test_a_quick_first_address_is_the_only_attempt(self) -> None:
        """When the first address completes its handshake within its head start, no other
        address is tried."""
        self.reactor.names["localhost"] = ["::1", "127.0.0.1"]
        self.listen("::1")
        self.listen("127.0.0.1")
        (protocol,) = self.connect("localhost", seconds=1.0)
        self.assertEqual(protocol.transport.getPeer().host, "::1")
        self.assertEqual([addr[0] for addr in self.clientPorts()], ["::1"])

    def test_every_address_failing_fails_with_the_last_failure(self) -> None:
        """Nothing listens anywhere: the connect fails with ConnectionRefusedError once every
        address was refused, and no client port is left."""
        self.reactor.names["localhost"] = ["::1", "127.0.0.1"]
        (failure,) = self.connect("localhost")
        self.assertTrue(failure.check(error.ConnectionRefusedError))
        self.assertIn("127.0.0.1", failure.getErrorMessage())
        self.reactor.pump(1.0)
        self.assertEqual(self.clientPorts(), [])


class FakeCandidate:
    """A handshake attempt the test finishes by hand."""

    def __init__(self, address: str, log: list) -> None:
        self.address = address
        self.log = log
        self.race = None
        self.stopped = False

    def start(self, race) -> None:
        self.race = race
        self.log.append(("start", self.address))

    def stop(self) -> None:
        self.stopped = True
        self.log.append(("stop", self.address))


class AddressRaceTests(SynchronousTestCase):
    """AddressRace on its own, with a clock and hand-driven candidates."""

    def race(self, addresses):
        clock, log, results = Clock(), [], []
        candidates: dict[str, FakeCandidate] = {}

        def launch(address):
            candidates[address] = FakeCandidate(address, log)
            return candidates[address]

        race = AddressRace(clock, addresses, launch)
        race.deferred.addBoth(results.append)
        race.start()
        return race, clock, log, results, candidates

    def test_addresses_start_one_head_start_apart_in_order(self) -> None:
        """The first starts at once, each next one ATTEMPT_DELAY seconds later."""
        race, clock, log, _, _ = self.race(["a", "b", "c"])
        self.assertEqual(log, [("start", "a")])
        clock.advance(ATTEMPT_DELAY)
        self.assertEqual(log, [("start", "a"), ("start", "b")])
        clock.advance(ATTEMPT_DELAY)
        self.assertEqual(log[-1], ("start", "c"))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_the_first_success_wins_and_the_others_stop(self) -> None:
        """A success fires the Deferred with its candidate, stops the running others and
        starts no more; a later success is stopped."""
        race, clock, log, results, candidates = self.race(["a", "b", "c"])
        clock.advance(ATTEMPT_DELAY)
        race.succeeded(candidates["b"])
        self.assertEqual(results, [candidates["b"]])
        self.assertTrue(candidates["a"].stopped)
        self.assertFalse(candidates["b"].stopped)
        self.assertEqual(clock.getDelayedCalls(), [])
        race.succeeded(candidates["a"])
        self.assertEqual(len(results), 1)

    def test_a_failure_starts_the_next_at_once(self) -> None:
        """A failed attempt is stopped and the next address starts without waiting."""
        race, clock, log, results, candidates = self.race(["a", "b"])
        race.failed(candidates["a"], Failure(error.ConnectError("no")))
        self.assertEqual(log, [("start", "a"), ("stop", "a"), ("start", "b")])
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(results, [])

    def test_all_failing_fails_with_the_last_failure(self) -> None:
        """When every attempt failed, the Deferred fails with the last failure."""
        race, clock, log, results, candidates = self.race(["a", "b"])
        clock.advance(ATTEMPT_DELAY)
        race.failed(candidates["b"], Failure(error.ConnectError("b failed")))
        self.assertEqual(results, [])
        race.failed(candidates["a"], Failure(error.ConnectError("a failed")))
        (failure,) = results
        self.assertIn("a failed", failure.getErrorMessage())

    def test_a_launch_that_raises_counts_as_a_failure(self) -> None:
        """An address whose attempt cannot even be made is skipped; with none left the race
        fails with that exception."""
        clock, results = Clock(), []

        def launch(address):
            raise OSError(f"cannot bind for {address}")

        race = AddressRace(clock, ["a", "b"], launch)
        race.deferred.addErrback(results.append)
        race.start()
        (failure,) = results
        self.assertTrue(failure.check(OSError))
        self.assertIn("b", failure.getErrorMessage())

    def test_cancel_stops_everything_and_never_fires(self) -> None:
        """cancel() stops every running attempt, starts no more, and the Deferred never
        fires, even if an attempt reports later."""
        race, clock, log, results, candidates = self.race(["a", "b"])
        race.cancel()
        self.assertTrue(candidates["a"].stopped)
        self.assertEqual(clock.getDelayedCalls(), [])
        race.succeeded(candidates["a"])
        self.assertEqual(results, [])
        self.assertFalse(race.deferred.called)


class EndpointCancellationTests(DualStackNetwork):
    """A connect() cancelled while the handshakes race stops every attempt."""

    def test_cancelling_during_the_race_stops_every_attempt(self) -> None:
        """Cancelling the connect() while two silent attempts run fails it with
        ConnectingCancelledError and stops both attempts' ports."""
        self.reactor.names["localhost"] = ["::1", "127.0.0.1"]
        self.reactor.drop = lambda source, destination, data: True
        endpoint = KwikClientEndpoint(self.reactor, "localhost", SERVER_PORT,
                                      config=client_config(), entropy=SeededEntropy(7))
        results: list = []
        d = endpoint.connect(Factory.forProtocol(Protocol))
        d.addBoth(results.append)
        self.reactor.pump(ATTEMPT_DELAY + 0.01)
        self.assertEqual(len(self.clientPorts()), 2)
        d.cancel()
        self.reactor.pump(1.0)
        (failure,) = results
        self.assertTrue(failure.check(error.ConnectingCancelledError))
        self.assertEqual(self.clientPorts(), [])


class BindAddressTests(SynchronousTestCase):
    """Which addresses a client bound to a ``bindAddress`` tries (found by review: a socket of the
    wrong family leaked, and a fixed port could not be bound twice in a row)."""

    def test_only_the_bind_address_family_is_tried(self) -> None:
        """An IPv4 bind address tries only the IPv4 addresses, an IPv6 one only the IPv6 ones;
        no bind address, or an empty host, tries them all."""
        from kwik_twisted.glue.dualstack import bindable

        both = ["::1", "127.0.0.1", "2001:db8::2", "192.0.2.7"]
        self.assertEqual(bindable(both, ("127.0.0.1", 0)), ["127.0.0.1", "192.0.2.7"])
        self.assertEqual(bindable(both, ("::", 0)), ["::1", "2001:db8::2"])
        self.assertEqual(bindable(both, None), both)
        self.assertEqual(bindable(both, ("", 0)), both)

    def test_a_fixed_port_tries_one_address(self) -> None:
        """With a fixed local port only the first address of the family is tried: a stopped
        port frees its socket a reactor turn later, so a second bind of it would fail."""
        from kwik_twisted.glue.dualstack import bindable

        self.assertEqual(bindable(["::1", "127.0.0.1", "192.0.2.7"], ("0.0.0.0", 40000)),
                         ["127.0.0.1"])
        self.assertEqual(bindable(["::1", "127.0.0.1"], ("", 40000)), ["::1"])
