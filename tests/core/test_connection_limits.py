"""
Connection-level bounds a hostile peer can reach: early datagrams, the AEAD integrity limit, and
keep-alive by default (issue 11).

The stream-level bounds (reassembly, resets, pieces) are in ``tests/core/streams``; these are the
ones the connection itself keeps.
"""

from __future__ import annotations

from unittest import mock
from zlib import crc32

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.connection import MAX_EARLY_BYTES, MAX_EARLY_PACKETS, State
from kwik_twisted.core.crypto import protection
from kwik_twisted.errors import ErrorCode
from kwik_twisted.events import ConnectionTerminated
from kwik_twisted.testing.pair import (
    SERVER_ADDR,
    client_config,
    forge,
    server_config,
)
from kwik_twisted.wire import PathAbandonFrame, PingFrame
from tests.wire.strategies import checksum_offset, raw_datagram

from .test_connection import established, received, settle, terminations
from .test_hostile import mid_handshake_pair


class EarlyDatagramTests(SynchronousTestCase):
    """What a server holds for the client's application packets that overtake its Finished."""

    def application_datagram(self, pair, size: int, seq: int) -> bytes:
        """An application-epoch datagram for the server's connection, ``size`` bytes of garbage
        where the protected payload goes (it cannot be opened before the keys exist), addressed
        to the server's CID (a short envelope names a CID the receiver issued)."""
        dcid = pair.server.local_cid
        return raw_datagram(payload=bytes(size), dcid=dcid, seq=seq)

    def test_early_datagrams_are_bounded_in_bytes(self):
        """
        Sixteen datagrams of 60,000 bytes each used to be held (about 1 MiB per half-open
        connection); now the held bytes never pass MAX_EARLY_BYTES and the rest is dropped and
        counted.
        """
        pair = mid_handshake_pair()
        server = pair.server
        for seq in range(MAX_EARLY_PACKETS):
            pair.deliver_to_server(self.application_datagram(pair, 60_000, seq + 100))
        self.assertLessEqual(server.early_bytes, MAX_EARLY_BYTES)
        self.assertGreater(server.stats["early_dropped"], 0)
        self.assertIsNot(server.state, State.CLOSED)

    def test_early_datagrams_are_bounded_in_count(self):
        """Many small early datagrams: at most MAX_EARLY_PACKETS are held."""
        pair = mid_handshake_pair()
        server = pair.server
        for seq in range(5 * MAX_EARLY_PACKETS):
            pair.deliver_to_server(self.application_datagram(pair, 40, seq + 100))
        self.assertLessEqual(server.early_bytes, MAX_EARLY_PACKETS * 200)
        self.assertEqual(server.stats["early_dropped"], 4 * MAX_EARLY_PACKETS)

    def test_an_honest_first_flight_that_overtakes_the_finished_is_delivered(self):
        """
        The client's first stream data, held because it arrived before the client's Finished,
        is processed once the keys exist: the bound does not cost an honest client its data.
        """
        pair = mid_handshake_pair()
        # The client finishes its handshake on the server's flight, then writes at once.
        for datagram, _, _ in pair.server.datagrams_to_send(now=pair.now):
            pair.deliver_to_client(datagram)
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"x" * 8000, end_stream=True)
        flight = [d for d, _, _ in pair.client.datagrams_to_send(now=pair.now)]
        self.assertGreater(len(flight), 2)
        for datagram in reversed(flight):  # the Finished arrives last
            pair.deliver_to_server(datagram)
        settle(pair, 1.0)
        self.assertEqual(received(pair.server_events, sid), b"x" * 8000)
        self.assertEqual(pair.server.early_bytes, 0)


class IntegrityLimitTests(SynchronousTestCase):
    """The AEAD integrity limit (protocol.rst, "Receiving"): too many forgeries end the
    connection with AEAD_LIMIT_REACHED instead of letting one of them through eventually."""

    def test_the_spec_limit_is_enforced_by_default(self):
        """Protections start with the spec's limit of 2**36 failed opens."""
        keys = protection.PacketProtection(bytes(16), bytes(12))
        self.assertEqual(keys.integrity_limit, 2**36)
        self.assertEqual(protection.INTEGRITY_LIMIT, 2**36)

    def test_reaching_the_limit_closes_with_aead_limit_reached(self):
        """
        Forged packets below the limit are dropped and counted without closing; the one that
        reaches it closes the connection with AEAD_LIMIT_REACHED (0x0f), and the peer is told.
        """
        with mock.patch.object(protection, "INTEGRITY_LIMIT", 5):
            pair = established()
        tampered = bytearray(forge(pair.client, [PingFrame()]))
        tampered[-1] ^= 1  # the tag: authentication fails, the checksum is made right again
        at = checksum_offset(bytes(tampered))
        rest = bytes(tampered[:at]) + bytes(tampered[at + 4 :])
        tampered[at : at + 4] = crc32(rest).to_bytes(4, "big")
        tampered = bytes(tampered)
        for _ in range(4):
            pair.deliver_to_server(tampered)
            self.assertEqual(terminations(pair.server_events), [])
        self.assertEqual(pair.server.stats["dropped_DecryptionFailed"], 4)
        pair.deliver_to_server(tampered)
        [mine] = terminations(pair.server_events)
        self.assertEqual(mine.error_code, ErrorCode.AEAD_LIMIT_REACHED)
        self.assertFalse(mine.by_peer)
        pair.pump()
        [theirs] = terminations(pair.client_events)
        self.assertEqual(theirs.error_code, ErrorCode.AEAD_LIMIT_REACHED)
        self.assertTrue(theirs.by_peer)


