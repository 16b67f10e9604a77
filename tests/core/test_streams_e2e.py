"""
Streams end to end over a :class:`~kwik_twisted.testing.pair.MemoryPair`: echo, FIN, many streams,
stream-limit renewal, priorities, reset and stop-sending, back-pressure and unordered delivery.

Only the application's view is checked: events, return values and public stream/path attributes.
"""

from __future__ import annotations

import hashlib
import random

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.connection import State
from kwik_twisted.events import (
    StopSendingReceived,
    StreamClosed,
    StreamDataReceived,
    StreamOpened,
    StreamReset,
)
from kwik_twisted.testing.pair import server_config

from .test_connection import (
    established,
    exchange_once,
    fins,
    of_type,
    received,
    settle,
    terminations,
)


def blob(size: int, seed: int) -> bytes:
    """``size`` pseudo-random bytes (incompressible, reproducible)."""
    return random.Random(seed).randbytes(size)


def digest(data: bytes) -> str:
    """SHA-256 of ``data``, for compact byte-exact comparisons."""
    return hashlib.sha256(data).hexdigest()


def placed(test: SynchronousTestCase, events, stream_id: int) -> bytes:
    """
    The bytes of ``stream_id`` with every delivered piece put at its offset.

    Fails ``test`` unless the pieces tile the stream exactly from offset 0: no byte delivered
    twice, none skipped.
    """
    pieces = sorted(
        (e.offset, e.data)
        for e in events
        if isinstance(e, StreamDataReceived) and e.stream_id == stream_id and e.data
    )
    end = 0
    for offset, data in pieces:
        test.assertEqual(offset, end, "a piece overlaps or leaves a gap")
        end += len(data)
    return b"".join(data for _, data in pieces)


class EchoTests(SynchronousTestCase):
    """Bytes travel both ways on client- and server-initiated streams."""

    def test_client_stream_is_echoed_by_the_server(self):
        """The server sees the client's bytes and FIN; its reply on the same stream comes back."""
        pair = established()
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"ping?", end_stream=True)
        pair.pump()
        self.assertIn(StreamOpened(sid), pair.server_events)
        self.assertEqual(received(pair.server_events, sid), b"ping?")
        pair.server.send_stream_data(sid, b"pong!", end_stream=True)
        pair.pump()
        self.assertEqual(received(pair.client_events, sid), b"pong!")
        self.assertEqual(fins(pair.client_events, sid), 1)
        settle(pair, 1.0)
        self.assertIn(StreamClosed(sid), pair.client_events)
        self.assertIn(StreamClosed(sid), pair.server_events)

    def test_server_initiated_stream(self):
        """A stream the server opens has a server ID (odd); the client gets it and can answer."""
        pair = established()
        sid = pair.server.open_stream()
        self.assertEqual(sid & 0x3, 1)
        pair.server.send_stream_data(sid, b"from the server", end_stream=True)
        pair.pump()
        self.assertIn(StreamOpened(sid), pair.client_events)
        self.assertEqual(received(pair.client_events, sid), b"from the server")
        pair.client.send_stream_data(sid, b"thanks", end_stream=True)
        pair.pump()
        self.assertEqual(received(pair.server_events, sid), b"thanks")

    def test_large_transfer_both_ways_is_byte_exact(self):
        """300 KB each way on one stream arrive intact (SHA-256) with one FIN each."""
        pair = established()
        up, down = blob(300_000, 1), blob(300_000, 2)
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, up, end_stream=True)
        settle(pair)
        pair.server.send_stream_data(sid, down, end_stream=True)
        settle(pair)
        self.assertEqual(digest(received(pair.server_events, sid)), digest(up))
        self.assertEqual(digest(received(pair.client_events, sid)), digest(down))
        self.assertEqual(fins(pair.server_events, sid), 1)
        self.assertEqual(fins(pair.client_events, sid), 1)

    def test_server_to_client_bulk_transfer_completes(self):
        """1 MB sent by the server on its own stream arrives intact within a few seconds."""
        pair = established()
        data = blob(1_000_000, 14)
        sid = pair.server.open_stream()
        pair.server.send_stream_data(sid, data, end_stream=True)
        settle(pair, 3.0)
        self.assertEqual(digest(received(pair.client_events, sid)), digest(data))

    def test_bulk_transfer_completes_at_a_wall_clock_epoch(self):
        """
        With ``now`` near a Unix timestamp (where a float's resolution is ~0.2 us), 1 MB still
        flows both ways: timers based on tiny pacing intervals must not stall or spin.
        """
        pair = established(now=1.7e9)
        up, down = blob(1_000_000, 15), blob(1_000_000, 16)
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, up, end_stream=True)
        settle(pair, 3.0)
        pair.server.send_stream_data(sid, down, end_stream=True)
        settle(pair, 3.0)
        self.assertEqual(digest(received(pair.server_events, sid)), digest(up))
        self.assertEqual(digest(received(pair.client_events, sid)), digest(down))

    def test_fin_is_delivered_once_with_end_stream(self):
        """A FIN arrives as exactly one event with end_stream=True, and nothing follows it."""
        pair = established()
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"a")
        pair.pump()
        pair.client.send_stream_data(sid, b"b", end_stream=True)
        settle(pair, 2.0)
        events = [e for e in pair.server_events if isinstance(e, StreamDataReceived)]
        self.assertEqual(fins(pair.server_events, sid), 1)
        self.assertTrue(events[-1].end_stream)
        self.assertEqual(received(pair.server_events, sid), b"ab")

    def test_empty_fin_is_delivered(self):
        """end_stream with no data still delivers one end_stream=True event."""
        pair = established()
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"payload")
        pair.pump()
        pair.client.send_stream_data(sid, b"", end_stream=True)
        pair.pump()
        self.assertEqual(fins(pair.server_events, sid), 1)
        self.assertEqual(received(pair.server_events, sid), b"payload")


