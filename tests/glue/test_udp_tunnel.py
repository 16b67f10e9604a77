"""
UDP through Kwik datagrams (:mod:`kwik_twisted.glue.udptunnel`) over the fake UDP reactor: an
entrance on a UDP port, a Kwik connection, an exit to a UDP echo target; and the ``twistd kwik``
options that build them.
"""

from __future__ import annotations

from twisted.application.internet import UDPServer
from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactor
from twisted.names import client as names_client
from twisted.names import dns
from twisted.names import hosts as names_hosts
from twisted.names import server as names_server
from twisted.python import usage
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kwik_twisted import tap
from kwik_twisted.glue.udptunnel import (
    FLOW_IDLE,
    UDPTunnelEntrance,
    UDPTunnelExitFactory,
    parseUDP,
)
from kwik_twisted.testing.fixtures import KwikHarness, writeCertificates
from tests.certs import fixtures

from .fakes import FakeKwik

TARGET = ("127.0.0.1", 5353)
ENTRANCE = ("127.0.0.1", 5300)


def quoted(path) -> str:
    """A path as an endpoint-string value."""
    return str(path).replace("\\", "\\\\").replace(":", "\\:")


def kwik_client() -> str:
    """A kwik: client endpoint string trusting the test CA."""
    return f"kwik:host=127.0.0.1:port=4433:trustRoots={quoted(fixtures().ca_path)}"


def kwik_server() -> str:
    """A kwik: server endpoint string with the test server identity."""
    server = fixtures().server
    return (f"kwik:4433:privateKey={quoted(server.key_path)}:"
            f"certKey={quoted(server.chain_path)}")


class EchoTarget(DatagramProtocol):
    """A UDP server answering ``echo:`` + each datagram to its sender."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagramReceived(self, data, addr):
        self.received.append(data)
        self.transport.write(b"echo:" + data, addr)


class App(DatagramProtocol):
    """A local UDP application: records what comes back."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagramReceived(self, data, addr):
        self.received.append(data)

    def send(self, data: bytes) -> None:
        self.transport.write(data, ENTRANCE)


class TunnelTests(SynchronousTestCase):
    """Datagrams from local UDP peers to the target and back."""

    def setUp(self) -> None:
        exit_factory = UDPTunnelExitFactory(None, *TARGET)
        self.kwik = FakeKwik(serverProtocol=lambda: exit_factory.buildProtocol(None))
        self.reactor = reactor = self.kwik.reactor
        exit_factory.reactor = reactor
        self.exit = exit_factory
        self.target = EchoTarget()
        reactor.listenUDP(TARGET[1], self.target, interface=TARGET[0])
        self.entrance = UDPTunnelEntrance(reactor, self.kwik.client)
        reactor.listenUDP(ENTRANCE[1], self.entrance, interface=ENTRANCE[0])

    def app(self, port: int) -> App:
        app = App()
        self.reactor.listenUDP(port, app, interface="127.0.0.1")
        return app

    def test_datagrams_reach_the_target_and_replies_come_back(self) -> None:
        """Datagrams sent to the entrance (also before the Kwik connection exists) reach the UDP
        target unchanged, and its replies reach the sender."""
        app = self.app(6000)
        app.send(b"query 1")
        app.send(b"query 2")
        self.kwik.pump()
        self.assertEqual(self.target.received, [b"query 1", b"query 2"])
        self.assertEqual(app.received, [b"echo:query 1", b"echo:query 2"])
        self.assertEqual(self.entrance.stats["udp_tunnel_sent"], 2)
        self.assertEqual(self.entrance.stats["udp_tunnel_received"], 2)

    def test_each_local_peer_is_a_flow_of_its_own(self) -> None:
        """Two local peers get their own replies only, each flow through its own stream and
        its own exit socket."""
        first, second = self.app(6001), self.app(6002)
        first.send(b"from first")
        second.send(b"from second")
        self.kwik.pump()
        first.send(b"again")
        self.kwik.pump()
        self.assertEqual(first.received, [b"echo:from first", b"echo:again"])
        self.assertEqual(second.received, [b"echo:from second"])
        self.assertEqual(len(self.entrance.flows), 2)

    def test_an_idle_flow_is_closed_at_both_ends(self) -> None:
        """A flow silent for FLOW_IDLE seconds is forgotten by the entrance and its exit socket
        is closed; a later datagram opens a new flow that works."""
        app = self.app(6003)
        app.send(b"one")
        self.kwik.pump()
        ports = set(self.reactor.ports)
        self.kwik.pump(FLOW_IDLE + 5)
        self.assertEqual(self.entrance.flows, {})
        self.assertLess(len(set(self.reactor.ports)), len(ports))
        app.send(b"two")
        self.kwik.pump()
        self.assertEqual(app.received, [b"echo:one", b"echo:two"])

    def test_a_datagram_too_large_for_the_tunnel_is_dropped_and_counted(self) -> None:
        """A UDP datagram larger than a Kwik datagram can carry is dropped (never fragmented)
        and counted; the flow goes on."""
        app = self.app(6004)
        app.send(b"small")
        self.kwik.pump()
        app.send(b"x" * 4000)
        app.send(b"after")
        self.kwik.pump()
        self.assertEqual(self.entrance.stats["udp_tunnel_dropped"], 1)
        self.assertEqual(app.received, [b"echo:small", b"echo:after"])


