"""
Tests for :mod:`kwik_twisted.wire.frames`: the seed's frame header, STREAM frames, extensions,
compression, packet types and the payload codec (protocol.rst, "Frames" and "Packet types").

Hostile inputs are built with the byte-level builders of :mod:`tests.wire.strategies`, so each one
differs from a valid frame in exactly one field.
"""

from __future__ import annotations

from itertools import product
from random import Random
from zlib import crc32

import lz4.block
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.errors import (
    ChecksumError,
    CompressionError,
    FrameEncodingError,
    ProtocolViolation,
    TruncatedInput,
    UnknownExtensionError,
)
from kwik_twisted.wire import (
    MAX_DECOMPRESSED_FRAME,
    MAX_DECOMPRESSED_PACKET,
    VARINT_MAX,
    AckFrame,
    CompressionInfo,
    ConnectionCloseFrame,
    Epoch,
    HandshakeFrame,
    MaxDataFrame,
    PacketType,
    PaddingFrame,
    PingFrame,
    Priority,
    QosPolicy,
    StreamFrame,
    classify,
    decode_payload,
    encode_payload,
    encode_varint,
)

from .strategies import (
    COMPRESSED,
    ENCRYPTED,
    EXAMPLE_CONTROL_FRAMES,
    FIN,
    ORDERED,
    PRIORITY,
    RETRANSMIT,
    extension,
    qos_extension,
    raw_control,
    raw_frame,
)

COMPRESSIBLE = b"kwik " * 40
QOS = QosPolicy(1000, 50, 10, 1000)
PRIORITIES = (Priority.NORMAL, Priority.HIGH, Priority.CRITICAL)
#: Data whose Data Length takes one, two and four bytes.
DATA_SIZES = (b"x", b"y" * 100, b"z" * 20000)


def decode(
    plaintext: bytes,
    packet_type: int = PacketType.DATA,
    *,
    frame_count: int = 1,
    compression: int = CompressionInfo.NONE,
    epoch: int = Epoch.APPLICATION,
) -> list:
    """decode_payload with a one-frame DATA packet's header unless told otherwise."""
    return decode_payload(
        plaintext, frame_count=frame_count, packet_type=packet_type, compression=compression,
        epoch=epoch,
    )


def round_trip(frames: list, epoch: int = Epoch.APPLICATION) -> list:
    """Encode ``frames`` and decode them with the header fields the encoder chose."""
    payload = encode_payload(frames, epoch)
    return decode_payload(
        payload.plaintext, frame_count=payload.frame_count, packet_type=payload.packet_type,
        compression=payload.compression, epoch=epoch,
    )


def compressed_data(data: bytes, claimed: int | None = None) -> bytes:
    """The Data field of a COMPRESSED frame: Decompressed Length, then an lz4 block."""
    size = len(data) if claimed is None else claimed
    return encode_varint(size) + lz4.block.compress(data, store_size=False)


def longer_varint(value: int) -> bytes:
    """``value`` as a varint twice as long as its shortest form (a non-minimal encoding)."""
    size = 2 * len(encode_varint(value))
    prefix = {2: 0x40, 4: 0x80, 8: 0xC0}[size]
    return (value | prefix << (8 * size - 8)).to_bytes(size, "big")


def flags_of(plaintext: bytes) -> int:
    """The Flags byte of the first frame of ``plaintext`` (after StreamID and the 8-byte Offset)."""
    return plaintext[(1 << (plaintext[0] >> 6)) + 8]


