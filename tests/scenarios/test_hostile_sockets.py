"""
Hostile peers over real loopback sockets against a real ``KwikServerEndpoint``.

The server runs in a child process (:class:`~kwik_twisted.testing.hostile.ServerProcess`) under
``tracemalloc``, so the memory figures are the server's alone; the attacker is a
:class:`~kwik_twisted.testing.hostile.HostilePeer` (an honest handshake, then datagrams sealed with
its real keys) or a :class:`~kwik_twisted.testing.hostile.HandshakeFlooder`.  Each attack either
earns the error code ``docs/protocol.rst`` gives it (the attacker sees it in its
``ConnectionTerminated``, the server records it) or is absorbed with the server's memory growth
under the bound written next to it; docs/testing.rst ("Hostile peers over sockets") lists the
bounds, the measured figures and the reasons.

The in-memory versions of these attacks (exact frame-by-frame assertions) are in
``tests/core/test_hostile.py``; here the point is the whole stack on real sockets, and memory.
"""

from __future__ import annotations

import hashlib
import random
from zlib import crc32

import lz4.block
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

from kwik_twisted.endpoints import KwikClientEndpoint, closeClientConnections
from kwik_twisted.errors import ErrorCode
from kwik_twisted.testing.hostile import (
    COMPRESSED,
    ENCRYPTED,
    FIN,
    ORDERED,
    HandshakeFlooder,
    HostilePeer,
    ServerProcess,
    raw_control_frame,
    raw_stream_frame,
    varints,
)
from kwik_twisted.testing.pair import client_config, dev_certificates
from kwik_twisted.wire import (
    AckFrame,
    CompressionInfo,
    ControlType,
    PacketType,
    PathChallengeFrame,
    StreamFrame,
)
from tests.polling import until

KiB = 1 << 10
MiB = 1 << 20
#: The smallest windows the core accepts (core/streams/manager.py), used to keep attacks short.
STREAM_WINDOW = 256 * KiB
CONN_WINDOW = MiB
MAX_STREAMS = 100


class HostileSocketTest(TestCase):
    """A measured server process, attackers aimed at it, and the assertions they share."""

    timeout = 120

    def serve(self, **config) -> ServerProcess:
        """Start a server process with these ``ConnectionConfig`` overrides (stopped at
        cleanup)."""
        self.certs = dev_certificates()
        server = ServerProcess(self.certs, self.mktemp(), **config)
        self.addCleanup(server.stop)
        server.start()
        return server

    @defer.inlineCallbacks
    def attacker(self, server: ServerProcess, seed: int = 1):
        """A hostile peer, handshake confirmed (its socket stops at cleanup)."""
        peer = HostilePeer(reactor, server.address, client_config(self.certs), seed=seed)
        self.addCleanup(peer.stop)
        yield peer.connect()
        return peer

    @defer.inlineCallbacks
    def assertClosedWith(self, peer: HostilePeer, server: ServerProcess, code: int):
        """The attacker learns ``code`` from the server's CONNECTION_CLOSE, and the server
        recorded that it closed with ``code``; returns the server's figures."""
        yield until(lambda: peer.termination is not None, 15)
        event = peer.termination
        self.assertEqual(event.error_code, code, event)
        self.assertTrue(event.by_peer)
        self.assertFalse(event.application)
        figures = server.measure()
        codes = [(c, by_peer) for c, by_peer, _ in figures["terminations"]]
        self.assertIn((code, False), codes)
        return figures

    def assertGrowthBelow(self, before: dict, after: dict, bound: int) -> int:
        """The server's traced memory grew by less than ``bound`` bytes; returns the growth."""
        growth = after["traced"] - before["traced"]
        print(f"\n  server traced growth {growth / KiB:.1f} KiB (bound {bound / KiB:.0f} KiB)")
        self.assertLess(growth, bound)
        return growth


