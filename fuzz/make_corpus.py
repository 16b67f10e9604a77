"""
Write the checked-in seed corpus: ``python -m fuzz.make_corpus [fuzz/corpus]``.

Each file is a hand-made input in a harness's format (see :mod:`fuzz.packet_decoder` and
:mod:`fuzz.payload`), named by what it is: valid packets of every kind, so the fuzzer starts from
deep in the decoders, and the classic hostile shapes (huge ACK ranges, lz4 bombs, bad checksums,
frames beyond limits), so the replay test pins their outcome.  Frames are written byte by byte
from ``docs/protocol.rst`` where the encoders would refuse them.  Re-running rewrites the files;
the client's first flight changes with TLS randomness, everything else is byte-identical.
"""

from __future__ import annotations

import os
import sys
from ipaddress import ip_address
from zlib import crc32

import lz4.block

from fuzz import packet_decoder as pd
from kwik_twisted.core.connection import Connection
from kwik_twisted.core.crypto.protection import initial_protections
from kwik_twisted.core.entropy import SeededEntropy
from kwik_twisted.testing.pair import client_config
from kwik_twisted.wire import (
    AckFrame,
    AddAddressFrame,
    ConnectionCloseFrame,
    DataBlockedFrame,
    Epoch,
    HandshakeDoneFrame,
    HandshakeFrame,
    Header,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    NewConnectionIdFrame,
    PaddingFrame,
    PathAbandonFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PathState,
    PathStatusFrame,
    PingFrame,
    QosPolicy,
    ResetStreamFrame,
    RetireConnectionIdFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    StreamsBlockedFrame,
    TransportParametersFrame,
    decode_packet,
    encode_packet,
    encode_payload,
    encode_varint,
)

CONTROL, ENCRYPTED, PRIORITY, ORDERED, COMPRESSED, FIN = 0xFF, 0x08, 0x02, 0x10, 0x04, 0x01


def varints(*values: int) -> bytes:
    """Varints back to back."""
    return b"".join(encode_varint(v) for v in values)


def raw_frame(
    sid: int,
    data: bytes,
    *,
    offset: int = 0,
    flags: int = ENCRYPTED | ORDERED,
    priority: int = 0,
    checksum: int | None = None,
    extensions: bytes = b"",
    wire: bytes | None = None,
) -> bytes:
    """A frame with every header field chosen; ``wire`` replaces the data on the wire."""
    body = data if wire is None else wire
    return (
        encode_varint(sid)
        + offset.to_bytes(8, "big")
        + bytes((flags,))
        + encode_varint(len(body))
        + (crc32(data) if checksum is None else checksum).to_bytes(4, "big")
        + bytes((priority,))
        + encode_varint(len(extensions))
        + extensions
        + body
    )


def raw_control(ctype: int, body: bytes = b"", *, flags: int = PRIORITY | ENCRYPTED, **kw) -> bytes:
    """A control frame of type ``ctype`` around ``body``."""
    return raw_frame(ctype, body, flags=flags, priority=CONTROL, **kw)


def lz4_wire(data: bytes, claimed: int | None = None) -> bytes:
    """The COMPRESSED form of ``data``: a varint size, then an lz4 block."""
    size = len(data) if claimed is None else claimed
    return encode_varint(size) + lz4.block.compress(data, store_size=False)


def lz4_frame(data: bytes, sid: int = 0, **kw) -> bytes:
    """A compressed stream frame (needs Compression Info = 1)."""
    return raw_frame(sid, data, flags=ENCRYPTED | ORDERED | COMPRESSED, wire=lz4_wire(data), **kw)


def payload(frames: list, epoch: int = Epoch.APPLICATION) -> bytes:
    """Plaintext of valid frames, from the encoder."""
    return encode_payload(frames, epoch).plaintext


def huge_ack(count: int) -> bytes:
    """An ACK body with ``count`` additional ranges (256 allowed, 257 not)."""
    largest = 2 * (count + 1) + 10
    return varints(0, largest, 0, count, 0) + varints(0, 0) * count


