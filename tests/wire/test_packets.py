"""
Tests for :mod:`kwik_twisted.wire.packets`: the envelope, the path-packet header, the checksum
and the AEAD's associated data (protocol.rst, "Envelope", "Path packet header", "Packet
protection").

Every decoding error must be a :class:`~kwik_twisted.errors.DroppedPacket`: an unauthenticated
header can never close a connection.
"""

from __future__ import annotations

from itertools import product
from zlib import crc32

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.errors import (
    ChecksumMismatch,
    DroppedPacket,
    FrameEncodingError,
    MalformedPacket,
    UnsupportedVersion,
)
from kwik_twisted.wire import (
    CID_LENGTH,
    TAG_LENGTH,
    VERSION,
    AckFrame,
    CompressionInfo,
    Epoch,
    HandshakeFrame,
    Header,
    PacketType,
    PaddingFrame,
    StreamFrame,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
    encode_varint,
    peek_dcid,
)

from .strategies import checksum_offset, raw_datagram

DCID = bytes.fromhex("0011223344556677")
SCID = bytes.fromhex("8899aabbccddeeff")
KEY = bytes(range(16))
IV = bytes(range(16, 28))
#: Plaintexts whose sealed payload's Total Length takes one, two and four bytes.
PLAINTEXTS = (b"hello kwik", bytes(range(100)), bytes(20000))
#: Protected payloads of the same three sizes, for hand-built datagrams.
PAYLOADS = (bytes(17), bytes(100), bytes(20000))


def fake_seal(path_id: int, seq: int, aad: bytes, plaintext: bytes) -> bytes:
    """A stand-in AEAD: the plaintext and a zero tag."""
    return plaintext + bytes(TAG_LENGTH)


def nonce(path_id: int, seq: int) -> bytes:
    """protocol.rst: nonce = IV XOR (path_id as 4 bytes || sequence number as 8 bytes)."""
    mask = path_id.to_bytes(4, "big") + seq.to_bytes(8, "big")
    return bytes(a ^ b for a, b in zip(IV, mask))


def aes_seal(path_id: int, seq: int, aad: bytes, plaintext: bytes) -> bytes:
    """AES-128-GCM with the test key and the spec's nonce rule."""
    return AESGCM(KEY).encrypt(nonce(path_id, seq), plaintext, aad)


def header(epoch: int = Epoch.APPLICATION, path_id: int = 1, seq: int = 42, **kw: object) -> Header:
    """A header for ``epoch`` (with a source CID under initial keys)."""
    scid = SCID if epoch == Epoch.INITIAL else None
    return Header(DCID, path_id, seq, epoch=epoch, scid=scid, **kw)  # type: ignore[arg-type]


def datagram(
    epoch: int = Epoch.APPLICATION, plaintext: bytes = b"hello kwik", **kw: object
) -> bytes:
    """An encoded datagram with the fake seal."""
    return encode_packet(header(epoch, **kw), plaintext, fake_seal)  # type: ignore[arg-type]


def longer_varint(value: int) -> bytes:
    """``value`` as a varint twice as long as its shortest form (a non-minimal encoding)."""
    size = 2 * len(encode_varint(value))
    prefix = {2: 0x40, 4: 0x80, 8: 0xC0}[size]
    return (value | prefix << (8 * size - 8)).to_bytes(size, "big")


def payload_start(data: bytes) -> int:
    """Where the protected payload of a well-formed datagram starts."""
    return checksum_offset(data) + 5