class ManyStreamsTests(SynchronousTestCase):
    """Many streams at once and over time."""

    def test_fifty_concurrent_streams_are_byte_exact(self):
        """50 streams written interleaved in chunks each arrive byte-exact with one FIN."""
        pair = established()
        payloads = {}
        for i in range(50):
            sid = pair.client.open_stream()
            payloads[sid] = blob(20_000 + 997 * i, 100 + i)
        for start in range(0, max(len(p) for p in payloads.values()), 4096):
            for sid, data in payloads.items():
                if start < len(data):
                    pair.client.send_stream_data(sid, data[start:start + 4096])
            pair.pump()
        for sid in payloads:
            pair.client.send_stream_data(sid, b"", end_stream=True)
        settle(pair, 3.0)
        for sid, data in payloads.items():
            self.assertEqual(digest(received(pair.server_events, sid)), digest(data), sid)
            self.assertEqual(fins(pair.server_events, sid), 1)

    def test_two_thousand_streams_over_time_renew_max_streams(self):
        """
        2,000 streams opened, echoed and closed in batches on one connection: MAX_STREAMS is
        renewed as streams close, so the client is never refused a stream.
        """
        pair = established()
        server = pair.server
        limit = server.config.max_streams
        total, batch, done = 2000, 100, 0
        seen = 0
        while done < total:
            opened = []
            for _ in range(batch):
                sid = pair.client.open_stream()  # raises StreamLimitError if credit ran out
                pair.client.send_stream_data(sid, b"req %d" % sid, end_stream=True)
                opened.append(sid)
            pair.pump()
            new = pair.server_events[seen:]
            seen = len(pair.server_events)
            for event in new:
                if isinstance(event, StreamDataReceived) and event.end_stream:
                    server.send_stream_data(event.stream_id, b"ok", end_stream=True)
            settle(pair, 0.1)
            for sid in opened:
                self.assertEqual(received(pair.client_events, sid), b"ok")
            done += batch
        closed = {e.stream_id for e in of_type(pair.server_events, StreamClosed)}
        self.assertEqual(len(closed), total)
        self.assertGreater(total, limit)
        self.assertEqual(terminations(pair.client_events + pair.server_events), [])

    def test_stream_limit_refuses_beyond_max_streams_until_credit_returns(self):
        """
        With streams never closed, opening more than the server's max_streams raises
        StreamLimitError; closing some lets the client open more.
        """
        from kwik_twisted.errors import StreamLimitError

        pair = established(server=server_config(max_streams=100))
        sids = [pair.client.open_stream() for _ in range(100)]
        for sid in sids:
            pair.client.send_stream_data(sid, b"x")
        pair.pump()
        with self.assertRaises(StreamLimitError):
            pair.client.open_stream()
        for sid in sids[:50]:
            pair.client.send_stream_data(sid, b"", end_stream=True)
            pair.server.send_stream_data(sid, b"", end_stream=True)
        settle(pair, 1.0)
        pair.client.open_stream()