class StreamRoundTripTests(SynchronousTestCase):
    """STREAM frames through encode_payload and decode_payload."""

    def combinations(self):
        """Every combination of the STREAM frame's options."""
        return product((False, True), PRIORITIES, (False, True), (False, True), (False, True),
                       (None, QOS))

    def test_every_flag_combination_round_trips(self) -> None:
        """Each mix of FIN, priority, ORDERED, RETRANSMIT, compression and QOS decodes to itself."""
        for fin, priority, ordered, retransmit, compress, qos in self.combinations():
            frame = StreamFrame(
                4, 1000, COMPRESSIBLE, fin, priority, ordered=ordered, retransmit=retransmit,
                compress=compress, qos=qos,
            )
            [got] = round_trip([frame])
            self.assertEqual(got, frame)
            self.assertEqual(
                (got.stream_id, got.offset, bytes(got.data), got.fin, got.priority, got.ordered,
                 got.retransmit, got.compressed, got.qos),
                (4, 1000, COMPRESSIBLE, fin, priority, ordered, retransmit, compress, qos),
            )

    def test_flags_on_the_wire_are_the_spec_bits(self) -> None:
        """The Flags byte has FIN 0x01, PRIORITY 0x02, COMPRESSED 0x04, ENCRYPTED 0x08, ORDERED
        0x10 and RETRANSMIT 0x20 exactly as the frame asks, and no reserved bit."""
        for fin, priority, ordered, retransmit, compress, qos in self.combinations():
            frame = StreamFrame(
                4, 0, COMPRESSIBLE, fin, priority, ordered=ordered, retransmit=retransmit,
                compress=compress, qos=qos,
            )
            expected = (
                ENCRYPTED | (FIN if fin else 0) | (PRIORITY if priority else 0)
                | (ORDERED if ordered else 0) | (RETRANSMIT if retransmit else 0)
                | (COMPRESSED if compress else 0)
            )
            self.assertEqual(flags_of(encode_payload([frame]).plaintext), expected)

    def test_encoding_is_the_spec_layout(self) -> None:
        """The encoder writes the seed's header field by field, QOS extension before data."""
        frame = StreamFrame(300, 2**40, b"payload", True, Priority.HIGH, qos=QOS)
        expected = raw_frame(
            300, b"payload", offset=2**40, flags=ENCRYPTED | FIN | PRIORITY | ORDERED,
            priority=1, extensions=qos_extension(QOS),
        )
        self.assertEqual(encode_payload([frame]).plaintext, expected)

    def test_encoding_is_the_spec_layout_for_every_size(self) -> None:
        """Stream IDs of one and two bytes, data of every Data Length size, with and without
        extensions, and control frames with long bodies are all written as the spec lays out."""
        for sid, data, qos in product((4, 63, 64, 2**40), DATA_SIZES, (None, QOS)):
            frame = StreamFrame(sid, 2**50, data, retransmit=True, qos=qos)
            ext = qos_extension(qos) if qos else b""
            expected = raw_frame(
                sid, data, offset=2**50, flags=ENCRYPTED | ORDERED | RETRANSMIT, extensions=ext
            )
            self.assertEqual(encode_payload([frame]).plaintext, expected)
        for length in (0, 63, 64, 16383, 16384):
            expected = raw_control(0x00, bytes(length), flags=PRIORITY | ENCRYPTED)
            self.assertEqual(encode_payload([PaddingFrame(length)]).plaintext, expected)

    def test_hand_built_frame_decodes(self) -> None:
        """A frame written from the spec layout decodes to the STREAM frame it describes."""
        wire = raw_frame(
            8, b"urgent", offset=77, flags=ENCRYPTED | PRIORITY | RETRANSMIT, priority=2,
            extensions=qos_extension(QOS),
        )
        [got] = decode(wire, PacketType.PRIORITY)
        self.assertEqual(
            got, StreamFrame(8, 77, b"urgent", False, Priority.CRITICAL, ordered=False,
                             retransmit=True, qos=QOS),
        )
        self.assertFalse(got.compressed)

    def test_empty_data_round_trips(self) -> None:
        """A FIN frame without data is a valid STREAM frame."""
        frame = StreamFrame(0, 12345, b"", True)
        self.assertEqual(round_trip([frame]), [frame])

    def test_memoryview_data_is_encoded(self) -> None:
        """Stream data handed over as a memoryview encodes like bytes."""
        view = memoryview(b"xxhello")[2:]
        self.assertEqual(
            encode_payload([StreamFrame(4, 0, view)]).plaintext,
            encode_payload([StreamFrame(4, 0, b"hello")]).plaintext,
        )

    def test_largest_stream_id_and_offset_round_trip(self) -> None:
        """StreamID 2**62 - 1 and a frame ending exactly at 2**62 - 1 are allowed."""
        frame = StreamFrame(VARINT_MAX, VARINT_MAX - 3, b"end", True)
        self.assertEqual(round_trip([frame]), [frame])

    def test_frames_keep_their_order(self) -> None:
        """Several frames in one payload decode in the order they were encoded."""
        frames = [
            StreamFrame(8, 0, b"a"), PingFrame(), StreamFrame(4, 5, b"bc", True),
            AckFrame(0, ((0, 9),)), StreamFrame(8, 1, COMPRESSIBLE, compress=True),
        ]
        self.assertEqual(round_trip(frames), frames)

    def test_encoder_refuses_frames_beyond_the_varint_range(self) -> None:
        """Offset + length above 2**62 - 1, or a StreamID above it, is refused when encoding."""
        for frame in (StreamFrame(4, VARINT_MAX - 1, b"ab"), StreamFrame(VARINT_MAX + 1, 0, b"")):
            self.assertRaises(FrameEncodingError, encode_payload, [frame])

    def test_encoder_refuses_negative_stream_ids_and_offsets(self) -> None:
        """A negative StreamID or Offset is refused with FrameEncodingError, whatever the size of
        the data (no struct.error from the header packing)."""
        for data in DATA_SIZES:
            for frame in (StreamFrame(-1, 0, data), StreamFrame(4, -1, data)):
                with self.assertRaises(FrameEncodingError, msg=(frame, len(data))):
                    encode_payload([frame])

    def test_encoder_refuses_a_stream_frame_with_a_non_stream_priority(self) -> None:
        """A STREAM frame must have priority 0-2; 3 and 0xFF are refused when encoding."""
        for priority in (3, Priority.CONTROL):
            self.assertRaises(
                FrameEncodingError, encode_payload, [StreamFrame(4, 0, b"x", priority=priority)]
            )

    def test_offset_beyond_the_varint_range_is_refused(self) -> None:
        """A received frame whose offset + length exceeds 2**62 - 1 is a FRAME_ENCODING_ERROR."""
        for offset, data in ((VARINT_MAX + 1, b""), (VARINT_MAX, b"x"), (2**64 - 1, b"x")):
            self.assertRaises(FrameEncodingError, decode, raw_frame(4, data, offset=offset))


