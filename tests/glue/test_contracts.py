"""
The glue's internal contracts (:mod:`kwik_twisted.glue.interfaces`) are kept by every party.

Each real implementer, taken from a live connection on the fake UDP reactor (or a real loopback
port for :class:`~kwik_twisted.glue.udp.BatchingPort`), and each fake the tests drive the glue
with, passes ``zope.interface.verify.verifyObject`` for the interfaces it declares.  The batching
hooks go by the interfaces, not by the names of methods: an object that merely has a
``readBatchEnded`` or ``sendBatch`` method, without declaring the interface, is not treated as a
provider.
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IConsumer, IPushProducer, ITCPTransport, ITransport
from twisted.internet.protocol import DatagramProtocol, Protocol
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from kwik_twisted.glue.connection import KwikConnection
from kwik_twisted.glue.interfaces import (
    IBatchingUDPTransport,
    IClientPortOwner,
    IConnectionOwner,
    IPathSocketOwner,
    IReadBatchObserver,
    IStreamConnection,
    IStreamEventSink,
)
from kwik_twisted.glue.udp import listenBatchingUDP, send_batch
from kwik_twisted.interfaces import IKwikConnection, IKwikStreamTransport
from tests.polling import until

from .fakes import FakeConnectionOwner, FakeKwik, FakeStreamConnection
from .test_udp import Collector


class LiveConnectionContractTests(SynchronousTestCase):
    """The parties of one live connection on the fake UDP reactor keep their contracts."""

    def setUp(self) -> None:
        self.net = FakeKwik()
        self.client = self.net.connect()[0]
        self.client.transport.write(b"hello")
        self.net.pump()
        self.transport = self.client.transport
        self.conn = self.transport.kwikConnection

    def test_the_stream_transport_provides_the_event_sink_and_twisted_interfaces(self) -> None:
        """A stream's transport provides IStreamEventSink and the Twisted transport interfaces."""
        for interface in (IStreamEventSink, ITransport, ITCPTransport, IPushProducer, IConsumer):
            self.assertTrue(verifyObject(interface, self.transport), interface)

    def test_every_stream_transport_provides_the_kwik_stream_interface(self) -> None:
        """
        The transports of both sides (the client's stream and the server's accepted one) provide
        IKwikStreamTransport alongside ITCPTransport, and their ``kwikConnection`` provides
        IKwikConnection.
        """
        server = self.net.serverProtocols[0].transport
        for transport in (self.transport, server):
            self.assertTrue(verifyObject(IKwikStreamTransport, transport))
            self.assertTrue(verifyObject(ITCPTransport, transport))
            self.assertTrue(verifyObject(IKwikConnection, transport.kwikConnection))

    def test_a_stream_from_open_stream_provides_the_kwik_stream_interface(self) -> None:
        """``kwikConnection.openStream`` returns a transport providing IKwikStreamTransport,
        already connected to the protocol."""
        protocol = Protocol()
        transport = self.conn.openStream(protocol)
        self.assertIs(protocol.transport, transport)
        self.assertTrue(verifyObject(IKwikStreamTransport, transport))
        self.assertIs(transport.kwikConnection, self.conn)

    def test_the_connection_glue_provides_what_transports_call(self) -> None:
        """The client's and the server's KwikConnection provide IStreamConnection."""
        server = self.net.serverProtocols[0].transport.kwikConnection
        for conn in (self.conn, server):
            self.assertIsInstance(conn, KwikConnection)
            self.assertTrue(verifyObject(IStreamConnection, conn))

    def test_both_port_protocols_are_connection_and_socket_owners(self) -> None:
        """The client and server port protocols provide IConnectionOwner and IPathSocketOwner."""
        server = self.net.port.protocol
        for owner in (self.conn.owner, server):
            self.assertTrue(verifyObject(IConnectionOwner, owner))
            self.assertTrue(verifyObject(IPathSocketOwner, owner))
            self.assertTrue(IReadBatchObserver.providedBy(owner))

    def test_the_connection_owner_of_each_side_is_its_port_protocol(self) -> None:
        """The server's connections are owned by the listening port's protocol."""
        server = self.net.serverProtocols[0].transport.kwikConnection
        self.assertIs(server.owner, self.net.port.protocol)

    def test_the_endpoints_connection_record_is_a_client_port_owner(self) -> None:
        """The client endpoint's record of its connection provides IClientPortOwner."""
        self.assertTrue(verifyObject(IClientPortOwner, self.conn.owner.owner))

    def test_a_path_socket_is_a_read_batch_observer(self) -> None:
        """An extra socket bound for a path provides IReadBatchObserver."""
        sock = self.conn.owner.bindSocket("127.0.0.2", 0)
        self.addCleanup(sock.transport.stopListening)
        self.assertTrue(verifyObject(IReadBatchObserver, sock))
        self.assertIs(sock.owner, self.conn.owner)


