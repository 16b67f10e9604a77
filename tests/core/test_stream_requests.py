"""
What a stream asks for and how far it got, through the core's public calls: ``open_stream``'s
priority, QoS, ordering and paths, ``stream(sid)`` (a read-only view), ``update_stream`` and the
progress counters, over a :class:`~kwik_twisted.testing.pair.MemoryPair` (and the simulator, for
loss).

Only the application's view is checked: views, events and the cleartext packet header.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.connection import UNCHANGED
from kwik_twisted.core.streams.view import StreamProgress, StreamView
from kwik_twisted.errors import ConfigurationError, StreamStateError
from kwik_twisted.events import StreamDataReceived
from kwik_twisted.testing import LinkConfig
from kwik_twisted.testing.pair import MemoryPair, client_config, server_config
from kwik_twisted.testing.transfer import run_transfers
from kwik_twisted.wire import QosPolicy, decode_packet

from .test_connection import drain, established, exchange_once, received, settle
from .test_streams_e2e import blob

POLICY = QosPolicy(1000, 50, 10, 1000)
OTHER = QosPolicy(2000, 20, 5, 100)


def opened(pair: MemoryPair, data: bytes = b"hello", **options) -> int:
    """A client stream opened with ``options``, ``data`` written on it and delivered."""
    sid = pair.client.open_stream(**options)
    pair.client.send_stream_data(sid, data)
    pair.pump()
    return sid


class OpenerRequestTests(SynchronousTestCase):
    """The opener's priority and QoS travel with the stream and govern both directions."""

    def test_accepting_side_reads_the_openers_priority_and_qos(self):
        """A stream opened critical with a policy shows both on the server's view of it."""
        pair = established()
        sid = opened(pair, priority=2, qos=POLICY)
        view = pair.server.stream(sid)
        self.assertIsInstance(view, StreamView)
        self.assertEqual(view.id, sid)
        self.assertEqual(view.priority, 2)
        self.assertEqual(view.qos, POLICY)
        self.assertEqual(view.peer_priority, 2)
        self.assertEqual(view.peer_qos, POLICY)
        self.assertTrue(view.ordered)
        self.assertIsNone(view.paths)
        self.assertFalse(view.local)

    def test_opening_side_reads_its_own_request(self):
        """The opener's view shows what it asked for."""
        pair = established()
        sid = pair.client.open_stream(priority=1, qos=POLICY, ordered=False)
        view = pair.client.stream(sid)
        self.assertEqual((view.priority, view.qos, view.ordered), (1, POLICY, False))
        self.assertTrue(view.local)

    def test_replies_carry_the_openers_priority(self):
        """The server's data on a high-priority client stream goes out at high priority: the
        client's view of the peer's frames says so."""
        pair = established()
        sid = opened(pair, priority=1)
        pair.server.send_stream_data(sid, b"reply")
        pair.pump()
        self.assertEqual(received(pair.client_events, sid), b"reply")
        self.assertEqual(pair.client.stream(sid).peer_priority, 1)

    def test_a_later_priority_from_the_opener_applies_to_replies(self):
        """While the accepting side has not chosen, the opener's priority change is followed."""
        pair = established()
        sid = opened(pair, priority=0)
        pair.client.update_stream(sid, priority=2)
        pair.client.send_stream_data(sid, b"more")
        pair.pump()
        self.assertEqual(pair.server.stream(sid).priority, 2)
        pair.server.send_stream_data(sid, b"reply")
        pair.pump()
        self.assertEqual(pair.client.stream(sid).peer_priority, 2)

    def test_local_priority_overrides_the_peers_and_sticks(self):
        """Once the accepting side sets a priority, the opener's later changes are only noted."""
        pair = established()
        sid = opened(pair, priority=2)
        pair.server.update_stream(sid, priority=0)
        pair.client.update_stream(sid, priority=1)
        pair.client.send_stream_data(sid, b"again")
        pair.pump()
        view = pair.server.stream(sid)
        self.assertEqual((view.priority, view.peer_priority), (0, 1))
        pair.server.send_stream_data(sid, b"reply")
        pair.pump()
        self.assertEqual(pair.client.stream(sid).peer_priority, 0)
        self.assertEqual(pair.client.stream(sid).priority, 1)

    def test_local_qos_overrides_the_peers_and_reaches_the_opener(self):
        """The accepting side's own policy replaces the opener's for its direction, goes to the
        opener on its next frame, and the opener's later policy no longer replaces it."""
        pair = established()
        sid = opened(pair, qos=POLICY)
        pair.server.update_stream(sid, qos=OTHER)
        pair.server.send_stream_data(sid, b"reply")
        pair.pump()
        client_view = pair.client.stream(sid)
        self.assertEqual(client_view.peer_qos, OTHER)
        self.assertEqual(client_view.qos, POLICY)  # the opener's own stays
        pair.client.update_stream(sid, qos=QosPolicy(1, 2, 3, 4))
        pair.client.send_stream_data(sid, b"more")
        pair.pump()
        view = pair.server.stream(sid)
        self.assertEqual((view.qos, view.peer_qos), (OTHER, QosPolicy(1, 2, 3, 4)))

    def test_a_qos_set_after_the_first_frame_replaces_the_policy(self):
        """A policy set later travels on the next frame and the peer's view follows it; ``None``
        withdraws it (an all-zero QOS extension)."""
        pair = established()
        sid = opened(pair)
        self.assertIsNone(pair.server.stream(sid).qos)
        pair.client.update_stream(sid, qos=POLICY)
        pair.client.send_stream_data(sid, b"x")
        pair.pump()
        self.assertEqual(pair.server.stream(sid).qos, POLICY)
        pair.client.update_stream(sid, qos=None)
        pair.client.send_stream_data(sid, b"y")
        pair.pump()
        self.assertIsNone(pair.server.stream(sid).qos)
        self.assertEqual(received(pair.server_events, sid), b"helloxy")

    def test_unchanged_arguments_stay(self):
        """update_stream changes only the arguments given."""
        pair = established()
        sid = pair.client.open_stream(priority=1, qos=POLICY, paths=[0])
        pair.client.update_stream(sid, priority=2, qos=UNCHANGED)
        view = pair.client.stream(sid)
        self.assertEqual((view.priority, view.qos, view.paths), (2, POLICY, (0,)))
        pair.client.update_stream(sid, paths=None)
        self.assertEqual((view.priority, view.qos, view.paths), (2, POLICY, None))

    def test_a_raised_priority_moves_queued_data_ahead(self):
        """Raising a backlogged stream to critical sends its data before an earlier stream's."""
        pair = established()
        first = pair.client.open_stream()
        second = pair.client.open_stream()
        pair.client.send_stream_data(first, blob(200_000, 1))
        pair.client.send_stream_data(second, blob(20_000, 2), end_stream=True)
        pair.client.update_stream(second, priority=2)
        settle(pair, 2.0)
        order = [
            e.stream_id for e in pair.server_events if isinstance(e, StreamDataReceived) and e.data
        ]
        last_of_second = len(order) - 1 - order[::-1].index(second)
        self.assertLess(last_of_second, order.index(first) + 3)
        self.assertEqual(received(pair.server_events, second), blob(20_000, 2))

    def test_bad_requests_are_refused(self):
        """A priority outside 0-2 is a ValueError; a stream that is not open, StreamStateError."""
        pair = established()
        sid = pair.client.open_stream()
        self.assertRaises(ValueError, pair.client.update_stream, sid, priority=3)
        self.assertRaises(ValueError, pair.client.open_stream, priority=-1)
        self.assertRaises(StreamStateError, pair.client.update_stream, 400, priority=1)

    def test_the_view_is_read_only(self):
        """A view's attributes cannot be assigned."""
        pair = established()
        view = pair.client.stream(pair.client.open_stream())
        with self.assertRaises(AttributeError):
            view.priority = 2  # type: ignore[misc]

    def test_unknown_and_closed_streams_have_no_view(self):
        """``stream`` answers None for a stream never opened and for one closed; a view taken
        before the close still reads the final figures."""
        pair = established()
        self.assertIsNone(pair.client.stream(4 * 50))
        sid = pair.client.open_stream()
        view = pair.client.stream(sid)
        pair.client.send_stream_data(sid, b"ping", end_stream=True)
        pair.pump()
        pair.server.send_stream_data(sid, b"pong", end_stream=True)
        settle(pair, 1.0)
        self.assertIsNone(pair.client.stream(sid))
        self.assertTrue(view.closed)
        self.assertEqual(view.progress, StreamProgress(4, 4, 4, 4, 4))


