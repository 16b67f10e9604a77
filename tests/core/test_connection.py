"""
Behaviour of :class:`kwik_twisted.core.connection.Connection` end to end: handshake and close.

A :class:`~kwik_twisted.testing.pair.MemoryPair` joins a client connection and a server
dispatcher with no delay in simulated time; the tests look only at what an application sees
(events, ``state``, ``stats``, return values) and at the datagrams on the wire.  The helpers at
the top are shared by the other end-to-end test modules of this package.
"""

from __future__ import annotations

import contextlib

from twisted.trial.unittest import FailTest, SynchronousTestCase

from kwik_twisted.core.connection import State
from kwik_twisted.errors import ErrorCode, KwikError
from kwik_twisted.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    StreamDataReceived,
)
from kwik_twisted.testing.pair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    MemoryPair,
    client_config,
    server_config,
)
from kwik_twisted.wire import Epoch, decode_packet

#: The simulated time at which a MemoryPair starts (its handshake happens at that instant).
START = 1000.0

# --------------------------------------------------------------------------
# Helpers shared by the end-to-end modules


def established(client=None, server=None, **kw) -> MemoryPair:
    """A pair whose handshake has completed on both sides."""
    pair = MemoryPair(client, server, **kw)
    settle(pair, 0.5)
    if not (pair.client.handshake_complete and pair.server.handshake_complete):
        raise AssertionError(f"handshake did not complete: {pair.client_events}")
    return pair


def of_type(events, cls) -> list:
    """The events of class ``cls``, in order."""
    return [e for e in events if isinstance(e, cls)]


def received(events, stream_id: int) -> bytes:
    """All bytes delivered on ``stream_id``, concatenated in delivery order."""
    return b"".join(
        e.data for e in events if isinstance(e, StreamDataReceived) and e.stream_id == stream_id
    )


def fins(events, stream_id: int) -> int:
    """How many times the end of ``stream_id`` was delivered."""
    return sum(
        1 for e in events
        if isinstance(e, StreamDataReceived) and e.stream_id == stream_id and e.end_stream
    )


def drain(conn) -> list:
    """
    Events still queued on ``conn``.

    MemoryPair only collects the server's events while the dispatcher still lists the connection,
    and the dispatcher forgets a connection as soon as it is closed, so a final event can be left
    here.
    """
    out = []
    while (event := conn.next_event()) is not None:
        out.append(event)
    return out


def terminations(events) -> list[ConnectionTerminated]:
    """The ConnectionTerminated events."""
    return of_type(events, ConnectionTerminated)


def exchange_once(pair: MemoryPair) -> tuple[int, int]:
    """
    One round of the pair's pump: the client's datagrams to the server, then the server's back.

    Returns how many datagrams went each way.
    """
    up = pair.client.datagrams_to_send(now=pair.now)
    for data, _local, _remote in up:
        pair.deliver_to_server(data)
    down = pair.dispatcher.datagrams_to_send(now=pair.now)
    for data, _local, _remote in down:
        pair.deliver_to_client(data)
    return len(up), len(down)


class Livelock(FailTest):
    """A timer keeps coming due at the same instant without the connection making progress."""


def settle(pair: MemoryPair, seconds: float = 2.0, *, max_wakeups: int = 20000) -> None:
    """
    Let ``seconds`` of simulated time pass, as :meth:`MemoryPair.advance` does, but fail instead of
    spinning forever if the deadlines keep firing without time moving on.

    Paced, windowed and retransmitted data all get through in that time on a healthy pair.
    """
    end = pair.now + seconds
    stuck = 0
    for _ in range(max_wakeups):
        pair.pump()
        due = [
            d for d in (pair.client.next_deadline(), pair.dispatcher.next_deadline())
            if d is not None and d <= end
        ]
        if not due:
            pair.now = end
            pair.pump()
            return
        wake = max(pair.now, min(due))
        stuck = stuck + 1 if wake == pair.now else 0
        if stuck > 1000:
            raise Livelock(f"a deadline at {wake} keeps firing without progress")
        pair.now = wake
        pair.client.handle_deadline(now=pair.now)
        pair.dispatcher.handle_deadline(now=pair.now)
    raise Livelock(f"more than {max_wakeups} timer wake-ups in {seconds} s")