class FakeContractTests(SynchronousTestCase):
    """The fakes the glue tests use provide the same interfaces as the real parties."""

    def test_fake_stream_connection_is_a_stream_connection(self) -> None:
        """FakeStreamConnection provides IStreamConnection."""
        self.assertTrue(verifyObject(IStreamConnection, FakeStreamConnection()))

    def test_fake_connection_owner_is_a_connection_owner(self) -> None:
        """FakeConnectionOwner provides IConnectionOwner."""
        self.assertTrue(verifyObject(IConnectionOwner, FakeConnectionOwner()))

    def test_udp_collector_is_a_read_batch_observer(self) -> None:
        """The UDP tests' Collector provides IReadBatchObserver."""
        self.assertTrue(verifyObject(IReadBatchObserver, Collector()))


class Undeclared(DatagramProtocol):
    """Has a ``readBatchEnded`` method but does not declare IReadBatchObserver."""

    def __init__(self) -> None:
        self.datagrams = 0
        self.batchEnds = 0

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        self.datagrams += 1

    def readBatchEnded(self) -> None:
        self.batchEnds += 1


@implementer(IReadBatchObserver)
class Declared(Undeclared):
    """The same, declaring IReadBatchObserver."""


class DuckSender:
    """Has a ``sendBatch`` method but does not declare IBatchingUDPTransport."""

    def __init__(self) -> None:
        self.written: list[tuple] = []

    def sendBatch(self, datagrams, addr=None) -> int:
        raise AssertionError("sendBatch of an undeclared transport was called")

    def write(self, data: bytes, addr=None) -> None:
        self.written.append((data, addr))


class BatchingContractTests(TestCase):
    """BatchingPort's hooks go by the interfaces."""

    timeout = 10

    def listen(self, protocol) -> object:
        port = listenBatchingUDP(reactor, 0, protocol, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port

    def test_batching_port_provides_the_batching_transport(self) -> None:
        """A real BatchingPort provides IBatchingUDPTransport."""
        port = self.listen(Collector())
        self.assertTrue(verifyObject(IBatchingUDPTransport, port))

    @defer.inlineCallbacks
    def test_only_declared_observers_hear_of_read_batch_ends(self) -> None:
        """
        Both protocols get every datagram; only the one that declares IReadBatchObserver gets
        ``readBatchEnded`` after each batch.
        """
        undeclared, declared = Undeclared(), Declared()
        ports = [self.listen(undeclared), self.listen(declared)]
        sender = self.listen(Collector())
        for port in ports:
            host = port.getHost()
            sender.sendBatch([b"x"] * 3, (host.host, host.port))
        yield until(lambda: undeclared.datagrams == 3 and declared.datagrams == 3, 5)
        self.assertEqual((undeclared.datagrams, declared.datagrams), (3, 3))
        self.assertEqual(undeclared.batchEnds, 0)
        self.assertGreaterEqual(declared.batchEnds, 1)
        self.assertEqual(declared.batchEnds, ports[1].stats.readBatches)

    def test_send_batch_writes_one_by_one_to_an_undeclared_transport(self) -> None:
        """send_batch uses ``write`` on a transport that only has a ``sendBatch`` method."""
        transport = DuckSender()
        self.assertEqual(send_batch(transport, [b"a", b"b"], ("127.0.0.1", 9)), 2)
        self.assertEqual(transport.written, [(b"a", ("127.0.0.1", 9)), (b"b", ("127.0.0.1", 9))])