class PathPinningTests(SynchronousTestCase):
    """``paths=`` names paths of the connection; the view shows them."""

    def test_unknown_path_ids_are_refused(self):
        """A path ID that is neither open nor pending, or no path at all, is ConfigurationError."""
        pair = established()
        self.assertRaises(ConfigurationError, pair.client.open_stream, paths=[3])
        self.assertRaises(ConfigurationError, pair.client.open_stream, paths=[])
        sid = pair.client.open_stream(paths=[0])
        self.assertRaises(ConfigurationError, pair.client.update_stream, sid, paths=[0, 7])
        self.assertEqual(pair.client.stream(sid).paths, (0,))

    def test_a_pending_path_may_be_named(self):
        """A path opened before the handshake (still pending) can be pinned already."""
        pair = MemoryPair()
        path_id = pair.client.open_path(("127.0.0.1", 40001), ("127.0.0.1", 4433))
        sid = pair.client.open_stream(paths=[path_id, 0])
        self.assertEqual(pair.client.stream(sid).paths, (0, path_id))

    def test_a_stream_pinned_to_a_missing_path_still_flows(self):
        """Pinned to a path that is not usable (pending, never started), a stream uses path 0."""
        pair = MemoryPair()
        path_id = pair.client.open_path(("127.0.0.1", 40001), ("127.0.0.1", 4433))
        sid = pair.client.open_stream(paths=[path_id])
        pair.client.send_stream_data(sid, b"still here", end_stream=True)
        settle(pair, 1.0)
        self.assertEqual(received(pair.server_events, sid), b"still here")