class RoundTripTests(SynchronousTestCase):
    """encode_packet then decode_packet."""

    def test_application_packet_round_trips(self) -> None:
        """Every header field of an application-key packet survives, for short and long payloads,
        path IDs and frame counts (up to the largest allowed, 63), and the payload is the sealed
        plaintext."""
        for plaintext, path_id, count in product(PLAINTEXTS, (0, 7, 63, 64), (1, 2, 63)):
            hdr = Header(DCID, path_id, 2**40, PacketType.ACK, count, CompressionInfo.LZ4_BLOCK)
            packet = decode_packet(encode_packet(hdr, plaintext, fake_seal))
            expected = Header(
                DCID, path_id, 2**40, PacketType.ACK, count, CompressionInfo.LZ4_BLOCK,
                total_length=len(plaintext) + 16,
            )
            self.assertEqual(packet.header, expected)
            self.assertIsNone(packet.header.scid)
            self.assertFalse(packet.header.long)
            self.assertEqual(bytes(packet.payload), plaintext + bytes(16))

    def test_initial_packet_round_trips_with_source_cid(self) -> None:
        """An initial-key packet carries the source CID (LONG) and its fields survive."""
        for plaintext in PLAINTEXTS:
            hdr = Header(DCID, 0, 0, PacketType.CONTROL, 2, epoch=Epoch.INITIAL, scid=SCID)
            packet = decode_packet(encode_packet(hdr, plaintext, fake_seal))
            self.assertEqual(packet.header, Header(
                DCID, 0, 0, PacketType.CONTROL, 2, epoch=Epoch.INITIAL, scid=SCID,
                total_length=len(plaintext) + 16,
            ))
            self.assertTrue(packet.header.long)

    def test_extreme_path_ids_and_sequence_numbers_round_trip(self) -> None:
        """Path IDs 0 and 2**32 - 1 and sequence numbers 0 and 2**64 - 1 are all encodable."""
        for plaintext, path_id, seq in product(PLAINTEXTS, (0, 63, 64, 2**32 - 1), (0, 2**64 - 1)):
            packet = decode_packet(datagram(plaintext=plaintext, path_id=path_id, seq=seq))
            self.assertEqual((packet.header.path_id, packet.header.seq), (path_id, seq))

    def test_encoding_is_the_spec_layout(self) -> None:
        """The encoder writes envelope and header field by field, checksum over all other bytes."""
        for (epoch, scid), plaintext, path_id, count in product(
            ((Epoch.APPLICATION, None), (Epoch.INITIAL, SCID)), PLAINTEXTS, (1, 300), (1, 70)
        ):
            hdr = Header(DCID, path_id, 2**33, PacketType.KEEP_ALIVE, count, 1, epoch, scid)
            expected = raw_datagram(
                payload=plaintext + bytes(16), dcid=DCID, scid=scid, path_id=path_id, seq=2**33,
                packet_type=PacketType.KEEP_ALIVE, frame_count=count, compression=1,
            )
            self.assertEqual(encode_packet(hdr, plaintext, fake_seal), expected)

    def test_checksum_covers_every_other_byte(self) -> None:
        """The checksum is zlib's CRC-32 of the datagram without its four checksum bytes."""
        for epoch, plaintext in product(Epoch, PLAINTEXTS):
            data = datagram(epoch, plaintext)
            at = checksum_offset(data)
            self.assertEqual(
                int.from_bytes(data[at:at + 4], "big"), crc32(data[:at] + data[at + 4:])
            )

    def test_aad_is_the_header_without_the_checksum(self) -> None:
        """seal gets the header without the checksum as AAD, and Packet.aad is the same bytes."""
        for epoch, plaintext in product(Epoch, PLAINTEXTS):
            seen: list[tuple[int, int, bytes]] = []

            def seal(
                path_id: int, seq: int, aad: bytes, plaintext: bytes, seen: list = seen
            ) -> bytes:
                seen.append((path_id, seq, aad))
                return fake_seal(path_id, seq, aad, plaintext)

            data = encode_packet(header(epoch, path_id=5, seq=9), plaintext, seal)
            at, start = checksum_offset(data), payload_start(data)
            [(path_id, seq, aad)] = seen
            self.assertEqual((path_id, seq), (5, 9))
            self.assertEqual(aad, data[:at] + data[at + 4:start])
            self.assertEqual(decode_packet(data).aad, aad)

    def test_memoryview_input_decodes(self) -> None:
        """A memoryview of a datagram decodes like the bytes."""
        data = datagram()
        self.assertEqual(decode_packet(memoryview(data)).header, decode_packet(data).header)

    def test_encoder_refuses_bad_headers(self) -> None:
        """Wrong CID lengths, a source CID not matching the epoch, out-of-range path IDs, sequence
        numbers, frame counts, packet types or compression infos are refused when encoding, for
        short and long payloads alike."""
        for plaintext in PLAINTEXTS:
            for hdr in (
                Header(DCID[:7], 0, 0), Header(DCID + b"\x00", 0, 0),
                Header(DCID, 0, 0, epoch=Epoch.INITIAL, scid=SCID[:7]),
                Header(DCID, 0, 0, epoch=Epoch.APPLICATION, scid=SCID),
                Header(DCID, 0, 0, epoch=Epoch.INITIAL, scid=None),
                Header(DCID, 2**32, 0), Header(DCID, -1, 0),
                Header(DCID, 0, 2**64), Header(DCID, 0, -1),
                Header(DCID, 0, 0, frame_count=-1), Header(DCID, 0, 0, packet_type=6),
                Header(DCID, 0, 0, compression=2),
            ):
                with self.assertRaises(FrameEncodingError, msg=(hdr, len(plaintext))):
                    encode_packet(hdr, plaintext, fake_seal)

    def test_encoder_refuses_a_seal_with_the_wrong_tag_length(self) -> None:
        """A seal that adds other than 16 bytes is refused."""
        for plaintext, extra in product(PLAINTEXTS, (0, 15, 17)):
            self.assertRaises(
                FrameEncodingError, encode_packet, header(), plaintext,
                lambda p, s, a, pt, extra=extra: pt + bytes(extra),
            )