EVERY_CONTROL_FRAME = [
    PaddingFrame(3),
    PingFrame(),
    AckFrame(0, ((5, 9), (0, 2)), 25),
    ResetStreamFrame(4, 1, 10),
    StopSendingFrame(4, 2),
    MaxDataFrame(1 << 30),
    MaxStreamDataFrame(0, 1 << 24),
    MaxStreamsFrame(1000),
    DataBlockedFrame(100),
    StreamDataBlockedFrame(0, 100),
    StreamsBlockedFrame(10),
    NewConnectionIdFrame(1, bytes(range(8)), bytes(range(16, 32))),
    RetireConnectionIdFrame(1),
    PathChallengeFrame(b"chalenge"),
    PathResponseFrame(b"response"),
    PathStatusFrame(0, 1, PathState.BACKUP),
    PathAbandonFrame(1, 0),
    AddAddressFrame(1, ip_address("2001:db8::1"), 4433),
    ConnectionCloseFrame(0x0A, "bye", 0x02),
    HandshakeDoneFrame(),
    TransportParametersFrame({2: 1 << 22, 7: 4}),
]


# -- packet_decoder inputs -----------------------------------------------------------------


def sealed(plaintext: bytes, *, flags: int = 0x18, path_id: int = 0, seq: int = 7) -> bytes:
    """Mode ``sealed``: one-byte path ID and sequence number (flags 0x18), auto header."""
    return bytes((1, flags, path_id, seq)) + plaintext


def sealed_explicit(plaintext: bytes, packet_type: int, count: int, flags: int = 0x1C) -> bytes:
    """Mode ``sealed`` with an explicit Packet Type and Frame Count."""
    return bytes((1, flags, 0, 1, packet_type, count)) + plaintext


def app_datagram(
    plaintext: bytes, frame_count: int = 1, packet_type: int = 1, key_phase: int = 0
) -> bytes:
    """A datagram sealed with the harness key (what mode ``raw`` opens)."""
    header = Header(pd.DCID, 0, 3, packet_type, frame_count, key_phase=key_phase)
    return encode_packet(header, plaintext, pd.KEY.seal)


def client_first_datagram() -> bytes:
    """A real client's first datagram (initial keys, ClientHello)."""
    client = Connection.client(
        client_config(),
        local_addr=("127.0.0.1", 1),
        remote_addr=("127.0.0.1", 2),
        entropy=SeededEntropy(5),
        now=0.0,
    )
    return client.datagrams_to_send(now=0.0)[0][0]


def client_hello_plaintext() -> bytes:
    """The decrypted payload of a client's first datagram."""
    data = client_first_datagram()
    packet = decode_packet(data)
    receive = initial_protections(packet.header.dcid, is_client=False)[1]
    h = packet.header
    return bytes(receive.open(h.path_id, h.seq, packet.aad, packet.payload))


def initial_datagram(plaintext: bytes, token: bytes = b"", **kw) -> bytes:
    """A long-envelope datagram sealed with the client's initial keys for the harness's DCID
    (what mode ``raw`` opens under initial keys)."""
    header = Header(pd.DCID, 0, 0, 1, 1, 0, Epoch.INITIAL, pd.SCID, token=token, **kw)
    seal = initial_protections(pd.DCID, is_client=True)[0].seal
    return encode_packet(header, plaintext, seal)


def long_envelope(
    first: int = 0xC0, version: int = 0x4B574B03, dcid_length: int = 8, token: bytes = b""
) -> bytes:
    """A long envelope written field by field (RFC 8999 layout), token length included."""
    return (
        bytes((first,))
        + version.to_bytes(4, "big")
        + bytes((dcid_length,))
        + pd.DCID[:dcid_length].ljust(dcid_length, b"\xee")
        + bytes((8,))
        + pd.SCID
        + encode_varint(len(token))
        + token
    )