class CompressionTests(SynchronousTestCase):
    """Streams the peer opens follow the local ``compression`` setting too."""

    def reply_compression(self, server_compresses: bool) -> set[int]:
        """The Compression Info of the server's packets while it replies with compressible data
        on a stream the (non-compressing) client opened."""
        pair = established(
            client_config(compression=False), server_config(compression=server_compresses)
        )
        sid = opened(pair)
        pair.server.send_stream_data(sid, b"abcd" * 2000, end_stream=True)
        seen = set()
        for _ in range(50):
            down = pair.dispatcher.datagrams_to_send(now=pair.now)
            seen.update(decode_packet(data).header.compression for data, _l, _r in down)
            for data, _l, _r in down:
                pair.deliver_to_client(data)
            exchange_once(pair)
            if not down:
                break
        self.assertEqual(received(pair.client_events, sid), b"abcd" * 2000)
        return seen

    def test_peer_opened_streams_are_compressed_when_configured(self):
        """With compression on, the server compresses its replies on a client-opened stream."""
        self.assertIn(1, self.reply_compression(True))

    def test_peer_opened_streams_are_not_compressed_otherwise(self):
        """With compression off, it does not."""
        self.assertNotIn(1, self.reply_compression(False))


class ProgressTests(SynchronousTestCase):
    """The progress counters add up."""

    def test_a_finished_exchange_adds_up_on_both_sides(self):
        """After a request and a reply, each side's written, sent and acked equal the bytes it
        sent, and received and delivered the bytes the other sent."""
        pair = established()
        sid = pair.client.open_stream()
        client_view = pair.client.stream(sid)
        pair.client.send_stream_data(sid, blob(300_000, 3), end_stream=True)
        pair.pump()
        server_view = pair.server.stream(sid)
        pair.server.send_stream_data(sid, blob(10_000, 4), end_stream=True)
        settle(pair, 3.0)
        self.assertEqual(
            client_view.progress, StreamProgress(300_000, 300_000, 300_000, 10_000, 10_000)
        )
        self.assertEqual(
            server_view.progress, StreamProgress(10_000, 10_000, 10_000, 300_000, 300_000)
        )

    def test_progress_while_paused(self):
        """Bytes that arrived while the application paused reading count as received but not as
        delivered."""
        pair = established()
        sid = opened(pair, data=b"a" * 1000)
        pair.server.pause_reading(sid)
        pair.client.send_stream_data(sid, b"b" * 500)
        pair.pump()
        progress = pair.server.stream(sid).progress
        self.assertEqual((progress.received, progress.delivered), (1500, 1000))
        pair.server.pause_reading(sid, False)
        self.assertEqual(pair.server.stream(sid).progress.delivered, 1500)

    def test_a_reset_keeps_the_counts_of_what_happened(self):
        """After our RESET_STREAM, written, sent and acked stay what they were; the peer's
        received counts what arrived, not the final size the reset announced."""
        pair = established()
        sid = pair.client.open_stream()
        view = pair.client.stream(sid)
        pair.client.send_stream_data(sid, blob(100_000, 5))
        burst = pair.client.datagrams_to_send(now=pair.now)
        self.assertGreater(len(burst), 2)
        pair.deliver_to_server(burst[0][0])  # the rest are lost
        sent = view.progress.sent
        pair.client.reset_stream(sid, 7)
        settle(pair, 2.0)
        server_view = pair.server.stream(sid)
        arrived = server_view.progress.received
        self.assertLess(arrived, sent)
        self.assertEqual(server_view.progress.delivered, arrived)
        written, sent_after, acked, _, _ = view.progress
        self.assertEqual((written, sent_after), (100_000, sent))
        self.assertEqual(acked, arrived)
        drain(pair.client)

    def test_a_lossy_transfer_adds_up(self):
        """1 MiB over a link losing 5% each way: retransmissions count once, and afterwards the
        client's written, sent and acked and the server's received and delivered are the size."""
        size = 1 << 20
        lossy = LinkConfig(delay=0.01, rate_bps=20e6, queue_bytes=60_000, loss=0.05)
        result = run_transfers(size=size, link=lossy, seed=3, timeout=120)
        self.assertTrue(result.all_intact)
        network, client = result.network, result.clients[0]
        network.run(until=network.now + 5.0)  # the last ACKs reach the client
        self.assertGreater(client.stats["packets_lost"], 0)
        self.assertEqual(client.stream(0).progress, StreamProgress(size, size, size, 0, 0))
        (server,) = {id(c): c for c in result.server.connections.values()}.values()
        self.assertEqual(server.stream(0).progress, StreamProgress(0, 0, 0, size, size))
