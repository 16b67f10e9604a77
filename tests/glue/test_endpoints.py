"""
Tests for :mod:`kwik_twisted.endpoints` over real loopback UDP with the real reactor.

Servers, clients and certificates come from :class:`~kwik_twisted.testing.fixtures.KwikHarness`
(what the pytest fixtures use), so each test leaves the reactor clean: client connections closed
with ``closeClientConnections``, server ports stopped, no delayed calls left (trial fails a test
that leaves any).
"""

from __future__ import annotations

import socket

from twisted.internet import defer, error, reactor, task
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IListeningPort, IStreamClientEndpoint, IStreamServerEndpoint
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from kwik_twisted.endpoints import KwikClientEndpoint, KwikHandshakeError, KwikServerEndpoint
from kwik_twisted.testing.fixtures import KwikHarness, writeCertificates
from kwik_twisted.testing.pair import client_config, dev_certificates

from .fakes import Collect, Echo, FakeNameResolver

TIMEOUT = 10


class CountingFactory(Factory):
    """Counts doStart/doStop and remembers the protocols it built."""

    protocol = Echo

    def __init__(self, protocol=Echo) -> None:
        self.protocol = protocol
        self.starts = 0
        self.stops = 0
        self.built: list = []

    def doStart(self) -> None:
        self.starts += 1
        super().doStart()

    def doStop(self) -> None:
        self.stops += 1
        super().doStop()

    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        self.built.append((protocol, addr))
        return protocol


class FakeResolver:
    """The real reactor, with a name resolver (``nameResolver``) that knows only ``names``."""

    def __init__(self, names: dict) -> None:
        self.nameResolver = FakeNameResolver(names)

    @property
    def asked(self) -> list:
        """Every name looked up."""
        return self.nameResolver.asked

    def __getattr__(self, name):
        return getattr(reactor, name)


class EndpointTestCase(TestCase):
    """Helpers: a listening server, clients, and cleanup."""

    timeout = 20

    def setUp(self) -> None:
        self.kwik = KwikHarness(reactor, writeCertificates(self.mktemp()))
        self.addCleanup(self.kwik.cleanup)

    def listen(self, factory=None, interface: str = "127.0.0.1", **kw):
        """Listen on a free port; stop listening at cleanup."""
        return self.kwik.listen(factory or CountingFactory(), interface=interface, **kw)

    def client(self, port, host: str = "127.0.0.1", react=reactor, portNumber: int = 9,
               **kw) -> KwikClientEndpoint:
        """A client endpoint for ``port``; its reactor's client connections close at cleanup."""
        kw.setdefault("timeout", TIMEOUT)
        return self.kwik.clientEndpoint(portNumber if port is None else port, host=host,
                                        reactor=react, **kw)

    @defer.inlineCallbacks
    def roundTrip(self, protocol, data: bytes = b"hello"):
        """Write ``data`` and wait for the echo."""
        protocol.expected = len(data)
        protocol.transport.write(data)
        echoed = yield protocol.received
        self.assertEqual(echoed, data)