class KeepAliveDefaultTests(SynchronousTestCase):
    """By default a connection with an open stream keeps itself alive (tunnels stay up)."""

    def test_an_idle_connection_with_an_open_stream_outlives_its_idle_timeout(self):
        """
        With default settings and a 3 s idle timeout, a connection whose stream is open but
        silent is still established after 20 s, and the stream still works.
        """
        pair = established(client_config(idle_timeout=3.0), server_config(idle_timeout=3.0))
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"hello")
        settle(pair, 20.0)
        self.assertEqual(terminations(pair.client_events + pair.server_events), [])
        self.assertIs(pair.client.state, State.ESTABLISHED)
        pair.client.send_stream_data(sid, b" again")
        settle(pair, 1.0)
        self.assertEqual(received(pair.server_events, sid), b"hello again")

    def test_a_connection_without_streams_still_idles_out(self):
        """With no stream open the default keep-alive sends nothing: the idle timeout ends it."""
        pair = established(client_config(idle_timeout=3.0), server_config(idle_timeout=3.0))
        settle(pair, 5.0)
        ends = terminations(pair.client_events + pair.server_events)
        self.assertTrue(ends)
        self.assertTrue(all(e.error_code == ErrorCode.IDLE_TIMEOUT for e in ends))

    def test_keep_alive_none_opts_out(self):
        """``keep_alive=None`` on both sides: an open but silent stream idles out as before."""
        pair = established(
            client_config(idle_timeout=3.0, keep_alive=None),
            server_config(idle_timeout=3.0, keep_alive=None),
        )
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"hello")
        settle(pair, 5.0)
        ends = terminations(pair.client_events + pair.server_events)
        self.assertTrue(ends)
        self.assertEqual({e.error_code for e in ends}, {ErrorCode.IDLE_TIMEOUT})

    def test_a_gone_peer_still_ends_the_connection(self):
        """Keep-alive PINGs that nobody answers do not keep a connection alive: when the server
        vanishes, the client ends by idle timeout within the timeout (plus a PTO)."""
        pair = established(client_config(idle_timeout=3.0), server_config(idle_timeout=3.0))
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"hello")
        settle(pair, 0.5)
        client = pair.client
        start = pair.now
        now = start
        while client.state is not State.CLOSED and now < start + 10:
            client.datagrams_to_send(now=now)  # into the void
            deadline = client.next_deadline()
            now = max(now + 1e-3, deadline if deadline is not None else now + 0.1)
            client.handle_deadline(now=now)
        self.assertIs(client.state, State.CLOSED)
        self.assertLess(now - start, 3.0 + 1.0)
        events = []
        while (event := client.next_event()) is not None:
            events.append(event)
        ends = [e for e in events if isinstance(e, ConnectionTerminated)]
        self.assertEqual([e.error_code for e in ends], [ErrorCode.IDLE_TIMEOUT])

    def test_config_refuses_other_strings(self):
        """``keep_alive`` takes a positive number, None or "auto"; anything else is refused."""
        from kwik_twisted.config import ConnectionConfig
        from kwik_twisted.errors import ConfigurationError

        for bad in ("sometimes", 0, -1.0):
            with self.assertRaises(ConfigurationError):
                ConnectionConfig(keep_alive=bad)
        self.assertEqual(ConnectionConfig().keep_alive, "auto")



