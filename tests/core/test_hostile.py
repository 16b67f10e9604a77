"""
Hostile peers against an established connection, and attacks on packets.

Frame-level attacks are sealed with the attacker's real keys
(:func:`~kwik_twisted.testing.pair.forge`, or :func:`~kwik_twisted.testing.pair.seal_plaintext`
for bytes the frame encoders refuse to produce), so they are authenticated and the victim must
close the connection with the wire error code of ``docs/protocol.rst``; the attacker sees that
code in its
``ConnectionTerminated(by_peer=True)``.  Packet-level attacks (tampering, replay, garbage) must
instead be dropped and counted without closing anything.
"""

from __future__ import annotations

import random
from zlib import crc32

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.connection import State
from kwik_twisted.errors import ErrorCode
from kwik_twisted.events import StreamDataReceived
from kwik_twisted.testing.pair import (
    CLIENT_ADDR,
    SERVER_ADDR,
    MemoryPair,
    forge,
    seal_plaintext,
    server_config,
)
from kwik_twisted.wire import (
    AckFrame,
    ControlType,
    Epoch,
    HandshakeDoneFrame,
    HandshakeFrame,
    MaxStreamDataFrame,
    PacketType,
    PingFrame,
    ResetStreamFrame,
    StreamFrame,
    TransportParameter,
    TransportParametersFrame,
    decode_packet,
)
from tests.wire.strategies import (
    ENCRYPTED,
    PRIORITY,
    checksum_offset,
    raw_control,
    raw_datagram,
    raw_frame,
    varints_body,
)

from .test_connection import (
    established,
    received,
    settle,
    terminations,
)

WINDOW = 1024 * 1024  # the server's initial_max_stream_data in these tests
CONN_WINDOW = 4 * 1024 * 1024  # and its initial_max_data


def victim_pair() -> MemoryPair:
    """An established pair whose server (the victim) has known flow-control windows."""
    return established(
        server=server_config(initial_max_stream_data=WINDOW, initial_max_data=CONN_WINDOW)
    )


def mid_handshake_pair() -> MemoryPair:
    """A server that has the client's first flight but not its Finished (initial keys count)."""
    pair = MemoryPair()
    for datagram, _, _ in pair.client.datagrams_to_send(now=pair.now):
        pair.deliver_to_server(datagram)
    if pair.server.handshake_complete:
        raise AssertionError("the server finished its handshake too early for this test")
    return pair


class AttackMixin:
    """Delivers a forged datagram to the server and checks how the connection ends."""

    def assertClosedWith(self, pair: MemoryPair, datagram: bytes, code: int, frame_type=None):
        """
        The server closes with ``code`` on receiving ``datagram``, and the client (the attacker)
        learns that code from the server's CONNECTION_CLOSE.
        """
        server = pair.server
        pair.deliver_to_server(datagram)
        mine = terminations(pair.server_events)
        self.assertEqual(len(mine), 1, pair.server_events)
        self.assertEqual(mine[0].error_code, code, mine[0])
        self.assertFalse(mine[0].by_peer)
        self.assertFalse(mine[0].application)
        if frame_type is not None:
            self.assertEqual(mine[0].frame_type, frame_type)
        self.assertIn(server.state, (State.CLOSING, State.CLOSED))
        pair.pump()
        theirs = terminations(pair.client_events)
        self.assertEqual(len(theirs), 1, pair.client_events)
        self.assertEqual(theirs[0].error_code, code)
        self.assertTrue(theirs[0].by_peer)
        self.assertFalse(theirs[0].application)
        return mine[0]

    def assertStillOpen(self, pair: MemoryPair):
        """Neither side terminated."""
        self.assertEqual(terminations(pair.client_events + pair.server_events), [])
        self.assertIs(pair.server.state, State.ESTABLISHED)