# --------------------------------------------------------------------------


class HandshakeTests(SynchronousTestCase):
    """The TLS 1.3 handshake in HANDSHAKE frames, as both sides see it."""

    def test_handshake_completes_on_both_sides_with_kwik_alpn(self):
        """Both sides report one HandshakeCompleted naming ALPN kwik/3 and reach ESTABLISHED."""
        pair = established()
        for events in (pair.client_events, pair.server_events):
            done = of_type(events, HandshakeCompleted)
            self.assertEqual(len(done), 1)
            self.assertEqual(done[0].alpn, "kwik/3")
            self.assertTrue(done[0].cipher)
        self.assertIs(pair.client.state, State.ESTABLISHED)
        self.assertIs(pair.server.state, State.ESTABLISHED)
        self.assertTrue(pair.client.handshake_complete)
        self.assertTrue(pair.server.handshake_complete)
        self.assertEqual(terminations(pair.client_events + pair.server_events), [])

    def test_nothing_is_sent_under_application_keys_before_the_handshake_completes(self):
        """
        Every datagram either side sends before its own HandshakeCompleted uses initial keys, and
        handshake_complete turns true exactly when HandshakeCompleted is emitted.
        """
        pair = MemoryPair()
        sides = {"client": pair.client}
        for _ in range(50):
            up = pair.client.datagrams_to_send(now=pair.now)
            for data, _, _ in up:
                if not pair.client.handshake_complete:
                    self.assertEqual(decode_packet(data).header.epoch, Epoch.INITIAL)
                pair.deliver_to_server(data)
            if pair.dispatcher.connections:
                sides["server"] = pair.server
            down = pair.dispatcher.datagrams_to_send(now=pair.now)
            for data, _, _ in down:
                if not sides["server"].handshake_complete:
                    self.assertEqual(decode_packet(data).header.epoch, Epoch.INITIAL)
                pair.deliver_to_client(data)
            for name, events in (("client", pair.client_events), ("server", pair.server_events)):
                if name in sides:
                    self.assertEqual(
                        sides[name].handshake_complete, bool(of_type(events, HandshakeCompleted))
                    )
            if not up and not down:
                break
        self.assertTrue(pair.client.handshake_complete and pair.server.handshake_complete)

    def test_server_has_no_application_keys_after_only_the_client_hello(self):
        """After receiving only the ClientHello, the server has not completed its handshake."""
        pair = MemoryPair()
        for data, _, _ in pair.client.datagrams_to_send(now=pair.now):
            pair.deliver_to_server(data)
        self.assertFalse(pair.server.handshake_complete)
        self.assertIs(pair.server.state, State.HANDSHAKE)
        self.assertEqual(of_type(pair.server_events, HandshakeCompleted), [])

    def test_client_initial_datagrams_are_at_least_1200_bytes(self):
        """Every initial-key datagram of the client, the first one included, is >= 1200 bytes."""
        pair = MemoryPair()
        first = pair.client.datagrams_to_send(now=pair.now)
        self.assertTrue(first)
        self.assertGreaterEqual(len(first[0][0]), 1200)
        for data, local, remote in first:
            self.assertEqual((local, remote), (CLIENT_ADDR, SERVER_ADDR))
            pair.deliver_to_server(data)
        for _ in range(20):
            for data, _, _ in pair.dispatcher.datagrams_to_send(now=pair.now):
                pair.deliver_to_client(data)
            up = pair.client.datagrams_to_send(now=pair.now)
            if not up:
                break
            for data, _, _ in up:
                if decode_packet(data).header.epoch == Epoch.INITIAL:
                    self.assertGreaterEqual(len(data), 1200)
                pair.deliver_to_server(data)

    def test_stream_data_written_before_the_handshake_is_delivered_after_it(self):
        """Data and FIN queued on a stream before the handshake arrive once keys exist."""
        pair = MemoryPair()
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"early bird", end_stream=True)
        settle(pair, 1.0)
        self.assertEqual(received(pair.server_events, sid), b"early bird")
        self.assertEqual(fins(pair.server_events, sid), 1)
        first_data = next(
            i for i, e in enumerate(pair.server_events) if isinstance(e, StreamDataReceived)
        )
        done = next(
            i for i, e in enumerate(pair.server_events) if isinstance(e, HandshakeCompleted)
        )
        self.assertLess(done, first_data)

    def test_server_first_flight_is_not_sent_with_application_keys(self):
        """The server's reply to the ClientHello is under initial keys and names a source CID."""
        pair = MemoryPair()
        for data, _, _ in pair.client.datagrams_to_send(now=pair.now):
            pair.deliver_to_server(data)
        out = pair.dispatcher.datagrams_to_send(now=pair.now)
        self.assertTrue(out)
        header = decode_packet(out[0][0]).header
        self.assertEqual(header.epoch, Epoch.INITIAL)
        self.assertEqual(header.scid, pair.server.local_cid)


