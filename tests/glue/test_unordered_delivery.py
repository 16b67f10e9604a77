"""
Byte-stream integrity for Twisted protocols (issue 11, finding 1), and pieces for those that ask.

A protocol that provides only ``IProtocol`` gets the exact in-order bytes of a stream through
``dataReceived``, whatever flags the peer sets: a server reassembles unordered streams in order
unless its factory's protocol provides :class:`~kwik_twisted.interfaces.IKwikMessageProtocol`,
and a piece that would still reach such a protocol past a gap resets the stream
(:data:`~kwik_twisted.glue.transport.UNORDERED_REFUSED`) instead.  An ``IKwikMessageProtocol`` gets
the pieces of an unordered stream through ``pieceReceived(offset, data)``, each exactly once.

Three levels: the transport's dispatch over a recording fake connection; real connections over the
fake UDP reactor, losing one datagram so that later pieces arrive past a gap; and a real ``kwik:``
server on loopback to which a hostile peer sends 4,000 bytes in reversed unordered frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import defer, error, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from kwik_twisted.glue.transport import UNORDERED_REFUSED, KwikStreamTransport
from kwik_twisted.interfaces import IKwikMessageProtocol
from kwik_twisted.testing.hostile import HostilePeer
from kwik_twisted.testing.pair import client_config, dev_certificates, server_config
from kwik_twisted.wire import StreamFrame
from tests.polling import until

from .fakes import SERVER_PORT, FakeKwik, FakeStreamConnection, PieceRecorder, Recorder

#: 4,000 bytes in 40 pieces of 100, as in the finding.
PIECE = 100
DATA = bytes(range(200)) * 20


class RecordingFactory(Factory):
    """``Factory.forProtocol`` that keeps every protocol it built (``protocol`` stays the class)."""

    def __init__(self, protocol) -> None:
        self.protocol = protocol
        self.built: list = []

    def buildProtocol(self, addr):
        built = super().buildProtocol(addr)
        self.built.append(built)
        return built


def assertEveryPieceOnce(test, pieces: list[tuple[int, bytes]], data: bytes) -> None:
    """``pieces`` tile ``data`` exactly: each byte once, at its own offset."""
    covered = 0
    for offset, piece in sorted(pieces):
        test.assertEqual(offset, covered, "a gap or an overlap between pieces")
        test.assertEqual(piece, data[offset : offset + len(piece)])
        covered += len(piece)
    test.assertEqual(covered, len(data))


# -- the transport's dispatch ------------------------------------------------------------------


class DispatchTests(SynchronousTestCase):
    """KwikStreamTransport's delivery of the core's pieces, over a recording fake connection."""

    def connect(self, protocol, ordered: bool) -> tuple[KwikStreamTransport, FakeStreamConnection]:
        conn = FakeStreamConnection(ordered=ordered)
        host = IPv4Address("UDP", "127.0.0.1", SERVER_PORT)
        peer = IPv4Address("UDP", "127.0.0.1", 50000)
        transport = KwikStreamTransport(conn, 0, host, peer, protocol)
        transport.attached()
        return transport, conn

    def test_the_interface_is_an_iprotocol_with_piece_received(self) -> None:
        """IKwikMessageProtocol extends IProtocol with ``pieceReceived``; a provider verifies."""
        verifyObject(IKwikMessageProtocol, PieceRecorder())

    def test_plain_protocol_gets_in_order_pieces_as_bytes(self) -> None:
        """Pieces that follow each other reach ``dataReceived`` unchanged, on any stream."""
        for ordered in (True, False):
            protocol = Recorder()
            transport, conn = self.connect(protocol, ordered)
            transport.dataReceivedAt(0, DATA[:100], False)
            transport.dataReceivedAt(100, DATA[100:], True)
            self.assertEqual(protocol.received, DATA)
            self.assertEqual(conn.calls, [("send", (0, b"", True))])
            self.assertTrue(protocol.lost[0].check(error.ConnectionDone))

    def test_plain_protocol_never_gets_a_piece_past_a_gap(self) -> None:
        """
        A piece that does not start where the bytes delivered so far end is not delivered: the
        stream is reset both ways with UNORDERED_REFUSED and the protocol gets ConnectionLost.
        Nothing that arrives later reaches it.
        """
        protocol = Recorder()
        transport, conn = self.connect(protocol, ordered=False)
        transport.dataReceivedAt(0, DATA[:100], False)
        transport.dataReceivedAt(300, DATA[300:400], False)
        transport.dataReceivedAt(100, DATA[100:300], False)
        self.assertEqual(protocol.received, DATA[:100])
        self.assertIn(("resetStream", (0, UNORDERED_REFUSED)), conn.calls)
        self.assertIn(("stopSending", (0, UNORDERED_REFUSED)), conn.calls)
        self.assertEqual(len(protocol.lost), 1)
        self.assertTrue(protocol.lost[0].check(error.ConnectionLost))
        self.assertIn(hex(UNORDERED_REFUSED), protocol.lost[0].getErrorMessage())
        self.assertEqual(conn.detached, [0])
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_message_protocol_gets_unordered_pieces_with_their_offsets(self) -> None:
        """
        On an unordered stream an IKwikMessageProtocol gets each piece as it comes, with its
        offset, and the end of the stream after the last; nothing is reset.
        """
        protocol = PieceRecorder()
        transport, conn = self.connect(protocol, ordered=False)
        transport.dataReceivedAt(300, DATA[300:], False)
        transport.dataReceivedAt(0, DATA[:100], False)
        transport.dataReceivedAt(100, DATA[100:300], True)
        self.assertEqual(
            protocol.pieces, [(300, DATA[300:]), (0, DATA[:100]), (100, DATA[100:300])]
        )
        self.assertEqual(protocol.chunks, [])
        self.assertEqual([name for name, _ in conn.calls], ["send"])  # only our FIN
        self.assertTrue(protocol.lost[0].check(error.ConnectionDone))

    def test_message_protocol_on_an_ordered_stream_gets_bytes(self) -> None:
        """An IKwikMessageProtocol on an ordered stream is an ordinary protocol."""
        protocol = PieceRecorder()
        transport, _ = self.connect(protocol, ordered=True)
        transport.dataReceivedAt(0, DATA, False)
        self.assertEqual(protocol.received, DATA)
        self.assertEqual(protocol.pieces, [])

    def test_pieces_held_while_paused_keep_their_offsets(self) -> None:
        """Pieces that arrive while the protocol paused us are delivered, with offsets, later."""
        protocol = PieceRecorder()
        transport, conn = self.connect(protocol, ordered=False)
        transport.pauseProducing()
        transport.dataReceivedAt(200, DATA[200:], False)
        transport.dataReceivedAt(0, DATA[:200], False)
        self.assertEqual(protocol.pieces, [])
        transport.resumeProducing()
        self.assertIn(("requestPull", (transport,)), conn.calls)
        transport.pull()
        self.assertEqual(protocol.pieces, [(200, DATA[200:]), (0, DATA[:200])])


# -- real connections over the fake network ----------------------------------------------------


class FakeNetworkTests(SynchronousTestCase):
    """A client stream opened without ORDERED; its first data datagram is lost."""

    def sendUnordered(self, kwik: FakeKwik, data: bytes) -> Recorder:
        """Open an unordered stream from the client, lose its first data datagram, send ``data``
        with FIN; return the client's protocol."""
        first = kwik.connect()[0]
        conn = first.transport.kwikConnection
        client = PieceRecorder()
        transport = conn.openStream(client, ordered=False)
        lost: list = []

        def dropFirstData(source, destination, datagram) -> bool:
            if not lost and destination[1] == SERVER_PORT and len(datagram) > 1000:
                lost.append(datagram)
                return True
            return False

        kwik.reactor.drop = dropFirstData
        transport.write(data)
        transport.loseWriteConnection()
        kwik.pump(2.0)
        self.assertEqual(len(lost), 1)
        return client

    def test_opening_an_unordered_stream_for_a_plain_protocol_is_a_type_error(self) -> None:
        """
        ``openStream(..., ordered=False)`` with a protocol that does not provide
        IKwikMessageProtocol raises TypeError and opens no stream: a plain protocol only ever
        gets the in-order byte stream.
        """
        kwik = FakeKwik(serverProtocol=Recorder)
        conn = kwik.connect()[0].transport.kwikConnection
        before = set(conn.liveStreams)
        plain = Recorder()
        self.assertRaises(TypeError, conn.openStream, plain, ordered=False)
        self.assertEqual(conn.liveStreams, before)
        self.assertIsNone(plain.transport)

    def test_plain_server_reassembles_an_unordered_stream(self) -> None:
        """
        A server whose protocol is plain gets the exact bytes of a client's unordered stream,
        although a lost datagram made later pieces arrive first (the core reassembles).
        """
        kwik = FakeKwik(serverProtocol=Recorder)
        data = DATA * 10
        self.sendUnordered(kwik, data)
        server = kwik.serverProtocols[-1]
        self.assertEqual(server.received, data)
        self.assertTrue(server.lost[0].check(error.ConnectionDone))

    def test_plain_protocol_on_an_accepting_server_is_reset_not_fed_out_of_order(self) -> None:
        """
        On a server configured with accept_unordered but a plain protocol, a piece past the gap
        resets the stream with UNORDERED_REFUSED: the protocol got only a prefix of the data,
        and the client hears the code.
        """
        kwik = FakeKwik(serverProtocol=Recorder,
                        serverConfig=server_config(accept_unordered=True))
        data = DATA * 10
        client = self.sendUnordered(kwik, data)
        server = kwik.serverProtocols[-1]
        self.assertTrue(data.startswith(server.received))
        self.assertLess(len(server.received), len(data))
        self.assertTrue(server.lost[0].check(error.ConnectionLost))
        self.assertTrue(client.lost[0].check(error.ConnectionLost))
        self.assertIn(str(UNORDERED_REFUSED), client.lost[0].getErrorMessage())

    def test_message_server_gets_each_piece_once_with_its_offset(self) -> None:
        """
        A server whose factory's protocol provides IKwikMessageProtocol accepts unordered
        streams: every piece arrives once, at its offset, the pieces past the gap first.
        """
        kwik = FakeKwik(serverProtocol=PieceRecorder)
        data = DATA * 10
        self.sendUnordered(kwik, data)
        server = kwik.serverProtocols[-1]
        assertEveryPieceOnce(self, server.pieces, data)
        self.assertNotEqual(server.pieces[0][0], 0)
        self.assertEqual(server.chunks, [])
        self.assertTrue(server.lost[0].check(error.ConnectionDone))