class ProtectionTests(SynchronousTestCase):
    """Real AES-128-GCM sealing with the spec's nonce and AAD."""

    def test_payload_opens_with_the_packet_aad(self) -> None:
        """The payload of an AES-GCM-sealed packet opens with Packet.aad and the spec's nonce, and
        its plaintext decodes to the frames, in both epochs."""
        cases = (
            (Epoch.APPLICATION, [StreamFrame(4, 0, b"kwik", True), AckFrame(1, ((0, 5),))]),
            (Epoch.INITIAL, [HandshakeFrame(0, b"client hello"), PaddingFrame(900)]),
        )
        for epoch, frames in cases:
            payload = encode_payload(frames, epoch)
            hdr = header(
                epoch, path_id=3, seq=1000, packet_type=payload.packet_type,
                frame_count=payload.frame_count, compression=payload.compression,
            )
            packet = decode_packet(encode_packet(hdr, payload.plaintext, aes_seal))
            opened = AESGCM(KEY).decrypt(nonce(3, 1000), bytes(packet.payload), packet.aad)
            self.assertEqual(opened, payload.plaintext)
            h = packet.header
            got = decode_payload(
                opened, frame_count=h.frame_count, packet_type=h.packet_type,
                compression=h.compression, epoch=h.epoch,
            )
            self.assertEqual(got, frames)

    def test_aad_binds_the_header(self) -> None:
        """Changing any AAD byte, or using another path's or sequence number's nonce, fails."""
        packet = decode_packet(encode_packet(header(), b"secret", aes_seal))
        payload = bytes(packet.payload)
        aesgcm = AESGCM(KEY)
        for i in range(len(packet.aad)):
            aad = bytearray(packet.aad)
            aad[i] ^= 1
            self.assertRaises(InvalidTag, aesgcm.decrypt, nonce(1, 42), payload, bytes(aad))
        for path_id, seq in ((2, 42), (1, 43)):
            self.assertRaises(InvalidTag, aesgcm.decrypt, nonce(path_id, seq), payload, packet.aad)


class TruncationTests(SynchronousTestCase):
    """Cut datagrams."""

    def test_every_prefix_is_malformed(self) -> None:
        """Each proper prefix of a datagram, in both epochs and for every header shape, is a
        MalformedPacket."""
        for epoch, plaintext, path_id in product(Epoch, PLAINTEXTS, (1, 2**20)):
            data = memoryview(datagram(epoch, plaintext, path_id=path_id, seq=2**60))
            for cut in range(len(data)):
                self.assertRaises(MalformedPacket, decode_packet, data[:cut])

    def test_byte_at_a_time_decodes_only_when_complete(self) -> None:
        """A datagram fed one more byte at a time is refused until it is whole."""
        for epoch, plaintext in product(Epoch, PLAINTEXTS[:2]):
            data = datagram(epoch, plaintext)
            fed = bytearray()
            for byte in data:
                if fed:
                    self.assertRaises(MalformedPacket, decode_packet, bytes(fed))
                fed.append(byte)
            self.assertEqual(bytes(decode_packet(bytes(fed)).payload), plaintext + bytes(16))

    def test_peek_dcid(self) -> None:
        """peek_dcid returns the destination CID, refuses short datagrams and other versions."""
        data = datagram()
        self.assertEqual(peek_dcid(data), DCID)
        self.assertEqual(peek_dcid(data[:2 + CID_LENGTH]), DCID)
        for cut in range(2 + CID_LENGTH):
            self.assertRaises(MalformedPacket, peek_dcid, data[:cut])
        self.assertRaises(UnsupportedVersion, peek_dcid, b"\x04" + data[1:])