class FlowControlAttackTests(AttackMixin, SynchronousTestCase):
    """Data beyond the limits the victim granted."""

    def test_data_beyond_the_stream_window_is_a_flow_control_error(self):
        """One byte at the stream window's end offset closes with FLOW_CONTROL_ERROR (0x03)."""
        pair = victim_pair()
        datagram = forge(pair.client, [StreamFrame(0, WINDOW, b"x")])
        self.assertClosedWith(pair, datagram, ErrorCode.FLOW_CONTROL_ERROR, 0x3E)

    def test_data_up_to_the_stream_window_is_accepted(self):
        """Data ending exactly at the stream window is fine (the boundary is exclusive)."""
        pair = victim_pair()
        pair.deliver_to_server(forge(pair.client, [StreamFrame(0, WINDOW - 1, b"x")]))
        self.assertStillOpen(pair)

    def test_data_beyond_the_connection_window_is_a_flow_control_error(self):
        """
        Five streams each filled to their 1 MiB window add up to more than the 4 MiB connection
        window: FLOW_CONTROL_ERROR, though no single stream exceeded its own limit.
        """
        pair = victim_pair()
        per_stream = CONN_WINDOW // 4  # == WINDOW
        frames = [StreamFrame(4 * i, per_stream - 1, b"x") for i in range(4)]
        pair.deliver_to_server(forge(pair.client, frames))
        self.assertStillOpen(pair)
        datagram = forge(pair.client, [StreamFrame(16, 0, b"y")])
        self.assertClosedWith(pair, datagram, ErrorCode.FLOW_CONTROL_ERROR)

    def test_reset_stream_final_size_counts_against_the_connection_window(self):
        """A RESET_STREAM final size overrunning the connection window is a FLOW_CONTROL_ERROR."""
        pair = victim_pair()
        frames = [StreamFrame(4 * i, WINDOW - 1, b"x") for i in range(4)]
        pair.deliver_to_server(forge(pair.client, frames))
        datagram = forge(pair.client, [ResetStreamFrame(16, 0, 10)])
        self.assertClosedWith(pair, datagram, ErrorCode.FLOW_CONTROL_ERROR)

    def test_held_gaps_never_buffer_more_than_the_window(self):
        """
        A peer that keeps a gap at offset 0 open and fills the rest of the window in small pieces
        never makes the victim buffer more than the stream window; one byte past it is a
        FLOW_CONTROL_ERROR.
        """
        pair = victim_pair()
        chunk = 1000
        offset = 1  # byte 0 never comes: nothing can be delivered
        while offset + chunk <= WINDOW:
            frames = []
            while len(frames) < 8 and offset + chunk <= WINDOW:
                frames.append(StreamFrame(0, offset, b"g" * chunk))
                offset += chunk + 1000  # leave holes too
            pair.deliver_to_server(forge(pair.client, frames))
            stream = pair.server.streams.streams[0]
            self.assertLessEqual(stream.recv.buffered_bytes, WINDOW)
        # The same ranges again, many times: duplicates must not add to the buffer.
        before = pair.server.streams.streams[0].recv.buffered_bytes
        for _ in range(20):
            pair.deliver_to_server(forge(pair.client, [StreamFrame(0, 1, b"g" * chunk)]))
        self.assertEqual(pair.server.streams.streams[0].recv.buffered_bytes, before)
        self.assertEqual(received(pair.server_events, 0), b"")
        self.assertStillOpen(pair)
        datagram = forge(pair.client, [StreamFrame(0, WINDOW - 1, b"zz")])
        self.assertClosedWith(pair, datagram, ErrorCode.FLOW_CONTROL_ERROR)


