"""
Tests for kwik_twisted.glue.forwarding: the relays behind ``twistd kwik --forward`` and ``--echo``.

The first group drives the relays over in-memory transports with a hand-cranked client endpoint;
the second runs them over real loopback TCP (plain ``tcp:`` endpoints) end to end, with 5 MB
transfers checked by SHA-256, and checks that the forwarder stops reading while the far side
does not read.
"""

from __future__ import annotations

import hashlib
import random
import socket
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    clientFromString,
    serverFromString,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from kwik_twisted.glue.forwarding import (
    EchoFactory,
    EchoProtocol,
    ForwardingFactory,
    ForwardingProtocol,
    OutgoingRelay,
)

FIVE_MB = 5 * 1024 * 1024
SOCKET_BUFFER = 64 * 1024
#: What the forwarder may hold while the receiving side is paused: Twisted's 64 KiB write buffer,
#: a read or two, and the two capped socket buffers after it (about 350 KiB measured).  Without
#: back-pressure it reads the whole 5 MB.
HELD_BOUND = 1024 * 1024


def _payload(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


# --------------------------------------------------------------------------
# In memory.


class HalfCloseableStringTransport(StringTransport):
    """
    A StringTransport that records ``loseWriteConnection`` and, as Kwik stream transports do,
    stops a producer still registered when its write side ends.
    """

    writeClosed = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True
        if self.producer is not None:
            self.producer.stopProducing()
            self.producer = None


class ManualEndpoint:
    """A client endpoint whose connection attempts the test completes or fails by hand."""

    def __init__(self) -> None:
        self.attempts: list[tuple[Any, defer.Deferred[Any]]] = []
        self.cancelled = 0

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        def cancel(d: defer.Deferred[Any]) -> None:
            self.cancelled += 1

        d: defer.Deferred[Any] = defer.Deferred(cancel)
        self.attempts.append((factory, d))
        return d

    def complete(self, index: int = 0) -> tuple[Protocol, StringTransport]:
        factory, d = self.attempts[index]
        protocol = factory.buildProtocol(None)
        transport = HalfCloseableStringTransport()
        protocol.makeConnection(transport)
        d.callback(protocol)
        return protocol, transport


class InMemoryForwardingTests(SynchronousTestCase):
    """ForwardingProtocol over StringTransports and a hand-cranked endpoint."""

    def accept(self) -> tuple[ManualEndpoint, ForwardingProtocol, StringTransport]:
        endpoint = ManualEndpoint()
        protocol = ForwardingFactory(endpoint, "manual").buildProtocol(None)
        transport = HalfCloseableStringTransport()
        protocol.makeConnection(transport)
        return endpoint, protocol, transport

    def test_accepted_connection_is_paused_until_the_outgoing_one_is_up(self) -> None:
        """Reading from the accepted connection waits for somewhere to send the bytes."""
        endpoint, _, incoming = self.accept()
        self.assertEqual(len(endpoint.attempts), 1)
        self.assertEqual(incoming.producerState, "paused")
        endpoint.complete()
        self.assertEqual(incoming.producerState, "producing")

    def test_bytes_flow_both_ways_once_connected(self) -> None:
        """Bytes read on either side are written, unchanged, to the other."""
        endpoint, protocol, incoming = self.accept()
        outgoing_protocol, outgoing = endpoint.complete()
        protocol.dataReceived(b"request")
        outgoing_protocol.dataReceived(b"response")
        self.assertEqual(outgoing.value(), b"request")
        self.assertEqual(incoming.value(), b"response")

    def test_bytes_received_before_connecting_are_sent_first_in_order(self) -> None:
        """Whatever arrives while the outgoing connection is pending is kept and sent first."""
        endpoint, protocol, _ = self.accept()
        protocol.dataReceived(b"one ")
        protocol.dataReceived(b"two ")
        _, outgoing = endpoint.complete()
        protocol.dataReceived(b"three")
        self.assertEqual(outgoing.value(), b"one two three")

    def test_each_transport_is_the_streaming_producer_of_the_other(self) -> None:
        """Back-pressure: each transport pauses the other when its write buffer fills."""
        endpoint, _, incoming = self.accept()
        _, outgoing = endpoint.complete()
        self.assertIs(outgoing.producer, incoming)
        self.assertTrue(outgoing.streaming)
        self.assertIs(incoming.producer, outgoing)
        self.assertTrue(incoming.streaming)

    def test_losing_one_side_closes_the_other(self) -> None:
        """When either connection ends, the other is closed (after flushing)."""
        endpoint, protocol, incoming = self.accept()
        outgoing_protocol, outgoing = endpoint.complete()
        protocol.connectionLost(None)
        self.assertTrue(outgoing.disconnecting)
        endpoint2, protocol2, incoming2 = self.accept()
        outgoing_protocol2, _ = endpoint2.complete()
        outgoing_protocol2.connectionLost(None)
        self.assertTrue(incoming2.disconnecting)

    def test_losing_the_accepted_side_while_connecting_cancels_the_attempt(self) -> None:
        """A client that leaves before the outgoing connection is up cancels the attempt."""
        endpoint, protocol, _ = self.accept()
        protocol.connectionLost(None)
        self.assertEqual(endpoint.cancelled, 1)

    def test_failed_outgoing_connection_closes_the_accepted_one(self) -> None:
        """If the forward endpoint cannot connect, the accepted connection is closed."""
        endpoint, _, incoming = self.accept()
        endpoint.attempts[0][1].errback(ConnectionRefusedError("nobody there"))
        self.assertTrue(incoming.disconnecting)

    def test_eof_is_relayed_as_a_half_close(self) -> None:
        """
        An EOF on one side shuts down the write side of the other; both stay open for the other
        direction, even if the half-closed transport stops its producer, until that ends too.
        """
        endpoint, protocol, incoming = self.accept()
        outgoing_protocol, outgoing = endpoint.complete()
        self.assertTrue(IHalfCloseableProtocol.providedBy(protocol))
        protocol.readConnectionLost()
        self.assertTrue(outgoing.writeClosed)
        self.assertFalse(outgoing.disconnecting)
        self.assertFalse(incoming.disconnecting)
        self.assertNotEqual(incoming.producerState, "stopped")
        outgoing_protocol.dataReceived(b"still flowing back")
        self.assertEqual(incoming.value(), b"still flowing back")
        outgoing_protocol.readConnectionLost()
        self.assertTrue(incoming.disconnecting)
        self.assertTrue(outgoing.disconnecting)

    def test_eof_before_connecting_is_relayed_after_the_pending_bytes(self) -> None:
        """An EOF that arrives while connecting becomes a half-close once connected."""
        endpoint, protocol, incoming = self.accept()
        protocol.dataReceived(b"all of it")
        protocol.readConnectionLost()
        _, outgoing = endpoint.complete()
        self.assertEqual(outgoing.value(), b"all of it")
        self.assertTrue(outgoing.writeClosed)
        self.assertEqual(incoming.producerState, "paused")


class InMemoryEchoTests(SynchronousTestCase):
    """EchoProtocol over a StringTransport."""

    def test_echoes_and_is_its_own_transports_producer(self) -> None:
        """Bytes come back; the protocol pauses reading when its write buffer is full."""
        protocol = EchoFactory().buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"ping")
        self.assertEqual(transport.value(), b"ping")
        self.assertIs(transport.producer, protocol)
        self.assertTrue(transport.streaming)
        protocol.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        protocol.resumeProducing()
        self.assertEqual(transport.producerState, "producing")

    def test_eof_closes_after_echoing(self) -> None:
        """When the peer finishes sending, the echo closes (its transport flushes first)."""
        protocol = EchoFactory().buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.readConnectionLost()
        self.assertTrue(transport.disconnecting)