# -- a real kwik: server on loopback ------------------------------------------------------------


class HostileLoopbackTests(TestCase):
    """A ``kwik:`` server on loopback; a hostile client sends one stream's pieces in reverse."""

    timeout = 30

    @defer.inlineCallbacks
    def serve(self, protocol) -> Any:
        """Listen with a ``kwik:`` string; return (factory, port)."""
        certs = dev_certificates()
        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        (directory / "server.key").write_bytes(certs.key)
        (directory / "server.pem").write_bytes(certs.chain)
        description = (
            f"kwik:0:interface=127.0.0.1:privateKey={directory / 'server.key'}"
            f":certKey={directory / 'server.pem'}"
        )
        factory = RecordingFactory(protocol)
        port = yield serverFromString(reactor, description).listen(factory)
        self.addCleanup(port.stopListening)
        peer = HostilePeer(reactor, ("127.0.0.1", port.getHost().port), client_config(certs))
        self.addCleanup(peer.stop)
        yield peer.connect()
        return factory, peer

    def sendReversed(self, peer: HostilePeer) -> None:
        """Stream 0: 4,000 bytes in 40 unordered frames, the last (with FIN) first."""
        for offset in range(len(DATA) - PIECE, -1, -PIECE):
            fin = offset + PIECE == len(DATA)
            peer.send_frames(
                [StreamFrame(0, offset, DATA[offset : offset + PIECE], fin, ordered=False)]
            )

    @defer.inlineCallbacks
    def test_reversed_unordered_frames_reach_a_plain_protocol_in_order(self) -> Any:
        """
        4,000 bytes sent in reverse order in frames without ORDERED reach a plain protocol of a
        ``kwik:`` server as exactly the in-order bytes, then the end of the stream.
        """
        factory, peer = yield self.serve(Recorder)
        self.sendReversed(peer)
        yield until(lambda: factory.built and factory.built[0].lost, 10)
        server = factory.built[0]
        self.assertEqual(server.received, DATA)
        self.assertTrue(server.lost[0].check(error.ConnectionDone))

    @defer.inlineCallbacks
    def test_message_protocol_gets_every_reversed_piece_once_with_its_offset(self) -> Any:
        """
        The same attack on a server whose protocol provides IKwikMessageProtocol: each of the
        40 pieces reaches ``pieceReceived`` once, with its offset, as it arrived (last first).
        """
        factory, peer = yield self.serve(PieceRecorder)
        self.sendReversed(peer)
        yield until(lambda: factory.built and factory.built[0].lost, 10)
        server = factory.built[0]
        assertEveryPieceOnce(self, server.pieces, DATA)
        self.assertEqual(len(server.pieces), len(DATA) // PIECE)
        self.assertEqual(server.pieces[0][0], len(DATA) - PIECE)
        self.assertEqual(server.chunks, [])
        self.assertTrue(server.lost[0].check(error.ConnectionDone))