class CompressionTests(SynchronousTestCase):
    """lz4 block compression of STREAM data (protocol.rst, "Compression")."""

    def test_compressible_data_is_compressed_and_shrinks(self) -> None:
        """compress=True on repetitive data sets COMPRESSED, Compression Info 1, and shrinks it."""
        payload = encode_payload([StreamFrame(0, 0, COMPRESSIBLE, compress=True)])
        plain = encode_payload([StreamFrame(0, 0, COMPRESSIBLE)])
        self.assertTrue(flags_of(payload.plaintext) & COMPRESSED)
        self.assertEqual(payload.compression, CompressionInfo.LZ4_BLOCK)
        self.assertLess(len(payload.plaintext), len(plain.plaintext) - 100)
        [got] = round_trip([StreamFrame(0, 0, COMPRESSIBLE, compress=True)])
        self.assertEqual(bytes(got.data), COMPRESSIBLE)
        self.assertTrue(got.compressed)

    def test_compressed_data_is_length_then_lz4_block(self) -> None:
        """COMPRESSED Data is the decompressed length as a varint and a bare lz4 block."""
        plaintext = encode_payload([StreamFrame(0, 0, COMPRESSIBLE, compress=True)]).plaintext
        # StreamID 1, Offset 8, Flags 1, Data Length (1 byte here), Checksum 4, Priority 1, Ext 1.
        self.assertLess(len(plaintext) - 17, 64)
        data = plaintext[17:]
        self.assertEqual(plaintext[10], len(data))
        self.assertEqual(plaintext[11:15], crc32(COMPRESSIBLE).to_bytes(4, "big"))
        size, block = data[:2], data[2:]
        self.assertEqual(size, encode_varint(len(COMPRESSIBLE)))
        self.assertEqual(lz4.block.decompress(block, uncompressed_size=200), COMPRESSIBLE)

    def test_incompressible_data_is_sent_plain(self) -> None:
        """compress=True on random bytes leaves COMPRESSED clear and Compression Info 0."""
        data = Random(3).randbytes(1000)
        payload = encode_payload([StreamFrame(0, 0, data, compress=True)])
        self.assertFalse(flags_of(payload.plaintext) & COMPRESSED)
        self.assertEqual(payload.compression, CompressionInfo.NONE)
        [got] = round_trip([StreamFrame(0, 0, data, compress=True)])
        self.assertEqual(bytes(got.data), data)
        self.assertFalse(got.compressed)

    def test_compression_is_opt_in(self) -> None:
        """Without compress=True, even repetitive data is sent plain."""
        payload = encode_payload([StreamFrame(0, 0, COMPRESSIBLE)])
        self.assertFalse(flags_of(payload.plaintext) & COMPRESSED)
        self.assertEqual(payload.compression, CompressionInfo.NONE)

    def test_data_above_the_frame_bound_is_never_compressed(self) -> None:
        """Data over 16384 bytes goes out plain, since a receiver must refuse its expansion."""
        data = bytes(MAX_DECOMPRESSED_FRAME + 1)
        payload = encode_payload([StreamFrame(0, 0, data, compress=True)])
        self.assertFalse(flags_of(payload.plaintext) & COMPRESSED)
        self.assertEqual(round_trip([StreamFrame(0, 0, data, compress=True)])[0].data, data)

    def test_data_at_the_frame_bound_is_compressed(self) -> None:
        """Exactly 16384 compressible bytes are compressed and decode."""
        data = bytes(MAX_DECOMPRESSED_FRAME)
        [got] = round_trip([StreamFrame(0, 0, data, compress=True)])
        self.assertTrue(got.compressed)
        self.assertEqual(bytes(got.data), data)

    def test_mixed_compressed_and_plain_frames(self) -> None:
        """A packet may hold compressed and plain frames; each reports how it arrived."""
        frames = [
            StreamFrame(0, 0, COMPRESSIBLE, compress=True),
            StreamFrame(4, 0, b"tiny", compress=True),
            StreamFrame(8, 0, COMPRESSIBLE),
        ]
        got = round_trip(frames)
        self.assertEqual(got, frames)
        self.assertEqual([f.compressed for f in got], [True, False, False])

    def test_compressed_frame_requires_compression_info(self) -> None:
        """A COMPRESSED frame in a packet whose Compression Info is 0 is a FRAME_ENCODING_ERROR."""
        plaintext = encode_payload([StreamFrame(0, 0, COMPRESSIBLE, compress=True)]).plaintext
        self.assertRaises(FrameEncodingError, decode, plaintext, compression=CompressionInfo.NONE)

    def test_unknown_compression_info_is_refused(self) -> None:
        """Compression Info other than 0 and 1 is refused."""
        plaintext = raw_frame(4, b"x")
        for info in (2, 0x80, 0xFF):
            self.assertRaises(FrameEncodingError, decode, plaintext, compression=info)

    def compressed_frame(self, data: bytes, claimed: int | None = None, **kw: object) -> bytes:
        """A COMPRESSED STREAM frame whose checksum is that of ``data``."""
        return raw_frame(
            4, compressed_data(data, claimed), flags=ENCRYPTED | COMPRESSED, checksum=crc32(data),
            **kw,  # type: ignore[arg-type]
        )

    def test_hand_built_compressed_frame_decodes(self) -> None:
        """The builder's COMPRESSED frame decodes, so each refusal below differs in one thing."""
        [got] = decode(self.compressed_frame(COMPRESSIBLE), compression=1)
        self.assertEqual(bytes(got.data), COMPRESSIBLE)
        self.assertTrue(got.compressed)

    def test_claimed_length_above_the_bound_is_refused(self) -> None:
        """A Decompressed Length of 16385 is a COMPRESSION_ERROR, even with valid lz4 behind it."""
        data = bytes(MAX_DECOMPRESSED_FRAME + 1)
        self.assertRaises(CompressionError, decode, self.compressed_frame(data), compression=1)

    def test_huge_claimed_length_is_refused(self) -> None:
        """A small frame claiming 2**62 - 1 decompressed bytes is refused, nothing allocated."""
        wire = self.compressed_frame(b"abc" * 20, claimed=VARINT_MAX)
        self.assertRaises(CompressionError, decode, wire, compression=1)

    def test_lz4_bomb_expanding_beyond_its_claim_is_refused(self) -> None:
        """A small lz4 block expanding to 1 MB while claiming 16384 is a COMPRESSION_ERROR."""
        bomb = bytes(1 << 20)
        wire = self.compressed_frame(bomb, claimed=MAX_DECOMPRESSED_FRAME)
        self.assertLess(len(wire), 5000)
        self.assertRaises(CompressionError, decode, wire, compression=1)

    def test_expansion_shorter_or_longer_than_claimed_is_refused(self) -> None:
        """Data that expands to fewer or more bytes than its Decompressed Length is refused."""
        for claimed in (199, 201, 0):
            wire = self.compressed_frame(COMPRESSIBLE, claimed=claimed)
            self.assertRaises(CompressionError, decode, wire, compression=1)

    def test_invalid_lz4_data_is_refused(self) -> None:
        """Bytes that are not an lz4 block are a COMPRESSION_ERROR."""
        for block in (b"\xff" * 12, b"\x10", b"\xf0\xff\xff\xff\xff", b""):
            wire = raw_frame(
                4, encode_varint(100) + block, flags=ENCRYPTED | COMPRESSED, checksum=0
            )
            self.assertRaises(CompressionError, decode, wire, compression=1)

    def test_compressed_frame_without_a_length_is_refused(self) -> None:
        """A COMPRESSED frame with no data at all (no Decompressed Length) is a typed error."""
        wire = raw_frame(4, b"", flags=ENCRYPTED | COMPRESSED)
        self.assertRaises((FrameEncodingError, CompressionError), decode, wire, compression=1)

    def test_packet_decompressing_beyond_its_bound_is_refused(self) -> None:
        """Five frames of 16384 decompressed bytes (81920 > 65536) in one packet are refused."""
        data = bytes(MAX_DECOMPRESSED_FRAME)
        wire = b"".join(self.compressed_frame(data) for _ in range(5))
        self.assertLess(len(wire), 1000)
        self.assertRaises(CompressionError, decode, wire, frame_count=5, compression=1)

    def test_packet_at_its_decompression_bound_decodes(self) -> None:
        """Four frames of 16384 bytes (65536 in all) are exactly at the bound and decode."""
        data = bytes(MAX_DECOMPRESSED_FRAME)
        wire = b"".join(self.compressed_frame(data) for _ in range(4))
        got = decode(wire, frame_count=4, compression=1)
        self.assertEqual(sum(len(f.data) for f in got), MAX_DECOMPRESSED_PACKET)

    def test_checksum_covers_decompressed_data(self) -> None:
        """A COMPRESSED frame whose checksum is that of its wire bytes is a CHECKSUM_ERROR."""
        wire_data = compressed_data(COMPRESSIBLE)
        wire = raw_frame(4, wire_data, flags=ENCRYPTED | COMPRESSED, checksum=crc32(wire_data))
        self.assertRaises(ChecksumError, decode, wire, compression=1)