class LimitTests(HostileSocketTest):
    """Streams beyond MAX_STREAMS, data beyond the flow-control windows."""

    @defer.inlineCallbacks
    def test_streams_beyond_the_limit_close_with_stream_limit_error(self):
        """The attacker opens all 100 streams it is allowed (100 bytes each), then stream
        number 100: STREAM_LIMIT_ERROR (0x04).  The 100 legal streams grow the server by less
        than 1 MiB (measured: about 0.3 MiB; bound: 3x margin over the streams' state)."""
        server = self.serve(max_streams=MAX_STREAMS)
        peer = yield self.attacker(server)
        before = server.measure()
        yield peer.send_many(lambda n: [StreamFrame(4 * n, 0, b"s" * 100)], MAX_STREAMS)
        during = server.measure()
        self.assertEqual(during["terminations"], [])
        self.assertGrowthBelow(before, during, MiB)
        peer.send_frames([StreamFrame(4 * MAX_STREAMS, 0, b"one too many")])
        yield self.assertClosedWith(peer, server, ErrorCode.STREAM_LIMIT_ERROR)

    @defer.inlineCallbacks
    def test_data_beyond_the_stream_window_is_a_flow_control_error(self):
        """One byte at the stream window's end (256 KiB) closes with FLOW_CONTROL_ERROR
        (0x03); a byte just below it did not."""
        server = self.serve(initial_max_stream_data=STREAM_WINDOW)
        peer = yield self.attacker(server)
        peer.send_frames([StreamFrame(0, STREAM_WINDOW - 1, b"x")])
        self.assertEqual(server.measure()["terminations"], [])
        peer.send_frames([StreamFrame(0, STREAM_WINDOW, b"x")])
        yield self.assertClosedWith(peer, server, ErrorCode.FLOW_CONTROL_ERROR)

    @defer.inlineCallbacks
    def test_data_beyond_the_connection_window_is_a_flow_control_error(self):
        """Four streams each filled up to their 256 KiB window use the 1 MiB connection
        window; one byte on a fifth stream closes with FLOW_CONTROL_ERROR, although no stream
        exceeded its own window."""
        server = self.serve(initial_max_data=CONN_WINDOW, initial_max_stream_data=STREAM_WINDOW)
        peer = yield self.attacker(server)
        yield peer.send_many(lambda n: [StreamFrame(4 * n, STREAM_WINDOW - 1, b"x")], 4)
        self.assertEqual(server.measure()["terminations"], [])
        peer.send_frames([StreamFrame(16, 0, b"y")])
        yield self.assertClosedWith(peer, server, ErrorCode.FLOW_CONTROL_ERROR)