class ServerEndpointTests(EndpointTestCase):
    """KwikServerEndpoint and its listening port."""

    @defer.inlineCallbacks
    def test_endpoints_and_port_provide_their_interfaces(self) -> None:
        """The endpoints and the listening port verify against their interfaces."""
        port = yield self.listen()
        self.assertTrue(verifyObject(IListeningPort, port))
        server = KwikServerEndpoint(reactor, 0, config=self.kwik.serverConfig())
        self.assertTrue(verifyObject(IStreamServerEndpoint, server))
        self.assertTrue(verifyObject(IStreamClientEndpoint, self.client(port)))

    @defer.inlineCallbacks
    def test_port_zero_reports_the_bound_port(self) -> None:
        """Listening on port 0: getHost() gives the real UDP address."""
        port = yield self.listen()
        host = port.getHost()
        self.assertIsInstance(host, IPv4Address)
        self.assertEqual((host.type, host.host), ("UDP", "127.0.0.1"))
        self.assertNotEqual(host.port, 0)

    @defer.inlineCallbacks
    def test_port_in_use_fails_with_cannot_listen(self) -> None:
        """Listening on a UDP port already bound fails with CannotListenError."""
        taken = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
        self.addCleanup(taken.stopListening)
        endpoint = KwikServerEndpoint(reactor, taken.getHost().port,
                                      config=self.kwik.serverConfig(), interface="127.0.0.1")
        yield self.assertFailure(endpoint.listen(CountingFactory()), error.CannotListenError)

    @defer.inlineCallbacks
    def test_factory_started_on_listen_and_stopped_on_stop(self) -> None:
        """doStart runs when listening starts, doStop when stopListening completes."""
        factory = CountingFactory()
        port = yield KwikServerEndpoint(reactor, 0, config=self.kwik.serverConfig(),
                                        interface="127.0.0.1").listen(factory)
        self.assertEqual((factory.starts, factory.stops), (1, 0))
        yield port.stopListening()
        self.assertEqual((factory.starts, factory.stops), (1, 1))

    @defer.inlineCallbacks
    def test_each_stream_gets_a_protocol_with_the_peer_address(self) -> None:
        """buildProtocol is called per stream with the client's UDP address."""
        factory = CountingFactory()
        port = yield self.listen(factory)
        proto = yield self.client(port).connect(Factory.forProtocol(Collect))
        yield self.roundTrip(proto)
        [(server, addr)] = factory.built
        self.assertEqual(addr, proto.transport.getHost())
        self.assertEqual(server.transport.getPeer(), addr)


