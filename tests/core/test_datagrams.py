"""
Unreliable datagrams (:mod:`kwik_twisted.core.datagrams`; protocol.rst, "DATAGRAM") between two
core connections in simulated time: negotiation, delivery, the send queue's bounds and drop
reports, never retransmitting, congestion accounting, and hostile peers.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core import sending
from kwik_twisted.core.connection import State
from kwik_twisted.core.datagrams import (
    MAX_QUEUED_BYTES,
    MAX_QUEUED_DATAGRAMS,
    packet_payload_limit,
)
from kwik_twisted.errors import DatagramsUnsupported, DatagramTooLarge, ErrorCode
from kwik_twisted.events import DatagramDropped, DatagramReceived
from kwik_twisted.testing.pair import MemoryPair, client_config, forge, server_config
from kwik_twisted.wire import (
    MAX_FRAME_COUNT,
    ControlType,
    DatagramFrame,
    StreamFrame,
    TransportParameter,
)

from .test_connection import established, of_type, settle, terminations


def got(events) -> list[bytes]:
    """The payloads of the DatagramReceived events, in order."""
    return [e.data for e in of_type(events, DatagramReceived)]


def dropped(events) -> list[tuple[int, str]]:
    """(count, reason) of the DatagramDropped events, in order."""
    return [(e.count, e.reason) for e in of_type(events, DatagramDropped)]


class SealedFrames:
    """Records the frames of every packet sealed (wraps :func:`sending.seal`)."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.packets: list[list] = []
        original = sending.seal

        def seal(ctx, path, builder, now, long):
            self.packets.append(list(builder.frames))
            return original(ctx, path, builder, now, long)

        case.patch(sending, "seal", seal)

    def datagram_frames(self) -> list[DatagramFrame]:
        """Every DATAGRAM frame sealed so far."""
        return [f for p in self.packets for f in p if isinstance(f, DatagramFrame)]


class NegotiationTests(SynchronousTestCase):
    """The max_datagram_frame_size transport parameter."""

    def test_both_sides_learn_the_peers_maximum(self):
        """Each side announces its max_datagram_frame_size (1200 by default, 0x0a) and learns the
        peer's; send() then accepts up to the smaller of it and what one packet carries."""
        pair = established(client_config(max_datagram_frame_size=500), server_config())
        self.assertEqual(pair.client.datagrams.peer_max, 1200)
        self.assertEqual(pair.server.datagrams.peer_max, 500)
        self.assertEqual(pair.server.datagrams.max_size, 500)
        self.assertEqual(
            pair.client.datagrams.max_size, min(1200, packet_payload_limit(1350))
        )
        sent = pair.server.handshake.peer_parameters
        self.assertEqual(sent[TransportParameter.MAX_DATAGRAM_FRAME_SIZE], 500)

    def test_zero_is_not_announced_and_means_unsupported(self):
        """A side configured with 0 leaves the parameter out; its peer then refuses to send."""
        pair = established(server=server_config(max_datagram_frame_size=0))
        self.assertNotIn(
            TransportParameter.MAX_DATAGRAM_FRAME_SIZE, pair.client.handshake.peer_parameters
        )
        self.assertEqual(pair.client.datagrams.max_size, 0)
        with self.assertRaises(DatagramsUnsupported):
            pair.client.datagrams.send(b"hello")
        pair.server.datagrams.send(b"the other way works")  # the client accepts them
        settle(pair, 0.1)
        self.assertEqual(got(pair.client_events), [b"the other way works"])

    def test_datagrams_queued_during_the_handshake_go_once_it_completes(self):
        """Before the peer's parameters are known datagrams wait; they go after the handshake."""
        pair = MemoryPair()
        self.assertIsNone(pair.client.datagrams.max_size)
        pair.client.datagrams.send(b"early")
        settle(pair, 0.5)
        self.assertEqual(got(pair.server_events), [b"early"])

    def test_queued_datagrams_the_peer_refuses_are_dropped_and_reported(self):
        """Queued before the handshake, then the peer turns out not to accept them: all dropped,
        one DatagramDropped(count, "unsupported")."""
        pair = MemoryPair(server=server_config(max_datagram_frame_size=0))
        for i in range(3):
            pair.client.datagrams.send(b"x%d" % i)
        settle(pair, 0.5)
        self.assertEqual(dropped(pair.client_events), [(3, "unsupported")])
        self.assertEqual(pair.client.stats["datagrams_dropped"], 3)
        self.assertEqual(got(pair.server_events), [])

    def test_queued_datagrams_larger_than_the_peers_maximum_are_dropped(self):
        """Queued before the handshake, larger than the peer's maximum: dropped as "too large";
        the others go."""
        pair = MemoryPair(server=server_config(max_datagram_frame_size=100))
        pair.client.datagrams.send(b"a" * 100)
        pair.client.datagrams.send(b"b" * 101)
        settle(pair, 0.5)
        self.assertEqual(dropped(pair.client_events), [(1, "too large")])
        self.assertEqual(got(pair.server_events), [b"a" * 100])