class CorruptionTests(SynchronousTestCase):
    """Single flipped bytes anywhere in a datagram."""

    def test_any_flipped_byte_is_dropped(self) -> None:
        """Flipping any byte (by 0x01, 0x80 or 0xFF) raises a DroppedPacket; in the CIDs, the
        sequence number, the checksum or the payload it is exactly a ChecksumMismatch."""
        for epoch, size in product(Epoch, (20, 100)):
            data = datagram(epoch, plaintext=bytes(range(size)))
            at = checksum_offset(data)
            path_at = 18 if epoch == Epoch.INITIAL else 10
            cids = range(2, path_at)
            seq = range(path_at + 1, path_at + 9)  # after a one-byte path ID
            checksum_only = set(cids) | set(seq) | set(range(at, at + 4))
            checksum_only |= set(range(at + 5, len(data)))
            for i in range(len(data)):
                for mask in (0x01, 0x80, 0xFF):
                    corrupt = bytearray(data)
                    corrupt[i] ^= mask
                    with self.assertRaises(DroppedPacket, msg=(epoch, size, i, mask)) as caught:
                        decode_packet(bytes(corrupt))
                    if i in checksum_only:
                        self.assertIs(type(caught.exception), ChecksumMismatch, (size, i, mask))
                    elif i == 0:
                        self.assertIs(type(caught.exception), UnsupportedVersion)

    def test_wrong_checksum_is_a_mismatch(self) -> None:
        """A datagram with any other checksum value is a ChecksumMismatch."""
        for payload in PAYLOADS:
            data = raw_datagram(payload=payload)
            at = checksum_offset(data)
            good = int.from_bytes(data[at:at + 4], "big")
            for wrong in (0, good ^ 1, good ^ 0x80000000, 0xFFFFFFFF):
                data = raw_datagram(payload=payload, checksum=wrong)
                self.assertRaises(ChecksumMismatch, decode_packet, data)