class StreamAttackTests(AttackMixin, SynchronousTestCase):
    """Stream IDs and final sizes a peer must not use."""

    def test_stream_beyond_max_streams_is_a_stream_limit_error(self):
        """Stream number max_streams (ID 4 * 256) closes with STREAM_LIMIT_ERROR (0x04)."""
        pair = victim_pair()
        limit = pair.server.config.max_streams
        pair.deliver_to_server(forge(pair.client, [StreamFrame(4 * (limit - 1), 0, b"ok")]))
        self.assertStillOpen(pair)
        datagram = forge(pair.client, [StreamFrame(4 * limit, 0, b"one too many")])
        self.assertClosedWith(pair, datagram, ErrorCode.STREAM_LIMIT_ERROR)

    def test_changed_final_size_is_a_final_size_error(self):
        """A second FIN at a different offset closes with FINAL_SIZE_ERROR (0x06)."""
        pair = victim_pair()
        pair.deliver_to_server(forge(pair.client, [StreamFrame(0, 0, b"abc", True)]))
        self.assertStillOpen(pair)
        datagram = forge(pair.client, [StreamFrame(0, 0, b"abcd", True)])
        self.assertClosedWith(pair, datagram, ErrorCode.FINAL_SIZE_ERROR)

    def test_data_beyond_the_final_size_is_a_final_size_error(self):
        """Data past a known final size (FIN not yet delivered: gap) is a FINAL_SIZE_ERROR."""
        pair = victim_pair()
        pair.deliver_to_server(forge(pair.client, [StreamFrame(0, 10, b"end", True)]))
        self.assertStillOpen(pair)
        datagram = forge(pair.client, [StreamFrame(0, 13, b"more")])
        self.assertClosedWith(pair, datagram, ErrorCode.FINAL_SIZE_ERROR)

    def test_reset_with_a_different_final_size_is_a_final_size_error(self):
        """RESET_STREAM contradicting the FIN's final size is a FINAL_SIZE_ERROR."""
        pair = victim_pair()
        pair.deliver_to_server(forge(pair.client, [StreamFrame(0, 5, b"abc", True)]))
        datagram = forge(pair.client, [ResetStreamFrame(0, 1, 100)])
        self.assertClosedWith(pair, datagram, ErrorCode.FINAL_SIZE_ERROR)

    def test_unidirectional_stream_id_is_a_stream_state_error(self):
        """A STREAM frame for stream 2 (client unidirectional) closes with STREAM_STATE_ERROR."""
        pair = victim_pair()
        datagram = forge(pair.client, [StreamFrame(2, 0, b"uni")])
        self.assertClosedWith(pair, datagram, ErrorCode.STREAM_STATE_ERROR)

    def test_stream_the_victim_never_opened_is_a_stream_state_error(self):
        """Data on a server-initiated stream ID the server never opened is STREAM_STATE_ERROR."""
        pair = victim_pair()
        datagram = forge(pair.client, [StreamFrame(41, 0, b"yours?")])
        self.assertClosedWith(pair, datagram, ErrorCode.STREAM_STATE_ERROR)

    def test_max_stream_data_for_an_unopened_own_stream_is_a_stream_state_error(self):
        """MAX_STREAM_DATA naming a server stream never opened is STREAM_STATE_ERROR."""
        pair = victim_pair()
        datagram = forge(pair.client, [MaxStreamDataFrame(45, 1 << 20)])
        self.assertClosedWith(pair, datagram, ErrorCode.STREAM_STATE_ERROR)


