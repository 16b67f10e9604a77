"""
Unreliable datagrams through the Twisted API, over the fake UDP reactor:
``IKwikConnection.sendDatagram``, delivery to stream protocols that provide
``IKwikDatagramProtocol`` or to a receiver set with ``setDatagramReceiver``, and drop reports.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from kwik_twisted import (
    DatagramDropped,
    DatagramsUnsupported,
    DatagramTooLarge,
    IKwikConnection,
    IKwikDatagramProtocol,
)
from kwik_twisted.glue.datagrams import onDatagramDropped
from kwik_twisted.testing.pair import server_config

from .fakes import FakeKwik, Recorder


@implementer(IKwikDatagramProtocol)
class DatagramRecorder(Recorder):
    """A stream protocol that also records the datagrams of its connection."""

    def __init__(self) -> None:
        super().__init__()
        self.datagrams: list[bytes] = []
        self.drops: list[tuple[int, str]] = []

    def datagramReceived(self, data: bytes) -> None:
        self.datagrams.append(data)

    def datagramsDropped(self, count: int, reason: str) -> None:
        self.drops.append((count, reason))


@implementer(IKwikDatagramProtocol)
class Receiver:
    """A receiver that is not a stream protocol (a tunnel's, say)."""

    def __init__(self) -> None:
        self.datagrams: list[bytes] = []
        self.drops: list[tuple[int, str]] = []

    def datagramReceived(self, data: bytes) -> None:
        self.datagrams.append(data)

    def datagramsDropped(self, count: int, reason: str) -> None:
        self.drops.append((count, reason))


class DatagramGlueTests(SynchronousTestCase):
    """What an application sees of datagrams."""

    def setUp(self) -> None:
        self.kwik = FakeKwik(serverProtocol=DatagramRecorder)
        self.client = self.kwik.connect(DatagramRecorder)[0]
        self.conn = self.client.transport.kwikConnection
        self.server = self.kwik.serverProtocols[0]
        self.serverConn = self.server.transport.kwikConnection

    def test_the_connection_provides_send_datagram(self) -> None:
        """transport.kwikConnection provides IKwikConnection, sendDatagram included."""
        self.assertTrue(IKwikConnection.providedBy(self.conn))

    def test_datagrams_reach_the_peers_datagram_protocols_both_ways(self) -> None:
        """sendDatagram on one side reaches datagramReceived of the other side's stream
        protocols that provide IKwikDatagramProtocol, in order; a plain protocol gets nothing."""
        plain = Recorder()
        self.conn.openStream(plain)
        for data in (b"a", b"", b"c" * 1000):
            self.conn.sendDatagram(data)
        self.kwik.pump()
        self.assertEqual(self.server.datagrams, [b"a", b"", b"c" * 1000])
        self.serverConn.sendDatagram(b"back")
        self.kwik.pump()
        self.assertEqual(self.client.datagrams, [b"back"])
        self.assertEqual(plain.chunks, [])

    def test_a_registered_receiver_takes_them_instead_of_the_streams(self) -> None:
        """After setDatagramReceiver(r), datagrams go to r only; None goes back to the
        streams; an object that is not an IKwikDatagramProtocol is refused."""
        receiver = Receiver()
        self.serverConn.setDatagramReceiver(receiver)
        self.conn.sendDatagram(b"to the receiver")
        self.kwik.pump()
        self.assertEqual(receiver.datagrams, [b"to the receiver"])
        self.assertEqual(self.server.datagrams, [])
        self.serverConn.setDatagramReceiver(None)
        self.conn.sendDatagram(b"to the stream")
        self.kwik.pump()
        self.assertEqual(self.server.datagrams, [b"to the stream"])
        self.assertRaises(TypeError, self.serverConn.setDatagramReceiver, object())

    def test_too_large_raises(self) -> None:
        """A datagram over the peer's maximum raises DatagramTooLarge from sendDatagram."""
        self.assertRaises(DatagramTooLarge, self.conn.sendDatagram, b"x" * 1201)

    def test_drops_are_reported_to_the_receivers(self) -> None:
        """A DatagramDropped event reaches datagramsDropped of the datagram protocols."""
        onDatagramDropped(self.conn, DatagramDropped(3, "queue full"))
        self.assertEqual(self.client.drops, [(3, "queue full")])

    def test_a_failing_receiver_is_logged_not_raised(self) -> None:
        """An exception from datagramReceived is logged; the connection goes on."""

        @implementer(IKwikDatagramProtocol)
        class Broken(Receiver):
            def datagramReceived(self, data):
                raise RuntimeError("boom")

        self.serverConn.setDatagramReceiver(Broken())
        self.conn.sendDatagram(b"x")
        self.kwik.pump()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.serverConn.setDatagramReceiver(None)
        self.conn.sendDatagram(b"y")
        self.kwik.pump()
        self.assertEqual(self.server.datagrams, [b"y"])

    def test_after_close_send_datagram_raises(self) -> None:
        """Once the connection is closed, sendDatagram raises DatagramsUnsupported."""
        self.conn.close()
        self.kwik.pump(5.0)
        self.assertRaises(DatagramsUnsupported, self.conn.sendDatagram, b"late")


class UnsupportedPeerTests(SynchronousTestCase):
    """A server that does not accept datagrams."""

    def test_send_datagram_raises_unsupported(self) -> None:
        """With the server's max_datagram_frame_size 0, the client's sendDatagram raises."""
        kwik = FakeKwik(serverProtocol=DatagramRecorder,
                        serverConfig=server_config(max_datagram_frame_size=0))
        client = kwik.connect(DatagramRecorder)[0]
        conn = client.transport.kwikConnection
        self.assertRaises(DatagramsUnsupported, conn.sendDatagram, b"x")