class DeliveryTests(SynchronousTestCase):
    """Datagrams over a loss-free pair."""

    def test_datagrams_arrive_both_ways_in_order(self):
        """Datagrams (empty, small, the largest) arrive once each, in order, both ways."""
        pair = established()
        largest = pair.client.datagrams.max_size
        sent = [b"", b"one", b"z" * largest, b"last"]
        for data in sent:
            pair.client.datagrams.send(data)
        pair.server.datagrams.send(b"reply")
        settle(pair, 0.2)
        self.assertEqual(got(pair.server_events), sent)
        self.assertEqual(got(pair.client_events), [b"reply"])
        self.assertEqual(pair.client.stats["datagrams_sent"], 4)
        self.assertEqual(pair.server.stats["datagrams_received"], 4)
        self.assertEqual(pair.client.stats["datagrams_acked"], 4)

    def test_too_large_raises_and_queues_nothing(self):
        """A datagram over the peer's maximum, or over what a packet carries, raises
        DatagramTooLarge and is neither queued nor sent."""
        pair = established(server=server_config(max_datagram_frame_size=5000))
        limit = pair.client.datagrams.max_size
        self.assertEqual(limit, packet_payload_limit(1350))
        with self.assertRaises(DatagramTooLarge):
            pair.client.datagrams.send(b"x" * (limit + 1))
        small = established(server=server_config(max_datagram_frame_size=10))
        with self.assertRaises(DatagramTooLarge):
            small.client.datagrams.send(b"x" * 11)
        small.client.datagrams.send(b"x" * 10)
        settle(small, 0.1)
        self.assertEqual(got(small.server_events), [b"x" * 10])
        self.assertEqual(len(pair.client.datagrams.queue), 0)

    def test_datagrams_go_before_stream_data_in_a_packet(self):
        """A packet with both carries the datagrams first (like critical data), then stream
        data; a packet never holds more than MAX_FRAME_COUNT frames."""
        pair = established()
        sealed = SealedFrames(self)
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"s" * 200)
        for i in range(100):
            pair.client.datagrams.send(b"%d" % i)
        pair.pump()
        mixed = [
            p for p in sealed.packets
            if any(isinstance(f, DatagramFrame) for f in p)
            and any(isinstance(f, StreamFrame) for f in p)
        ]
        self.assertTrue(mixed)
        for frames in mixed:
            kinds = [type(f) for f in frames if type(f) in (DatagramFrame, StreamFrame)]
            self.assertEqual(kinds, sorted(kinds, key=lambda k: k is StreamFrame))
        self.assertLessEqual(max(len(p) for p in sealed.packets), MAX_FRAME_COUNT)
        self.assertEqual(got(pair.server_events), [b"%d" % i for i in range(100)])


class UnreliableTests(SynchronousTestCase):
    """Never retransmitted; counted in flight."""

    def test_lost_datagrams_are_never_sent_again(self):
        """Ten datagrams whose packets are all lost: exactly ten DATAGRAM frames are ever sealed,
        all ten are counted lost, none arrives; stream data lost alongside is retransmitted."""
        pair = established()
        sealed = SealedFrames(self)
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"reliable")
        for i in range(10):
            pair.client.datagrams.send(b"d%d" % i + b"." * 300)
        lost = pair.client.datagrams_to_send(now=pair.now)
        self.assertTrue(lost)  # dropped on the floor
        settle(pair, 3.0)
        self.assertEqual(len(sealed.datagram_frames()), 10)
        self.assertEqual(pair.client.stats["datagrams_sent"], 10)
        self.assertEqual(pair.client.stats["datagrams_lost"], 10)
        self.assertEqual(pair.client.stats["datagrams_acked"], 0)
        self.assertEqual(got(pair.server_events), [])
        stream = b"".join(
            e.data for e in pair.server_events if getattr(e, "stream_id", None) == sid
            and hasattr(e, "data")
        )
        self.assertEqual(stream, b"reliable")

    def test_datagrams_count_in_flight_and_wait_for_the_window(self):
        """Datagrams are ack-eliciting and in flight: with no ACK coming back, sending stops at
        the congestion window and the rest wait in the queue; ACKs let them go."""
        pair = established()
        client = pair.client
        recovery = client.paths[0].recovery
        cwnd = recovery.controller.cwnd
        count = cwnd // 1000 + 20
        for _ in range(count):
            client.datagrams.send(b"w" * 1000)
        out = []
        for _ in range(10):
            out += client.datagrams_to_send(now=pair.now)
        self.assertGreater(recovery.bytes_in_flight, 0)
        self.assertEqual(recovery.bytes_in_flight, sum(len(d) for d, _, _ in out))
        self.assertLess(recovery.bytes_in_flight, cwnd + 1350)
        self.assertGreater(len(client.datagrams.queue), 0)
        self.assertEqual(client.stats["datagrams_sent"] + len(client.datagrams.queue), count)
        for data, local, remote in out:
            pair.dispatcher.receive_datagram(data, remote, local, now=pair.now)
        settle(pair, 1.0)
        self.assertEqual(len(got(pair.server_events)), count)
        self.assertEqual(client.stats["datagrams_acked"], count)


