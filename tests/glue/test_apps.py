"""
Unmodified Twisted applications over Kwik endpoints, on real loopback UDP.

A ``LineReceiver`` chat, a ``twisted.web`` ``Site`` serving a static file fetched with ``Agent``,
and ``twisted.protocols.portforward`` relaying a Kwik stream to a TCP echo server: if these work
untouched, the stream transport behaves like a TCP transport where it matters.
"""

from __future__ import annotations

import hashlib
import os

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.basic import LineReceiver
from twisted.protocols.portforward import ProxyFactory
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody
from twisted.web.iweb import IAgentEndpointFactory
from twisted.web.server import Site
from twisted.web.static import File
from zope.interface import implementer

from kwik_twisted.endpoints import KwikClientEndpoint
from kwik_twisted.testing.fixtures import KwikHarness, writeCertificates


class AppTestCase(TestCase):
    """
    Start Kwik servers; clean up servers and client connections.

    The servers, clients and certificates come from
    :class:`~kwik_twisted.testing.fixtures.KwikHarness`, the helper behind the pytest fixtures.
    """

    timeout = 30

    def setUp(self) -> None:
        self.kwik = KwikHarness(reactor, writeCertificates(self.mktemp()))
        self.addCleanup(self.kwik.cleanup)

    @defer.inlineCallbacks
    def serve(self, factory):
        """Serve ``factory`` over Kwik on a free loopback port; return the port number."""
        port = yield self.kwik.listen(factory)
        return port.getHost().port

    def endpoint(self, port: int, host: str = "127.0.0.1") -> KwikClientEndpoint:
        """A client endpoint towards a Kwik server on loopback."""
        return self.kwik.clientEndpoint(port, host=host)


class ChatServer(LineReceiver):
    """Relays each line to every other member as ``name: line``; the first line is the name."""

    def connectionMade(self) -> None:
        self.name = None

    def lineReceived(self, line: bytes) -> None:
        if self.name is None:
            self.name = line
            self.factory.members.append(self)
            for member in self.factory.members:
                member.sendLine(b"* " + line + b" joined")
            return
        for member in self.factory.members:
            if member is not self:
                member.sendLine(self.name + b": " + line)

    def connectionLost(self, reason) -> None:
        if self in self.factory.members:
            self.factory.members.remove(self)


class ChatClient(LineReceiver):
    """Collects lines; ``waitFor(n)`` fires when n lines arrived."""

    def connectionMade(self) -> None:
        self.lines: list[bytes] = []
        self._waiting: list = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)
        for n, d in list(self._waiting):
            if len(self.lines) >= n:
                self._waiting.remove((n, d))
                d.callback(self.lines[:])

    def waitFor(self, n: int) -> defer.Deferred:
        d = defer.Deferred()
        self._waiting.append((n, d))
        if len(self.lines) >= n:
            self._waiting.remove((n, d))
            d.callback(self.lines[:])
        return d


class ChatTests(AppTestCase):
    """twisted.protocols.basic.LineReceiver over Kwik."""

    @defer.inlineCallbacks
    def test_line_receiver_chat(self) -> None:
        """Two LineReceiver clients chat through a LineReceiver server."""
        factory = Factory.forProtocol(ChatServer)
        factory.members = []
        port = yield self.serve(factory)
        alice = yield self.endpoint(port).connect(Factory.forProtocol(ChatClient))
        alice.sendLine(b"alice")
        yield alice.waitFor(1)
        bob = yield self.endpoint(port).connect(Factory.forProtocol(ChatClient))
        bob.sendLine(b"bob")
        yield alice.waitFor(2)
        alice.sendLine(b"hello bob")
        bob_lines = yield bob.waitFor(2)
        self.assertEqual(bob_lines, [b"* bob joined", b"alice: hello bob"])
        bob.sendLine(b"hi alice")
        alice_lines = yield alice.waitFor(3)
        self.assertEqual(alice_lines, [b"* alice joined", b"* bob joined", b"bob: hi alice"])


@implementer(IAgentEndpointFactory)
class KwikAgentEndpoints:
    """Agent's endpoint factory: every http URI is fetched over Kwik (through ``harness``)."""

    def __init__(self, harness: KwikHarness) -> None:
        self.harness = harness

    def endpointForURI(self, uri):
        return self.harness.clientEndpoint(uri.port, host=uri.host.decode("ascii"))


class WebTests(AppTestCase):
    """twisted.web over Kwik."""

    @defer.inlineCallbacks
    def test_static_file_through_agent(self) -> None:
        """A 6 MiB static file served by Site arrives through Agent with the right SHA-256."""
        directory = FilePath(self.mktemp())
        directory.makedirs()
        payload = os.urandom(6 * 1024 * 1024)
        directory.child("big.bin").setContent(payload)
        port = yield self.serve(Site(File(directory.path)))
        agent = Agent.usingEndpointFactory(reactor, KwikAgentEndpoints(self.kwik))
        response = yield agent.request(b"GET", b"http://127.0.0.1:%d/big.bin" % port)
        self.assertEqual(response.code, 200)
        body = yield readBody(response)
        self.assertEqual(hashlib.sha256(body).hexdigest(), hashlib.sha256(payload).hexdigest())

    @defer.inlineCallbacks
    def test_sequential_requests(self) -> None:
        """Several requests in a row each get the right answer (streams come and go)."""
        directory = FilePath(self.mktemp())
        directory.makedirs()
        for name in ("a", "b", "c"):
            directory.child(name).setContent(name.encode() * 1000)
        port = yield self.serve(Site(File(directory.path)))
        agent = Agent.usingEndpointFactory(reactor, KwikAgentEndpoints(self.kwik))
        for name in ("a", "b", "c"):
            url = b"http://127.0.0.1:%d/%s" % (port, name.encode())
            response = yield agent.request(b"GET", url)
            body = yield readBody(response)
            self.assertEqual(body, name.encode() * 1000)


class Echo(Protocol):
    """A TCP echo."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class Collect(Protocol):
    """Collects bytes until ``expected`` arrived."""

    def connectionMade(self) -> None:
        self.buffer = b""
        self.done = defer.Deferred()
        self.expected = 0

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= self.expected and not self.done.called:
            self.done.callback(self.buffer)


class PortForwardTests(AppTestCase):
    """twisted.protocols.portforward over Kwik."""

    @defer.inlineCallbacks
    def test_portforward_to_tcp_echo(self) -> None:
        """A ProxyFactory on a Kwik server relays a stream to a TCP echo server and back."""
        echo = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
        self.addCleanup(echo.stopListening)
        port = yield self.serve(ProxyFactory("127.0.0.1", echo.getHost().port))
        client = yield self.endpoint(port).connect(Factory.forProtocol(Collect))
        payload = os.urandom(2 * 1024 * 1024)
        client.expected = len(payload)
        client.transport.write(payload)
        echoed = yield client.done
        self.assertEqual(echoed, payload)
        client.transport.loseConnection()