# --------------------------------------------------------------------------
# Over loopback TCP.


def _small_buffer(transport: Any, option: int) -> None:
    """
    Cap one kernel socket buffer at 64 KiB (Linux doubles it), so that what the kernel holds on
    loopback stays small next to 5 MB and back-pressure in the relay is what the test measures.
    """
    handle = getattr(transport, "getHandle", None)  # a socket's transport, not a Kwik stream's
    if handle is not None:
        handle().setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)


class TrackedEcho(EchoProtocol):
    """An echo whose factory learns when it closes."""

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.closed.callback(None)


class TrackedOutgoing(OutgoingRelay):
    """An outgoing relay that counts what it reads from the far side."""

    def dataReceived(self, data: bytes) -> None:
        self.incoming.factory.bytesOut += len(data)
        super().dataReceived(data)


class TrackedForwarding(ForwardingProtocol):
    """A forwarding protocol that counts what it reads from the accepted connection."""

    def connectionMade(self) -> None:
        _small_buffer(self.transport, socket.SO_SNDBUF)
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        self.factory.bytesIn += len(data)
        super().dataReceived(data)

    def outgoingConnected(self, outgoing: Any) -> None:
        _small_buffer(outgoing.transport, socket.SO_SNDBUF)
        super().outgoingConnected(outgoing)

    def connectionLost(self, reason: Any = None) -> None:
        super().connectionLost(reason)
        self.factory.closed.callback(None)