def with_checksum(before: bytes, after: bytes) -> bytes:
    """``before`` (envelope and header up to Total Length), the CRC-32, then ``after``."""
    return before + crc32(after, crc32(before)).to_bytes(4, "big") + after


def decoder_corpus() -> dict[str, bytes]:
    """Inputs of :mod:`fuzz.packet_decoder`."""
    ping = payload([PingFrame()])
    good = app_datagram(ping, packet_type=3)
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 1
    first = client_first_datagram()
    ping_initial = payload([PingFrame(), PaddingFrame(40)], Epoch.INITIAL)
    header_tail = bytes(9) + varints(1, 64)  # sequence number, type, frame count, total length
    raw = {
        "raw_client_first_datagram": first,
        "raw_app_ping_datagram": good,
        "raw_app_ping_key_phase_1": app_datagram(ping, packet_type=3, key_phase=1),
        "raw_initial_with_max_token": initial_datagram(ping_initial, token=bytes(range(96))),
        "raw_empty": b"",
        "raw_short_envelope": bytes((0x40,)) + bytes(5),
        "raw_bad_version": first[:1] + (0x4B574B04).to_bytes(4, "big") + first[5:],
        # RFC 8999 6: 0x80 | random bits, version 0, both CIDs, the supported versions
        "raw_version_negotiation": bytes((0x8A,)) + bytes(4) + bytes((8,)) + pd.SCID
        + bytes((8,)) + pd.DCID + (0x4B574B03).to_bytes(4, "big"),
        "raw_reserved_envelope_flags": bytes((0x41,)) + good[1:],
        "raw_no_fixed_bit": bytes((0x00,)) + good[1:],
        "raw_retry_is_not_a_packet": long_envelope(first=0xF0)[:-1] + b"retry token" + bytes(16),
        "raw_long_reserved_bits": bytes((0xC1,)) + first[1:],
        "raw_long_dcid_length_9": with_checksum(
            long_envelope(dcid_length=9) + header_tail, bytes(65)
        ),
        "raw_token_too_long": with_checksum(
            long_envelope(token=bytes(97)) + header_tail, bytes(65)
        ),
        "raw_truncated_path_header": good[:20],
        "raw_bad_checksum": bytes(bad_crc),
        "raw_total_length_mismatch": good + b"\0",
        "raw_nonshortest_total_length": bytes((0x40,))
        + pd.DCID
        + bytes(9)
        # one-byte frame count, two-byte total length 0x4010 (16: needs only one byte)
        + bytes((1, 0x40, 0x10))
        + bytes(5)
        + bytes(16),
    }
    out = {name: b"\0" + data for name, data in raw.items()}
    out |= {
        "sealed_ping": sealed(ping),
        "sealed_every_control_frame": sealed(payload(EVERY_CONTROL_FRAME)),
        "sealed_stream_small": sealed(payload([StreamFrame(0, 0, b"hello", fin=True)])),
        "sealed_stream_qos_extension": sealed(
            payload([StreamFrame(4, 0, b"qos", qos=QosPolicy(1000, 50, 5, 10))])
        ),
        "sealed_stream_lz4": sealed(lz4_frame(b"compress me " * 40), flags=0x1A),
        "sealed_lz4_bomb_claims_more": sealed(
            raw_frame(0, bytes(4000), flags=0x1C, wire=lz4_wire(bytes(4000), 16384)), flags=0x1A
        ),
        "sealed_lz4_size_over_bound": sealed(
            raw_frame(0, bytes(100), flags=0x1C, wire=encode_varint(1 << 30) + b"\x1f\0"),
            flags=0x1A,
        ),
        "sealed_lz4_garbage_block": sealed(
            raw_frame(0, bytes(64), flags=0x1C, wire=encode_varint(64) + b"\xff" * 20), flags=0x1A
        ),
        "sealed_lz4_without_compression_info": sealed(lz4_frame(b"abc" * 30)),
        "sealed_lz4_packet_bound_exceeded": sealed(
            b"".join(lz4_frame(bytes(16384), sid=4 * i) for i in range(5)), flags=0x1A
        ),
        "sealed_ack_256_ranges": sealed(raw_control(2, huge_ack(256))),
        "sealed_ack_huge_ranges": sealed(raw_control(2, huge_ack(257))),
        "sealed_ack_below_zero": sealed(raw_control(2, varints(0, 3, 0, 0, 9))),
        "sealed_unknown_control_type": sealed(raw_control(0x30)),
        "sealed_unknown_critical_extension": sealed(
            raw_frame(0, b"x", extensions=varints(0x05, 1) + b"\0")
        ),
        "sealed_repeated_extension": sealed(
            raw_frame(0, b"x", extensions=(varints(0x04, 1) + b"\0") * 2)
        ),
        "sealed_frame_checksum_mismatch": sealed(raw_frame(0, b"data", checksum=0)),
        "sealed_reserved_frame_flags": sealed(raw_frame(0, b"x", flags=0xC8)),
        "sealed_control_with_fin": sealed(raw_control(1, flags=PRIORITY | ENCRYPTED | FIN)),
        "sealed_stream_beyond_2_62": sealed(raw_frame(0, b"xy", offset=(1 << 62) - 1)),
        "sealed_stream_under_initial_keys": sealed(raw_frame(0, b"x", flags=ORDERED), flags=0x19),
        "sealed_explicit_wrong_frame_count": sealed_explicit(ping, 3, 2),
        "sealed_explicit_wrong_packet_type": sealed_explicit(ping, 0, 1),
        "sealed_repeated_transport_parameter": sealed(raw_control(0x15, varints(2, 1, 5) * 2)),
        "sealed_close_invalid_utf8": sealed(
            raw_control(0x13, varints(1, 0x3F, 0, 4) + b"\xff" * 4)
        ),
        "sealed_padding_not_zero": sealed(raw_control(0, b"\0\1")),
        "sealed_handshake_offset": sealed(payload([HandshakeFrame(1 << 40, b"\x16\x03")])),
        # short envelope: first byte 0, DCID 1-8, sequence number 9-16, type 17, frame count 18,
        # total length 19
        "tampered_flip_dcid": bytes((2, 5)) + bytes(4) + b"\x01" + sealed(ping)[1:],
        "tampered_flip_sequence_number": bytes((2, 17)) + bytes(16) + b"\x01" + sealed(ping)[1:],
        "tampered_flip_first_byte": bytes((2, 1, 0x07)) + sealed(ping)[1:],
        "tampered_flip_key_phase": bytes((2, 1, 0x04)) + sealed(ping)[1:],
        "tampered_flip_total_length": bytes((2, 20)) + bytes(19) + b"\x01" + sealed(ping)[1:],
        "sealed_other_path_nonce": sealed(ping, path_id=9),
        "sealed_initial_with_token": bytes((1, 0x39, 0, 0, 5)) + b"token" + payload(
            [PingFrame()], Epoch.INITIAL
        ),
        "control_ack_huge_ranges": bytes((3, 2)) + huge_ack(257),
        "control_add_address_v4": bytes((3, 0x12))
        + varints(1, 4)
        + bytes((10, 0, 0, 1, 0x11, 0x51)),
        "control_add_address_bad_family": bytes((3, 0x12)) + varints(1, 5) + bytes(6),
        "control_transport_parameters_nonvarint": bytes((3, 0x15)) + varints(2, 2) + b"\x01\x01",
        "control_new_connection_id_short": bytes((3, 0x0C)) + varints(1) + bytes(8 + 5),
        "control_new_connection_id_path_over_2_32": bytes((3, 0x0C))
        + varints(1 << 33)
        + bytes(8 + 16),
        "control_retire_connection_id": bytes((3, 0x0D)) + varints(3),
        "control_path_status_bad_state": bytes((3, 0x10)) + varints(0, 1, 9),
        "frame_fast_path_stream": bytes((4, 0)) + payload([StreamFrame(0, 9, bytes(100))]),
        "frame_truncated_header": bytes((4, 0)) + payload([StreamFrame(0, 9, bytes(100))])[:12],
        "frame_nonshortest_length": bytes((4, 0)) + bytes(9) + b"\x18\x40\x05" + bytes(11),
    }
    return out


