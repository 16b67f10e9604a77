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
    MAX_TOKEN_LENGTH,
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
from kwik_twisted.wire.packets import INITIAL_BYTE, PATH_HEADER, SHORT_BYTES, envelope_size

from .strategies import checksum_offset, raw_datagram

DCID = bytes.fromhex("0011223344556677")
SCID = bytes.fromhex("8899aabbccddeeff")
KEY = bytes(range(16))
IV = bytes(range(16, 28))
#: Plaintexts whose sealed payload's Total Length takes one, two and four bytes.
PLAINTEXTS = (b"hello kwik", bytes(range(100)), bytes(20000))
#: Protected payloads of the same three sizes, for hand-built datagrams.
PAYLOADS = (bytes(17), bytes(100), bytes(20000))
#: Address-validation tokens an Initial may carry: none, short, the longest allowed.
TOKENS = (b"", b"t", bytes(range(MAX_TOKEN_LENGTH)))


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


def header(
    epoch: int = Epoch.APPLICATION, path_id: int | None = None, seq: int = 42, **kw: object
) -> Header:
    """A header for ``epoch``: under initial keys with a source CID on path 0, else on path 1."""
    initial = epoch == Epoch.INITIAL
    if path_id is None:
        path_id = 0 if initial else 1
    scid = SCID if initial else None
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
        key phases and frame counts (up to the largest allowed, 63), and the payload is the sealed
        plaintext; the path ID does not (it is not on the wire): the decoded header has path 0."""
        for plaintext, path_id, count, phase in product(
            PLAINTEXTS, (0, 7, 64), (1, 2, 63), (0, 1)
        ):
            hdr = Header(
                DCID, path_id, 2**40, PacketType.ACK, count, CompressionInfo.LZ4_BLOCK,
                key_phase=phase,
            )
            packet = decode_packet(encode_packet(hdr, plaintext, fake_seal))
            expected = Header(
                DCID, 0, 2**40, PacketType.ACK, count, CompressionInfo.LZ4_BLOCK,
                total_length=len(plaintext) + 16, key_phase=phase,
            )
            self.assertEqual(packet.header, expected)
            self.assertIsNone(packet.header.scid)
            self.assertFalse(packet.header.long)
            self.assertEqual(packet.header.token, b"")
            self.assertEqual(bytes(packet.payload), plaintext + bytes(16))

    def test_initial_packet_round_trips_with_source_cid_and_token(self) -> None:
        """An initial-key packet has the long envelope: source CID, version and token survive."""
        for plaintext, token in product(PLAINTEXTS, TOKENS):
            hdr = Header(
                DCID, 0, 0, PacketType.CONTROL, 2, epoch=Epoch.INITIAL, scid=SCID, token=token
            )
            data = encode_packet(hdr, plaintext, fake_seal)
            packet = decode_packet(data)
            self.assertEqual(packet.header, Header(
                DCID, 0, 0, PacketType.CONTROL, 2, epoch=Epoch.INITIAL, scid=SCID,
                total_length=len(plaintext) + 16, token=token,
            ))
            self.assertTrue(packet.header.long)
            self.assertEqual(packet.header.version, VERSION)
            self.assertEqual(data[0], 0xC0)

    def test_extreme_path_ids_and_sequence_numbers_round_trip(self) -> None:
        """Path IDs 0 to 2**32 - 1 are encodable (the seal gets them for the nonce) and sequence
        numbers 0 and 2**64 - 1 survive."""
        for plaintext, path_id, seq in product(PLAINTEXTS, (0, 63, 64, 2**32 - 1), (0, 2**64 - 1)):
            seen: list[int] = []

            def seal(p: int, s: int, a: bytes, pt: bytes, seen: list = seen) -> bytes:
                seen.append(p)
                return fake_seal(p, s, a, pt)

            data = encode_packet(header(path_id=path_id, seq=seq), plaintext, seal)
            packet = decode_packet(data)
            self.assertEqual(seen, [path_id])
            self.assertEqual((packet.header.path_id, packet.header.seq), (0, seq))

    def test_path_id_is_not_on_the_wire(self) -> None:
        """Two packets that differ only by path ID have the same header bytes (the AAD) but,
        the nonce differing, different ciphertexts; with a seal that ignores the nonce the
        datagrams are identical."""
        for plaintext in PLAINTEXTS:
            one = encode_packet(header(path_id=1), plaintext, aes_seal)
            two = encode_packet(header(path_id=2), plaintext, aes_seal)
            at, start = checksum_offset(one), payload_start(one)
            self.assertEqual((checksum_offset(two), payload_start(two)), (at, start))
            self.assertEqual(one[:at], two[:at])
            self.assertEqual(one[at + 4:start], two[at + 4:start])
            self.assertNotEqual(one[start:], two[start:])
            self.assertEqual(decode_packet(one).aad, decode_packet(two).aad)
            self.assertEqual(
                datagram(plaintext=plaintext, path_id=1), datagram(plaintext=plaintext, path_id=2)
            )

    def test_encoding_is_the_spec_layout(self) -> None:
        """The encoder writes envelope and header field by field, checksum over all other bytes."""
        cases = (
            (Epoch.APPLICATION, None, 0, b"", 0x40), (Epoch.APPLICATION, None, 1, b"", 0x44),
            *((Epoch.INITIAL, SCID, 0, token, 0xC0) for token in TOKENS),
        )
        for (epoch, scid, phase, token, first), plaintext, path_id, count in product(
            cases, PLAINTEXTS, (0, 300), (1, 70)
        ):
            if scid is not None and path_id:
                continue  # initial keys: path 0 only
            hdr = Header(
                DCID, path_id, 2**33, PacketType.KEEP_ALIVE, count, 1, epoch, scid,
                key_phase=phase, token=token,
            )
            expected = raw_datagram(
                payload=plaintext + bytes(16), dcid=DCID, scid=scid, seq=2**33,
                packet_type=PacketType.KEEP_ALIVE, frame_count=count, compression=1, token=token,
                first_byte=first,
            )
            self.assertEqual(encode_packet(hdr, plaintext, fake_seal), expected)

    def test_envelope_sizes(self) -> None:
        """envelope_size is 9 bytes short, 23 + the token and its length long; PATH_HEADER is
        17; the smallest short packet is 42 bytes (protocol.rst, "Envelope")."""
        self.assertEqual(envelope_size(False), 1 + CID_LENGTH)
        for token in TOKENS:
            expected = 1 + 4 + 1 + 8 + 1 + 8 + len(encode_varint(len(token))) + len(token)
            self.assertEqual(envelope_size(True, len(token)), expected)
            data = datagram(Epoch.INITIAL, token=token)
            self.assertEqual(checksum_offset(data), expected + 8 + 1 + 1 + 1)
        self.assertEqual(PATH_HEADER, 8 + 1 + 1 + 2 + 4 + 1)
        self.assertEqual(len(datagram(plaintext=b"x")), 42)
        self.assertEqual(INITIAL_BYTE, 0xC0)
        self.assertEqual(SHORT_BYTES, (0x40, 0x44))

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

            path = 0 if epoch == Epoch.INITIAL else 5
            kw = {"token": b"tok"} if epoch == Epoch.INITIAL else {}
            data = encode_packet(header(epoch, path_id=path, seq=9, **kw), plaintext, seal)
            at, start = checksum_offset(data), payload_start(data)
            [(path_id, seq, aad)] = seen
            self.assertEqual((path_id, seq), (path, 9))
            self.assertEqual(aad, data[:at] + data[at + 4:start])
            self.assertEqual(decode_packet(data).aad, aad)

    def test_memoryview_input_decodes(self) -> None:
        """A memoryview of a datagram decodes like the bytes."""
        for data in (datagram(), datagram(Epoch.INITIAL, token=b"tok")):
            self.assertEqual(decode_packet(memoryview(data)).header, decode_packet(data).header)

    def test_encoder_refuses_bad_headers(self) -> None:
        """Wrong CID lengths, a source CID not matching the epoch, out-of-range path IDs (and any
        but 0 under initial keys), sequence numbers, frame counts, packet types or compression
        infos, a token outside an Initial or longer than 96 bytes, another version, or a bad key
        phase are refused when encoding, for short and long payloads alike."""
        initial = {"epoch": Epoch.INITIAL, "scid": SCID}
        for plaintext in PLAINTEXTS:
            for hdr in (
                Header(DCID[:7], 0, 0), Header(DCID + b"\x00", 0, 0),
                Header(DCID, 0, 0, epoch=Epoch.INITIAL, scid=SCID[:7]),
                Header(DCID, 0, 0, epoch=Epoch.APPLICATION, scid=SCID),
                Header(DCID, 0, 0, epoch=Epoch.INITIAL, scid=None),
                Header(DCID, 2**32, 0), Header(DCID, -1, 0), Header(DCID, 1, 0, **initial),
                Header(DCID, 0, 2**64), Header(DCID, 0, -1),
                Header(DCID, 0, 0, frame_count=-1), Header(DCID, 0, 0, packet_type=6),
                Header(DCID, 0, 0, compression=2),
                Header(DCID, 0, 0, token=b"t"),
                Header(DCID, 0, 0, token=bytes(MAX_TOKEN_LENGTH + 1), **initial),
                Header(DCID, 0, 0, version=3), Header(DCID, 0, 0, version=VERSION + 1, **initial),
                Header(DCID, 0, 0, key_phase=2), Header(DCID, 0, 0, key_phase=1, **initial),
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
        """The payload of an AES-GCM-sealed packet opens with Packet.aad and the spec's nonce for
        the path the receiver knows (not on the wire), and its plaintext decodes to the frames,
        in both epochs."""
        cases = (
            (Epoch.APPLICATION, 3, [StreamFrame(4, 0, b"kwik", True), AckFrame(1, ((0, 5),))]),
            (Epoch.INITIAL, 0, [HandshakeFrame(0, b"client hello"), PaddingFrame(900)]),
        )
        for epoch, path_id, frames in cases:
            payload = encode_payload(frames, epoch)
            hdr = header(
                epoch, path_id=path_id, seq=1000, packet_type=payload.packet_type,
                frame_count=payload.frame_count, compression=payload.compression,
            )
            packet = decode_packet(encode_packet(hdr, payload.plaintext, aes_seal))
            opened = AESGCM(KEY).decrypt(nonce(path_id, 1000), bytes(packet.payload), packet.aad)
            self.assertEqual(opened, payload.plaintext)
            h = packet.header
            got = decode_payload(
                opened, frame_count=h.frame_count, packet_type=h.packet_type,
                compression=h.compression, epoch=h.epoch,
            )
            self.assertEqual(got, frames)

    def test_aad_binds_the_header(self) -> None:
        """Changing any AAD byte, or using another path's or sequence number's nonce, fails."""
        for hdr in (header(), header(Epoch.INITIAL, token=b"token")):
            packet = decode_packet(encode_packet(hdr, b"secret", aes_seal))
            payload = bytes(packet.payload)
            aesgcm = AESGCM(KEY)
            right = nonce(hdr.path_id, 42)
            self.assertEqual(aesgcm.decrypt(right, payload, packet.aad), b"secret")
            for i in range(len(packet.aad)):
                aad = bytearray(packet.aad)
                aad[i] ^= 1
                self.assertRaises(InvalidTag, aesgcm.decrypt, right, payload, bytes(aad))
            for path_id, seq in ((hdr.path_id + 1, 42), (hdr.path_id, 43)):
                self.assertRaises(
                    InvalidTag, aesgcm.decrypt, nonce(path_id, seq), payload, packet.aad
                )


class TruncationTests(SynchronousTestCase):
    """Cut datagrams."""

    def test_every_prefix_is_malformed(self) -> None:
        """Each proper prefix of a datagram, in both epochs and for every header shape (with and
        without a token), is a MalformedPacket."""
        shapes = (
            *((Epoch.APPLICATION, {"path_id": p}) for p in (1, 2**20)),
            *((Epoch.INITIAL, {"token": t}) for t in TOKENS),
        )
        for (epoch, kw), plaintext in product(shapes, PLAINTEXTS):
            data = memoryview(datagram(epoch, plaintext, seq=2**60, **kw))
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

    def test_peek_dcid_of_a_short_envelope(self) -> None:
        """peek_dcid returns the DCID right after a short envelope's first byte, whatever the
        rest, and refuses datagrams too short to hold it."""
        data = datagram()
        self.assertEqual(peek_dcid(data), DCID)
        self.assertEqual(peek_dcid(data[:1 + CID_LENGTH]), DCID)
        self.assertEqual(peek_dcid(datagram(key_phase=1)), DCID)
        for cut in range(1 + CID_LENGTH):
            self.assertRaises(MalformedPacket, peek_dcid, data[:cut])

    def test_peek_dcid_of_a_long_envelope(self) -> None:
        """peek_dcid returns the DCID after a long envelope's version and DCID Length (where RFC
        8999 puts it), for any version, so routing does not depend on the version; it refuses a
        DCID Length other than 8 and datagrams too short to hold the DCID."""
        data = datagram(Epoch.INITIAL, token=b"tok")
        self.assertEqual(peek_dcid(data), DCID)
        self.assertEqual(peek_dcid(data[:6 + CID_LENGTH]), DCID)
        for cut in range(1, 6 + CID_LENGTH):
            self.assertRaises(MalformedPacket, peek_dcid, data[:cut])
        for version in (0, 1, VERSION + 1, 0xFFFFFFFF):
            other = raw_datagram(dcid=DCID, scid=SCID, version=version)
            self.assertEqual(peek_dcid(other), DCID)
            self.assertRaises(UnsupportedVersion, decode_packet, other)
        for length in (0, 7, 9, 20):
            other = raw_datagram(dcid=bytes(range(length)), scid=SCID)
            self.assertRaises(MalformedPacket, peek_dcid, other)
        retry = bytes((0xF0,)) + data[1:]
        self.assertEqual(peek_dcid(retry), DCID)


class CorruptionTests(SynchronousTestCase):
    """Single flipped bytes anywhere in a datagram."""

    def test_any_flipped_byte_is_dropped(self) -> None:
        """Flipping any byte (by 0x01, 0x04, 0x80 or 0xFF) raises a DroppedPacket; in the CIDs,
        the token, the sequence number, the checksum or the payload it is exactly a
        ChecksumMismatch, in the version an UnsupportedVersion, in a CID length a MalformedPacket;
        a reserved bit of the first byte is a MalformedPacket, its key phase bit a mismatch."""
        for epoch, size in product(Epoch, (20, 100)):
            long = epoch == Epoch.INITIAL
            data = datagram(epoch, plaintext=bytes(range(size)), token=b"tok") if long else (
                datagram(epoch, plaintext=bytes(range(size)))
            )
            at = checksum_offset(data)
            if long:  # first byte, version 1-4, DCID length 5, DCID, SCID length 14, SCID,
                # token length 23, token 24-26
                cids_and_token = set(range(6, 14)) | set(range(15, 23)) | set(range(24, 27))
                seq = range(27, 35)
            else:
                cids_and_token = set(range(1, 9))
                seq = range(9, 17)
            checksum_only = cids_and_token | set(seq) | set(range(at, at + 4))
            checksum_only |= set(range(at + 5, len(data)))
            for i in range(len(data)):
                for mask in (0x01, 0x04, 0x80, 0xFF):
                    corrupt = bytearray(data)
                    corrupt[i] ^= mask
                    with self.assertRaises(DroppedPacket, msg=(epoch, size, i, mask)) as caught:
                        decode_packet(bytes(corrupt))
                    kind = type(caught.exception)
                    if i in checksum_only:
                        self.assertIs(kind, ChecksumMismatch, (epoch, size, i, mask))
                    elif long and 1 <= i <= 4:
                        self.assertIs(kind, UnsupportedVersion, (size, i, mask))
                    elif long and i in (5, 14):
                        self.assertIs(kind, MalformedPacket, (size, i, mask))
                    elif i == 0 and mask == 0x01:
                        self.assertIs(kind, MalformedPacket, (epoch, size, mask))
                    elif i == 0 and mask == 0x04:
                        expected = MalformedPacket if long else ChecksumMismatch
                        self.assertIs(kind, expected, (epoch, size, mask))

    def test_wrong_checksum_is_a_mismatch(self) -> None:
        """A datagram with any other checksum value is a ChecksumMismatch."""
        for payload, scid in product(PAYLOADS, (None, SCID)):
            data = raw_datagram(payload=payload, scid=scid)
            at = checksum_offset(data)
            good = int.from_bytes(data[at:at + 4], "big")
            for wrong in (0, good ^ 1, good ^ 0x80000000, 0xFFFFFFFF):
                data = raw_datagram(payload=payload, scid=scid, checksum=wrong)
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
            self.assertEqual(bytes(packet.payload), payload)

    def test_other_versions_are_unsupported(self) -> None:
        """A long envelope with any 32-bit version but 0x4B574B03 (the old one-byte 3, version 0
        of Version Negotiation, each one-bit change of ours, reserved 0x?a?a?a?a versions) is an
        UnsupportedVersion, whatever its first byte's long type: the version is checked first."""
        versions = {0, 1, 3, 0x4B574B02, 0x4B574B04, 0x0A0A0A0A, 0xFFFFFFFF}
        versions |= {VERSION ^ (1 << bit) for bit in range(32)}
        for payload, version in product(PAYLOADS, versions):
            for first in (0xC0, 0xF0, 0x80):
                data = raw_datagram(payload=payload, scid=SCID, version=version, first_byte=first)
                self.assertRaises(UnsupportedVersion, decode_packet, data)
        self.assertEqual(VERSION, 0x4B574B03)

    def test_short_envelope_first_byte(self) -> None:
        """With the header form bit clear, only 0x40 (key phase 0) and 0x44 (key phase 1)
        decode: a clear fixed bit or any reserved bit set is a MalformedPacket."""
        for payload, first in product(PAYLOADS, range(0x80)):
            data = raw_datagram(payload=payload, first_byte=first)
            if first in (0x40, 0x44):
                header = decode_packet(data).header
                phase = first >> 2 & 1
                self.assertEqual((header.epoch, header.key_phase), (Epoch.APPLICATION, phase))
            else:
                self.assertRaises(MalformedPacket, decode_packet, data)

    def test_long_envelope_first_byte(self) -> None:
        """With the header form bit set and our version, only 0xC0 (an Initial) decodes: a clear
        fixed bit, another long type (a Retry, 0xF0, is not a packet) or any reserved bit set
        is a MalformedPacket."""
        for payload, first in product(PAYLOADS, range(0x80, 0x100)):
            data = raw_datagram(payload=payload, scid=SCID, first_byte=first)
            if first == 0xC0:
                self.assertEqual(decode_packet(data).header.epoch, Epoch.INITIAL)
            else:
                self.assertRaises(MalformedPacket, decode_packet, data)

    def test_a_retry_is_not_a_packet(self) -> None:
        """A Retry (first byte 0xF0, our version, both CIDs, a token and a 16-byte integrity tag,
        no path-packet header) is a MalformedPacket for decode_packet."""
        retry = b"".join((
            bytes((0xF0,)), VERSION.to_bytes(4, "big"), bytes((8,)), DCID, bytes((8,)), SCID,
            b"retry token" * 4, bytes(16),
        ))
        self.assertRaises(MalformedPacket, decode_packet, retry)

    def test_key_phase_bit(self) -> None:
        """The short envelope's bit 0x04 is the key phase: 0x40 decodes as phase 0, 0x44 as phase
        1, both under application keys; encoding phase 1 writes 0x44 back."""
        for payload in PAYLOADS:
            header = decode_packet(raw_datagram(payload=payload, first_byte=0x44)).header
            self.assertEqual((header.epoch, header.key_phase), (Epoch.APPLICATION, 1))
            header = decode_packet(raw_datagram(payload=payload, first_byte=0x40)).header
            self.assertEqual((header.epoch, header.key_phase), (Epoch.APPLICATION, 0))
        self.assertEqual(datagram(key_phase=1)[0], 0x44)
        self.assertEqual(datagram(key_phase=0)[0], 0x40)
        one, zero = datagram(key_phase=1), datagram(key_phase=0)
        at = checksum_offset(one)
        self.assertEqual((one[1:at], one[at + 4:]), (zero[1:at], zero[at + 4:]))

    def test_header_form_decides_the_keys(self) -> None:
        """A long envelope is initial keys with a source CID, a short one application keys
        without; both decode with path ID 0 (the receiver fills it in from its CID table)."""
        for payload in PAYLOADS:
            long = decode_packet(raw_datagram(payload=payload, scid=SCID)).header
            self.assertEqual((long.epoch, long.scid, long.path_id), (Epoch.INITIAL, SCID, 0))
            short = decode_packet(raw_datagram(payload=payload)).header
            self.assertEqual((short.epoch, short.scid, short.path_id), (Epoch.APPLICATION, None, 0))

    def test_connection_id_lengths_other_than_8_are_refused(self) -> None:
        """A DCID or SCID Length other than 8, with that many bytes present or not, is a
        MalformedPacket."""
        for payload, length in product(PAYLOADS, (0, 1, 7, 9, 20, 255)):
            cid = bytes(range(min(length, 20)))
            for kw in (
                {"dcid": cid}, {"dcid_length": length},
                {"scid": cid}, {"scid_length": length},
            ):
                kw.setdefault("scid", SCID)
                data = raw_datagram(payload=payload, **kw)
                self.assertRaises(MalformedPacket, decode_packet, data)

    def test_tokens_up_to_the_bound_round_trip(self) -> None:
        """Tokens of 0 to MAX_TOKEN_LENGTH (96) bytes decode to themselves, in a hand-built
        datagram and through the encoder."""
        self.assertEqual(MAX_TOKEN_LENGTH, 96)
        for payload, size in product(PAYLOADS, (0, 1, 63, 64, 95, 96)):
            token = bytes(range(size))
            data = raw_datagram(payload=payload, scid=SCID, token=token)
            self.assertEqual(decode_packet(data).header.token, token)
            self.assertEqual(
                decode_packet(datagram(Epoch.INITIAL, payload, token=token)).header.token, token
            )

    def test_tokens_beyond_the_bound_are_refused(self) -> None:
        """A Token Length above 96, one running past the datagram, or in a longer form than
        needed, is a MalformedPacket."""
        for payload in PAYLOADS:
            for size in (97, 200, 1000):
                data = raw_datagram(payload=payload, scid=SCID, token=bytes(size))
                self.assertRaises(MalformedPacket, decode_packet, data)
            for claimed in (len(payload) + 100, 2**20, 2**62 - 1):
                data = raw_datagram(payload=payload, scid=SCID, token=b"ab", token_length=claimed)
                self.assertRaises(MalformedPacket, decode_packet, data)
            data = raw_datagram(payload=payload, scid=SCID, token=b"ab", token_length=b"\x40\x02")
            self.assertRaises(MalformedPacket, decode_packet, data)

    def test_non_minimal_header_varints_are_refused(self) -> None:
        """Frame Count, Total Length or Token Length in a longer form than needed is a
        MalformedPacket."""
        for payload, scid in product(PAYLOADS, (None, SCID)):
            for kw in (
                {"frame_count": b"\x40\x01"}, {"total_length": longer_varint(len(payload))},
            ):
                data = raw_datagram(payload=payload, scid=scid, **kw)
                self.assertRaises(MalformedPacket, decode_packet, data)
        data = raw_datagram(scid=SCID, token_length=b"\x40\x00")
        self.assertRaises(MalformedPacket, decode_packet, data)

    def test_total_length_must_match_the_datagram(self) -> None:
        """A Total Length one more or one less than the bytes left is a MalformedPacket."""
        for payload, scid in product(PAYLOADS, (None, SCID)):
            n = len(payload)
            data = raw_datagram(payload=payload, scid=scid)
            self.assertEqual(decode_packet(data).header.total_length, n)
            for total in (n - 1, n + 1, 0, 63, 64, 2**30):
                if total != n:
                    data = raw_datagram(payload=payload, scid=scid, total_length=total)
                    self.assertRaises(MalformedPacket, decode_packet, data)

    def test_payload_shorter_than_a_tag_and_a_byte_is_refused(self) -> None:
        """A Total Length below 17 is a MalformedPacket; 17 is accepted."""
        for scid in (None, SCID):
            data = raw_datagram(payload=bytes(17), scid=scid)
            self.assertEqual(decode_packet(data).header.total_length, 17)
            for size in (0, 1, 16):
                data = raw_datagram(payload=bytes(size), scid=scid)
                self.assertRaises(MalformedPacket, decode_packet, data)

    def test_zero_frame_count_is_refused(self) -> None:
        """A Frame Count of zero is a MalformedPacket."""
        for payload, scid in product(PAYLOADS, (None, SCID)):
            data = raw_datagram(payload=payload, scid=scid, frame_count=0)
            self.assertRaises(MalformedPacket, decode_packet, data)

    def test_frame_count_above_63_is_refused(self) -> None:
        """A Frame Count above MAX_FRAME_COUNT (63) is a MalformedPacket, dropped before any
        decryption; 63 itself is accepted by the header codec."""
        for payload, scid in product(PAYLOADS, (None, SCID)):
            for count in (64, 200, 16383):
                data = raw_datagram(payload=payload, scid=scid, frame_count=count)
                self.assertRaises(MalformedPacket, decode_packet, data)
            data = raw_datagram(payload=payload, scid=scid, frame_count=63)
            self.assertEqual(decode_packet(data).header.frame_count, 63)

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
