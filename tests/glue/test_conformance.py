"""
Conformance of Kwik stream transports with Twisted's TCP semantics, over real loopback UDP.

Modelled on the behaviours Twisted's own connection tests check (``ConnectionTestsMixin``,
``AbortConnectionMixin`` in ``twisted.internet.test``), written afresh: a protocol must not be able
to tell a Kwik stream from a TCP connection in these respects.
"""

from __future__ import annotations

import hashlib

from twisted.internet import defer, error, reactor, task
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from kwik_twisted.endpoints import KwikClientEndpoint, KwikServerEndpoint, closeClientConnections
from kwik_twisted.testing.pair import client_config, server_config


class Peer(Protocol):
    """Records data and the connectionLost reasons; ``lost`` fires at the first connectionLost."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.reasons: list = []
        self.lost = defer.Deferred()
        self.got = None
        self.want = 0

    def expect(self, n: int) -> defer.Deferred:
        """A Deferred firing when ``n`` bytes in all have arrived."""
        self.want = n
        self.got = defer.Deferred()
        self._check()
        return self.got

    def _check(self) -> None:
        if self.got is not None and not self.got.called and len(self.received) >= self.want:
            self.got.callback(self.received)

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        self._check()

    def connectionLost(self, reason) -> None:
        self.reasons.append(reason)
        if not self.lost.called:
            self.lost.callback(reason.value)

    @property
    def received(self) -> bytes:
        return b"".join(self.chunks)


def turns(n: int = 3) -> defer.Deferred:
    """Let the reactor run ``n`` turns."""
    d = defer.succeed(None)
    for _ in range(n):
        d.addCallback(lambda _: task.deferLater(reactor, 0, lambda: None))
    return d


class ConformanceTestCase(TestCase):
    """A Kwik server on loopback whose protocols are ``serverProtocol`` instances."""

    timeout = 30
    serverProtocol = Peer

    @defer.inlineCallbacks
    def setUp(self):
        self.servers: list = []
        factory = self.factory = Factory.forProtocol(self.serverProtocol)
        build = factory.buildProtocol
        factory.buildProtocol = lambda addr: self.servers.append(build(addr)) or self.servers[-1]
        endpoint = KwikServerEndpoint(reactor, 0, config=server_config(), interface="127.0.0.1")
        self.port = yield endpoint.listen(factory)
        self.addCleanup(self.port.stopListening)
        self.addCleanup(closeClientConnections, reactor)
        self.endpoint = KwikClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port,
                                           config=client_config(), timeout=10)

    @defer.inlineCallbacks
    def pair(self, clientProtocol=Peer, hello: bytes = b"hi"):
        """Connect, say ``hello``, and return (client, server) once the server read it."""
        client = yield self.endpoint.connect(Factory.forProtocol(clientProtocol))
        client.transport.write(hello)
        while not self.servers or len(self.servers[-1].received) < len(hello):
            yield turns(1)
        return client, self.servers[-1]


class ConnectionConformanceTests(ConformanceTestCase):
    """Writing, closing and losing."""

    @defer.inlineCallbacks
    def test_many_small_writes_arrive_in_order(self) -> None:
        """A thousand small writes in one callback arrive in order as one byte stream."""
        client, server = yield self.pair()
        pieces = [b"%04d," % i for i in range(1000)]
        for piece in pieces:
            client.transport.write(piece)
        data = yield server.expect(2 + 5000)
        self.assertEqual(data, b"hi" + b"".join(pieces))

    @defer.inlineCallbacks
    def test_write_after_lose_connection_is_ignored(self) -> None:
        """Writing after loseConnection neither raises nor sends."""
        client, server = yield self.pair()
        client.transport.loseConnection()
        client.transport.write(b"late")
        client.transport.writeSequence([b"late"])
        yield server.lost
        self.assertEqual(server.received, b"hi")

    @defer.inlineCallbacks
    def test_lose_connection_from_data_received(self) -> None:
        """A server answering and closing in dataReceived: the client reads all, then Done."""

        class AnswerAndClose(Peer):
            def dataReceived(self, data):
                super().dataReceived(data)
                self.transport.write(b"bye" * 100000)
                self.transport.loseConnection()

        self.servers.clear()
        factory = Factory.forProtocol(AnswerAndClose)
        port = yield KwikServerEndpoint(reactor, 0, config=server_config(),
                                        interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        endpoint = KwikClientEndpoint(reactor, "127.0.0.1", port.getHost().port,
                                      config=client_config())
        client = yield endpoint.connect(Factory.forProtocol(Peer))
        client.transport.write(b"?")
        reason = yield client.lost
        self.assertIsInstance(reason, error.ConnectionDone)
        self.assertEqual(client.received, b"bye" * 100000)

    @defer.inlineCallbacks
    def test_connection_lost_after_paused_transport(self) -> None:
        """
        The client writes and closes; the server pauses its transport: connectionLost waits
        until the server resumes, and comes after all the data.
        """
        client, server = yield self.pair()
        server.transport.pauseProducing()
        client.transport.write(b"x" * 300000)
        client.transport.loseConnection()
        yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(server.reasons, [])
        server.transport.resumeProducing()
        reason = yield server.lost
        self.assertIsInstance(reason, error.ConnectionDone)
        self.assertEqual(server.received, b"hi" + b"x" * 300000)

    @defer.inlineCallbacks
    def test_connection_lost_exactly_once_when_the_connection_closes(self) -> None:
        """Closing the Kwik connection under open streams: ConnectionLost, once, both sides."""
        client, server = yield self.pair()
        yield closeClientConnections(reactor)
        yield server.lost
        yield turns()
        self.assertEqual(len(client.reasons), 1)
        client.reasons[0].trap(error.ConnectionLost)
        self.assertEqual(len(server.reasons), 1)
        server.reasons[0].trap(error.ConnectionLost)

    @defer.inlineCallbacks
    def test_bulk_transfer_is_exact(self) -> None:
        """Eight MiB through a streaming producer arrive with the right SHA-256."""
        client, server = yield self.pair()
        size = 8 * 1024 * 1024
        producer = Firehose(client.transport, size)
        client.transport.registerProducer(producer, True)
        producer.resumeProducing()
        data = yield server.expect(2 + size)
        self.assertEqual(hashlib.sha256(data[2:]).hexdigest(), producer.digest.hexdigest())
        self.assertGreater(producer.pauses, 0)


@implementer(IPushProducer)
class Firehose:
    """Writes ``size`` bytes of a pattern as fast as the transport allows."""

    def __init__(self, transport, size: int) -> None:
        self.transport = transport
        self.left = size
        self.paused = False
        self.pauses = 0
        self.digest = hashlib.sha256()
        self.chunk = bytes(range(256)) * 256

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.left > 0:
            piece = self.chunk[:self.left]
            self.left -= len(piece)
            self.digest.update(piece)
            self.transport.write(piece)

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def stopProducing(self) -> None:
        self.left = 0


class AbortConformanceTests(ConformanceTestCase):
    """abortConnection, as in Twisted's AbortConnectionMixin."""

    @defer.inlineCallbacks
    def test_no_data_received_after_abort(self) -> None:
        """After abortConnection in dataReceived, dataReceived is not called again."""

        class AbortOnFirst(Peer):
            def dataReceived(self, data):
                super().dataReceived(data)
                self.transport.abortConnection()

        self.factory.protocol = AbortOnFirst
        client, server = yield self.pair()
        for _ in range(20):
            client.transport.write(b"more")
        reason = yield client.lost
        self.assertIsInstance(reason, error.ConnectionLost)
        yield turns()
        self.assertEqual(server.received, b"hi")
        self.assertEqual(len(server.reasons), 1)
        server.reasons[0].trap(error.ConnectionAborted)

    @defer.inlineCallbacks
    def test_abort_twice_and_after_lost_is_harmless(self) -> None:
        """abortConnection twice, then again after connectionLost: one ConnectionAborted."""
        client, server = yield self.pair()
        client.transport.abortConnection()
        client.transport.abortConnection()
        yield client.lost
        client.transport.abortConnection()
        client.transport.resumeProducing()
        client.transport.pauseProducing()
        yield server.lost
        yield turns()
        self.assertEqual(len(client.reasons), 1)
        client.reasons[0].trap(error.ConnectionAborted)

    @defer.inlineCallbacks
    def test_abort_with_a_full_write_buffer(self) -> None:
        """Aborting with megabytes still buffered ends both sides promptly."""
        client, server = yield self.pair()
        server.transport.pauseProducing()
        client.transport.write(b"z" * (4 * 1024 * 1024))
        yield turns()
        client.transport.abortConnection()
        reason = yield client.lost
        self.assertIsInstance(reason, error.ConnectionAborted)
        reason = yield server.lost
        self.assertIsInstance(reason, error.ConnectionLost)