class ExtensionTests(SynchronousTestCase):
    """Frame extensions: QOS, critical and non-critical unknown types."""

    def test_qos_extension_decodes(self) -> None:
        """A QOS extension (type 0x02, four varints) is reported on the frame."""
        [got] = decode(raw_frame(4, b"x", extensions=qos_extension(QOS)))
        self.assertEqual(got.qos, QOS)

    def test_unknown_critical_extension_is_refused(self) -> None:
        """An unknown odd extension type is an UNKNOWN_EXTENSION, on STREAM and control frames."""
        for ext_type in (0x01, 0x03, 0x25, 0x3FFF, VARINT_MAX):
            ext = extension(ext_type, b"\x01\x02")
            self.assertRaises(UnknownExtensionError, decode, raw_frame(4, b"x", extensions=ext))
            self.assertRaises(
                UnknownExtensionError, decode, raw_control(0x01, extensions=ext),
                PacketType.KEEP_ALIVE,
            )

    def test_unknown_non_critical_extension_is_skipped(self) -> None:
        """An unknown even extension is skipped, alone or beside QOS, on any frame."""
        for ext_type in (0x04, 0x40, 0x3FFE):
            ext = extension(ext_type, b"ignored")
            [got] = decode(raw_frame(4, b"x", extensions=ext + qos_extension(QOS)))
            self.assertEqual(got, StreamFrame(4, 0, b"x", ordered=False, qos=QOS))
            [got] = decode(raw_control(0x01, extensions=ext), PacketType.KEEP_ALIVE)
            self.assertEqual(got, PingFrame())

    def test_repeated_extension_is_refused(self) -> None:
        """The same extension type twice in one frame is a FRAME_ENCODING_ERROR."""
        for ext in (qos_extension(QOS) * 2, extension(0x04, b"") * 2):
            self.assertRaises(FrameEncodingError, decode, raw_frame(4, b"x", extensions=ext))

    def test_qos_of_the_wrong_length_is_refused(self) -> None:
        """A QOS value with a stray byte, or only three varints, is a FRAME_ENCODING_ERROR."""
        body = b"".join(encode_varint(v) for v in QOS)
        for value in (body + b"\x00", body[:-1]):
            ext = extension(0x02, value)
            self.assertRaises(FrameEncodingError, decode, raw_frame(4, b"x", extensions=ext))

    def test_extension_running_past_its_block_is_refused(self) -> None:
        """An entry longer than its Extensions block, or a block ending inside one, is refused."""
        ext = extension(0x04, b"abcd")
        for cut in range(1, len(ext)):
            wire = raw_frame(4, b"datadata", extensions=ext, ext_length=cut)
            self.assertRaises(FrameEncodingError, decode, wire)

    def test_extensions_length_past_the_frame_is_refused(self) -> None:
        """An Extensions Length reaching past the payload is a truncation."""
        wire = raw_frame(4, b"x", extensions=extension(0x04, b"ab"), ext_length=200)
        self.assertRaises(TruncatedInput, decode, wire)

    def test_qos_on_a_control_frame_is_refused(self) -> None:
        """The QOS extension on a control frame is a FRAME_ENCODING_ERROR."""
        wire = raw_control(0x01, extensions=qos_extension(QOS))
        self.assertRaises(FrameEncodingError, decode, wire, PacketType.KEEP_ALIVE)

    def test_non_minimal_extension_type_is_refused(self) -> None:
        """An extension type written in two bytes is a FRAME_ENCODING_ERROR."""
        wire = raw_frame(4, b"x", extensions=extension(b"\x40\x04", b""))
        self.assertRaises(FrameEncodingError, decode, wire)


