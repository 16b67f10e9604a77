"""
The server's stateless answers end to end in simulated time: stateless reset after a restart,
Retry (``retry=yes|no|auto``) and Version Negotiation (protocol.rst, "Stateless reset", "Retry",
"Version negotiation").
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.config import MIN_DATAGRAM_SIZE
from kwik_twisted.core.crypto.tokens import MIN_RESET_SIZE, encode_retry
from kwik_twisted.core.dispatcher import ServerDispatcher
from kwik_twisted.core.entropy import SeededEntropy
from kwik_twisted.core.lifecycle import State
from kwik_twisted.errors import ConfigurationError, ErrorCode
from kwik_twisted.events import ConnectionTerminated, StreamDataReceived
from kwik_twisted.testing.pair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    MemoryPair,
    client_config,
    server_config,
)
from kwik_twisted.wire import VERSION

SECRET = bytes(range(32))


def terminations(pair: MemoryPair) -> list[ConnectionTerminated]:
    """The client's ConnectionTerminated events so far."""
    pair._collect()
    return [e for e in pair.client_events if isinstance(e, ConnectionTerminated)]


def received(events) -> bytes:
    """The stream bytes in ``events``."""
    return b"".join(e.data for e in events if isinstance(e, StreamDataReceived))


class StatelessResetTests(SynchronousTestCase):
    """A restarted server resets the connections of its previous life at once."""

    def restarted(self, secret: bytes | None = SECRET) -> MemoryPair:
        """An established pair (server secret SECRET) whose server then restarts: a new
        dispatcher with ``secret``."""
        pair = MemoryPair(server=server_config(static_secret=SECRET)).handshake()
        pair.dispatcher = ServerDispatcher(
            server_config(static_secret=secret), entropy=SeededEntropy(99)
        )
        return pair

    def test_a_restarted_servers_reset_ends_the_client_within_one_rtt(self) -> None:
        """The client's next packet after the restart is answered by a reset; the client ends
        at once (no simulated time passes) with STATELESS_RESET, reported as the peer's, and
        sends nothing more."""
        pair = self.restarted()
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"hello")
        pair.pump()
        ends = terminations(pair)
        self.assertEqual([e.error_code for e in ends], [ErrorCode.STATELESS_RESET])
        self.assertTrue(ends[0].by_peer)
        self.assertEqual(pair.dispatcher.stats["stateless_reset_sent"], 1)
        pair.advance(0.001)
        self.assertIs(pair.client.state, State.CLOSED)
        self.assertEqual(pair.client.datagrams_to_send(now=pair.now), [])

    def test_another_secret_gives_no_reset_the_client_believes(self) -> None:
        """A server with another secret (another server) answers with a reset the client does
        not recognise: the client goes on (it ends later by its own timers, not by a reset)."""
        pair = self.restarted(secret=b"\x55" * 32)
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"hello")
        pair.pump()
        self.assertEqual(pair.dispatcher.stats["stateless_reset_sent"], 1)
        self.assertEqual(terminations(pair), [])

    def test_a_reset_is_smaller_than_what_it_answers_and_never_answers_a_reset(self) -> None:
        """Each reset is shorter than the datagram it answers, so answering resets with resets
        (two servers that both lost state) dies out; nothing of MIN_RESET_SIZE or less is
        answered."""
        dispatcher = ServerDispatcher(server_config(), entropy=SeededEntropy(5))
        datagram = b"\x40" + b"\x11" * 8 + bytes(1300)
        sizes = []
        for _ in range(100):
            dispatcher.receive_datagram(datagram, SERVER_ADDR, CLIENT_ADDR, now=1.0)
            replies = dispatcher.take_replies()
            if not replies:
                break
            (datagram, _, _), = replies
            sizes.append(len(datagram))
        self.assertEqual(sizes, sorted(sizes, reverse=True))
        self.assertTrue(all(a > b for a, b in zip(sizes, sizes[1:])))
        self.assertLessEqual(len(datagram), MIN_RESET_SIZE)
        self.assertLess(len(sizes), 40)

    def test_resets_are_rate_limited_per_source_and_in_all(self) -> None:
        """A thousand datagrams for unknown CIDs within a millisecond: from one source network
        they get at most its burst of resets (5); from a thousand networks at most the server's
        burst (200); the junk of one network leaves another network's reset untouched."""
        from kwik_twisted.core.dispatcher import ANSWER_BURST, SOURCE_ANSWER_BURST

        def junk(n: int) -> bytes:
            return b"\x40" + n.to_bytes(8, "big") + bytes(100)

        dispatcher = ServerDispatcher(server_config(), entropy=SeededEntropy(5))
        for n in range(1000):
            dispatcher.receive_datagram(junk(n), SERVER_ADDR, ("203.0.113.7", 999), now=1.0)
        self.assertEqual(len(dispatcher.take_replies()), SOURCE_ANSWER_BURST)
        dispatcher.receive_datagram(junk(5000), SERVER_ADDR, CLIENT_ADDR, now=1.0)
        self.assertEqual(len(dispatcher.take_replies()), 1)
        dispatcher = ServerDispatcher(server_config(), entropy=SeededEntropy(5))
        for n in range(1000):
            source = (f"10.{n // 256}.{n % 256}.1", 999)
            dispatcher.receive_datagram(junk(n), SERVER_ADDR, source, now=1.0 + n * 1e-6)
        self.assertEqual(len(dispatcher.take_replies()), ANSWER_BURST)
        self.assertEqual(dispatcher.stats["dropped_unknown_connection"], 1000)
        self.assertLessEqual(len(dispatcher.source_limiters), 4096)


    def test_the_sources_tracked_are_bounded(self) -> None:
        """Junk from 5000 source networks leaves at most MAX_ANSWER_SOURCES buckets, the most
        recent ones."""
        from kwik_twisted.core.dispatcher import MAX_ANSWER_SOURCES

        dispatcher = ServerDispatcher(server_config(), entropy=SeededEntropy(5))
        for n in range(5000):
            source = (f"10.{n // 256}.{n % 256}.1", 999)
            datagram = b"\x40" + n.to_bytes(8, "big") + bytes(100)
            dispatcher.receive_datagram(datagram, SERVER_ADDR, source, now=1.0 + n)
        self.assertEqual(len(dispatcher.source_limiters), MAX_ANSWER_SOURCES)
        self.assertIn(bytes((10, 4999 // 256, 4999 % 256)), dispatcher.source_limiters)
        self.assertNotIn(bytes((10, 0, 0)), dispatcher.source_limiters)


class RetryTests(SynchronousTestCase):
    """Address validation with Retry tokens."""

    def test_retry_yes_validates_the_client_and_the_connection_works(self) -> None:
        """With retry=yes the first Initial is answered by a Retry; the client's second Initial
        carries the token; the handshake completes and data flows exactly."""
        pair = MemoryPair(server=server_config(retry="yes")).handshake()
        flight = pair.dispatcher.stats["retry_sent"]  # one per datagram of the first flight
        self.assertGreaterEqual(flight, 1)
        self.assertGreaterEqual(pair.dispatcher.stats["retry_token_valid"], 1)
        self.assertEqual(pair.client.stats["retry_received"], 1)
        self.assertTrue(pair.server.paths[0].address_validated)
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"r" * 50_000, end_stream=True)
        pair.advance(1.0)
        self.assertEqual(received(pair.server_events), b"r" * 50_000)

    def test_retry_no_sends_none(self) -> None:
        """With retry=no no Retry is ever sent."""
        pair = MemoryPair(server=server_config(retry="no")).handshake()
        self.assertEqual(pair.dispatcher.stats["retry_sent"], 0)

    def test_a_forged_retry_is_ignored(self) -> None:
        """A Retry whose integrity tag was computed for another original DCID is dropped: the
        handshake completes with the original CIDs."""
        pair = MemoryPair()
        pair.client.datagrams_to_send(now=pair.now)  # the first flight leaves
        forged = encode_retry(pair.client.local_cid, b"\x09" * 8, b"t" * 52, b"\x00" * 8)
        pair.deliver_to_client(forged)
        self.assertEqual(pair.client.stats["retry_received"], 0)
        pair.advance(3.0)  # the first flight was not delivered: it is sent again
        self.assertTrue(pair.server.handshake_complete and pair.client.handshake_complete)

    def test_a_token_from_another_address_is_refused(self) -> None:
        """A Retry token replayed from another IP address creates no connection."""
        pair = MemoryPair(server=server_config(retry="yes"))
        first = [d for d, _, _ in pair.client.datagrams_to_send(now=pair.now)]
        for datagram in first:
            pair.dispatcher.receive_datagram(datagram, SERVER_ADDR, CLIENT_ADDR, now=pair.now)
        retry = pair.dispatcher.take_replies()[0][0]  # a Retry per Initial; the first counts
        pair.client.receive_datagram(retry, CLIENT_ADDR, SERVER_ADDR, now=pair.now)
        second = [d for d, _, _ in pair.client.datagrams_to_send(now=pair.now)]
        elsewhere = ("203.0.113.9", 4000)
        for datagram in second:
            pair.dispatcher.receive_datagram(datagram, SERVER_ADDR, elsewhere, now=pair.now)
        self.assertEqual(pair.dispatcher.stats["retry_token_invalid"], len(second))
        self.assertEqual(pair.dispatcher.live, {})

    def test_an_expired_token_is_refused(self) -> None:
        """A token presented after its lifetime (10 s) creates no connection."""
        pair = MemoryPair(server=server_config(retry="yes"))
        for datagram, _, _ in pair.client.datagrams_to_send(now=pair.now):
            pair.dispatcher.receive_datagram(datagram, SERVER_ADDR, CLIENT_ADDR, now=pair.now)
        retry = pair.dispatcher.take_replies()[0][0]
        pair.client.receive_datagram(retry, CLIENT_ADDR, SERVER_ADDR, now=pair.now)
        for datagram, _, _ in pair.client.datagrams_to_send(now=pair.now):
            pair.dispatcher.receive_datagram(datagram, SERVER_ADDR, CLIENT_ADDR, now=pair.now + 11)
        self.assertEqual(pair.dispatcher.live, {})

    def test_auto_switches_retry_on_during_a_flood(self) -> None:
        """Under retry=auto, a flood of spoofed first flights (never completing) creates
        connections up to the threshold; from then on every new client gets a Retry, and a real
        client still connects through it."""
        flood = MemoryPair(server=server_config(retry="auto"))
        dispatcher = flood.dispatcher
        initials = 0
        for n in range(200):
            spoofer = MemoryPair(seed=1000 + n)
            flight = spoofer.client.datagrams_to_send(now=flood.now)
            if n >= dispatcher.retry_threshold:
                initials += len(flight)
            for datagram, _, _ in flight:
                dispatcher.receive_datagram(
                    datagram, SERVER_ADDR, (f"198.51.100.{n % 250}", 1000 + n), now=flood.now
                )
        self.assertEqual(len(dispatcher.live), dispatcher.retry_threshold)
        self.assertEqual(dispatcher.stats["retry_sent"], initials)
        dispatcher.take_replies()
        flood.advance(0.5)
        server = dispatcher.connections[flood.client.peer_cid]
        self.assertTrue(flood.client.handshake_complete and server.handshake_complete)
        self.assertEqual(flood.client.stats["retry_received"], 1)

    def test_retry_modes_are_checked(self) -> None:
        """An unknown retry mode is a ConfigurationError."""
        self.assertRaises(
            ConfigurationError, ServerDispatcher, server_config(retry="sometimes"),
            entropy=SeededEntropy(1),
        )


class VersionNegotiationTests(SynchronousTestCase):
    """Long envelopes of another version."""

    def test_an_unknown_version_is_answered_with_ours(self) -> None:
        """A 1200-byte long envelope of version 0x1a2a3a4a gets a Version Negotiation listing
        Kwik v3, with the CIDs swapped; a short one gets nothing (no amplification)."""
        dispatcher = ServerDispatcher(server_config(), entropy=SeededEntropy(5))
        dcid, scid = b"\x01" * 8, b"\x02" * 8
        head = b"\xc0" + bytes.fromhex("1a2a3a4a") + b"\x08" + dcid + b"\x08" + scid
        dispatcher.receive_datagram(head + bytes(MIN_DATAGRAM_SIZE), SERVER_ADDR, CLIENT_ADDR,
                                    now=1.0)
        (reply, _, remote), = dispatcher.take_replies()
        self.assertEqual(remote, CLIENT_ADDR)
        self.assertEqual(reply[1:5], bytes(4))
        self.assertEqual(reply[6:14], scid)
        self.assertEqual(reply[15:23], dcid)
        self.assertEqual(int.from_bytes(reply[23:27], "big"), VERSION)
        dispatcher.receive_datagram(head + bytes(100), SERVER_ADDR, CLIENT_ADDR, now=1.0)
        self.assertEqual(dispatcher.take_replies(), [])

    def test_a_client_told_of_other_versions_ends_at_once(self) -> None:
        """A Version Negotiation without our version, before the server answered, ends the
        client with VERSION_NEGOTIATION naming what the server speaks; one listing our version
        is ignored."""
        from kwik_twisted.core.crypto.tokens import encode_version_negotiation

        pair = MemoryPair(client_config())
        pair.client.datagrams_to_send(now=pair.now)
        ours = encode_version_negotiation(pair.client.local_cid, pair.client.original_dcid,
                                          [0x1A2A3A4A, VERSION], 0)
        pair.deliver_to_client(ours)
        self.assertEqual(terminations(pair), [])
        other = encode_version_negotiation(pair.client.local_cid, pair.client.original_dcid,
                                           [0x1A2A3A4A], 0)
        pair.deliver_to_client(other)
        ends = terminations(pair)
        self.assertEqual([e.error_code for e in ends], [ErrorCode.VERSION_NEGOTIATION])
        self.assertIn("0x1a2a3a4a", ends[0].reason)


class UsedUpKeysTests(SynchronousTestCase):
    """A connection whose send keys reach their limit ends, sending nothing more."""

    def test_a_connection_ends_silently_when_its_keys_are_used_up(self) -> None:
        """With the limit at 30 packets and no update possible (interval beyond it), the client
        ends with AEAD_LIMIT_REACHED after sealing at most 30 application packets, as its own
        close, and puts nothing more on the wire."""
        pair = MemoryPair(client_config(key_update_interval=10**6)).handshake()
        phases = pair.client.keys.phases
        phases.limit = phases.sent + 30
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"z" * 200_000)
        pair.advance(2.0)
        ends = terminations(pair)
        self.assertEqual([e.error_code for e in ends], [ErrorCode.AEAD_LIMIT_REACHED])
        self.assertFalse(ends[0].by_peer)
        self.assertIs(pair.client.state, State.CLOSED)
        self.assertLessEqual(phases.sent, phases.limit + 64)  # at most one send round beyond
        self.assertEqual(pair.client.datagrams_to_send(now=pair.now), [])


class WorkerRoutingTests(SynchronousTestCase):
    """A worker's dispatcher issues only CIDs that route to itself and never resets another's."""

    def test_a_workers_cids_all_carry_its_route_byte(self) -> None:
        """Worker 1 of 2 (server ID 0xab): its handshake CID, every CID it issues for further
        paths and its Retry SCIDs have the server ID, then a route byte that is 1 mod 2."""
        from kwik_twisted.core.lb import owns, route_byte

        config = server_config(worker_index=1, worker_count=2, server_id=b"\xab", retry="yes")
        pair = MemoryPair(server=config).handshake()
        cids = list(pair.server.cids.local_by_path.values())
        self.assertEqual(len(cids), 4)
        for cid in cids + [pair.client.original_dcid]:
            self.assertEqual(cid[1], 0xAB)
            self.assertTrue(owns(cid, pair.dispatcher.config))
            self.assertEqual(route_byte(cid, pair.dispatcher.config) % 2, 1)
        self.assertEqual(pair.dispatcher.stats["misrouted"], 0)

    def test_another_workers_cid_is_counted_never_reset(self) -> None:
        """A short datagram for an unknown CID that worker 0 owns reaches worker 1: counted as
        misrouted, and no stateless reset goes out (that connection may be alive on worker 0)."""
        dispatcher = ServerDispatcher(
            server_config(worker_index=1, worker_count=2), entropy=SeededEntropy(3)
        )
        cid = bytes((0x07, 0x02)) + bytes(6)  # route byte 2: worker 0's
        dispatcher.receive_datagram(b"\x40" + cid + bytes(100), SERVER_ADDR, CLIENT_ADDR, now=1.0)
        self.assertEqual(dispatcher.stats["misrouted"], 1)
        self.assertEqual(dispatcher.take_replies(), [])
        mine = bytes((0x07, 0x03)) + bytes(6)
        dispatcher.receive_datagram(b"\x40" + mine + bytes(100), SERVER_ADDR, CLIENT_ADDR, now=1.0)
        self.assertEqual(len(dispatcher.take_replies()), 1)