class ReceiveChoiceTests(SynchronousTestCase):
    """What the owner can read about the receiver's choices without reaching into the core."""

    def test_idle_timeout_is_the_smaller_of_both_sides(self):
        """``idle_timeout`` is our configured value until the peer's shorter one arrives."""
        pair = established(client_config(idle_timeout=10.0), server_config(idle_timeout=4.0))
        self.assertEqual(pair.client.idle_timeout, 4.0)
        self.assertEqual(pair.server.idle_timeout, 4.0)

    def test_a_stream_opened_unordered_is_delivered_as_pieces(self):
        """Our own unordered stream is delivered as pieces, an ordered one in order; a stream
        that does not exist has no view."""
        pair = established()
        pieces = pair.client.open_stream(ordered=False)
        ordered = pair.client.open_stream()
        self.assertFalse(pair.client.stream(pieces).ordered)
        self.assertTrue(pair.client.stream(ordered).ordered)
        self.assertIsNone(pair.client.stream(4 * 99))

    def test_the_server_reassembles_a_peer_unordered_stream_unless_it_accepts_pieces(self):
        """A peer stream without ORDERED is reassembled in order by default, and delivered as
        pieces only when the server's configuration accepts unordered streams."""
        for accept in (False, True):
            pair = established(server=server_config(accept_unordered=accept))
            sid = pair.client.open_stream(ordered=False)
            pair.client.send_stream_data(sid, b"abc")
            settle(pair, 0.5)
            self.assertEqual(not pair.server.stream(sid).ordered, accept)


def drive_alone(pair, seconds: float, *, max_wakeups: int = 10_000) -> tuple[int, int]:
    """
    Run the server's timers alone for ``seconds`` as the Twisted glue does (send, then sleep until
    ``next_deadline``), its datagrams going nowhere; return (wake-ups, wake-ups with no delay).

    A deadline that stays in the past after its timer ran is a zero-delay wake-up: in a reactor,
    a busy loop.
    """
    server = pair.server
    now, end = pair.now, pair.now + seconds
    wakeups = zero = 0
    while now < end and wakeups < max_wakeups and not server.is_closed:
        server.datagrams_to_send(now=now)
        deadline = server.next_deadline()
        if deadline is None or deadline > end:
            break
        zero += deadline <= now
        now = max(now, deadline)
        server.handle_deadline(now=now)
        wakeups += 1
    return wakeups, zero


def from_elsewhere(pair, datagram: bytes, remote: tuple) -> None:
    """Deliver ``datagram`` to the server as if it came from ``remote``."""
    pair.dispatcher.receive_datagram(datagram, SERVER_ADDR, remote, now=pair.now)


class TimerLivelockTests(SynchronousTestCase):
    """A deadline that cannot be served must move on, not stay due (found by attacking the
    keep-alive default: each of these made the server's timer fire with no delay for ever)."""

    def open_stream(self):
        """An established pair with one open stream (so keep-alive is on by default)."""
        pair = established()
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"hello")
        settle(pair, 0.5)
        return pair

    def test_keep_alive_without_amplification_room_waits_an_interval(self):
        """
        One packet from a new address (a rebinding) and then silence: the server's path is held
        to its amplification budget, which the challenge spends, so the keep-alive PING cannot go.
        The keep-alive is still counted as done: no zero-delay wake-ups over 25 s.
        """
        pair = self.open_stream()
        from_elsewhere(pair, forge(pair.client, [PingFrame()], now=pair.now), ("127.0.0.1", 50002))
        wakeups, zero = drive_alone(pair, 25.0)
        self.assertEqual(zero, 0)
        self.assertLess(wakeups, 100)

    def test_abandoning_every_validated_path_ends_with_no_viable_path(self):
        """
        The peer opens path 1 (never answering its challenge) and abandons path 0: the server's
        only path can never be validated, so once its challenges go unanswered the connection
        closes with NO_VIABLE_PATH instead of keeping an unusable path (and spinning its timer).
        """
        pair = self.open_stream()
        other = ("127.0.0.1", 50001)
        pair.client.open_path(other, SERVER_ADDR)
        from_elsewhere(pair, forge(pair.client, [PingFrame()], path_id=1, now=pair.now), other)
        abandon = forge(pair.client, [PathAbandonFrame(0, 0)], path_id=1, now=pair.now)
        from_elsewhere(pair, abandon, other)
        self.assertEqual(sorted(pair.server.paths), [1])
        wakeups, zero = drive_alone(pair, 25.0)
        self.assertEqual(zero, 0)
        self.assertTrue(pair.server.is_closed)
        ends = terminations([e for e in iter(pair.server.next_event, None)])
        self.assertEqual([e.error_code for e in ends], [ErrorCode.NO_VIABLE_PATH])

    def test_a_silent_peer_costs_a_few_wakeups(self):
        """A peer that goes quiet with a stream open: over 25 s the server wakes for its
        keep-alive PINGs and their probe timeouts only, never with no delay."""
        pair = self.open_stream()
        wakeups, zero = drive_alone(pair, 25.0)
        self.assertEqual(zero, 0)
        self.assertLess(wakeups, 40)
        self.assertFalse(pair.server.is_closed)