class HeaderRefusalTests(SynchronousTestCase):
    """Frames whose header breaks one rule of protocol.rst, "Frames".

    Each check runs with data of every Data Length size (1-, 2- and 4-byte varint), since the
    decoder reads common header shapes with a faster path than the rest."""

    def test_builder_frames_are_valid(self) -> None:
        """The unmodified frames used below decode, so each refusal is caused by its one change."""
        for data in DATA_SIZES:
            self.assertEqual(decode(raw_frame(4, data)), [StreamFrame(4, 0, data, ordered=False)])
            self.assertEqual(
                decode(raw_control(0x00, bytes(len(data))), PacketType.ACK),
                [PaddingFrame(len(data))],
            )
            self.assertEqual(
                decode(raw_control(0x00, bytes(len(data)), epoch=0), PacketType.ACK, epoch=0),
                [PaddingFrame(len(data))],
            )
        self.assertEqual(decode(raw_control(0x01), PacketType.KEEP_ALIVE), [PingFrame()])

    def test_reserved_flag_bits_are_refused(self) -> None:
        """Flag bits 0x40 and 0x80 set on a STREAM or control frame are a FRAME_ENCODING_ERROR."""
        for data, bit in product(DATA_SIZES, (0x40, 0x80)):
            self.assertRaises(
                FrameEncodingError, decode, raw_frame(4, data, flags=ENCRYPTED | bit)
            )
            wire = raw_control(0x00, bytes(len(data)), flags=PRIORITY | ENCRYPTED | bit)
            self.assertRaises(FrameEncodingError, decode, wire, PacketType.ACK)

    def test_unknown_priorities_are_refused(self) -> None:
        """Every priority from 0x03 to 0xFE is a FRAME_ENCODING_ERROR."""
        for data, priority in product(DATA_SIZES, range(0x03, 0xFF)):
            wire = raw_frame(4, data, priority=priority)
            self.assertRaises(FrameEncodingError, decode, wire, PacketType.PRIORITY)

    def test_priority_flag_must_agree_with_priority(self) -> None:
        """PRIORITY set on a normal frame, or clear on a high, critical or control one: refused."""
        for data in DATA_SIZES:
            self.assertRaises(
                FrameEncodingError, decode, raw_frame(4, data, flags=ENCRYPTED | PRIORITY)
            )
            for priority in (1, 2):
                wire = raw_frame(4, data, flags=ENCRYPTED, priority=priority)
                self.assertRaises(FrameEncodingError, decode, wire, PacketType.PRIORITY)
            wire = raw_control(0x00, bytes(len(data)), flags=ENCRYPTED)
            self.assertRaises(FrameEncodingError, decode, wire, PacketType.ACK)

    def test_encrypted_flag_must_agree_with_the_keys(self) -> None:
        """ENCRYPTED clear under application keys, or set under initial keys, is a
        PROTOCOL_VIOLATION."""
        for data in DATA_SIZES:
            padding = bytes(len(data))
            self.assertRaises(ProtocolViolation, decode, raw_frame(4, data, flags=0))
            self.assertRaises(
                ProtocolViolation, decode, raw_control(0x00, padding, flags=PRIORITY),
                PacketType.ACK,
            )
            wire = raw_control(0x00, padding, flags=PRIORITY | ENCRYPTED)
            self.assertRaises(ProtocolViolation, decode, wire, PacketType.ACK, epoch=0)

    def test_stream_frame_under_initial_keys_is_refused(self) -> None:
        """A STREAM frame in an initial-key packet is a PROTOCOL_VIOLATION, whatever its flags."""
        for data, flags in product(DATA_SIZES, (0, ENCRYPTED)):
            wire = raw_frame(4, data, flags=flags, epoch=0)
            self.assertRaises(ProtocolViolation, decode, wire, epoch=0)

    def test_encoder_refuses_stream_frames_under_initial_keys(self) -> None:
        """encode_payload will not put stream data in an initial-key packet."""
        for data in DATA_SIZES:
            self.assertRaises(
                ProtocolViolation, encode_payload, [StreamFrame(4, 0, data)], Epoch.INITIAL
            )

    def test_unknown_control_types_are_refused(self) -> None:
        """Control types no ControlType names are a FRAME_ENCODING_ERROR."""
        for data, ctype in product(DATA_SIZES, (0x3D, 0x3E, 0x3F, 0x3FFF, 2**40)):
            wire = raw_control(ctype, data)
            self.assertRaises(FrameEncodingError, decode, wire, PacketType.CONTROL)

    def test_fin_compressed_ordered_are_refused_on_control_frames(self) -> None:
        """FIN, COMPRESSED or ORDERED on a control frame is a FRAME_ENCODING_ERROR."""
        for data, bit in product(DATA_SIZES, (FIN, COMPRESSED, ORDERED)):
            wire = raw_control(0x00, bytes(len(data)), flags=PRIORITY | ENCRYPTED | bit)
            self.assertRaises(FrameEncodingError, decode, wire, PacketType.ACK, compression=1)

    def test_retransmit_is_allowed_on_control_frames(self) -> None:
        """RETRANSMIT on a control frame is allowed (a re-sent HANDSHAKE carries it)."""
        for data in DATA_SIZES:
            wire = raw_control(0x03, data, offset=9, flags=PRIORITY | RETRANSMIT, epoch=0)
            self.assertEqual(
                decode(wire, PacketType.CONTROL, epoch=0), [HandshakeFrame(9, data)]
            )

    def test_non_zero_offset_is_refused_on_control_frames_but_handshake(self) -> None:
        """Only HANDSHAKE may use the Offset field; any other control frame with one is refused."""
        for ctype, body, packet_type in (
            (0x01, b"", PacketType.KEEP_ALIVE), (0x06, b"\x05", PacketType.CONTROL),
            (0x00, b"\x00", PacketType.ACK), (0x00, bytes(100), PacketType.ACK),
            (0x13, b"\x00\x01\x3f\x40\x64" + b"r" * 100, PacketType.CONTROL),
        ):
            self.assertRaises(
                FrameEncodingError, decode, raw_control(ctype, body, offset=1), packet_type
            )
            self.assertEqual(len(decode(raw_control(ctype, body), packet_type)), 1)
        for data in DATA_SIZES:
            [got] = decode(raw_control(0x03, data, offset=2**63), PacketType.CONTROL)
            self.assertEqual(got, HandshakeFrame(2**63, data))

    def test_data_length_past_the_end_is_truncated(self) -> None:
        """A Data Length one byte beyond the payload is a truncation."""
        for data in DATA_SIZES:
            wire = raw_frame(4, data, data_length=len(data) + 1)
            self.assertRaises(TruncatedInput, decode, wire)
            wire = raw_control(0x00, bytes(len(data)), data_length=len(data) + 1)
            self.assertRaises(TruncatedInput, decode, wire, PacketType.ACK)

    def test_non_minimal_header_varints_are_refused(self) -> None:
        """StreamID, Data Length or Extensions Length in a longer form is a FRAME_ENCODING_ERROR."""
        long_ext = extension(0x04, bytes(70))
        for data in DATA_SIZES:
            for wire in (
                raw_frame(longer_varint(4), data),
                raw_frame(4, data, data_length=longer_varint(len(data))),
                raw_frame(4, data, ext_length=longer_varint(0)),
                raw_frame(4, data, extensions=long_ext, ext_length=longer_varint(len(long_ext))),
            ):
                with self.assertRaises(FrameEncodingError) as caught:
                    decode(wire)
                self.assertNotIsInstance(caught.exception, TruncatedInput)

    def test_long_extension_blocks_decode(self) -> None:
        """An Extensions Length of two bytes (a long non-critical extension) is read correctly."""
        ext = extension(0x04, bytes(100)) + qos_extension(QOS)
        for data in DATA_SIZES:
            [got] = decode(raw_frame(4, data, extensions=ext))
            self.assertEqual(got, StreamFrame(4, 0, data, ordered=False, qos=QOS))

    def test_stream_checksum_mismatch_is_refused(self) -> None:
        """A STREAM frame whose checksum is off by one bit is a CHECKSUM_ERROR."""
        for data in (b"", *DATA_SIZES):
            wire = raw_frame(4, data, checksum=crc32(data) ^ 1)
            self.assertRaises(ChecksumError, decode, wire)

    def test_control_checksum_mismatch_is_refused(self) -> None:
        """A control frame whose checksum does not match its body is a CHECKSUM_ERROR naming it."""
        for ctype, body, packet_type in (
            (0x06, b"\x05", PacketType.CONTROL), (0x00, bytes(100), PacketType.ACK),
        ):
            wire = raw_control(ctype, body, checksum=crc32(body) ^ 0x80000000)
            with self.assertRaises(ChecksumError) as caught:
                decode(wire, packet_type)
            self.assertEqual(caught.exception.frame_type, ctype)