# -- payload inputs ------------------------------------------------------------------------


def record(
    plaintext: bytes,
    *,
    lz4: bool = False,
    to_client: bool = False,
    step: int | None = None,
    explicit: tuple[int, int] | None = None,
) -> bytes:
    """One record of a :mod:`fuzz.payload` input."""
    control = (0x01 if lz4 else 0) | (0x08 if to_client else 0) | (0x04 if step is not None else 0)
    extra = b""
    if explicit is not None:
        control |= 0x02 | (explicit[0] << 4)
        extra = bytes((explicit[1],))
    out = bytes((control,)) + len(plaintext).to_bytes(2, "big") + extra + plaintext
    return out + (bytes((step,)) if step is not None else b"")


def established(*records: bytes) -> bytes:
    """An input for the established pair."""
    return b"\0" + b"".join(records)


def initial(*records: bytes) -> bytes:
    """An input for the fresh dispatcher (initial keys)."""
    return b"\1" + b"".join(records)


WINDOW = 1024 * 1024


def payload_corpus() -> dict[str, bytes]:
    """Inputs of :mod:`fuzz.payload`."""
    ping = payload([PingFrame()])
    stream = payload([StreamFrame(0, 0, b"hello", fin=True)])
    return {
        "est_ping": established(record(ping)),
        "est_stream_with_fin": established(record(stream)),
        "est_stream_lz4": established(record(lz4_frame(b"squeeze " * 64), lz4=True)),
        "est_lz4_bomb": established(record(lz4_frame(bytes(16384)), lz4=True)),
        "est_lz4_packet_bound_exceeded": established(
            record(b"".join(lz4_frame(bytes(16384), sid=4 * i) for i in range(5)), lz4=True)
        ),
        "est_every_control_frame": established(record(payload(EVERY_CONTROL_FRAME))),
        "est_ack_huge_ranges": established(record(raw_control(2, huge_ack(257)))),
        "est_ack_256_ranges_of_unsent": established(record(raw_control(2, huge_ack(256)))),
        "est_ack_never_sent": established(record(payload([AckFrame(0, ((100_000, 100_000),))]))),
        "est_ack_unknown_path": established(record(payload([AckFrame(7, ((0, 0),))]))),
        "est_stream_beyond_window": established(record(payload([StreamFrame(0, WINDOW, b"x")]))),
        "est_stream_beyond_max_streams": established(
            record(payload([StreamFrame(4 * 256, 0, b"x")]))
        ),
        "est_final_size_changed": established(
            record(payload([StreamFrame(0, 0, b"abc", fin=True)])),
            record(payload([StreamFrame(0, 0, b"abcd", fin=True)])),
        ),
        "est_reset_then_data": established(
            record(payload([ResetStreamFrame(0, 1, 10)])),
            record(payload([StreamFrame(0, 0, b"late")])),
        ),
        "est_stop_sending_unopened": established(record(payload([StopSendingFrame(0, 3)]))),
        "est_max_data_huge": established(record(payload([MaxDataFrame((1 << 62) - 1)]))),
        "est_max_streams_huge": established(record(payload([MaxStreamsFrame((1 << 62) - 1)]))),
        "est_max_stream_data_unopened": established(
            record(payload([MaxStreamDataFrame(45, 1 << 20)]))
        ),
        "est_path_challenge_flood": established(
            *[record(payload([PathChallengeFrame(bytes((i,)) * 8)] * 30)) for i in range(4)]
        ),
        "est_path_response_unsolicited": established(
            record(payload([PathResponseFrame(b"whatever")]))
        ),
        "est_path_abandon_only_path": established(
            record(payload([PathAbandonFrame(0, 0)]), step=250)
        ),
        "est_path_abandon_only_path_then_error": established(  # CI's Hypothesis find
            record(payload([PathAbandonFrame(0, 0), StreamFrame(0, WINDOW, b"x")]))
        ),
        "est_path_status_unknown_path": established(
            record(payload([PathStatusFrame(9, 1, PathState.AVAILABLE)]))
        ),
        "est_add_address_then_time": established(
            record(payload([AddAddressFrame(1, ip_address("10.0.0.9"), 9)])),
            record(ping, step=150),
        ),
        "est_new_connection_id": established(
            record(payload([NewConnectionIdFrame(1, b"newcid01", bytes(range(16)))]))
        ),
        "est_close_from_client": established(
            record(payload([ConnectionCloseFrame(0x0A, "bye", 2)]), step=220)
        ),
        "est_handshake_done_from_client": established(record(payload([HandshakeDoneFrame()]))),
        "est_transport_parameters_changed": established(
            record(payload([TransportParametersFrame({2: 1 << 30})]))
        ),
        "est_handshake_data_after_handshake": established(
            record(payload([HandshakeFrame(5000, b"\x16\x03\x03\x00\x01\x00")]))
        ),
        "est_handshake_beyond_buffer": established(
            record(payload([HandshakeFrame(200_000, b"\x16" * 100)]))
        ),
        "est_gap_held_open": established(
            *[record(payload([StreamFrame(0, 1 + 2000 * i, bytes(300))])) for i in range(8)]
        ),
        "est_unknown_control_type": established(record(raw_control(0x30))),
        "est_wrong_packet_type": established(record(ping, explicit=(0, 1))),
        "est_wrong_frame_count": established(record(ping, explicit=(3, 4))),
        "est_server_to_client_stream": established(
            record(payload([StreamFrame(1, 0, b"server data", fin=True)]), to_client=True)
        ),
        "est_server_to_client_close": established(
            record(payload([ConnectionCloseFrame(0x101, "alert", 3)]), to_client=True)
        ),
        "est_server_to_client_handshake_done_again": established(
            record(payload([HandshakeDoneFrame()]), to_client=True)
        ),
        "est_data_then_idle_timeout": established(record(stream, step=255), record(ping, step=255)),
        "init_client_hello": initial(record(client_hello_plaintext(), explicit=(1, 1))),
        "init_client_hello_then_time": initial(
            record(client_hello_plaintext(), explicit=(1, 1), step=210)
        ),
        "init_padding_only": initial(record(b"")),
        "init_ping": initial(record(payload([PingFrame()], Epoch.INITIAL))),
        "init_stream_under_initial_keys": initial(record(raw_frame(0, b"x", flags=ORDERED))),
        "init_control_not_allowed": initial(
            record(raw_control(0x06, encode_varint(5), flags=PRIORITY))
        ),
        "init_close_under_initial": initial(
            record(payload([ConnectionCloseFrame(0x0A, "x", 0)], Epoch.INITIAL))
        ),
        "init_handshake_garbage": initial(
            record(payload([HandshakeFrame(0, b"\x16\x03\x01\xff\xff" + bytes(50))], Epoch.INITIAL))
        ),
    }


def write(directory: str, corpus: dict[str, bytes]) -> None:
    """Write ``corpus`` as ``<name>.bin`` files in ``directory``."""
    os.makedirs(directory, exist_ok=True)
    for name, data in corpus.items():
        if len(data) >= 4096:
            raise SystemExit(f"{name} is {len(data)} bytes; corpus files stay under 4 KiB")
        with open(os.path.join(directory, name + ".bin"), "wb") as f:
            f.write(data)


def main(argv: list[str]) -> None:
    """Write both harnesses' corpora under ``argv[0]`` (default ``fuzz/corpus``)."""
    root = argv[0] if argv else os.path.join(os.path.dirname(__file__), "corpus")
    write(os.path.join(root, "packet_decoder"), decoder_corpus())
    write(os.path.join(root, "payload"), payload_corpus())


if __name__ == "__main__":
    main(sys.argv[1:])