class FrameAttackTests(AttackMixin, SynchronousTestCase):
    """Malformed or forbidden frames, authenticated with the peer's keys."""

    def test_unknown_control_frame_type_is_a_frame_encoding_error(self):
        """A control frame of type 0x30 (unassigned) closes with FRAME_ENCODING_ERROR (0x07)."""
        pair = victim_pair()
        datagram = seal_plaintext(pair.client, raw_control(0x30, b""))
        self.assertClosedWith(pair, datagram, ErrorCode.FRAME_ENCODING_ERROR)

    def test_ack_with_more_than_256_ranges_is_a_frame_encoding_error(self):
        """An ACK with 257 additional ranges closes with FRAME_ENCODING_ERROR."""
        pair = victim_pair()
        count = 257
        largest = 2 * (count + 1) + 10
        body = varints_body(0, largest, 0, count, 0) + varints_body(0, 0) * count
        datagram = seal_plaintext(pair.client, raw_control(ControlType.ACK, body))
        self.assertClosedWith(pair, datagram, ErrorCode.FRAME_ENCODING_ERROR)

    def test_ack_of_a_sequence_number_never_sent_is_a_protocol_violation(self):
        """Acknowledging a packet far beyond what the server sent is a PROTOCOL_VIOLATION (0x0a)."""
        pair = victim_pair()
        datagram = forge(pair.client, [AckFrame(0, ((100_000, 100_000),), 0)])
        self.assertClosedWith(pair, datagram, ErrorCode.PROTOCOL_VIOLATION, ControlType.ACK)

    def test_ack_for_an_unknown_path_is_a_protocol_violation(self):
        """An ACK naming a path that does not exist is a PROTOCOL_VIOLATION."""
        pair = victim_pair()
        datagram = forge(pair.client, [AckFrame(7, ((0, 0),), 0)])
        self.assertClosedWith(pair, datagram, ErrorCode.PROTOCOL_VIOLATION)

    def test_handshake_data_beyond_the_buffer_cap_is_rejected(self):
        """HANDSHAKE bytes > 64 KiB past the read offset: HANDSHAKE_BUFFER_EXCEEDED (0x0d)."""
        pair = victim_pair()
        datagram = forge(pair.client, [HandshakeFrame(200_000, b"\x16" * 100)])
        self.assertClosedWith(pair, datagram, ErrorCode.HANDSHAKE_BUFFER_EXCEEDED)

    def test_control_frame_without_encrypted_flag_under_application_keys(self):
        """A PING with ENCRYPTED clear in an application-key packet is a PROTOCOL_VIOLATION."""
        pair = victim_pair()
        ping = raw_control(ControlType.PING, b"", flags=PRIORITY)
        datagram = seal_plaintext(pair.client, ping, packet_type=PacketType.KEEP_ALIVE)
        self.assertClosedWith(pair, datagram, ErrorCode.PROTOCOL_VIOLATION)

    def test_stream_frame_without_encrypted_flag_is_refused(self):
        """A STREAM frame with ENCRYPTED clear under application keys is a PROTOCOL_VIOLATION."""
        pair = victim_pair()
        frame = raw_frame(0, b"cleartext?", flags=0x10)  # ORDERED only
        datagram = seal_plaintext(pair.client, frame, packet_type=PacketType.DATA)
        self.assertClosedWith(pair, datagram, ErrorCode.PROTOCOL_VIOLATION)
        self.assertEqual(received(pair.server_events, 0), b"")

    def test_encrypted_flag_under_initial_keys_is_a_protocol_violation(self):
        """Mid-handshake, an initial-key PING with ENCRYPTED set is a PROTOCOL_VIOLATION."""
        pair = mid_handshake_pair()
        ping = raw_control(ControlType.PING, b"", flags=PRIORITY | ENCRYPTED)
        datagram = seal_plaintext(
            pair.client, ping, packet_type=PacketType.KEEP_ALIVE, epoch=Epoch.INITIAL
        )
        self.assertClosedWith(pair, datagram, ErrorCode.PROTOCOL_VIOLATION)

    def test_stream_frame_under_initial_keys_is_never_delivered(self):
        """
        Stream data under initial keys (which anyone can derive) is refused and never delivered:
        mid-handshake, an authenticated one is a PROTOCOL_VIOLATION.
        """
        pair = mid_handshake_pair()
        frame = raw_frame(0, b"injected", flags=0x10, epoch=Epoch.INITIAL)
        datagram = seal_plaintext(
            pair.client, frame, packet_type=PacketType.DATA, epoch=Epoch.INITIAL
        )
        self.assertClosedWith(pair, datagram, ErrorCode.PROTOCOL_VIOLATION)
        self.assertEqual(received(pair.server_events, 0), b"")

    def test_initial_key_packets_are_ignored_once_the_handshake_is_confirmed(self):
        """
        After the handshake, initial keys are public knowledge: a CONNECTION_CLOSE, an ACK of data
        never delivered, or a packet from a new address under them is dropped, changes nothing and
        closes nothing.
        """
        pair = victim_pair()
        server = pair.server
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"before")
        pair.pump()
        server_addr = server.paths[0].remote_addr
        close = raw_control(ControlType.CONNECTION_CLOSE, b"\x00\x0a\x3f\x00")
        forged = seal_plaintext(pair.client, close, epoch=Epoch.INITIAL)
        pair.dispatcher.receive_datagram(
            forged, ("127.0.0.1", 4433), ("203.0.113.9", 9), now=pair.now
        )
        self.assertEqual(terminations(pair.server_events), [])
        self.assertIs(server.state, State.ESTABLISHED)
        self.assertEqual(server.paths[0].remote_addr, server_addr)
        self.assertGreater(server.stats["dropped_DroppedPacket"], 0)
        pair.client.send_stream_data(sid, b" after", end_stream=True)
        settle(pair)
        self.assertEqual(received(pair.server_events, sid), b"before after")

    def test_changed_transport_parameters_are_a_protocol_violation(self):
        """A second TRANSPORT_PARAMETERS with different values is a PROTOCOL_VIOLATION."""
        pair = victim_pair()
        params = {TransportParameter.INITIAL_MAX_DATA: 1 << 30}
        datagram = forge(pair.client, [TransportParametersFrame(params)])
        self.assertClosedWith(
            pair, datagram, ErrorCode.PROTOCOL_VIOLATION, ControlType.TRANSPORT_PARAMETERS
        )

    def test_client_sending_handshake_done_is_a_protocol_violation(self):
        """HANDSHAKE_DONE is the server's to send: from a client it is a PROTOCOL_VIOLATION."""
        pair = victim_pair()
        datagram = forge(pair.client, [HandshakeDoneFrame()])
        self.assertClosedWith(
            pair, datagram, ErrorCode.PROTOCOL_VIOLATION, ControlType.HANDSHAKE_DONE
        )

    def test_frame_count_disagreeing_with_the_payload_is_a_frame_encoding_error(self):
        """A header announcing two frames for a payload of one is a FRAME_ENCODING_ERROR."""
        pair = victim_pair()
        ping = raw_control(ControlType.PING, b"")
        datagram = seal_plaintext(
            pair.client, ping, frame_count=2, packet_type=PacketType.KEEP_ALIVE
        )
        self.assertClosedWith(pair, datagram, ErrorCode.FRAME_ENCODING_ERROR)

    def test_wrong_packet_type_is_a_protocol_violation(self):
        """A packet whose type is not the one its frames call for is a PROTOCOL_VIOLATION."""
        pair = victim_pair()
        ping = raw_control(ControlType.PING, b"")
        datagram = seal_plaintext(pair.client, ping, packet_type=PacketType.DATA)
        self.assertClosedWith(pair, datagram, ErrorCode.PROTOCOL_VIOLATION)

    def test_well_formed_frames_from_a_legitimate_peer_do_not_close(self):
        """Control: a forged but valid PING keeps the connection open (the harness is sound)."""
        pair = victim_pair()
        pair.deliver_to_server(forge(pair.client, [PingFrame()]))
        pair.pump()
        self.assertStillOpen(pair)