class PayloadTests(SynchronousTestCase):
    """The payload as a whole against its packet header."""

    def test_empty_payload_is_refused(self) -> None:
        """A packet with no frames is a PROTOCOL_VIOLATION; the encoder refuses to make one."""
        self.assertRaises(ProtocolViolation, decode, b"", frame_count=0)
        self.assertRaises(FrameEncodingError, encode_payload, [])

    def test_frame_count_must_match(self) -> None:
        """A Frame Count above or below the number of frames is a FRAME_ENCODING_ERROR."""
        payload = encode_payload([StreamFrame(4, 0, b"a"), PingFrame()])
        for count in (0, 1, 3, 1000):
            self.assertRaises(
                FrameEncodingError, decode, payload.plaintext, payload.packet_type,
                frame_count=count,
            )

    def test_packet_type_must_match(self) -> None:
        """Any Packet Type but the one the frames give is a PROTOCOL_VIOLATION."""
        payload = encode_payload([StreamFrame(4, 0, b"a", retransmit=True)])
        self.assertEqual(payload.packet_type, PacketType.RETRANSMISSION)
        for packet_type in set(range(256)) - {PacketType.RETRANSMISSION}:
            self.assertRaises(ProtocolViolation, decode, payload.plaintext, packet_type)

    def test_payload_fields_describe_the_frames(self) -> None:
        """encode_payload reports the frame count, classify's packet type and the compression."""
        frames = [PingFrame(), StreamFrame(0, 0, COMPRESSIBLE, compress=True), PaddingFrame(3)]
        payload = encode_payload(frames)
        self.assertEqual(payload.frame_count, 3)
        self.assertEqual(payload.packet_type, classify(frames))
        self.assertEqual(payload.compression, CompressionInfo.LZ4_BLOCK)

    def test_initial_epoch_payload_round_trips(self) -> None:
        """HANDSHAKE, PADDING, PING, ACK and CONNECTION_CLOSE together round-trip under initial
        keys, with ENCRYPTED clear."""
        frames = [
            HandshakeFrame(0, b"hello"), AckFrame(0, ((0, 3),)), PingFrame(),
            ConnectionCloseFrame(0x10A, "tls alert"), PaddingFrame(1000),
        ]
        payload = encode_payload(frames, Epoch.INITIAL)
        self.assertFalse(flags_of(payload.plaintext) & ENCRYPTED)
        self.assertEqual(round_trip(frames, Epoch.INITIAL), frames)