class CloseTests(SynchronousTestCase):
    """Closing a connection: CONNECTION_CLOSE, closing/draining, and the timers."""

    def test_close_reports_code_and_reason_to_the_peer(self):
        """The peer gets ConnectionTerminated(by_peer=True) with our code, reason and kind."""
        pair = established()
        server = pair.server
        pair.client.close(0x1234, "bye now")
        pair.pump()
        theirs = terminations(pair.server_events)
        self.assertEqual(len(theirs), 1)
        self.assertEqual(theirs[0].error_code, 0x1234)
        self.assertEqual(theirs[0].reason, "bye now")
        self.assertTrue(theirs[0].by_peer)
        self.assertTrue(theirs[0].application)
        self.assertIs(server.state, State.DRAINING)

    def test_close_reports_its_own_termination_locally(self):
        """The closing side gets exactly one ConnectionTerminated(by_peer=False) and is CLOSING."""
        pair = established()
        pair.client.close(7, "done")
        pair.pump()
        mine = terminations(pair.client_events)
        self.assertEqual(len(mine), 1)
        self.assertEqual((mine[0].error_code, mine[0].reason), (7, "done"))
        self.assertFalse(mine[0].by_peer)
        self.assertTrue(mine[0].application)
        self.assertIs(pair.client.state, State.CLOSING)

    def test_server_close_reaches_the_client(self):
        """A close started by the server side is reported to the client the same way."""
        pair = established()
        pair.server.close(42, "server going away")
        pair.pump()
        theirs = terminations(pair.client_events)
        self.assertEqual(len(theirs), 1)
        self.assertEqual((theirs[0].error_code, theirs[0].reason), (42, "server going away"))
        self.assertTrue(theirs[0].by_peer)

    def test_both_sides_reach_closed_after_three_ptos(self):
        """Closing and draining last a few PTOs; then both are CLOSED and have no deadline."""
        pair = established()
        server = pair.server
        pair.client.close(0, "")
        pair.pump()
        self.assertFalse(pair.client.is_closed)
        self.assertFalse(server.is_closed)
        settle(pair, 5.0)
        self.assertIs(pair.client.state, State.CLOSED)
        self.assertIs(server.state, State.CLOSED)
        self.assertIsNone(pair.client.next_deadline())
        self.assertEqual(pair.client.datagrams_to_send(now=pair.now), [])
        self.assertEqual(len(terminations(pair.client_events)), 1)
        self.assertEqual(len(terminations(pair.server_events)), 1)

    def test_close_is_idempotent(self):
        """A second close() changes nothing: one termination event, the first code."""
        pair = established()
        pair.client.close(1, "first")
        pair.client.close(2, "second")
        pair.pump()
        mine = terminations(pair.client_events)
        self.assertEqual([(t.error_code, t.reason) for t in mine], [(1, "first")])

    def test_closing_side_answers_further_packets_with_connection_close(self):
        """While CLOSING, a packet from the peer makes us send CONNECTION_CLOSE again."""
        pair = established()
        sid = pair.server.open_stream()
        pair.client.close(3, "x")
        sent = pair.client.datagrams_to_send(now=pair.now)
        self.assertEqual(len(sent), 1)
        pair.server.send_stream_data(sid, b"late")
        late = pair.dispatcher.datagrams_to_send(now=pair.now)
        self.assertTrue(late)
        pair.deliver_to_client(late[0][0])
        again = pair.client.datagrams_to_send(now=pair.now)
        self.assertEqual(len(again), 1)

    def test_stream_data_after_close_is_not_delivered(self):
        """Data the closing side queued after close() never reaches the peer."""
        pair = established()
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"before")
        pair.pump()
        pair.client.close(0, "")
        with contextlib.suppress(KwikError):  # refusing the write is acceptable too
            pair.client.send_stream_data(sid, b"after")
        settle(pair, 1.0)
        self.assertEqual(received(pair.server_events, sid), b"before")