class TrackedForwardingFactory(ForwardingFactory):
    protocol = TrackedForwarding
    outgoingProtocol = TrackedOutgoing

    def __init__(self, endpoint: Any) -> None:
        super().__init__(endpoint)
        self.bytesIn = self.bytesOut = 0
        self.closed: defer.Deferred[None] = defer.Deferred()


class Sink(Protocol):
    """The far side: collects bytes, starts paused (not reading) if told to, may send a payload."""

    def __init__(self, paused: bool, payload: bytes = b"") -> None:
        self.startPaused = paused
        self.payload = payload
        self.received = bytearray()
        self.closed: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        _small_buffer(self.transport, socket.SO_RCVBUF)
        if self.startPaused:
            self.transport.pauseProducing()
        self.transport.write(self.payload)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


@implementer(IHalfCloseableProtocol)
class Client(Protocol):
    """Sends a payload (optionally followed by EOF) and collects what comes back."""

    def __init__(
        self, payload: bytes, expect: int, halfClose: bool = False, paused: bool = False
    ) -> None:
        self.payload = payload
        self.expect = expect
        self.halfClose = halfClose
        self.startPaused = paused
        self.received = bytearray()
        self.gotAll: defer.Deferred[None] = defer.Deferred()
        self.closed: defer.Deferred[Any] = defer.Deferred()

    def connectionMade(self) -> None:
        if self.startPaused:
            _small_buffer(self.transport, socket.SO_RCVBUF)
            self.transport.pauseProducing()
        self.transport.write(self.payload)
        if self.halfClose:
            self.transport.loseWriteConnection()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= self.expect and not self.gotAll.called:
            self.gotAll.callback(None)

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(reason.value if reason is not None else None)


class LoopbackForwardingTests(TestCase):
    """The forwarder between real TCP sockets on 127.0.0.1."""

    timeout = 60

    @defer.inlineCallbacks
    def listen(self, factory: Factory) -> Any:
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        return port.getHost().port

    @defer.inlineCallbacks
    def forwarderTo(self, port: int) -> Any:
        far = clientFromString(reactor, f"tcp:host=127.0.0.1:port={port}")
        forwarding = TrackedForwardingFactory(far)
        listening = yield self.listen(forwarding)
        return forwarding, listening

    def connect(self, port: int, client: Client) -> defer.Deferred[Any]:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        return endpoint.connect(Factory.forProtocol(lambda: client))

    @defer.inlineCallbacks
    def test_five_megabytes_round_trip_exactly(self) -> Any:
        """5 MB sent through forwarder -> echo -> forwarder come back with the same SHA-256."""
        echo = EchoFactory()
        echo.protocol = TrackedEcho
        echo.closed = defer.Deferred()
        forwarding, port = yield self.forwarderTo((yield self.listen(echo)))
        payload = _payload(FIVE_MB)
        client = Client(payload, FIVE_MB)
        yield self.connect(port, client)
        yield client.gotAll
        self.assertEqual(len(client.received), FIVE_MB)
        self.assertEqual(
            hashlib.sha256(client.received).hexdigest(), hashlib.sha256(payload).hexdigest()
        )
        client.transport.loseConnection()
        yield defer.gatherResults([client.closed, forwarding.closed, echo.closed])

    @defer.inlineCallbacks
    def test_half_close_travels_through_the_tunnel(self) -> Any:
        """A client that sends, then shuts down its write side, still gets every echoed byte."""
        echo = EchoFactory()
        echo.protocol = TrackedEcho
        echo.closed = defer.Deferred()
        forwarding, port = yield self.forwarderTo((yield self.listen(echo)))
        payload = _payload(300_000, seed=3)
        client = Client(payload, len(payload), halfClose=True)
        yield self.connect(port, client)
        reason = yield client.closed
        self.assertEqual(bytes(client.received), payload)
        self.assertIsInstance(reason, ConnectionDone)
        yield defer.gatherResults([forwarding.closed, echo.closed])

    @defer.inlineCallbacks
    def test_forwarder_stops_reading_while_the_far_side_does_not_read(self) -> Any:
        """
        With the far side paused, the forwarder stops reading from the client: what it has read
        but not delivered stays bounded (one transport buffer plus the kernel's socket buffers),
        far below the 5 MB offered.  Once the far side reads again, all 5 MB arrive exactly.
        """
        sink = Sink(paused=True)
        forwarding, port = yield self.forwarderTo(
            (yield self.listen(Factory.forProtocol(lambda: sink)))
        )
        payload = _payload(FIVE_MB, seed=11)
        client = Client(payload, 0)
        yield self.connect(port, client)
        yield self.waitUntilSteady(lambda: forwarding.bytesIn)
        held = forwarding.bytesIn - len(sink.received)
        self.assertLess(held, HELD_BOUND)
        self.assertLess(forwarding.bytesIn, FIVE_MB - HELD_BOUND)
        sink.transport.resumeProducing()
        while len(sink.received) < FIVE_MB:
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(hashlib.sha256(sink.received).digest(), hashlib.sha256(payload).digest())
        client.transport.loseConnection()
        yield defer.gatherResults([client.closed, forwarding.closed, sink.closed])

    @defer.inlineCallbacks
    def test_forwarder_stops_reading_the_far_side_while_the_client_does_not_read(self) -> Any:
        """
        The same in the other direction: a far side sending 5 MB to a client that does not read
        fills only bounded buffers in the forwarder, and the client then gets all 5 MB exactly.
        """
        payload = _payload(FIVE_MB, seed=13)
        source = Sink(paused=False, payload=payload)
        forwarding, port = yield self.forwarderTo(
            (yield self.listen(Factory.forProtocol(lambda: source)))
        )
        client = Client(b"", FIVE_MB, paused=True)
        yield self.connect(port, client)
        yield self.waitUntilSteady(lambda: forwarding.bytesOut)
        self.assertLess(forwarding.bytesOut - len(client.received), HELD_BOUND)
        self.assertLess(forwarding.bytesOut, FIVE_MB - HELD_BOUND)
        client.transport.resumeProducing()
        yield client.gotAll
        self.assertEqual(hashlib.sha256(client.received).digest(), hashlib.sha256(payload).digest())
        client.transport.loseConnection()
        yield defer.gatherResults([client.closed, forwarding.closed, source.closed])

    @defer.inlineCallbacks
    def waitUntilSteady(self, measure: Any, polls: int = 10, interval: float = 0.02) -> Any:
        """Wait until ``measure()`` has not changed for ``polls`` consecutive polls."""
        last, same = measure(), 0
        while same < polls:
            yield task.deferLater(reactor, interval, lambda: None)
            now = measure()
            same = same + 1 if now == last else 0
            last = now
        return last

    @defer.inlineCallbacks
    def test_unreachable_forward_endpoint_closes_the_client(self) -> Any:
        """When nothing listens at the forward address, the accepted connection is closed."""
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory())
        dead = port.getHost().port
        yield port.stopListening()
        forwarding, listening = yield self.forwarderTo(dead)
        client = Client(b"hello?", 1)
        yield self.connect(listening, client)
        yield client.closed
        self.assertEqual(bytes(client.received), b"")
        yield forwarding.closed


