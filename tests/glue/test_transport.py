"""
Tests for :class:`kwik_twisted.glue.transport.KwikStreamTransport`, over the fake UDP reactor.

Real Kwik connections (TLS, packet protection, recovery) run between a server and a client endpoint
on :class:`tests.glue.fakes.FakeUDPReactor`, in fake time, so every test is deterministic.
"""

from __future__ import annotations

from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableProtocol,
    IPushProducer,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from kwik_twisted.core.congestion import register, unregister
from kwik_twisted.core.congestion.newreno import NewReno
from kwik_twisted.endpoints import closeClientConnections
from kwik_twisted.glue.transport import KwikStreamTransport
from kwik_twisted.testing.pair import client_config, server_config

from .fakes import SERVER_PORT, FakeKwik

CHUNK = bytes(range(256)) * 256  # 64 KiB


class Recorder(Protocol):
    """Records what happens to it."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.lost: list = []
        self.made = 0

    def connectionMade(self) -> None:
        self.made += 1

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason) -> None:
        self.lost.append(reason)

    @property
    def received(self) -> bytes:
        return b"".join(self.chunks)


@implementer(IHalfCloseableProtocol)
class HalfCloser(Recorder):
    """A half-closeable recorder."""

    def __init__(self) -> None:
        super().__init__()
        self.readLost = 0
        self.writeLost = 0

    def readConnectionLost(self) -> None:
        self.readLost += 1

    def writeConnectionLost(self) -> None:
        self.writeLost += 1


@implementer(IPushProducer)
class FastProducer:
    """A streaming producer that writes as fast as it is allowed to, up to ``cap`` bytes."""

    def __init__(self, transport, cap: int) -> None:
        self.transport = transport
        self.cap = cap
        self.written = 0
        self.paused = False
        self.pauses = 0
        self.resumes = 0
        self.stopped = 0

    def run(self) -> None:
        while not self.paused and self.written < self.cap and not self.stopped:
            self.written += len(CHUNK)
            self.transport.write(CHUNK)

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False
        self.resumes += 1
        self.run()

    def stopProducing(self) -> None:
        self.stopped += 1


class PullProducer:
    """A pull producer writing one chunk per resumeProducing, ``count`` chunks in all."""

    def __init__(self, transport, count: int) -> None:
        self.transport = transport
        self.left = count
        self.calls = 0
        self.stopped = 0

    def resumeProducing(self) -> None:
        self.calls += 1
        if self.left:
            self.left -= 1
            self.transport.write(CHUNK)
        if not self.left:
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    def stopProducing(self) -> None:
        self.stopped += 1


class GlueTestCase(SynchronousTestCase):
    """A fake network with a server and a client endpoint, torn down cleanly."""

    serverProtocol = Recorder

    def setUp(self) -> None:
        self.net = FakeKwik(self.serverProtocol)
        self.addCleanup(self._tearDownNetwork)

    def _tearDownNetwork(self) -> None:
        reactor = self.net.reactor
        done = closeClientConnections(reactor)
        self.net.pump(5)
        self.successResultOf(done)
        self.successResultOf(self.net.port.stopListening())
        self.net.pump()
        self.assertEqual(reactor.getDelayedCalls(), [])

    def connect(self, protocol=Recorder):
        """Open a stream and return (client protocol, server protocol)."""
        results = self.net.connect(protocol)
        self.assertEqual(len(results), 1)
        client = results[0]
        self.assertIsInstance(client, protocol)
        return client

    def openPair(self, clientProtocol=Recorder, hello: bytes = b"hello"):
        """Open a stream and write ``hello`` so that the server builds its protocol."""
        client = self.connect(clientProtocol)
        client.transport.write(hello)
        self.net.pump(0.5)
        self.assertEqual(len(self.net.serverProtocols), 1)
        return client, self.net.serverProtocols[-1]


class InterfaceTests(GlueTestCase):
    """The transport provides what it declares."""

    def test_transport_provides_declared_interfaces(self) -> None:
        """A stream transport verifies as ITransport, ITCPTransport, IPushProducer and IConsumer."""
        client, server = self.openPair()
        for transport in (client.transport, server.transport):
            self.assertIsInstance(transport, KwikStreamTransport)
            for interface in (ITransport, ITCPTransport, IPushProducer, IConsumer):
                self.assertTrue(verifyObject(interface, transport))

    def test_addresses_are_udp_ip_addresses(self) -> None:
        """getHost/getPeer give IPv4Address objects of type UDP matching the two UDP ports."""
        client, server = self.openPair()
        self.assertEqual(client.transport.getPeer(), IPv4Address("UDP", "127.0.0.1", SERVER_PORT))
        self.assertEqual(server.transport.getHost(), IPv4Address("UDP", "127.0.0.1", SERVER_PORT))
        self.assertEqual(server.transport.getPeer(), client.transport.getHost())
        self.assertIsInstance(server.transport.getPeer(), IPv4Address)

    def test_tcp_options_are_remembered_and_harmless(self) -> None:
        """The TCP option setters are accepted and the getters report what was set."""
        client, _ = self.openPair()
        client.transport.setTcpNoDelay(False)
        client.transport.setTcpKeepAlive(True)
        self.assertFalse(client.transport.getTcpNoDelay())
        self.assertTrue(client.transport.getTcpKeepAlive())
        client.transport.write(b"still works")
        self.net.pump(0.5)
        self.assertEqual(self.net.serverProtocols[0].received, b"hellostill works")

    def test_write_refuses_text(self) -> None:
        """Writing a str raises TypeError, as Twisted's transports do."""
        client, _ = self.openPair()
        self.assertRaises(TypeError, client.transport.write, "text")

    def test_one_timer_per_connection(self) -> None:
        """An idle open connection holds exactly one delayed call on each side."""
        self.openPair()
        self.net.pump(0.5)
        self.assertEqual(len(self.net.reactor.getDelayedCalls()), 2)


