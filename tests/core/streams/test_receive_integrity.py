"""
The receive side of streams against hostile and unlucky peers, through whole connections.

Issue 11's stream findings, each attacked with forged, authenticated frames
(:func:`~kwik_twisted.testing.pair.forge`) against an in-memory server:

* the ORDERED flag is the sender's permission, not the receiver's obligation: a server that does
  not accept unordered delivery reassembles every stream in order; the flag may not change;
* a final size, once known, is never forgotten (an empty FIN then "unordered" data);
* an unordered stream completes and closes however its pieces arrive;
* a RESET_STREAM releases the stream's buffers at once, even while our own reset waits for an
  ACK that never comes;
* the pieces a peer makes us hold are bounded per connection, across all streams.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.streams import SendBuffer
from kwik_twisted.core.streams.budget import MAX_HELD_PIECES
from kwik_twisted.errors import ErrorCode
from kwik_twisted.events import StreamClosed, StreamDataReceived, StreamReset
from kwik_twisted.testing.pair import MemoryPair, forge, server_config
from kwik_twisted.wire import ResetStreamFrame, StreamFrame
from tests.core.test_connection import established, fins, received, settle, terminations

KiB = 1024
MiB = 1024 * KiB


def victim(**config) -> MemoryPair:
    """An established pair; the server (the victim) has these configuration overrides."""
    return established(server=server_config(**config))


def pieces(pair: MemoryPair, sid: int) -> list[StreamDataReceived]:
    """The server's StreamDataReceived events for ``sid``."""
    return [
        e for e in pair.server_events if isinstance(e, StreamDataReceived) and e.stream_id == sid
    ]


def closed_with(test: SynchronousTestCase, pair: MemoryPair, code: int) -> None:
    """The server closed the connection with ``code`` (and only once)."""
    ended = terminations(pair.server_events)
    test.assertEqual(len(ended), 1, pair.server_events[-3:])
    test.assertEqual(ended[0].error_code, code, ended[0])
    test.assertFalse(ended[0].by_peer)


class ReceiveOrderTests(SynchronousTestCase):
    """Whether a peer's stream is delivered in order is the receiver's choice."""

    DATA = bytes(range(256)) * 16  # 4,096 bytes

    def send_reversed(self, pair: MemoryPair, ordered: bool) -> None:
        """Stream 0 in 100-byte pieces, last first, with ORDERED as given, then the FIN."""
        data = self.DATA
        offsets = list(range(0, len(data), 100))
        for offset in reversed(offsets):
            frame = StreamFrame(0, offset, data[offset : offset + 100], ordered=ordered)
            pair.deliver_to_server(forge(pair.client, [frame]))
        pair.deliver_to_server(
            forge(pair.client, [StreamFrame(0, len(data), b"", True, ordered=ordered)])
        )

    def test_unordered_peer_stream_is_reassembled_in_order_by_default(self):
        """A peer sends a stream without ORDERED, in reverse: a server with the default
        configuration delivers the exact byte stream, each piece at the offset where the last
        one ended (before: pieces in arrival order, the 3,996th byte first)."""
        pair = victim()
        self.send_reversed(pair, ordered=False)
        events = pieces(pair, 0)
        offset = 0
        for event in events:
            self.assertEqual(event.offset, offset)
            offset += len(event.data)
        self.assertEqual(received(pair.server_events, 0), self.DATA)
        self.assertEqual(fins(pair.server_events, 0), 1)
        self.assertEqual(terminations(pair.server_events), [])

    def test_accept_unordered_delivers_pieces_as_they_come(self):
        """With accept_unordered, the same stream is delivered as pieces with their offsets,
        the first one being the last piece sent."""
        pair = victim(accept_unordered=True)
        self.send_reversed(pair, ordered=False)
        events = pieces(pair, 0)
        self.assertEqual(events[0].offset, 4000)
        rebuilt = bytearray(len(self.DATA))
        for event in events:
            rebuilt[event.offset : event.offset + len(event.data)] = event.data
        self.assertEqual(bytes(rebuilt), self.DATA)
        self.assertEqual(fins(pair.server_events, 0), 1)

    def test_ordered_flag_changed_after_an_empty_fin_is_a_protocol_violation(self):
        """An empty FIN (final size 0) with ORDERED, then 19 bytes with ORDERED clear: the flag
        changed, PROTOCOL_VIOLATION, and the bytes are never delivered (before: a new
        reassembler forgot the final size and delivered them after end-of-file)."""
        for accept in (False, True):
            pair = victim(accept_unordered=accept)
            pair.deliver_to_server(forge(pair.client, [StreamFrame(0, 0, b"", True)]))
            self.assertEqual(terminations(pair.server_events), [])
            after_eof = StreamFrame(0, 0, b"x" * 19, ordered=False)
            pair.deliver_to_server(forge(pair.client, [after_eof]))
            closed_with(self, pair, ErrorCode.PROTOCOL_VIOLATION)
            self.assertEqual(received(pair.server_events, 0), b"")

    def test_ordered_flag_changed_on_an_unordered_stream_is_a_protocol_violation(self):
        """Data without ORDERED, then with it, on the same stream: PROTOCOL_VIOLATION, whether
        the server reassembles the stream in order or not (the peer's first flag is what
        counts, not our reassembly)."""
        for accept in (False, True):
            pair = victim(accept_unordered=accept)
            pair.deliver_to_server(forge(pair.client, [StreamFrame(0, 0, b"a", ordered=False)]))
            pair.deliver_to_server(forge(pair.client, [StreamFrame(0, 1, b"b", ordered=True)]))
            closed_with(self, pair, ErrorCode.PROTOCOL_VIOLATION)

    def test_data_past_an_empty_fin_is_a_final_size_error_on_both_reassemblers(self):
        """An empty FIN then data with the same flag: FINAL_SIZE_ERROR, ordered or not."""
        for accept in (False, True):
            pair = victim(accept_unordered=accept)
            fin = StreamFrame(0, 0, b"", True, ordered=False)
            pair.deliver_to_server(forge(pair.client, [fin]))
            pair.deliver_to_server(forge(pair.client, [StreamFrame(0, 0, b"y", ordered=False)]))
            closed_with(self, pair, ErrorCode.FINAL_SIZE_ERROR)
            self.assertEqual(received(pair.server_events, 0), b"")


