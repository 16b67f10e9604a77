"""
Hostile stream traffic over real loopback sockets against a real ``KwikServerEndpoint``.

Issue 11's stream findings, attacked as a hostile client would: a
:class:`~kwik_twisted.testing.hostile.HostilePeer` (honest handshake, then datagrams sealed with
its real keys) against a server in a child process
(:class:`~kwik_twisted.testing.hostile.ServerProcess`, measured with ``tracemalloc``) whose
streams are plain Twisted protocols (:class:`~kwik_twisted.testing.hostile.DigestReply`: the
SHA-256 of what they read, at end-of-file).

* a stream without the ORDERED flag still reaches a plain protocol as the exact byte stream;
* 250 streams of 1 MiB held behind a gap, then reset by a peer that never acknowledges anything,
  leave the server holding none of it;
* one-byte pieces spread over 256 streams, or sent from the top of a 16 MiB stream window down,
  end in FLOW_CONTROL_ERROR within the per-connection piece bound, at little memory and CPU.

The in-memory versions (exact assertions on the core) are in
``tests/core/streams/test_receive_integrity.py``.
"""

from __future__ import annotations

import hashlib

from twisted.internet import defer

from kwik_twisted.errors import ErrorCode
from kwik_twisted.wire import ResetStreamFrame, StreamFrame
from tests.polling import until
from tests.scenarios.test_hostile_sockets import HostileSocketTest

KiB = 1 << 10
MiB = 1 << 20


class ReceiveOrderSocketTests(HostileSocketTest):
    """The ORDERED flag cannot make a plain protocol read bytes out of order."""

    @defer.inlineCallbacks
    def test_unordered_stream_reaches_a_plain_protocol_in_order(self):
        """The attacker sends 4,000 bytes on a stream with ORDERED clear, in 100-byte pieces
        from the last to the first, then FIN: the server's plain protocol hashes exactly those
        bytes in order (before: it read them in arrival order and answered another digest)."""
        server = self.serve()
        peer = yield self.attacker(server)
        sid = peer.core.open_stream(ordered=False)
        reply = peer.expect_reply(sid)
        data = bytes(range(200)) * 20
        for offset in reversed(range(0, len(data), 100)):
            piece = data[offset : offset + 100]
            peer.send_frames([StreamFrame(sid, offset, piece, ordered=False)])
        peer.send_frames([StreamFrame(sid, len(data), b"", True, ordered=False)])
        digest = yield reply
        self.assertEqual(digest, hashlib.sha256(data).digest())
        self.assertIsNone(peer.termination)


class ResetMemorySocketTests(HostileSocketTest):
    """A reset stream's buffers go at once, whether or not our own reset is acknowledged."""

    STREAMS = 250

    @defer.inlineCallbacks
    def test_reset_streams_hold_nothing_when_acks_never_come(self):
        """
        250 streams each get 1 MiB held behind a gap at offset 0 (lz4 frames: about 5 KiB on
        the wire per MiB), then RESET_STREAM; the attacker sends no ACK at all, so the server's
        own resets stay unacknowledged and no stream can close.  The server's traced memory
        grows by less than 8 MiB over the attack and never peaked more than 16 MiB above
        where it started (before: 250 MiB held, about 150 bytes per attacker byte).
        """
        server = self.serve()
        peer = yield self.attacker(server)
        peer.honest = False  # no ACKs from here on
        before = server.measure()
        chunk = bytes(16 * KiB - 1)
        frames_per_stream = -(-(MiB - 1) // len(chunk))

        def frames(n):
            sid = 4 * n
            offsets = [1 + i * len(chunk) for i in range(frames_per_stream)]
            return [StreamFrame(sid, o, chunk[: MiB - o], compress=True) for o in offsets]

        for n in range(self.STREAMS):
            # Our core must know the stream, or the server's MAX_STREAM_DATA for it would end
            # the attacker's own connection; with honest off it announces nothing.
            self.assertEqual(peer.core.open_stream(), 4 * n)
            if peer.core.streams.credit.limit < (n + 1) * MiB:
                yield until(lambda n=n: peer.core.streams.credit.limit >= (n + 1) * MiB, 15)
            batch = frames(n)
            yield peer.send_many(lambda i, b=batch: b[3 * i : 3 * i + 3], -(-len(batch) // 3))
            peer.send_frames([ResetStreamFrame(4 * n, 7, MiB)])
        after = server.measure(quiet=0.5)
        self.assertEqual(after["terminations"], [])
        self.assertEqual(after["connections"], 1)
        print(f"\n  attacker sent {peer.sent_bytes / KiB:.0f} KiB for {self.STREAMS} MiB reset")
        self.assertGrowthBelow(before, after, 8 * MiB)
        self.assertLess(after["peak"] - before["traced"], 16 * MiB)


class FragmentSocketTests(HostileSocketTest):
    """One-byte pieces: bounded per connection, and cheap to refuse."""

    @defer.inlineCallbacks
    def test_pieces_spread_over_256_streams_are_a_flow_control_error(self):
        """One byte at every odd offset of 256 streams in turn (each far under its own limit
        of 4,096 pieces): past 16,384 pieces on the connection, FLOW_CONTROL_ERROR, with the
        server's traced memory never more than 4 MiB above where it stood (before: accepted,
        about 87 MiB for 4,096 pieces on each stream)."""
        server = self.serve()
        peer = yield self.attacker(server)
        before = server.measure()
        frames = [StreamFrame(4 * s, 1 + 2 * i, b"f") for i in range(80) for s in range(256)]
        yield peer.send_many(lambda k: frames[60 * k : 60 * k + 60], len(frames) // 60, batch=8)
        after = yield self.assertClosedWith(peer, server, ErrorCode.FLOW_CONTROL_ERROR)
        print(f"\n  peak {(after['peak'] - before['traced']) / MiB:.1f} MiB above the start")
        self.assertLess(after["peak"] - before["traced"], 4 * MiB)

    @defer.inlineCallbacks
    def test_descending_pieces_end_quickly_in_a_flow_control_error(self):
        """
        One-byte pieces from offset 360,000 down, every other byte, without ORDERED, into a
        stream with a 16 MiB window (the attack that cost 8.8 s of server CPU for 180,000
        pieces; before the fix 180,000 took 19.7 s in memory and never ended): FLOW_CONTROL_ERROR
        after about 16,400 pieces, for less than 3 s of server CPU (measured: about 1 s, under
        tracemalloc; 0.23 s without it), and the server's memory never peaked 4 MiB above where
        it stood.
        """
        server = self.serve(initial_max_stream_data=16 * MiB, initial_max_data=32 * MiB)
        peer = yield self.attacker(server)
        before = server.measure()
        offsets = list(range(2 * 180_000, 0, -2))

        def build(k):
            return [StreamFrame(0, o, b"d", ordered=False) for o in offsets[60 * k : 60 * k + 60]]

        yield peer.send_many(build, len(offsets) // 60, batch=8)
        after = yield self.assertClosedWith(peer, server, ErrorCode.FLOW_CONTROL_ERROR)
        cpu = after["cpu"] - before["cpu"]
        print(
            f"\n  server CPU {cpu:.2f} s; peak {(after['peak'] - before['traced']) / MiB:.1f} MiB"
        )
        self.assertLess(cpu, 3.0)
        self.assertLess(after["peak"] - before["traced"], 4 * MiB)