class ClientEndpointTests(EndpointTestCase):
    """KwikClientEndpoint: connecting, pooling, failures."""

    @defer.inlineCallbacks
    def test_connect_fires_with_a_connected_protocol(self) -> None:
        """connect() fires with the protocol, connected, after the handshake; data round-trips."""
        port = yield self.listen()
        proto = yield self.client(port).connect(Factory.forProtocol(Collect))
        self.assertIsNotNone(proto.transport)
        yield self.roundTrip(proto, b"x" * 100000)

    @defer.inlineCallbacks
    def test_client_factory_started_and_stopped_around_the_stream(self) -> None:
        """The client factory gets doStart on connect and doStop after connectionLost."""
        port = yield self.listen()
        factory = CountingFactory(Collect)
        proto = yield self.client(port).connect(factory)
        self.assertEqual((factory.starts, factory.stops), (1, 0))
        yield self.roundTrip(proto)
        proto.transport.loseConnection()
        yield proto.lost
        yield task.deferLater(reactor, 0, lambda: None)  # doStop follows connectionLost
        self.assertEqual((factory.starts, factory.stops), (1, 1))

    @defer.inlineCallbacks
    def test_two_connects_share_one_connection(self) -> None:
        """Two connects to one server share a Kwik connection: two streams, one client port."""
        factory = CountingFactory()
        port = yield self.listen(factory)
        endpoint = self.client(port)
        first, second = yield defer.gatherResults([
            endpoint.connect(Factory.forProtocol(Collect)),
            self.client(port).connect(Factory.forProtocol(Collect)),
        ])
        yield self.roundTrip(first, b"one")
        yield self.roundTrip(second, b"two")
        self.assertEqual(first.transport.getHost(), second.transport.getHost())
        self.assertNotEqual(first.transport.streamId, second.transport.streamId)
        self.assertEqual(len({addr for _, addr in factory.built}), 1)

    @defer.inlineCallbacks
    def test_reuse_false_opens_a_new_connection(self) -> None:
        """With reuse=False each connect has a connection (and client UDP port) of its own."""
        factory = CountingFactory()
        port = yield self.listen(factory)
        first = yield self.client(port, reuse=False).connect(Factory.forProtocol(Collect))
        second = yield self.client(port, reuse=False).connect(Factory.forProtocol(Collect))
        yield self.roundTrip(first)
        yield self.roundTrip(second)
        self.assertNotEqual(first.transport.getHost(), second.transport.getHost())
        self.assertEqual(len({addr for _, addr in factory.built}), 2)

    @defer.inlineCallbacks
    def test_idle_connection_is_reused_by_a_later_connect(self) -> None:
        """A connection whose streams closed lingers: the next connect reuses it."""
        port = yield self.listen()
        endpoint = self.client(port)
        first = yield endpoint.connect(Factory.forProtocol(Collect))
        yield self.roundTrip(first)
        address = first.transport.getHost()
        first.transport.loseConnection()
        reason = yield first.lost
        self.assertIsInstance(reason, error.ConnectionDone)
        second = yield endpoint.connect(Factory.forProtocol(Collect))
        yield self.roundTrip(second)
        self.assertEqual(second.transport.getHost(), address)

    @defer.inlineCallbacks
    def test_timeout_against_a_silent_port(self) -> None:
        """A UDP port that never answers: TimeoutError after ``timeout``; factory stopped."""
        silent = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        factory = CountingFactory(Collect)
        d = self.client(silent, timeout=0.3).connect(factory)
        yield self.assertFailure(d, error.TimeoutError)
        self.assertEqual((factory.starts, factory.stops), (1, 1))

    @defer.inlineCallbacks
    def test_closed_port_is_refused(self) -> None:
        """Nothing listening: the ICMP error fails the attempt at once (ConnectionRefusedError)."""
        closed = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
        address = closed.getHost()
        yield closed.stopListening()
        d = self.client(None, timeout=5, portNumber=address.port).connect(
            Factory.forProtocol(Collect))
        yield self.assertFailure(d, error.ConnectionRefusedError)

    @defer.inlineCallbacks
    def test_handshake_failure_reports_the_tls_reason(self) -> None:
        """A certificate from an unknown CA: KwikHandshakeError (a ConnectError) saying why."""
        port = yield self.listen()
        stranger = dev_certificates("stranger.example")
        config = client_config(stranger, server_name="localhost")
        d = self.client(port, config=config).connect(Factory.forProtocol(Collect))
        failure = yield self.assertFailure(d, KwikHandshakeError)
        self.assertIsInstance(failure, error.ConnectError)
        self.assertIn("certificate", str(failure))

    @defer.inlineCallbacks
    def test_cancel_fails_with_connecting_cancelled(self) -> None:
        """Cancelling connect() fails it with ConnectingCancelledError and stops the factory."""
        silent = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        factory = CountingFactory(Collect)
        d = self.client(silent).connect(factory)
        d.cancel()
        failure = yield self.assertFailure(d, error.ConnectingCancelledError)
        self.assertEqual(failure.address.port, silent.getHost().port)
        self.assertEqual((factory.starts, factory.stops), (1, 1))

    @defer.inlineCallbacks
    def test_unresolvable_host_fails_with_dns_lookup_error(self) -> None:
        """A host name the resolver does not know: DNSLookupError."""
        resolver = FakeResolver({})
        endpoint = self.client(None, host="nowhere.invalid", react=resolver)
        yield self.assertFailure(endpoint.connect(Factory.forProtocol(Collect)),
                                 error.DNSLookupError)
        self.assertEqual(resolver.asked, ["nowhere.invalid"])

    @defer.inlineCallbacks
    def test_host_names_are_resolved_and_checked_against_the_certificate(self) -> None:
        """A host name is resolved, and by default the certificate is checked against it."""
        port = yield self.listen()
        resolver = FakeResolver({"localhost": "127.0.0.1"})
        config = self.kwik.clientConfig(serverName=None)
        proto = yield self.client(port, host="localhost", react=resolver,
                                  config=config).connect(Factory.forProtocol(Collect))
        yield self.roundTrip(proto)
        self.assertEqual(resolver.asked, ["localhost"])

    @defer.inlineCallbacks
    def test_ip_literals_are_not_resolved(self) -> None:
        """An IP literal host never reaches the resolver."""
        port = yield self.listen()
        resolver = FakeResolver({})
        proto = yield self.client(port, react=resolver).connect(Factory.forProtocol(Collect))
        yield self.roundTrip(proto)
        self.assertEqual(resolver.asked, [])

    @defer.inlineCallbacks
    def test_ipv6_loopback(self) -> None:
        """Server on ::1, client to the IPv6 literal: addresses are IPv6Address."""
        if not socket.has_ipv6:
            raise self.skipTest("no IPv6")
        try:
            port = yield self.listen(interface="::1")
        except error.CannotListenError:
            raise self.skipTest("cannot bind ::1") from None
        proto = yield self.client(port, host="::1").connect(Factory.forProtocol(Collect))
        yield self.roundTrip(proto)
        self.assertIsInstance(proto.transport.getPeer(), IPv6Address)
        self.assertEqual(proto.transport.getPeer().host, "::1")