class UnorderedCompletionTests(SynchronousTestCase):
    """Honest unordered streams finish cleanly whatever the network does to them."""

    def test_unordered_stream_completes_when_the_first_packet_is_resent_after_the_fin(self):
        """The first packet of an unordered stream is lost and re-sent after the FIN arrived:
        every byte is delivered once, the end once, and the connection stays up (before: the
        server closed it with STREAM_STATE_ERROR)."""
        pair = victim(accept_unordered=True)
        sid = pair.client.open_stream(ordered=False)
        data = bytes(range(256)) * 20  # five datagrams: all sent at once, FIN in the last
        pair.client.send_stream_data(sid, data, end_stream=True)
        out = pair.client.datagrams_to_send(now=pair.now)
        self.assertGreater(len(out), 3)
        for datagram, _, _ in out[1:]:
            pair.deliver_to_server(datagram)  # the first one is lost
        settle(pair, 5.0)
        self.assertEqual(terminations(pair.client_events + pair.server_events), [])
        rebuilt = bytearray(len(data))
        for event in pieces(pair, sid):
            rebuilt[event.offset : event.offset + len(event.data)] = event.data
        self.assertEqual(bytes(rebuilt), data)
        self.assertEqual(sum(len(e.data) for e in pieces(pair, sid)), len(data))
        self.assertEqual(fins(pair.server_events, sid), 1)
        pair.server.send_stream_data(sid, b"bye", end_stream=True)
        settle(pair)
        self.assertIn(StreamClosed(sid), pair.server_events)