class PriorityTests(SynchronousTestCase):
    """Strict priority between stream levels."""

    def test_critical_stream_overtakes_a_normal_backlog(self):
        """
        With 2 MB queued on a normal stream and a small message then written on a critical stream,
        the critical message is delivered before the normal backlog has been delivered.
        """
        pair = established()
        bulk = pair.client.open_stream()
        urgent = pair.client.open_stream(priority=2)
        backlog = blob(2_000_000, 3)
        pair.client.send_stream_data(bulk, backlog, end_stream=True)
        exchange_once(pair)  # the bulk stream starts flowing
        pair.client.send_stream_data(urgent, b"URGENT", end_stream=True)
        settle(pair, 5.0)
        data_events = [e for e in pair.server_events if isinstance(e, StreamDataReceived)]
        urgent_at = next(i for i, e in enumerate(data_events) if e.stream_id == urgent)
        before = b"".join(e.data for e in data_events[:urgent_at] if e.stream_id == bulk)
        self.assertLess(len(before), len(backlog) // 2)
        self.assertEqual(received(pair.server_events, urgent), b"URGENT")
        self.assertEqual(digest(received(pair.server_events, bulk)), digest(backlog))

    def test_critical_backlog_is_served_before_normal_data_not_round_robin(self):
        """
        Strict priority, not round-robin: while 300 KB of critical data is queued, the normal stream
        gets (almost) nothing more through, so when the critical stream completes the normal stream
        has delivered far less than the 300 KB a fair share would have given it.
        """
        pair = established()
        bulk = pair.client.open_stream()
        urgent = pair.client.open_stream(priority=2)
        pair.client.send_stream_data(bulk, blob(2_000_000, 12), end_stream=True)
        exchange_once(pair)
        critical = blob(300_000, 13)
        pair.client.send_stream_data(urgent, critical, end_stream=True)
        settle(pair, 5.0)
        data_events = [e for e in pair.server_events if isinstance(e, StreamDataReceived)]
        done_at = next(
            i for i, e in enumerate(data_events) if e.stream_id == urgent and e.end_stream
        )
        normal_before = sum(len(e.data) for e in data_events[:done_at] if e.stream_id == bulk)
        self.assertLess(normal_before, 100_000)
        self.assertEqual(digest(received(pair.server_events, urgent)), digest(critical))

    def test_high_priority_goes_before_normal_and_after_critical(self):
        """Streams written in the order normal, high, critical finish critical, high, normal."""
        pair = established()
        normal = pair.client.open_stream(priority=0)
        high = pair.client.open_stream(priority=1)
        critical = pair.client.open_stream(priority=2)
        for sid in (normal, high, critical):
            pair.client.send_stream_data(sid, blob(50_000, sid), end_stream=True)
        settle(pair, 3.0)
        order = []
        for e in pair.server_events:
            if isinstance(e, StreamDataReceived) and e.end_stream:
                order.append(e.stream_id)
        self.assertEqual(order, [critical, high, normal])

    def test_critical_data_goes_out_in_the_next_datagrams(self):
        """After a critical write, the next batch the client sends carries the critical data."""
        pair = established()
        bulk = pair.client.open_stream()
        urgent = pair.client.open_stream(priority=2)
        pair.client.send_stream_data(bulk, blob(2_000_000, 4))
        exchange_once(pair)
        pair.client.send_stream_data(urgent, b"now!")
        exchange_once(pair)
        self.assertEqual(received(pair.server_events, urgent), b"now!")


class ResetAndStopTests(SynchronousTestCase):
    """Abandoning a stream in either direction."""

    def test_reset_stream_reaches_the_peer_with_its_code(self):
        """reset_stream(sid, 77) makes the peer emit StreamReset(sid, 77), once."""
        pair = established()
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"partial")
        pair.pump()
        pair.client.reset_stream(sid, 77)
        settle(pair, 0.5)
        self.assertEqual(of_type(pair.server_events, StreamReset), [StreamReset(sid, 77)])
        self.assertEqual(fins(pair.server_events, sid), 0)

    def test_reset_before_any_data_still_reaches_the_peer(self):
        """A stream reset before it sent any byte is still reported to the peer."""
        pair = established()
        sid = pair.client.open_stream()
        pair.client.reset_stream(sid, 5)
        settle(pair, 0.5)
        self.assertIn(StreamReset(sid, 5), pair.server_events)

    def test_stop_sending_makes_the_peer_reset_its_direction(self):
        """
        stop_sending(sid, 9) gives the peer StopSendingReceived(sid, 9), and the peer's direction is
        reset with that code (we get StreamReset(sid, 9)).
        """
        pair = established()
        sid = pair.server.open_stream()
        pair.server.send_stream_data(sid, b"lots of data coming")
        pair.pump()
        pair.client.stop_sending(sid, 9)
        settle(pair, 0.5)
        self.assertIn(StopSendingReceived(sid, 9), pair.server_events)
        self.assertIn(StreamReset(sid, 9), pair.client_events)

    def test_stream_data_after_reset_is_not_delivered(self):
        """Nothing the peer had not yet delivered arrives after a StreamReset."""
        pair = established()
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, blob(500_000, 5))
        pair.client.reset_stream(sid, 1)
        settle(pair, 1.0)
        events = [e for e in pair.server_events if getattr(e, "stream_id", None) == sid]
        resets = [i for i, e in enumerate(events) if isinstance(e, StreamReset)]
        self.assertEqual(len(resets), 1)
        self.assertFalse(
            any(isinstance(e, StreamDataReceived) for e in events[resets[0] + 1:])
        )