class TruncationTests(SynchronousTestCase):
    """Every cut of every payload raises the codec's own error."""

    def samples(self) -> list[tuple[bytes, int, int]]:
        """(plaintext, packet type, compression) of payloads holding every kind of frame."""
        frames = [
            [StreamFrame(4, 1024, b"hello kwik", True)],
            [StreamFrame(8, 0, b"urgent", priority=Priority.CRITICAL, qos=QOS)],
            [StreamFrame(0, 0, COMPRESSIBLE, compress=True)],
            *([StreamFrame(sid, 0, data)] for sid in (4, 400) for data in DATA_SIZES),
            [PaddingFrame(100)], [ConnectionCloseFrame(1, "r" * 300)],
            *([frame] for frame in EXAMPLE_CONTROL_FRAMES),
            [StreamFrame(4, 0, b"ab"), AckFrame(0, ((5, 9),)), PaddingFrame(2),
             StreamFrame(0, 0, COMPRESSIBLE, compress=True, retransmit=True)],
        ]
        out = []
        for group in frames:
            payload = encode_payload(group)
            out.append((payload.plaintext, payload.packet_type, payload.compression, len(group)))
        return out

    def test_every_prefix_raises_a_typed_error(self) -> None:
        """Each proper prefix raises FrameEncodingError (a truncation, or fewer frames than the
        Frame Count); the empty prefix is a packet without frames."""
        for plaintext, packet_type, compression, count in self.samples():
            self.assertRaises(
                ProtocolViolation, decode, b"", packet_type, frame_count=count,
                compression=compression,
            )
            for cut in range(1, len(plaintext)):
                self.assertRaises(
                    FrameEncodingError, decode, plaintext[:cut], packet_type, frame_count=count,
                    compression=compression,
                )

    def test_byte_at_a_time_decodes_only_when_complete(self) -> None:
        """Growing a payload one byte at a time fails until the last byte, then decodes."""
        plaintext, packet_type, compression, count = self.samples()[-1]
        fed = bytearray()
        for byte in plaintext:
            fed.append(byte)
            if len(fed) < len(plaintext):
                self.assertRaises(
                    FrameEncodingError, decode, bytes(fed), packet_type, frame_count=count,
                    compression=compression,
                )
        got = decode(bytes(fed), packet_type, frame_count=count, compression=compression)
        self.assertEqual(len(got), count)