class IdleTimeoutTests(SynchronousTestCase):
    """The idle timer: silence ends a connection, keep-alive prevents it."""

    def test_idle_timeout_fires_after_the_configured_silence(self):
        """With no traffic, both sides close with IDLE_TIMEOUT (locally) after idle_timeout."""
        pair = established(client_config(idle_timeout=5.0), server_config(idle_timeout=5.0))
        server = pair.server
        last_traffic = START  # the handshake ran at the pair's starting time, no delay
        settle(pair, last_traffic + 4.7 - pair.now)
        self.assertIs(pair.client.state, State.ESTABLISHED)
        self.assertIs(server.state, State.ESTABLISHED)
        self.assertEqual(terminations(pair.client_events), [])
        settle(pair, 0.6)
        self.assertIs(pair.client.state, State.CLOSED)
        self.assertIs(server.state, State.CLOSED)
        for events in (pair.client_events, pair.server_events + drain(server)):
            ends = terminations(events)
            self.assertEqual(len(ends), 1)
            self.assertEqual(ends[0].error_code, ErrorCode.IDLE_TIMEOUT)
            self.assertFalse(ends[0].by_peer)

    def test_smaller_idle_timeout_of_the_peer_wins(self):
        """The client configured 30 s but the server 3 s: the client times out after ~3 s too."""
        pair = established(client_config(idle_timeout=30.0), server_config(idle_timeout=3.0))
        settle(pair, START + 2.7 - pair.now)
        self.assertIs(pair.client.state, State.ESTABLISHED)
        settle(pair, 0.6)
        self.assertIs(pair.client.state, State.CLOSED)
        self.assertEqual(terminations(pair.client_events)[0].error_code, ErrorCode.IDLE_TIMEOUT)

    def test_traffic_postpones_the_idle_timeout(self):
        """Stream data every few seconds keeps the connection open past the idle timeout."""
        pair = established(client_config(idle_timeout=5.0), server_config(idle_timeout=5.0))
        sid = pair.client.open_stream()
        for i in range(6):
            pair.client.send_stream_data(sid, b"tick %d" % i)
            settle(pair, 3.0)
        self.assertIs(pair.client.state, State.ESTABLISHED)
        self.assertIs(pair.server.state, State.ESTABLISHED)

    def test_keep_alive_prevents_the_idle_timeout(self):
        """A client with keep_alive below the idle timeout stays connected through long silence."""
        pair = established(
            client_config(idle_timeout=5.0, keep_alive=1.0), server_config(idle_timeout=5.0)
        )
        server = pair.server
        settle(pair, 30.0)
        self.assertIs(pair.client.state, State.ESTABLISHED)
        self.assertIs(server.state, State.ESTABLISHED)
        self.assertEqual(terminations(pair.client_events + pair.server_events), [])
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"still here", end_stream=True)
        settle(pair, 0.5)
        self.assertEqual(received(pair.server_events, sid), b"still here")