class ParseTests(SynchronousTestCase):
    """The ``udp:`` endpoint strings of ``twistd kwik``."""

    def test_listen_and_forward_forms(self) -> None:
        """udp:PORT and udp:PORT:interface=HOST listen; udp:HOST:PORT forwards (IPv6 colons
        escaped); anything else is a ValueError."""
        self.assertEqual(parseUDP("udp:5353", listen=True), ("", 5353))
        self.assertEqual(
            parseUDP("udp:53:interface=127.0.0.1", listen=True), ("127.0.0.1", 53)
        )
        self.assertEqual(parseUDP("udp:10.0.0.1:53", listen=False), ("10.0.0.1", 53))
        self.assertEqual(parseUDP("udp:\\:\\:1:53", listen=False), ("::1", 53))
        for bad, listen in (("udp:x", True), ("udp:53:foo=1", True), ("udp:53", False),
                            ("udp:h:70000", False), ("tcp:53", True)):
            self.assertRaises(ValueError, parseUDP, bad, listen=listen)


class TapTests(SynchronousTestCase):
    """``twistd kwik`` with UDP."""

    def options(self, *argv: str) -> tap.Options:
        options = tap.Options(reactor=MemoryReactor())
        options.parseOptions(list(argv))
        return options

    def test_udp_listen_with_a_kwik_forward_is_an_entrance(self) -> None:
        """--listen udp:PORT --forward kwik:... builds a UDPServer around a tunnel entrance."""
        top = tap.makeService(self.options("--listen", "udp:5353", "--forward", kwik_client()))
        (service,) = list(top)
        self.assertIsInstance(service, UDPServer)
        self.assertIsInstance(service.args[1], UDPTunnelEntrance)

    def test_udp_forward_makes_the_kwik_listens_exits(self) -> None:
        """--forward udp:HOST:PORT makes every --listen kwik: serve a tunnel exit."""
        options = self.options("--listen", kwik_server(), "--forward", "udp:127.0.0.1:53")
        top = tap.makeService(options)
        (service,) = list(top)
        self.assertIsInstance(service.factory, UDPTunnelExitFactory)
        self.assertEqual((service.factory.host, service.factory.port), ("127.0.0.1", 53))

    def test_bad_combinations_are_usage_errors(self) -> None:
        """A UDP listen needs a kwik: forward; a UDP forward needs kwik: listens; a bad UDP
        string is a usage error naming the argument."""
        for argv in (("--listen", "udp:5353", "--echo"),
                     ("--listen", "udp:5353", "--forward", "tcp:host=1.2.3.4:port=53"),
                     ("--listen", "tcp:8080", "--forward", "udp:127.0.0.1:53"),
                     ("--listen", "udp:nope", "--forward", kwik_client())):
            self.assertRaises(usage.UsageError, self.options, *argv)


class RealDNSTests(TestCase):
    """A real DNS query over loopback sockets, through an entrance and an exit in this process:
    a twisted.names resolver asks a twisted.names server behind the tunnel."""

    timeout = 20

    def setUp(self) -> None:
        self.kwik = KwikHarness(reactor, writeCertificates(self.mktemp()))
        self.addCleanup(self.kwik.cleanup)

    def udp(self, protocol) -> int:
        """Bind ``protocol`` to a free loopback UDP port (closed at cleanup); return the port."""
        port = reactor.listenUDP(0, protocol, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    @defer.inlineCallbacks
    def test_a_dns_query_is_answered_through_the_tunnel(self):
        """lookupAddress through the entrance gets the A record the server behind the exit
        holds; the query and the answer went as Kwik datagrams."""
        hosts = FilePath(self.mktemp())
        hosts.setContent(b"10.1.2.3 tunnel.example\n")
        factory = names_server.DNSServerFactory(clients=[names_hosts.Resolver(hosts.path)])
        dns_port = self.udp(dns.DNSDatagramProtocol(factory))
        exit_factory = UDPTunnelExitFactory(reactor, "127.0.0.1", dns_port)
        kwik_port = yield self.kwik.listen(exit_factory)
        entrance = UDPTunnelEntrance(reactor, self.kwik.clientEndpoint(kwik_port))
        entrance_port = self.udp(entrance)
        resolver = names_client.Resolver(servers=[("127.0.0.1", entrance_port)])
        answers, _, _ = yield resolver.lookupAddress("tunnel.example", timeout=[5])
        self.assertEqual([a.payload.dottedQuad() for a in answers], ["10.1.2.3"])
        self.assertGreaterEqual(entrance.stats["udp_tunnel_sent"], 1)
        self.assertGreaterEqual(exit_factory.stats["udp_tunnel_received"], 1)
        for flow in list(entrance.flows.values()):
            flow.close()