class ClassifyTests(SynchronousTestCase):
    """Packet types from the frames (protocol.rst, "Packet types"), rules applied in order."""

    def check(self, frames: list, expected: PacketType) -> None:
        """classify gives ``expected``, encode_payload reports it and decoding accepts it."""
        self.assertEqual(classify(frames), expected)
        payload = encode_payload(frames)
        self.assertEqual(payload.packet_type, expected)
        self.assertEqual(round_trip(frames), frames)

    def test_high_or_critical_stream_frame_makes_a_priority_packet(self) -> None:
        """A high or critical STREAM frame makes PRIORITY, even beside retransmissions."""
        for priority in (Priority.HIGH, Priority.CRITICAL):
            self.check([StreamFrame(4, 0, b"x", priority=priority)], PacketType.PRIORITY)
            self.check(
                [StreamFrame(0, 0, b"n", retransmit=True), PingFrame(),
                 StreamFrame(4, 0, b"x", priority=priority)],
                PacketType.PRIORITY,
            )

    def test_retransmitted_stream_frame_makes_a_retransmission_packet(self) -> None:
        """A RETRANSMIT STREAM frame, with no high or critical one, makes RETRANSMISSION."""
        self.check([StreamFrame(4, 0, b"x", retransmit=True)], PacketType.RETRANSMISSION)
        self.check(
            [StreamFrame(0, 0, b"a"), MaxDataFrame(9), StreamFrame(4, 0, b"x", retransmit=True)],
            PacketType.RETRANSMISSION,
        )

    def test_any_other_stream_frame_makes_a_data_packet(self) -> None:
        """Normal STREAM frames make DATA, whatever control frames travel with them."""
        self.check([StreamFrame(4, 0, b"x")], PacketType.DATA)
        self.check([AckFrame(0, ((0, 0),)), StreamFrame(4, 0, b"x", True)], PacketType.DATA)
        self.check([PingFrame(), StreamFrame(4, 0, b"x"), MaxDataFrame(1)], PacketType.DATA)

    def test_only_ack_and_padding_make_an_ack_packet(self) -> None:
        """ACK and PADDING frames alone (either or both) make ACK."""
        self.check([AckFrame(0, ((0, 0),))], PacketType.ACK)
        self.check([AckFrame(0, ((0, 0),)), PaddingFrame(10)], PacketType.ACK)
        self.check([PaddingFrame(10)], PacketType.ACK)

    def test_ping_with_only_ack_and_padding_makes_a_keep_alive_packet(self) -> None:
        """PING, alone or with ACK and PADDING, makes KEEP_ALIVE."""
        self.check([PingFrame()], PacketType.KEEP_ALIVE)
        self.check([PaddingFrame(1), PingFrame(), AckFrame(0, ((0, 0),))], PacketType.KEEP_ALIVE)

    def test_other_control_frames_make_a_control_packet(self) -> None:
        """Any other control frame, even beside PING or ACK, makes CONTROL."""
        self.check([MaxDataFrame(5)], PacketType.CONTROL)
        self.check([PingFrame(), MaxDataFrame(5)], PacketType.CONTROL)
        self.check([AckFrame(0, ((0, 0),)), HandshakeFrame(0, b"x")], PacketType.CONTROL)
        for frame in EXAMPLE_CONTROL_FRAMES:
            if frame.type not in (0x00, 0x01, 0x02):
                self.check([frame], PacketType.CONTROL)