def _stream_datagrams(pair: MemoryPair, sid: int, data: bytes) -> list[bytes]:
    """Queue ``data`` on the client's stream and take the datagrams that carry it."""
    pair.client.send_stream_data(sid, data, end_stream=True)
    return [d for d, _, _ in pair.client.datagrams_to_send(now=pair.now)]


def _dropped(conn) -> int:
    """How many datagrams ``conn`` dropped, by its stats."""
    return sum(v for k, v in conn.stats.items() if k.startswith("dropped"))


class PacketAttackTests(SynchronousTestCase):
    """Tampered, replayed and garbage datagrams are dropped, counted, and harmless."""

    def test_flipped_ciphertext_byte_is_dropped_and_transfer_completes(self):
        """
        A datagram with one ciphertext byte flipped (checksum fixed up so only the AEAD can notice)
        is dropped and counted as a decryption failure; the connection stays up and the data arrives
        intact after retransmission.
        """
        pair = established()
        server = pair.server
        sid = pair.client.open_stream()
        data = random.Random(1).randbytes(30_000)
        datagrams = _stream_datagrams(pair, sid, data)
        victim = bytearray(datagrams[0])
        victim[-5] ^= 0x40
        at = checksum_offset(bytes(victim))
        victim[at : at + 4] = crc32(bytes(victim[:at]) + bytes(victim[at + 4 :])).to_bytes(4, "big")
        before = server.stats["dropped_DecryptionFailed"]
        pair.deliver_to_server(bytes(victim))
        self.assertEqual(server.stats["dropped_DecryptionFailed"], before + 1)
        for datagram in datagrams[1:]:
            pair.deliver_to_server(datagram)
        settle(pair, 3.0)
        self.assertEqual(received(pair.server_events, sid), data)
        self.assertEqual(terminations(pair.client_events + pair.server_events), [])

    def test_flipped_byte_with_stale_checksum_is_dropped_by_the_checksum(self):
        """A corrupted datagram whose checksum no longer matches is dropped and counted."""
        pair = established()
        server = pair.server
        sid = pair.client.open_stream()
        datagrams = _stream_datagrams(pair, sid, b"hello" * 100)
        victim = bytearray(datagrams[0])
        victim[-3] ^= 0x01
        before = _dropped(server)
        pair.deliver_to_server(bytes(victim))
        self.assertEqual(_dropped(server), before + 1)
        self.assertIs(server.state, State.ESTABLISHED)
        settle(pair, 3.0)
        self.assertEqual(received(pair.server_events, sid), b"hello" * 100)

    def test_replayed_datagram_is_ignored(self):
        """Delivering the same datagram three times delivers its data once, and counts two drops."""
        pair = established()
        server = pair.server
        sid = pair.client.open_stream()
        datagrams = _stream_datagrams(pair, sid, b"only once")
        self.assertEqual(len(datagrams), 1)
        before = _dropped(server)
        for _ in range(3):
            pair.deliver_to_server(datagrams[0])
        self.assertEqual(received(pair.server_events, sid), b"only once")
        self.assertEqual(_dropped(server), before + 2)
        settle(pair, 1.0)
        self.assertEqual(received(pair.server_events, sid), b"only once")

    def test_old_datagram_replayed_after_much_traffic_is_ignored(self):
        """A datagram replayed after hundreds of later packets delivers nothing again."""
        pair = established()
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"first")
        old = [d for d, _, _ in pair.client.datagrams_to_send(now=pair.now)]
        for d in old:
            pair.deliver_to_server(d)
        for _ in range(300):
            pair.client.send_stream_data(sid, b".")
            pair.pump()
        before = received(pair.server_events, sid)
        for d in old:
            pair.deliver_to_server(d)
        settle(pair, 1.0)
        self.assertEqual(received(pair.server_events, sid), before)
        self.assertEqual(terminations(pair.client_events + pair.server_events), [])

    def test_garbage_datagrams_create_no_connection(self):
        """Random datagrams of any size (many >= 1200 bytes) make the dispatcher create nothing;
        all it sends are stateless answers (resets and Version Negotiation), each smaller than
        the datagram it answers and no more than the rate limiter's burst in all."""
        pair = MemoryPair()
        rng = random.Random(7)
        answers = 0
        for _ in range(300):
            size = rng.choice([0, 1, 9, 50, 1199, 1200, 1350, 1500, rng.randrange(0, 2000)])
            pair.dispatcher.receive_datagram(
                rng.randbytes(size), SERVER_ADDR, CLIENT_ADDR, now=pair.now
            )
            for reply, _, _ in pair.dispatcher.take_replies():
                self.assertLess(len(reply), size)
                answers += 1
        self.assertEqual(pair.dispatcher.connections, {})
        self.assertLessEqual(answers, 20)
        self.assertEqual(pair.dispatcher.datagrams_to_send(now=pair.now), [])

    def test_well_formed_envelope_with_forged_payload_creates_no_connection(self):
        """
        A datagram with a valid initial envelope and checksum but a payload that fails
        authentication under the initial keys is dropped without creating connection state.
        """
        pair = MemoryPair()
        rng = random.Random(8)
        for _ in range(20):
            datagram = raw_datagram(
                payload=rng.randbytes(1200),
                dcid=rng.randbytes(8),
                scid=rng.randbytes(8),
                packet_type=PacketType.CONTROL,
            )
            self.assertGreaterEqual(len(datagram), 1200)
            self.assertEqual(decode_packet(datagram).header.epoch, Epoch.INITIAL)
            pair.dispatcher.receive_datagram(datagram, SERVER_ADDR, CLIENT_ADDR, now=pair.now)
        live = {id(c) for c in pair.dispatcher.connections.values() if not c.is_closed}
        self.assertEqual(len(live), 0, "connections created for unauthenticated datagrams")
        self.assertEqual(pair.dispatcher.datagrams_to_send(now=pair.now), [])

    def test_garbage_does_not_disturb_an_established_connection(self):
        """Random datagrams addressed to the server's CID are dropped; the transfer goes on."""
        pair = established()
        server = pair.server
        rng = random.Random(9)
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"payload", end_stream=True)
        for _ in range(100):
            junk = b"\x40" + server.local_cid + rng.randbytes(rng.randrange(0, 1400))
            pair.deliver_to_server(junk)
        settle(pair, 1.0)
        self.assertEqual(received(pair.server_events, sid), b"payload")
        self.assertIs(server.state, State.ESTABLISHED)
        self.assertGreaterEqual(_dropped(server), 100)

    def test_server_never_amplifies_more_than_three_times_before_validation(self):
        """
        With only the client's first flight delivered (the rest dropped), the server's total output
        over a minute of retransmission timers stays within 3x the bytes it received.
        """
        pair = MemoryPair()
        first = pair.client.datagrams_to_send(now=pair.now)
        received_bytes = 0
        for data, _, _ in first:
            received_bytes += len(data)
            pair.dispatcher.receive_datagram(data, SERVER_ADDR, CLIENT_ADDR, now=pair.now)
        self.assertTrue(pair.dispatcher.connections)
        sent = 0
        datagrams = 0
        now = pair.now
        end = now + 60.0
        while now < end:
            for data, _, _ in pair.dispatcher.datagrams_to_send(now=now):
                sent += len(data)
                datagrams += 1
            deadline = pair.dispatcher.next_deadline()
            if deadline is None or deadline > end:
                break
            now = max(now + 1e-6, deadline)
            pair.dispatcher.handle_deadline(now=now)
        self.assertGreater(datagrams, 0)
        self.assertLessEqual(sent, 3 * received_bytes)

    def test_server_stops_sending_entirely_when_the_budget_is_spent(self):
        """After the budget is spent, further PTOs of the unvalidated server send nothing more."""
        pair = MemoryPair()
        received_bytes = 0
        for data, _, _ in pair.client.datagrams_to_send(now=pair.now):
            received_bytes += len(data)
            pair.dispatcher.receive_datagram(data, SERVER_ADDR, CLIENT_ADDR, now=pair.now)
        totals = []
        now = pair.now
        for _ in range(12):
            for data, _, _ in pair.dispatcher.datagrams_to_send(now=now):
                totals.append(len(data))
            deadline = pair.dispatcher.next_deadline()
            if deadline is None:
                break
            now = max(now + 1e-6, deadline)
            pair.dispatcher.handle_deadline(now=now)
        self.assertLessEqual(sum(totals), 3 * received_bytes)


class DataIntegrityTests(SynchronousTestCase):
    """Events never duplicate or invent data under the attacks above."""

    def test_duplicate_stream_frames_in_new_packets_deliver_once(self):
        """The same STREAM frame in several distinct (authenticated) packets is delivered once."""
        pair = established()
        for _ in range(3):
            pair.deliver_to_server(forge(pair.client, [StreamFrame(0, 0, b"dup", True)]))
        events = [
            e for e in pair.server_events if isinstance(e, StreamDataReceived) and e.stream_id == 0
        ]
        self.assertEqual(b"".join(e.data for e in events), b"dup")
        self.assertEqual(sum(e.end_stream for e in events), 1)
