"""
Tests that the wire layer's fast paths for the bulk packet agree with the general paths.

:func:`~kwik_twisted.wire.packets.encode_application_packet` must build exactly the datagram
:func:`~kwik_twisted.wire.encode_packet` builds from the equivalent header, and
:func:`~kwik_twisted.wire.decode_payload` must decode a lone STREAM frame exactly as it decodes
the same frame followed by others.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.errors import MalformedPacket
from kwik_twisted.wire import (
    MAX_FRAME_COUNT,
    Epoch,
    Header,
    PacketType,
    PingFrame,
    StreamFrame,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
)
from kwik_twisted.wire.packets import encode_application_packet


def _seal(path_id: int, seq: int, aad: bytes, plaintext: bytes) -> bytes:
    """A stand-in AEAD: the plaintext, then a 16-byte tag derived from the AAD."""
    return bytes(plaintext) + (aad * 16)[:16]


class EncodeApplicationPacketTests(SynchronousTestCase):
    """The sender's header-free encoder against :func:`encode_packet`."""

    @settings(max_examples=60)
    @given(
        path_id=st.sampled_from([0, 1, 63, 64, 1000]),
        seq=st.integers(0, 2**64 - 1),
        packet_type=st.sampled_from(list(PacketType)),
        frame_count=st.sampled_from([1, 2, 63, 64, 300]),
        compression=st.sampled_from([0, 1]),
        size=st.sampled_from([1, 47, 48, 100, 1300, 16400]),
    )
    def test_same_datagram_as_encode_packet(
        self, path_id, seq, packet_type, frame_count, compression, size
    ) -> None:
        """Both encoders produce identical bytes, in the common shape and outside it."""
        plaintext = bytes(range(256)) * (size // 256) + bytes(size % 256)
        header = Header(b"abcdefgh", path_id, seq, packet_type, frame_count, compression)
        expected = encode_packet(header, plaintext, _seal)
        got = encode_application_packet(
            b"abcdefgh", path_id, seq, packet_type, frame_count, compression,
            bytearray(plaintext), _seal,
        )
        self.assertEqual(got, expected)
        if frame_count <= MAX_FRAME_COUNT:
            self.assertEqual(decode_packet(got).header, decode_packet(expected).header)
        else:  # encodable, but a receiver drops it (protocol.rst, "Frame Count")
            self.assertRaises(MalformedPacket, decode_packet, got)


class SingleFramePayloadTests(SynchronousTestCase):
    """A lone STREAM frame decodes as it does among other frames."""

    @settings(max_examples=60)
    @given(
        offset=st.integers(0, 2**40),
        data=st.binary(min_size=1, max_size=1300),
        fin=st.booleans(),
        ordered=st.booleans(),
        retransmit=st.booleans(),
        priority=st.sampled_from([0, 1, 2]),
    )
    def test_lone_stream_frame_matches_general_decoding(
        self, offset, data, fin, ordered, retransmit, priority
    ) -> None:
        """The frame decoded alone equals the one decoded before a PING."""
        frame = StreamFrame(4, offset, data, fin, priority, ordered, retransmit)
        alone = encode_payload([frame], Epoch.APPLICATION)
        both = encode_payload([frame, PingFrame()], Epoch.APPLICATION)
        got = decode_payload(
            alone.plaintext, frame_count=1, packet_type=alone.packet_type
        )
        general = decode_payload(
            both.plaintext, frame_count=2, packet_type=both.packet_type
        )
        self.assertEqual(got, [frame])
        self.assertEqual(got[0], general[0])
        self.assertEqual(
            (got[0].compressed, got[0].qos), (general[0].compressed, general[0].qos)
        )