class ResetMemoryTests(SynchronousTestCase):
    """RESET_STREAM releases the buffers at once, however long our own reset waits."""

    STREAMS = 250

    def test_reset_streams_hold_no_data_while_our_reset_waits_for_an_ack(self):
        """
        250 streams each get 1 MiB held behind a gap at offset 0 (compressed frames: a few KiB
        on the wire), then RESET_STREAM; the server resets its own side, and the attacker never
        acknowledges anything, so no stream can close.  The server holds no stream bytes and
        under 64 KiB of receive memory afterwards (before: 250 MiB, until the ACKs that never
        came), and each reset's credit was memory released: the attack fits in the windows.
        """
        pair = victim()
        server = pair.server
        chunk = bytes(16 * KiB - 1)
        for n in range(self.STREAMS):
            sid = 4 * n
            offsets = range(1, MiB - len(chunk) + 1, len(chunk))
            frames = [StreamFrame(sid, o, chunk, compress=True) for o in offsets]
            for i in range(0, len(frames), 3):
                pair.deliver_to_server(forge(pair.client, frames[i : i + 3]))
            self.assertGreater(server.streams.receive_memory, MiB - 16 * KiB)
            pair.deliver_to_server(forge(pair.client, [ResetStreamFrame(sid, 7, MiB)]))
            for event in pair.server_events[-3:]:
                if isinstance(event, StreamReset):
                    server.reset_stream(event.stream_id, 8)
            pair.dispatcher.datagrams_to_send(now=pair.now)  # sent, never acknowledged
        self.assertEqual(terminations(pair.server_events), [])
        self.assertGreaterEqual(len(server.streams.streams), self.STREAMS)
        held = sum(s.recv.buffered_bytes for s in server.streams.streams.values())
        self.assertEqual(held, 0)
        self.assertLess(server.streams.receive_memory, 64 * KiB)

    def test_data_on_a_reset_stream_is_not_buffered(self):
        """Frames for a stream the peer reset (retransmissions, or an attacker's) are
        dropped, not held."""
        pair = victim()
        pair.deliver_to_server(forge(pair.client, [StreamFrame(0, 1, b"x" * 1000)]))
        pair.deliver_to_server(forge(pair.client, [ResetStreamFrame(0, 7, 100_000)]))
        pair.deliver_to_server(forge(pair.client, [StreamFrame(0, 2000, b"y" * 1000)]))
        self.assertEqual(pair.server.streams.receive_memory, 0)
        self.assertEqual(terminations(pair.server_events), [])

    def test_a_second_reset_with_another_final_size_is_a_final_size_error(self):
        """The final size a RESET_STREAM gave is kept: a repeated RESET_STREAM naming another
        one is a FINAL_SIZE_ERROR (before: ignored once the stream was reset)."""
        pair = victim()
        pair.deliver_to_server(forge(pair.client, [ResetStreamFrame(0, 7, 100)]))
        pair.deliver_to_server(forge(pair.client, [ResetStreamFrame(0, 7, 100)]))
        self.assertEqual(terminations(pair.server_events), [])
        pair.deliver_to_server(forge(pair.client, [ResetStreamFrame(0, 7, 101)]))
        closed_with(self, pair, ErrorCode.FINAL_SIZE_ERROR)

    def test_our_reset_frees_the_send_buffer(self):
        """Resetting the send side drops the data written, sent or not."""
        send = SendBuffer(4 * MiB)
        send.write(b"z" * MiB)
        send.next_frame(1200, 1 << 40)
        self.assertEqual(send.held_bytes, MiB)
        send.reset()
        self.assertEqual(send.held_bytes, 0)


class FragmentTests(SynchronousTestCase):
    """Many small pieces cost a bounded amount of memory, per connection."""

    def attack(self, pair: MemoryPair, frames) -> int:
        """Deliver ``frames`` 60 to a datagram until the server ends; return the peak
        receive memory seen."""
        peak = 0
        for i in range(0, len(frames), 60):
            pair.deliver_to_server(forge(pair.client, frames[i : i + 60]))
            peak = max(peak, pair.server.streams.receive_memory)
            if terminations(pair.server_events):
                break
        return peak

    def test_one_byte_pieces_on_many_streams_are_a_flow_control_error(self):
        """One byte at every odd offset of 256 streams in turn, each stream far under its own
        piece limit of 4,096: past 16,384 pieces on the connection it is FLOW_CONTROL_ERROR,
        with the receive memory never above 2 MiB (before: no connection bound; 256 streams x
        4,096 pieces pinned about 87 MiB)."""
        pair = victim()
        frames = [StreamFrame(4 * s, 1 + 2 * i, b"f") for i in range(80) for s in range(256)]
        peak = self.attack(pair, frames)
        closed_with(self, pair, ErrorCode.FLOW_CONTROL_ERROR)
        self.assertLess(peak, 2 * MiB)
        self.assertLessEqual(pair.server.streams.budget.pieces, MAX_HELD_PIECES + 60)

    def test_one_byte_pieces_on_an_unordered_stream_are_a_flow_control_error(self):
        """One byte at every odd offset of a stream delivered as pieces (accept_unordered),
        from the top of its 1 MiB window down: more than 2,048 separate runs is a
        FLOW_CONTROL_ERROR (before: unordered streams had no piece limit)."""
        pair = victim(accept_unordered=True)
        frames = [StreamFrame(0, o, b"u", ordered=False) for o in range(MiB - 1, 0, -2)][:8000]
        peak = self.attack(pair, frames)
        closed_with(self, pair, ErrorCode.FLOW_CONTROL_ERROR)
        self.assertLess(peak, MiB)

    def test_honest_streams_with_few_gaps_are_not_refused(self):
        """Control: 256 streams with full-size pieces and a gap each (one run per stream) are
        held and delivered without complaint."""
        pair = victim()
        for s in range(256):
            frames = [StreamFrame(4 * s, 1 + 1200 * i, b"h" * 1200) for i in range(3)]
            pair.deliver_to_server(forge(pair.client, frames))
        for s in range(256):
            pair.deliver_to_server(forge(pair.client, [StreamFrame(4 * s, 0, b"s")]))
        self.assertEqual(terminations(pair.server_events), [])
        self.assertEqual(pair.server.streams.receive_memory, 0)