class DataTests(GlueTestCase):
    """Bytes arrive whole and in order."""

    def test_writes_arrive_in_order_both_ways(self) -> None:
        """write and writeSequence, interleaved, arrive in order in both directions."""
        client, server = self.openPair()
        client.transport.writeSequence([b"a", b"b", b"c"])
        client.transport.write(b"d")
        server.transport.write(b"1")
        server.transport.writeSequence([b"2", b"3"])
        self.net.pump(0.5)
        self.assertEqual(server.received, b"helloabcd")
        self.assertEqual(client.received, b"123")

    def test_large_write_arrives_intact(self) -> None:
        """A 3 MiB write arrives byte for byte."""
        client, server = self.openPair()
        payload = CHUNK * 48
        client.transport.write(payload)
        self.net.pump(1)
        self.assertEqual(server.received, b"hello" + payload)

    def test_server_protocol_built_once_per_stream(self) -> None:
        """Two streams give two server protocols, each with its own data."""
        first, _ = self.openPair(hello=b"one")
        second = self.connect()
        second.transport.write(b"two")
        self.net.pump(0.5)
        self.assertEqual([p.received for p in self.net.serverProtocols], [b"one", b"two"])
        self.assertEqual([p.made for p in self.net.serverProtocols], [1, 1])


class CloseTests(GlueTestCase):
    """Each way of ending gives connectionLost once, with the right reason."""

    def test_lose_connection_flushes_a_large_write_first(self) -> None:
        """loseConnection right after a 3 MiB write: all bytes arrive, then ConnectionDone."""
        client, server = self.openPair()
        payload = CHUNK * 48
        client.transport.write(payload)
        client.transport.loseConnection()
        client.transport.write(b"ignored")
        self.net.pump(1)
        self.assertEqual(server.received, b"hello" + payload)
        self.assertEqual(len(server.lost), 1)
        server.lost[0].trap(error.ConnectionDone)
        self.assertEqual(len(client.lost), 1)
        client.lost[0].trap(error.ConnectionDone)

    def test_abort_connection(self) -> None:
        """abortConnection: ConnectionAborted here, ConnectionLost at the peer, writes ignored."""
        client, server = self.openPair()
        client.transport.write(CHUNK * 4)
        client.transport.abortConnection()
        self.assertEqual(client.lost, [])  # delivered on the next turn, not reentrantly
        client.transport.write(b"ignored")
        self.net.pump(1)
        self.assertEqual(len(client.lost), 1)
        client.lost[0].trap(error.ConnectionAborted)
        self.assertEqual(len(server.lost), 1)
        server.lost[0].trap(error.ConnectionLost)

    def test_server_abort_reaches_client(self) -> None:
        """A server-side abort gives the client ConnectionLost (a peer reset)."""
        client, server = self.openPair()
        server.transport.abortConnection()
        self.net.pump(1)
        server.lost[0].trap(error.ConnectionAborted)
        self.assertEqual(len(client.lost), 1)
        client.lost[0].trap(error.ConnectionLost)
        self.assertIn("reset", client.lost[0].getErrorMessage())

    def test_peer_fin_ends_an_ordinary_protocol(self) -> None:
        """A FIN from the peer ends a protocol that is not half-closeable with ConnectionDone."""
        client, server = self.openPair(HalfCloser)
        client.transport.loseWriteConnection()
        self.net.pump(1)
        self.assertEqual(len(server.lost), 1)
        server.lost[0].trap(error.ConnectionDone)
        self.assertEqual(client.readLost, 1)
        self.assertEqual(len(client.lost), 1)
        client.lost[0].trap(error.ConnectionDone)

    def test_double_close_calls_are_harmless(self) -> None:
        """loseConnection twice, then abortConnection: still one connectionLost."""
        client, server = self.openPair()
        client.transport.loseConnection()
        client.transport.loseConnection()
        client.transport.abortConnection()
        self.net.pump(1)
        self.assertEqual(len(client.lost), 1)
        self.assertEqual(len(server.lost), 1)

    def test_abort_racing_a_connection_close_reports_once(self) -> None:
        """abortConnection, then the connection closing in the same turn: one ConnectionAborted."""
        client, server = self.openPair()
        client.transport.abortConnection()
        closeClientConnections(self.net.reactor)
        self.net.pump(1)
        self.assertEqual(len(client.lost), 1)
        client.lost[0].trap(error.ConnectionAborted)
        self.assertEqual(len(server.lost), 1)

    def test_server_stopping_loses_client_streams(self) -> None:
        """stopListening closes the server's connections: client streams get ConnectionLost."""
        client, server = self.openPair()
        self.successResultOf(self.net.port.stopListening())
        self.net.pump(1)
        self.assertEqual(len(server.lost), 1)
        server.lost[0].trap(error.ConnectionLost)
        self.assertEqual(len(client.lost), 1)
        client.lost[0].trap(error.ConnectionLost)

    def test_idle_timeout_loses_streams(self) -> None:
        """A silent connection times out: both streams get ConnectionLost mentioning the timeout."""
        client, server = self.openPair()
        self.net.reactor.drop = lambda source, destination, data: True
        self.net.pump(40)
        self.assertEqual(len(client.lost), 1)
        client.lost[0].trap(error.ConnectionLost)
        self.assertIn("idle timeout", client.lost[0].getErrorMessage())
        self.assertEqual(len(server.lost), 1)

    def test_protocol_exception_resets_only_its_stream(self) -> None:
        """An exception in dataReceived is logged and ends that stream only, with that error."""

        class Exploding(Recorder):
            def dataReceived(self, data):
                if data == b"boom":
                    raise ZeroDivisionError("boom")
                super().dataReceived(data)

        self.net.serverFactory.protocol = Exploding
        good, goodServer = self.openPair(hello=b"fine")
        bad = self.connect()
        bad.transport.write(b"boom")
        self.net.pump(1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        badServer = self.net.serverProtocols[1]
        badServer.lost[0].trap(ZeroDivisionError)
        bad.lost[0].trap(error.ConnectionLost)
        good.transport.write(b" still")
        self.net.pump(0.5)
        self.assertEqual(goodServer.received, b"fine still")
        self.assertEqual(good.lost, [])


class HalfCloseTests(GlueTestCase):
    """IHalfCloseableProtocol on both sides."""

    serverProtocol = HalfCloser

    def test_half_close_both_ways(self) -> None:
        """
        Client FIN: the server reads EOF and keeps writing; server FIN: the client reads EOF;
        then both get ConnectionDone once.
        """
        client, server = self.openPair(HalfCloser)
        client.transport.loseWriteConnection()
        self.net.pump(1)
        self.assertEqual((server.readLost, client.writeLost), (1, 1))
        self.assertEqual(server.lost, [])
        server.transport.write(b"after your FIN")
        self.net.pump(1)
        self.assertEqual(client.received, b"after your FIN")
        server.transport.loseWriteConnection()
        self.net.pump(1)
        self.assertEqual((client.readLost, server.writeLost), (1, 1))
        for protocol in (client, server):
            self.assertEqual(len(protocol.lost), 1)
            protocol.lost[0].trap(error.ConnectionDone)


class ProducerTests(GlueTestCase):
    """Flow control between producers, transports and the network."""

    def test_paused_reader_holds_data_until_resumed(self) -> None:
        """A paused transport delivers nothing; after resumeProducing all arrives in order."""
        client, server = self.openPair()
        server.transport.pauseProducing()
        payload = CHUNK * 8
        client.transport.write(payload)
        self.net.pump(1)
        self.assertEqual(server.received, b"hello")
        server.transport.resumeProducing()
        self.net.pump(1)
        self.assertEqual(server.received, b"hello" + payload)

    def test_pausing_inside_data_received_stops_delivery_at_once(self) -> None:
        """Pausing in dataReceived stops delivery at once, even of data already read."""

        class PauseOnData(Recorder):
            whilePaused = 0
            paused = False

            def dataReceived(self, data):
                if self.paused:
                    self.whilePaused += 1
                super().dataReceived(data)
                if len(self.chunks) == 2:
                    self.paused = True
                    self.transport.pauseProducing()

        self.net.serverFactory.protocol = PauseOnData
        client, server = self.openPair()
        for _ in range(20):
            client.transport.write(CHUNK)
            self.net.pump(0)
        self.net.pump(1)
        self.assertEqual((len(server.chunks), server.whilePaused), (2, 0))
        server.paused = False
        server.transport.resumeProducing()
        self.net.pump(1)
        self.assertEqual(server.received, b"hello" + CHUNK * 20)

    def test_fast_producer_memory_is_bounded(self) -> None:
        """
        With the reader paused, a fast streaming producer is paused after at most the peer's
        window plus the send buffer (plus one chunk); once the reader resumes, all arrives.
        """
        client, server = self.openPair()
        server.transport.pauseProducing()
        producer = FastProducer(client.transport, cap=64 * 1024 * 1024)
        client.transport.registerProducer(producer, True)
        producer.run()
        self.net.pump(2)
        config = client_config()
        bound = config.initial_max_stream_data + config.stream_send_buffer + len(CHUNK)
        self.assertTrue(producer.paused)
        self.assertLessEqual(producer.written, bound)
        self.assertGreater(producer.written, 0)
        server.transport.resumeProducing()
        for _ in range(50):
            self.net.pump(0.5)
            if producer.written >= 16 * 1024 * 1024:
                break
        self.assertGreater(producer.resumes, 0)
        client.transport.unregisterProducer()
        client.transport.loseConnection()
        self.net.pump(2)
        self.assertEqual(len(server.received), len(b"hello") + producer.written)

    def test_pull_producer_is_pulled_until_done(self) -> None:
        """A pull producer is asked for data chunk by chunk until it unregisters; all arrives."""
        client, server = self.openPair()
        producer = PullProducer(client.transport, count=40)
        client.transport.registerProducer(producer, False)
        self.net.pump(3)
        self.assertEqual(producer.left, 0)
        self.assertEqual(producer.calls, 40)
        self.assertEqual(server.received, b"hello" + CHUNK * 40)
        server.lost[0].trap(error.ConnectionDone)

    def test_registering_twice_raises(self) -> None:
        """A second registerProducer without unregistering raises RuntimeError."""
        client, _ = self.openPair()
        client.transport.registerProducer(FastProducer(client.transport, 0), True)
        self.assertRaises(RuntimeError, client.transport.registerProducer,
                          FastProducer(client.transport, 0), True)

    def test_producer_stopped_when_stream_ends(self) -> None:
        """A registered producer gets stopProducing when the stream is aborted."""
        client, _ = self.openPair()
        producer = FastProducer(client.transport, 0)
        client.transport.registerProducer(producer, True)
        client.transport.abortConnection()
        self.net.pump(1)
        self.assertEqual(producer.stopped, 1)

    def test_registering_on_a_closed_transport_stops_the_producer(self) -> None:
        """registerProducer after connectionLost stops the producer at once."""
        client, _ = self.openPair()
        client.transport.abortConnection()
        self.net.pump(1)
        producer = FastProducer(client.transport, 0)
        client.transport.registerProducer(producer, True)
        self.assertEqual(producer.stopped, 1)

    def test_lose_connection_waits_for_pull_producer(self) -> None:
        """With a pull producer registered, loseConnection's FIN waits for unregisterProducer."""
        client, server = self.openPair()

        class Idle:
            def resumeProducing(self):
                pass

            def stopProducing(self):
                pass

        client.transport.registerProducer(Idle(), False)
        client.transport.loseConnection()
        self.net.pump(1)
        self.assertEqual(server.lost, [])
        client.transport.unregisterProducer()
        self.net.pump(1)
        server.lost[0].trap(error.ConnectionDone)


class ExplodingController(NewReno):
    """NewReno whose first instance raises on ACKs once ``armed``: a stand-in core bug."""

    instances: list = []
    armed = False

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        ExplodingController.instances.append(self)

    def on_packets_acked(self, *args, **kw):
        if ExplodingController.armed and self is ExplodingController.instances[0]:
            raise RuntimeError("controller bug")
        return super().on_packets_acked(*args, **kw)


class InternalErrorTests(SynchronousTestCase):
    """An unexpected exception from the core ends that one connection, not the port."""

    def setUp(self) -> None:
        register("glue-test-exploding")(ExplodingController)
        self.addCleanup(unregister, "glue-test-exploding")
        ExplodingController.instances = []
        ExplodingController.armed = False
        config = server_config(congestion_control="glue-test-exploding")
        self.net = FakeKwik(Recorder, serverConfig=config, reuse=False)

    def test_core_exception_aborts_only_its_connection(self) -> None:
        """The failing connection is logged, its streams lost; another on the port goes on."""
        net = self.net
        first = net.connect(Recorder)[0]
        second = net.connect(Recorder)[0]
        first.transport.write(b"one")
        second.transport.write(b"two")
        net.pump(0.5)
        self.assertNotEqual(first.transport.getHost(), second.transport.getHost())
        firstServer, secondServer = net.serverProtocols
        ExplodingController.armed = True
        firstServer.transport.write(b"x" * 5000)
        net.pump(1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(len(firstServer.lost), 1)
        firstServer.lost[0].trap(error.ConnectionLost)
        self.assertIn("internal error", firstServer.lost[0].getErrorMessage())
        self.assertEqual(len(first.lost), 1)
        first.lost[0].trap(error.ConnectionLost)
        second.transport.write(b" still here")
        net.pump(1)
        self.assertEqual(secondServer.received, b"two still here")
        self.assertEqual(second.lost, [])
        done = closeClientConnections(net.reactor)
        net.pump(5)
        self.successResultOf(done)
        self.successResultOf(net.port.stopListening())
        self.assertEqual(net.reactor.getDelayedCalls(), [])