class KwikTunnelTests(TestCase):
    """``twistd kwik``'s relay with a ``kwik:`` endpoint on one side: TCP in, Kwik out."""

    timeout = 60

    @defer.inlineCallbacks
    def test_tcp_over_kwik_round_trip_with_half_close(self) -> Any:
        """
        A TCP client's 1 MB, followed by EOF, crosses a forwarder into a Kwik echo server
        and comes back exactly, then the tunnel closes cleanly.
        """
        from kwik_twisted.endpoints import closeClientConnections
        from tests.certs import fixtures

        fx = fixtures()
        echo = EchoFactory()
        echo.protocol = TrackedEcho
        echo.closed = defer.Deferred()
        kwik_port = yield serverFromString(
            reactor,
            f"kwik:0:interface=127.0.0.1:privateKey={_quote(fx.server.key_path)}"
            f":certKey={_quote(fx.server.chain_path)}",
        ).listen(echo)
        self.addCleanup(kwik_port.stopListening)
        self.addCleanup(closeClientConnections, reactor)
        forward = clientFromString(
            reactor,
            f"kwik:host=127.0.0.1:port={kwik_port.getHost().port}:trustRoots={_quote(fx.ca_path)}",
        )
        forwarding = TrackedForwardingFactory(forward)
        tcp_port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(forwarding)
        self.addCleanup(tcp_port.stopListening)
        payload = _payload(1024 * 1024, seed=5)
        client = Client(payload, len(payload), halfClose=True)
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", tcp_port.getHost().port).connect(
            Factory.forProtocol(lambda: client)
        )
        reason = yield client.closed
        self.assertEqual(hashlib.sha256(client.received).digest(), hashlib.sha256(payload).digest())
        self.assertIsInstance(reason, ConnectionDone)
        yield defer.gatherResults([forwarding.closed, echo.closed])


def _quote(path: object) -> str:
    return str(path).replace("\\", "\\\\").replace(":", "\\:")