class BackPressureTests(SynchronousTestCase):
    """pause_reading holds data back and flow control stops the sender."""

    def test_paused_stream_holds_data_and_flow_control_stops_the_sender(self):
        """
        While the server pauses a stream, nothing is delivered and the client sends at most about
        one stream window; resuming delivers every byte exactly.
        """
        window = 1024 * 1024
        pair = established(server=server_config(initial_max_stream_data=window))
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"hello")
        pair.pump()
        pair.server.pause_reading(sid)
        sent_before = pair.client.paths[0].bytes_sent
        data = blob(4 * window, 6)
        pair.client.send_stream_data(sid, data, end_stream=True)
        settle(pair, 3.0)
        sent_mid = pair.client.paths[0].bytes_sent
        settle(pair, 3.0)
        sent_late = pair.client.paths[0].bytes_sent
        self.assertEqual(received(pair.server_events, sid), b"hello")
        self.assertLess(sent_mid - sent_before, window * 1.15)
        self.assertLess(sent_late - sent_mid, 20_000)  # only probes and ACKs while blocked
        pair.server.pause_reading(sid, False)
        settle(pair, 10.0)
        self.assertEqual(digest(received(pair.server_events, sid)), digest(b"hello" + data))
        self.assertEqual(fins(pair.server_events, sid), 1)
        self.assertIs(pair.client.state, State.ESTABLISHED)

    def test_paused_stream_does_not_block_other_streams(self):
        """Data on another stream keeps flowing while one stream is paused."""
        pair = established()
        paused = pair.client.open_stream()
        other = pair.client.open_stream()
        pair.client.send_stream_data(paused, b"p")
        pair.pump()
        pair.server.pause_reading(paused)
        pair.client.send_stream_data(paused, blob(2_000_000, 7))
        payload = blob(300_000, 8)
        pair.client.send_stream_data(other, payload, end_stream=True)
        settle(pair, 5.0)
        self.assertEqual(digest(received(pair.server_events, other)), digest(payload))