class ReassemblyGapTests(HostileSocketTest):
    """A peer that holds gaps open: legal within the windows, bounded by them."""

    @defer.inlineCallbacks
    def test_held_gaps_on_many_streams_stay_within_the_connection_window(self):
        """
        Streams 10 to 109 each get 10,000 bytes in 1,000-byte chunks from offset 1 on (byte 0
        never comes, so nothing is delivered): 1,000,000 bytes held, just under the 1 MiB
        connection window.  Holding gaps within the windows is legal, so the connection
        survives (an honest request on stream 4 still gets its answer); the server's memory
        grows by less than 2 MiB (the window plus 1 MiB for a hundred streams' state and 1,000
        chunks; measured about 1.4 MiB).  Then a frame that would take the connection past its
        window closes it with FLOW_CONTROL_ERROR: the window really is what bounds the buffer.
        """
        server = self.serve(
            initial_max_data=CONN_WINDOW,
            initial_max_stream_data=STREAM_WINDOW,
            max_streams=128,
        )
        peer = yield self.attacker(server)
        before = server.measure()
        chunks = [(4 * (10 + n), 1 + 1000 * i) for n in range(100) for i in range(10)]
        random.Random(6).shuffle(chunks)

        def build(k):
            return [StreamFrame(sid, offset, b"g" * 1000) for sid, offset in chunks[k : k + 1]]

        yield peer.send_many(build, len(chunks), batch=32)
        after = server.measure()
        self.assertEqual(after["terminations"], [])
        self.assertEqual(after["connections"], 1)
        self.assertGrowthBelow(before, after, 2 * MiB)
        reply = yield peer.request(b"still there?")
        self.assertEqual(reply, hashlib.sha256(b"still there?").digest())
        peer.send_frames([StreamFrame(4 * 120, STREAM_WINDOW - 1, b"x")])
        yield self.assertClosedWith(peer, server, ErrorCode.FLOW_CONTROL_ERROR)


    @defer.inlineCallbacks
    def test_one_byte_fragments_are_a_flow_control_error_before_memory_grows(self):
        """
        One byte at every odd offset of one stream's 256 KiB window (131,072 one-byte frames):
        the window bounds the *bytes* held, and the reassembler bounds the *pieces* (after
        joining touching pieces, more than 512 separate runs in a 256 KiB window is a
        FLOW_CONTROL_ERROR, protocol.rst "Flow control").  The server closes with that code,
        and its traced memory never peaked more than 1 MiB above where it stood before the
        attack (before the bound: about 12 MiB, 40x the window).
        """
        server = self.serve(initial_max_stream_data=STREAM_WINDOW)
        peer = yield self.attacker(server)
        before = server.measure()
        offsets = list(range(1, STREAM_WINDOW, 2))[:4096]  # the bound is hit after 1,024

        def build(i):  # 32 frames a packet: within the Frame Count limit of 63
            chunk = offsets[i * 32 : (i + 1) * 32]
            return [StreamFrame(0, offset, b"f") for offset in chunk]

        yield peer.send_many(build, len(offsets) // 32, batch=16)
        after = yield self.assertClosedWith(peer, server, ErrorCode.FLOW_CONTROL_ERROR)
        # tracemalloc's peak is since the server started: the attack may not raise it beyond
        # 1 MiB above the memory in use before it (measured: it did not raise it at all).
        self.assertLessEqual(after["peak"], max(before["peak"], before["traced"] + MiB))


class PathChallengeFloodTests(HostileSocketTest):
    """PATH_CHALLENGE floods cost the flooder, not the server."""

    @defer.inlineCallbacks
    def test_path_challenge_flood_is_answered_at_most_once_per_packet(self):
        """
        2,000 packets of 20 PATH_CHALLENGEs each (40,000 challenges): the server sends back no
        more datagrams than it received and fewer bytes (it queues at most one response per
        path: protocol.rst, PATH_CHALLENGE), keeps the connection open (an honest request
        still gets its answer), and grows by less than 512 KiB (measured: under 100 KiB).
        """
        server = self.serve()
        peer = yield self.attacker(server)
        before = server.measure()
        rng = random.Random(7)
        sent_before, received_before = peer.sent_datagrams, peer.received_datagrams
        bytes_before = peer.received_bytes
        sent_bytes = yield peer.send_many(
            lambda i: [PathChallengeFrame(rng.randbytes(8)) for _ in range(20)], 2000, batch=32
        )
        after = server.measure()
        sent = peer.sent_datagrams - sent_before
        answered = peer.received_datagrams - received_before
        answered_bytes = peer.received_bytes - bytes_before
        print(
            f"\n  {sent} challenge datagrams ({sent_bytes} bytes) -> {answered} datagrams "
            f"({answered_bytes} bytes) back"
        )
        self.assertEqual(after["terminations"], [])
        self.assertLessEqual(answered, sent)
        self.assertLess(answered_bytes, sent_bytes)
        self.assertGrowthBelow(before, after, 512 * KiB)
        reply = yield peer.request(b"ping")
        self.assertEqual(reply, hashlib.sha256(b"ping").digest())


class AckAttackTests(HostileSocketTest):
    """ACK frames for packets never sent, with too many ranges, or impossible ranges."""

    def ack(self, largest: int, count: int, first: int, *ranges: int) -> bytes:
        """A raw ACK on path 0 with ``count`` claimed additional ranges and these varints."""
        return raw_control_frame(ControlType.ACK, varints(0, largest, 0, count, first, *ranges))

    @defer.inlineCallbacks
    def test_ack_of_packets_never_sent_is_a_protocol_violation(self):
        """Acknowledging sequence number 1,000,000 (the server sent a handful): PROTOCOL_VIOLATION
        (0x0a)."""
        server = self.serve()
        peer = yield self.attacker(server)
        peer.send_frames([AckFrame(0, ((1_000_000, 1_000_000),), 0)])
        yield self.assertClosedWith(peer, server, ErrorCode.PROTOCOL_VIOLATION)

    @defer.inlineCallbacks
    def test_ack_with_257_ranges_is_a_frame_encoding_error(self):
        """An ACK with 257 additional ranges (the limit is 256): FRAME_ENCODING_ERROR (0x07)."""
        server = self.serve()
        peer = yield self.attacker(server)
        body = self.ack(2 * 258 + 10, 257, 0, *([0, 0] * 257))
        peer.send_plaintext(body)
        yield self.assertClosedWith(peer, server, ErrorCode.FRAME_ENCODING_ERROR)

    @defer.inlineCallbacks
    def test_ack_claiming_a_billion_ranges_is_rejected_without_work(self):
        """An ACK whose Range Count claims 2**30 ranges but carries one: FRAME_ENCODING_ERROR,
        and the server's memory does not move (it never allocates for the claimed count)."""
        server = self.serve()
        peer = yield self.attacker(server)
        before = server.measure()
        peer.send_plaintext(self.ack(3, 1 << 30, 0, 0, 0))
        after = yield self.assertClosedWith(peer, server, ErrorCode.FRAME_ENCODING_ERROR)
        self.assertGrowthBelow(before, after, 256 * KiB)

    @defer.inlineCallbacks
    def test_ack_range_below_zero_is_a_frame_encoding_error(self):
        """An ACK whose second range lies 2**40 below its first (below sequence number 0):
        FRAME_ENCODING_ERROR."""
        server = self.serve()
        peer = yield self.attacker(server)
        peer.send_plaintext(self.ack(3, 1, 0, 1 << 40, 0))
        yield self.assertClosedWith(peer, server, ErrorCode.FRAME_ENCODING_ERROR)


def compressed(data: bytes, claimed: int | None = None) -> bytes:
    """The COMPRESSED form of ``data`` (protocol.rst, "Compression"), claiming ``claimed``
    decompressed bytes (default: the truth)."""
    size = len(data) if claimed is None else claimed
    return varints(size) + lz4.block.compress(data, store_size=False)


class CompressionBombTests(HostileSocketTest):
    """lz4 bombs: typed COMPRESSION_ERROR before (or instead of) expanding them."""

    def bomb(self, peer: HostilePeer, frames: list[bytes]) -> None:
        """Send ``frames`` (raw STREAM frames) in one packet with Compression Info lz4."""
        peer.send_plaintext(
            b"".join(frames),
            frame_count=len(frames),
            packet_type=PacketType.DATA,
            compression=CompressionInfo.LZ4_BLOCK,
        )

    def frame(self, sid: int, data: bytes, wire: bytes, offset: int = 0, fin=False) -> bytes:
        """A COMPRESSED stream frame whose checksum is that of ``data``."""
        flags = ENCRYPTED | ORDERED | COMPRESSED | (FIN if fin else 0)
        return raw_stream_frame(sid, wire, offset=offset, flags=flags, checksum=crc32(data))

    @defer.inlineCallbacks
    def test_frame_claiming_more_than_16_kib_is_a_compression_error(self):
        """A 1 KiB frame that truly expands to 256 KiB (and says so): COMPRESSION_ERROR (0x12),
        decided from the claimed length before decompressing."""
        server = self.serve()
        peer = yield self.attacker(server)
        data = bytes(256 * KiB)
        self.bomb(peer, [self.frame(0, data, compressed(data))])
        yield self.assertClosedWith(peer, server, ErrorCode.COMPRESSION_ERROR)

    @defer.inlineCallbacks
    def test_frame_expanding_beyond_its_claim_is_a_compression_error(self):
        """A frame claiming 16 KiB whose lz4 data would expand to 256 KiB: COMPRESSION_ERROR
        (the decompressor is bounded by the claim)."""
        server = self.serve()
        peer = yield self.attacker(server)
        data = bytes(256 * KiB)
        self.bomb(peer, [self.frame(0, data[: 16 * KiB], compressed(data, 16 * KiB))])
        yield self.assertClosedWith(peer, server, ErrorCode.COMPRESSION_ERROR)

    @defer.inlineCallbacks
    def test_packet_expanding_beyond_64_kib_is_a_compression_error(self):
        """Five frames of 16 KiB each (80 KiB, about 80 bytes each on the wire) in one packet:
        beyond the 64 KiB per packet, COMPRESSION_ERROR; the server's memory grows by less than
        512 KiB over the attack (one packet's bound is 64 KiB)."""
        server = self.serve()
        peer = yield self.attacker(server)
        before = server.measure()
        data = bytes(16 * KiB)
        frames = [self.frame(0, data, compressed(data), offset=i * len(data)) for i in range(5)]
        self.bomb(peer, frames)
        after = yield self.assertClosedWith(peer, server, ErrorCode.COMPRESSION_ERROR)
        self.assertGrowthBelow(before, after, 512 * KiB)

    @defer.inlineCallbacks
    def test_compressed_data_within_the_bounds_is_delivered(self):
        """Control: three 16 KiB frames (48 KiB, within both bounds) with FIN arrive intact:
        the server answers their SHA-256 (the bombs above fail for their size alone)."""
        server = self.serve()
        peer = yield self.attacker(server)
        sid = peer.core.open_stream()
        reply = peer.expect_reply(sid)
        data = random.Random(8).randbytes(4 * KiB) * 12
        parts = [data[i : i + 16 * KiB] for i in range(0, len(data), 16 * KiB)]
        frames = [
            self.frame(sid, part, compressed(part), offset=16 * KiB * i, fin=i == 2)
            for i, part in enumerate(parts)
        ]
        self.bomb(peer, frames)
        digest = yield reply
        self.assertEqual(digest, hashlib.sha256(data).digest())
        self.assertIsNone(peer.termination)


class Digest(Protocol):
    """Sends ``data`` and FIN; ``reply`` fires with what comes back."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.received = b""
        self.reply = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.data)
        self.transport.loseWriteConnection()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason) -> None:
        self.reply.callback(self.received)


class HandshakeFloodTests(HostileSocketTest):
    """Many Initial packets from many source ports."""

    ATTEMPTS = 1000
    SOCKETS = 200

    @defer.inlineCallbacks
    def test_handshake_flood_is_bounded_and_a_real_client_still_connects(self):
        """
        1,000 valid first flights (2,000 Initial datagrams of 1,350 and 1,200 bytes) from 200
        source ports while a real client connects: the client gets its answer; the server
        creates at most one connection per attempt, each half-open connection costs it less than
        48 KiB traced and 256 KiB RSS (measured: about 21 KiB and 110 KiB), it sends the flooder
        at most three times what it received (anti-amplification; measured 1.6x), and once its
        8-second idle timeout has passed every half-open connection is gone and the traced
        memory is back within 2 MiB of where it started.
        """
        server = self.serve(idle_timeout=8.0)
        before = server.measure()
        flooder = HandshakeFlooder(
            reactor, server.address, client_config(self.certs), sockets=self.SOCKETS, seed=9
        ).start()
        self.addCleanup(flooder.stop)
        self.addCleanup(closeClientConnections, reactor)
        flooding = flooder.flood(self.ATTEMPTS)
        yield task.deferLater(reactor, 0.1, lambda: None)
        endpoint = KwikClientEndpoint(
            reactor,
            "127.0.0.1",
            server.address[1],
            config=client_config(self.certs),
            timeout=60,
            reuse=False,
        )
        client = Digest(b"legitimate")
        yield connectProtocol(endpoint, client)
        reply = yield client.reply
        self.assertEqual(reply, hashlib.sha256(b"legitimate").digest())
        yield flooding
        during = server.measure(quiet=0.5)
        accepted = during["accepted"]
        print(
            f"\n  {accepted} connections accepted, {during['connections']} live; "
            f"traced +{(during['traced'] - before['traced']) / MiB:.1f} MiB, "
            f"RSS +{(during['rss'] - before['rss']) / MiB:.1f} MiB; flooder sent "
            f"{flooder.sent_bytes} bytes, got {flooder.received_bytes}"
        )
        self.assertLessEqual(accepted, self.ATTEMPTS + 1)
        self.assertLessEqual(during["connections"], accepted)
        self.assertLess((during["traced"] - before["traced"]) / accepted, 48 * KiB)
        self.assertLess((during["rss"] - before["rss"]) / accepted, 256 * KiB)
        self.assertLessEqual(flooder.received_bytes, 3 * flooder.sent_bytes)
        yield closeClientConnections(reactor)
        yield until(lambda: server.measure(quiet=0.0)["connections"] == 0, 30)
        after = server.measure()
        self.assertGrowthBelow(before, after, 2 * MiB)