class EnvelopeRefusalTests(SynchronousTestCase):
    """Datagrams with a correct checksum and exactly one bad field.

    Each check runs with payloads whose Total Length takes one, two and four bytes, since the
    decoder reads the common header shape with a faster path than the rest."""

    def test_builder_datagrams_are_valid(self) -> None:
        """The unmodified datagrams used below decode, so each refusal has one cause."""
        for payload in PAYLOADS:
            packet = decode_packet(raw_datagram(payload=payload))
            self.assertEqual(packet.header.epoch, Epoch.APPLICATION)
            self.assertEqual(bytes(packet.payload), payload)
            packet = decode_packet(raw_datagram(payload=payload, scid=SCID))
            self.assertEqual((packet.header.epoch, packet.header.scid), (Epoch.INITIAL, SCID))

    def test_other_versions_are_unsupported(self) -> None:
        """Every version byte but 0x03 is an UnsupportedVersion."""
        for payload, version in product(PAYLOADS, set(range(256)) - {VERSION}):
            data = raw_datagram(payload=payload, version=version)
            self.assertRaises(UnsupportedVersion, decode_packet, data)

    def test_reserved_envelope_flags_are_refused(self) -> None:
        """Any of the reserved flag bits 0x08-0x80 set is a MalformedPacket."""
        for payload, bit in product(PAYLOADS, (0x08, 0x10, 0x20, 0x40, 0x80)):
            for flags, scid in ((0x02, None), (0x01, SCID)):
                data = raw_datagram(payload=payload, flags=flags | bit, scid=scid)
                self.assertRaises(MalformedPacket, decode_packet, data)

    def test_reserved_key_epochs_are_refused(self) -> None:
        """Key Epoch 3 is a MalformedPacket, and so is Key Epoch 2 with LONG."""
        for payload in PAYLOADS:
            data = raw_datagram(payload=payload, flags=0x06)
            self.assertRaises(MalformedPacket, decode_packet, data)
            data = raw_datagram(payload=payload, flags=0x05, scid=SCID)
            self.assertRaises(MalformedPacket, decode_packet, data)

    def test_key_epoch_2_is_application_keys_in_phase_1(self) -> None:
        """Key Epoch 2 decodes as application keys with key phase 1 (protocol.rst, "Key update");
        Key Epoch 1 is phase 0; encoding phase 1 writes Key Epoch 2 back."""
        for payload in PAYLOADS:
            header = decode_packet(raw_datagram(payload=payload, flags=0x04)).header
            self.assertEqual((header.epoch, header.key_phase), (Epoch.APPLICATION, 1))
            header = decode_packet(raw_datagram(payload=payload, flags=0x02)).header
            self.assertEqual((header.epoch, header.key_phase), (Epoch.APPLICATION, 0))

    def test_long_flag_must_match_the_epoch(self) -> None:
        """LONG with application keys, or initial keys without LONG, is a MalformedPacket."""
        for payload in PAYLOADS:
            data = raw_datagram(payload=payload, flags=0x03, scid=SCID)
            self.assertRaises(MalformedPacket, decode_packet, data)
            data = raw_datagram(payload=payload, flags=0x00)
            self.assertRaises(MalformedPacket, decode_packet, data)

    def test_path_id_beyond_32_bits_is_refused(self) -> None:
        """Path ID 2**32 or more is a MalformedPacket; 2**32 - 1 is accepted."""
        for payload in PAYLOADS:
            data = raw_datagram(payload=payload, path_id=2**32 - 1)
            self.assertEqual(decode_packet(data).header.path_id, 2**32 - 1)
            for path_id in (2**32, 2**62 - 1):
                data = raw_datagram(payload=payload, path_id=path_id)
                self.assertRaises(MalformedPacket, decode_packet, data)

    def test_non_minimal_header_varints_are_refused(self) -> None:
        """Path ID, Frame Count or Total Length in a longer form than needed is MalformedPacket."""
        for payload in PAYLOADS:
            for kw in (
                {"path_id": b"\x40\x01"}, {"path_id": b"\x80\x00\x00\x01"},
                {"frame_count": b"\x40\x01"}, {"total_length": longer_varint(len(payload))},
            ):
                data = raw_datagram(payload=payload, **kw)
                self.assertRaises(MalformedPacket, decode_packet, data)

    def test_total_length_must_match_the_datagram(self) -> None:
        """A Total Length one more or one less than the bytes left is a MalformedPacket."""
        for payload in PAYLOADS:
            n = len(payload)
            self.assertEqual(decode_packet(raw_datagram(payload=payload)).header.total_length, n)
            for total in (n - 1, n + 1, 0, 63, 64, 2**30):
                if total != n:
                    data = raw_datagram(payload=payload, total_length=total)
                    self.assertRaises(MalformedPacket, decode_packet, data)

    def test_payload_shorter_than_a_tag_and_a_byte_is_refused(self) -> None:
        """A Total Length below 17 is a MalformedPacket; 17 is accepted."""
        self.assertEqual(decode_packet(raw_datagram(payload=bytes(17))).header.total_length, 17)
        for size in (0, 1, 16):
            self.assertRaises(MalformedPacket, decode_packet, raw_datagram(payload=bytes(size)))

    def test_zero_frame_count_is_refused(self) -> None:
        """A Frame Count of zero is a MalformedPacket."""
        for payload in PAYLOADS:
            data = raw_datagram(payload=payload, frame_count=0)
            self.assertRaises(MalformedPacket, decode_packet, data)

    def test_frame_count_above_63_is_refused(self) -> None:
        """A Frame Count above MAX_FRAME_COUNT (63) is a MalformedPacket, dropped before any
        decryption; 63 itself is accepted by the header codec."""
        for payload in PAYLOADS:
            for count in (64, 200, 16383):
                data = raw_datagram(payload=payload, frame_count=count)
                self.assertRaises(MalformedPacket, decode_packet, data)
            self.assertEqual(
                decode_packet(raw_datagram(payload=payload, frame_count=63)).header.frame_count, 63
            )

    def test_unknown_packet_types_are_refused(self) -> None:
        """Packet Types 0x00-0x05 are accepted; every other value is a MalformedPacket."""
        for payload, packet_type in product(PAYLOADS, range(256)):
            data = raw_datagram(payload=payload, packet_type=packet_type)
            if packet_type <= 5:
                self.assertEqual(decode_packet(data).header.packet_type, packet_type)
            else:
                self.assertRaises(MalformedPacket, decode_packet, data)

    def test_unknown_compression_info_is_refused(self) -> None:
        """Compression Info 0 and 1 are accepted; any other value is a MalformedPacket."""
        for payload, info in product(PAYLOADS, range(256)):
            data = raw_datagram(payload=payload, compression=info)
            if info <= 1:
                self.assertEqual(decode_packet(data).header.compression, info)
            else:
                self.assertRaises(MalformedPacket, decode_packet, data)