class UnorderedTests(SynchronousTestCase):
    """Streams opened with ordered=False, to a server that accepts unordered delivery."""

    def test_unordered_stream_delivers_every_byte(self):
        """Every byte of an unordered stream arrives once, at its offset, with one FIN."""
        pair = established(server=server_config(accept_unordered=True))
        sid = pair.client.open_stream(ordered=False)
        data = blob(200_000, 9)
        pair.client.send_stream_data(sid, data, end_stream=True)
        settle(pair)
        self.assertEqual(len(received(pair.server_events, sid)), len(data))
        self.assertEqual(digest(placed(self, pair.server_events, sid)), digest(data))
        self.assertEqual(fins(pair.server_events, sid), 1)

    def test_unordered_stream_delivers_out_of_order_arrivals_at_once(self):
        """With datagrams arriving reversed, an unordered stream delivers before the gap fills."""
        pair = established(server=server_config(accept_unordered=True))
        sid = pair.client.open_stream(ordered=False)
        data = blob(20_000, 10)
        pair.client.send_stream_data(sid, data)
        out = pair.client.datagrams_to_send(now=pair.now)
        self.assertGreater(len(out), 2)
        for datagram, _, _ in reversed(out[1:]):
            pair.deliver_to_server(datagram)
        early = received(pair.server_events, sid)
        self.assertGreater(len(early), 0)
        pair.deliver_to_server(out[0][0])
        settle(pair)
        self.assertEqual(placed(self, pair.server_events, sid), data)
        self.assertEqual(len(received(pair.server_events, sid)), len(data))

    def test_ordered_stream_waits_for_the_gap(self):
        """An ordered stream delivers nothing until the first datagram fills the gap."""
        pair = established()
        sid = pair.client.open_stream()
        data = blob(20_000, 11)
        pair.client.send_stream_data(sid, data)
        out = pair.client.datagrams_to_send(now=pair.now)
        for datagram, _, _ in reversed(out[1:]):
            pair.deliver_to_server(datagram)
        self.assertEqual(received(pair.server_events, sid), b"")
        pair.deliver_to_server(out[0][0])
        got = received(pair.server_events, sid)
        self.assertGreater(len(got), 0)
        self.assertEqual(got, data[:len(got)])
        settle(pair)
        self.assertEqual(received(pair.server_events, sid), data)

    def test_unordered_pieces_carry_offsets_that_rebuild_the_stream(self):
        """Each unordered piece says its offset; placed there, the pieces rebuild the bytes."""
        pair = established(server=server_config(accept_unordered=True))
        sid = pair.client.open_stream(ordered=False)
        data = blob(50_000, 12)
        pair.client.send_stream_data(sid, data, end_stream=True)
        out = pair.client.datagrams_to_send(now=pair.now)
        for datagram, _, _ in reversed(out):
            pair.deliver_to_server(datagram)
        settle(pair)
        rebuilt = bytearray(len(data))
        pieces = [
            e for e in pair.server_events
            if isinstance(e, StreamDataReceived) and e.stream_id == sid
        ]
        offsets = [e.offset for e in pieces if e.data]
        self.assertNotEqual(offsets, sorted(offsets), "the pieces did not arrive out of order")
        for event in pieces:
            rebuilt[event.offset:event.offset + len(event.data)] = event.data
        self.assertEqual(bytes(rebuilt), data)
        self.assertEqual(sum(len(e.data) for e in pieces), len(data))


class AnnouncementTests(SynchronousTestCase):
    """A stream opened without data still reaches the peer."""

    def test_opened_stream_is_announced_before_any_data(self):
        """The server sees StreamOpened for a client stream that has sent nothing yet."""
        pair = established()
        sid = pair.client.open_stream()
        settle(pair)
        opened = [e.stream_id for e in pair.server_events if isinstance(e, StreamOpened)]
        self.assertIn(sid, opened)
        self.assertEqual(received(pair.server_events, sid), b"")

    def test_server_can_speak_first_on_an_announced_stream(self):
        """After the announcement the server writes a greeting on the stream; the client gets it."""
        pair = established()
        sid = pair.client.open_stream()
        settle(pair)
        pair.server.send_stream_data(sid, b"220 hello\r\n")
        settle(pair)
        self.assertEqual(received(pair.client_events, sid), b"220 hello\r\n")


class CompressionTests(SynchronousTestCase):
    """Opt-in lz4 per stream."""

    def _send(self, data: bytes, compress: bool) -> tuple[bytes, int]:
        pair = established()
        before = pair.client.paths[0].bytes_sent
        sid = pair.client.open_stream(compress=compress)
        pair.client.send_stream_data(sid, data, end_stream=True)
        settle(pair)
        return received(pair.server_events, sid), pair.client.paths[0].bytes_sent - before

    def test_compressible_stream_arrives_exactly_in_fewer_bytes(self):
        """Text on a compress=True stream arrives byte-exact in well under half the wire bytes."""
        data = b"".join(b"line %d: the quick brown fox\n" % i for i in range(20000))
        plain_got, plain_bytes = self._send(data, compress=False)
        got, wire_bytes = self._send(data, compress=True)
        self.assertEqual(plain_got, data)
        self.assertEqual(got, data)
        self.assertLess(wire_bytes, plain_bytes / 2)

    def test_incompressible_stream_is_sent_as_is(self):
        """Random bytes with compress=True arrive exactly and cost no more than without it."""
        data = blob(300_000, 21)
        plain_got, plain_bytes = self._send(data, compress=False)
        got, wire_bytes = self._send(data, compress=True)
        self.assertEqual(got, data)
        self.assertLessEqual(wire_bytes, plain_bytes * 1.01)