class QueueTests(SynchronousTestCase):
    """The bounded send queue."""

    def test_a_full_queue_drops_the_oldest_and_reports_each_drop(self):
        """Beyond MAX_QUEUED_DATAGRAMS the oldest goes; every drop is a DatagramDropped event and
        counted; the newest datagrams are the ones that arrive."""
        pair = MemoryPair()  # before the handshake nothing leaves the queue
        extra = 10
        total = MAX_QUEUED_DATAGRAMS + extra
        for i in range(total):
            pair.client.datagrams.send(i.to_bytes(4, "big"))
        self.assertEqual(len(pair.client.datagrams.queue), MAX_QUEUED_DATAGRAMS)
        settle(pair, 1.0)
        self.assertEqual(dropped(pair.client_events), [(1, "queue full")] * extra)
        self.assertEqual(pair.client.stats["datagrams_dropped"], extra)
        self.assertEqual(
            got(pair.server_events), [i.to_bytes(4, "big") for i in range(extra, total)]
        )

    def test_the_queue_is_bounded_in_bytes(self):
        """Large datagrams hit MAX_QUEUED_BYTES before the count bound."""
        pair = MemoryPair()
        for _ in range(MAX_QUEUED_DATAGRAMS):
            pair.client.datagrams.send(b"B" * 1100)
        channel = pair.client.datagrams
        self.assertLessEqual(channel.queued_bytes, MAX_QUEUED_BYTES)
        self.assertEqual(channel.queued_bytes, 1100 * len(channel.queue))
        self.assertEqual(len(channel.queue), MAX_QUEUED_BYTES // 1100)


class HostilePeerTests(SynchronousTestCase):
    """Peers breaking the rules of DATAGRAM."""

    def assertViolation(self, pair: MemoryPair, datagram: bytes) -> None:
        """The server closes with PROTOCOL_VIOLATION naming DATAGRAM; the client learns it."""
        pair.deliver_to_server(datagram)
        (mine,) = terminations(pair.server_events)
        self.assertEqual(mine.error_code, ErrorCode.PROTOCOL_VIOLATION)
        self.assertEqual(mine.frame_type, ControlType.DATAGRAM)
        self.assertIn(pair.server.state, (State.CLOSING, State.CLOSED))
        pair.pump()
        (theirs,) = terminations(pair.client_events)
        self.assertEqual(theirs.error_code, ErrorCode.PROTOCOL_VIOLATION)
        self.assertTrue(theirs.by_peer)
        self.assertEqual(got(pair.server_events), [])

    def test_a_datagram_we_did_not_allow_is_a_protocol_violation(self):
        """DATAGRAM to a side whose max_datagram_frame_size is 0: PROTOCOL_VIOLATION (0x0a)."""
        pair = established(server=server_config(max_datagram_frame_size=0))
        self.assertViolation(pair, forge(pair.client, [DatagramFrame(b"sneaky")]))

    def test_a_datagram_over_our_maximum_is_a_protocol_violation(self):
        """DATAGRAM one byte over our max_datagram_frame_size: PROTOCOL_VIOLATION (0x0a)."""
        pair = established(server=server_config(max_datagram_frame_size=64))
        self.assertViolation(pair, forge(pair.client, [DatagramFrame(b"x" * 65)]))

    def test_a_flood_of_tiny_datagrams_costs_one_event_per_frame_and_no_state(self):
        """Packets of 63 empty DATAGRAMs each: one event per frame, nothing queued or kept by
        the receiver, and the connection stays open."""
        pair = established()
        server = pair.server
        for _ in range(200):
            pair.deliver_to_server(forge(pair.client, [DatagramFrame(b"")] * MAX_FRAME_COUNT))
        self.assertEqual(len(got(pair.server_events)), 200 * MAX_FRAME_COUNT)
        self.assertEqual(server.stats["datagrams_received"], 200 * MAX_FRAME_COUNT)
        self.assertEqual(len(server.datagrams.queue), 0)
        self.assertFalse(terminations(pair.server_events))
        self.assertEqual(server.state, State.ESTABLISHED)
