"""
Datagrams: the envelope, the seed's path-packet header, and the protected payload.

One UDP datagram carries exactly one packet::

    Envelope:     Version (8) = 0x03 | Envelope Flags (8) | Destination CID (64)
                  | [Source CID (64), iff LONG] | Path ID (varint)
    Path packet:  Path Sequence Number (64) | Packet Type (8) | Frame Count (varint)
                  | Total Length (varint) | Checksum (32) | Compression Info (8)
    Payload:      Total Length bytes: AEAD ciphertext of the frames, 16-byte tag included

The envelope exists because the seed's header cannot route a datagram: a server needs the connection
ID to find the connection whatever address the datagram came from, and the path ID to know which
path's sequence space and keys' nonce it belongs to.

The checksum is CRC-32 (ISO-HDLC, as ``zlib.crc32``) over every byte of the datagram except the
checksum field itself; it rejects corrupted datagrams before the AEAD is even tried.  The associated
data of the AEAD is the header, again without the checksum field.  Nothing here decrypts: the caller
passes ``seal`` to
:func:`encode_packet` and opens :attr:`Packet.payload` itself, so the wire layer stays free of keys.
Every error raised while decoding is a :class:`~kwik_twisted.errors.DroppedPacket`: nothing in an
unauthenticated header can close a connection.

The bulk packet has one shape (application keys, no source CID, one-byte Path ID and Frame Count,
two-byte Total Length), and it alone has fast paths: :func:`encode_application_packet` seals it
without building a :class:`Header`, and :func:`decode_packet` reads its whole header with one
``struct`` call.  Every other shape, and every error, goes through the general field-by-field
code; tests/wire/test_fast_paths.py checks that both give the same bytes, headers and errors.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct
from zlib import crc32

from ..errors import (
    ChecksumMismatch,
    FrameEncodingError,
    MalformedPacket,
    UnsupportedVersion,
)
from .frames import CompressionInfo, Epoch, PacketType
from .varint import VARINT_MAX, pull_varint, push_varint

VERSION = 0x03
CID_LENGTH = 8
TAG_LENGTH = 16
MAX_PATH_ID = 0xFFFFFFFF
#: Most frames one packet may carry (Frame Count stays a one-byte varint).  A receiver drops a
#: header claiming more before decrypting: it bounds the per-frame work one datagram can ask for.
MAX_FRAME_COUNT = 63
#: Envelope flag bits.
FLAG_LONG = 0x01
EPOCH_SHIFT = 1
EPOCH_MASK = 0x06
ENVELOPE_RESERVED = 0xF8

_SEQ_TYPE = Struct(">QB")
_CHECKSUM = Struct(">I")
_PACKET_TYPES = frozenset(int(t) for t in PacketType)
_COMPRESSIONS = frozenset(int(c) for c in CompressionInfo)
_COMPRESSION_BYTES = {int(c): bytes((int(c),)) for c in CompressionInfo}

#: ``seal(path_id, seq, aad, plaintext) -> ciphertext`` (tag included).
Seal = Callable[[int, int, bytes, bytes], bytes]


class Header:
    """The clear-text part of a packet: envelope and path-packet header."""

    __slots__ = (
        "dcid",
        "path_id",
        "seq",
        "packet_type",
        "frame_count",
        "compression",
        "epoch",
        "scid",
        "version",
        "total_length",
        "key_phase",
    )

    def __init__(
        self,
        dcid: bytes,
        path_id: int,
        seq: int,
        packet_type: int = PacketType.DATA,
        frame_count: int = 1,
        compression: int = CompressionInfo.NONE,
        epoch: int = Epoch.APPLICATION,
        scid: bytes | None = None,
        version: int = VERSION,
        total_length: int = 0,
        key_phase: int = 0,
    ) -> None:
        self.dcid = dcid
        self.path_id = path_id
        self.seq = seq
        self.packet_type = packet_type
        self.frame_count = frame_count
        self.compression = compression
        self.epoch = epoch
        self.scid = scid
        self.version = version
        self.total_length = total_length
        #: The key phase of an application packet (0 or 1): Key Epoch 1 on the wire is phase 0,
        #: Key Epoch 2 is phase 1 (protocol.rst, "Key update"); ``epoch`` stays APPLICATION.
        self.key_phase = key_phase

    @property
    def long(self) -> bool:
        """Whether the envelope carries a source connection ID (initial keys only)."""
        return self.scid is not None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Header):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"Header({fields})"


class Packet:
    """A decoded datagram whose payload is still protected."""

    __slots__ = ("header", "aad", "payload")

    def __init__(self, header: Header, aad: bytes, payload: memoryview) -> None:
        self.header = header
        self.aad = aad
        self.payload = payload


def _check_header(header: Header) -> None:
    if len(header.dcid) != CID_LENGTH or (
        header.scid is not None and len(header.scid) != CID_LENGTH
    ):
        raise FrameEncodingError("connection IDs are 8 bytes")
    if (header.scid is not None) != (header.epoch == Epoch.INITIAL):
        raise FrameEncodingError("a source connection ID goes with initial keys, and only there")
    if not 0 <= header.path_id <= MAX_PATH_ID or not 0 <= header.seq < 1 << 64:
        raise FrameEncodingError("path ID or sequence number out of range")
    if header.packet_type not in _PACKET_TYPES or header.compression not in _COMPRESSION_BYTES:
        raise FrameEncodingError("unknown packet type or compression info")
    if not 0 <= header.version <= 0xFF or not 0 <= header.frame_count <= VARINT_MAX:
        raise FrameEncodingError("version or frame count out of range")
    if header.key_phase not in (0, 1) or (header.key_phase and header.epoch != Epoch.APPLICATION):
        raise FrameEncodingError("a key phase is 0 or 1, and 1 only under application keys")


def encode_header(header: Header, total_length: int) -> tuple[bytearray, int]:
    """
    Encode ``header`` with ``total_length``; return the bytes and the offset of the checksum field.

    The checksum field is left as zero for :func:`encode_packet` to fill in.
    """
    _check_header(header)
    buf = bytearray(
        (
            header.version,
            ((header.epoch + header.key_phase) << EPOCH_SHIFT) | (FLAG_LONG if header.long else 0),
        )
    )
    buf += header.dcid
    if header.scid is not None:
        buf += header.scid
    push_varint(buf, header.path_id)
    buf += _SEQ_TYPE.pack(header.seq, header.packet_type)
    push_varint(buf, header.frame_count)
    push_varint(buf, total_length)
    checksum_at = len(buf)
    buf += b"\0\0\0\0"
    buf.append(header.compression)
    return buf, checksum_at


def encode_packet(header: Header, plaintext: bytes, seal: Seal) -> bytes:
    """
    Build a datagram: ``header``, then ``plaintext`` sealed by ``seal`` with the header as AAD.

    ``header.total_length`` is ignored and computed; ``seal`` must add exactly :data:`TAG_LENGTH`
    bytes.
    """
    total = len(plaintext) + TAG_LENGTH
    buf, at = encode_header(header, total)
    aad = bytes(buf[:at] + buf[at + 4 :])
    ciphertext = seal(header.path_id, header.seq, aad, plaintext)
    if len(ciphertext) != total:
        raise FrameEncodingError("the AEAD must add exactly a 16-byte tag")
    buf += ciphertext
    checksum = crc32(memoryview(buf)[at + 4 :], crc32(memoryview(buf)[:at]))
    _CHECKSUM.pack_into(buf, at, checksum)
    return bytes(buf)


_SHORT_PREFIX = Struct(">BB8sBQBBH")  # envelope + header up to Total Length, short form
_SHORT_APPLICATION_FLAGS = 1 << EPOCH_SHIFT
#: The envelope flags of a short application packet, by key phase (Key Epoch 1, then 2).
_PHASE_FLAGS = (1 << EPOCH_SHIFT, 2 << EPOCH_SHIFT)


def encode_application_packet(
    dcid: bytes,
    path_id: int,
    seq: int,
    packet_type: int,
    frame_count: int,
    compression: int,
    plaintext: bytes | bytearray,
    seal: Seal,
    key_phase: int = 0,
) -> bytes:
    """
    :func:`encode_packet` for an application-key packet, without building a :class:`Header`.

    The sender's per-packet call: the common shape is sealed directly, anything else goes through
    :func:`encode_packet`, so the datagram is the same either way.
    """
    total = len(plaintext) + TAG_LENGTH
    if (
        path_id < 0x40
        and frame_count < 0x40
        and 0x40 <= total < 0x4000
        and len(dcid) == CID_LENGTH
        and 0 <= seq < 1 << 64
        and path_id >= 0
        and frame_count >= 0
        and compression in _COMPRESSION_BYTES
        and packet_type in _PACKET_TYPES
    ):
        return _seal_short(
            dcid, path_id, seq, packet_type, frame_count, compression, total, plaintext, seal,
            _PHASE_FLAGS[key_phase],
        )
    header = Header(dcid, path_id, seq, packet_type, frame_count, compression, Epoch.APPLICATION)
    header.key_phase = key_phase
    return encode_packet(header, plaintext, seal)


def _seal_short(
    dcid: bytes,
    path_id: int,
    seq: int,
    packet_type: int,
    frame_count: int,
    compression: int,
    total: int,
    plaintext: bytes | bytearray,
    seal: Seal,
    flags: int = _SHORT_APPLICATION_FLAGS,
) -> bytes:
    """Seal the common shape; the checksum covers the AAD (prefix and tail) and the ciphertext."""
    prefix = _SHORT_PREFIX.pack(
        VERSION, flags, dcid, path_id, seq, packet_type, frame_count,
        total | 0x4000,
    )
    tail = _COMPRESSION_BYTES[compression]
    aad = prefix + tail
    ciphertext = seal(path_id, seq, aad, plaintext)
    if len(ciphertext) != total:
        raise FrameEncodingError("the AEAD must add exactly a 16-byte tag")
    return b"".join((prefix, _CHECKSUM.pack(crc32(ciphertext, crc32(aad))), tail, ciphertext))


def peek_dcid(data: bytes) -> bytes:
    """Return the destination connection ID of a datagram, for routing, without decoding the
    rest."""
    if len(data) < 2 + CID_LENGTH:
        raise MalformedPacket("datagram too short for an envelope")
    if data[0] != VERSION:
        raise UnsupportedVersion(f"version 0x{data[0]:02x} is not Kwik v3")
    return bytes(data[2:10])


def _pull(data: memoryview, pos: int) -> tuple[int, int]:
    try:
        return pull_varint(data, pos)
    except FrameEncodingError as e:
        raise MalformedPacket(f"packet header: {e.reason}") from None


def decode_packet(data: bytes | memoryview) -> Packet:
    """
    Decode a datagram's header and check its checksum; the payload stays protected.

    :raises UnsupportedVersion: the first byte is not 0x03.
    :raises MalformedPacket: any field is truncated, reserved, out of range, or a length disagrees
        with the datagram.
    :raises ChecksumMismatch: the checksum does not match.
    """
    view = data if isinstance(data, memoryview) else memoryview(data)
    if (
        len(view) >= _SHORT_HEADER_LENGTH + TAG_LENGTH + 1
        and view[0] == VERSION
        and view[1] in _PHASE_FLAGS
        and view[10] < 0x40
        and view[20] < 0x40
        and view[21] & 0xC0 == 0x40
    ):
        return _decode_short(view)
    return _decode_general(view)


def _decode_general(view: memoryview) -> Packet:
    """:func:`decode_packet` for every shape: the envelope, then the path-packet header."""
    if len(view) < 2 + CID_LENGTH:
        raise MalformedPacket("datagram too short for an envelope")
    version, flags = view[0], view[1]
    if version != VERSION:
        raise UnsupportedVersion(f"version 0x{version:02x} is not Kwik v3")
    if flags & ENVELOPE_RESERVED:
        raise MalformedPacket(f"reserved envelope flag bits set (0x{flags:02x})")
    epoch = (flags & EPOCH_MASK) >> EPOCH_SHIFT
    if epoch > Epoch.APPLICATION + 1:
        raise MalformedPacket(f"unknown key epoch {epoch}")
    key_phase = 1 if epoch > Epoch.APPLICATION else 0  # Key Epoch 2: application keys, phase 1
    epoch -= key_phase
    long = bool(flags & FLAG_LONG)
    if long != (epoch == Epoch.INITIAL):
        raise MalformedPacket("a source connection ID goes with initial keys, and only there")
    pos = 2 + CID_LENGTH
    dcid = bytes(view[2:pos])
    scid = None
    if long:
        if len(view) < pos + CID_LENGTH:
            raise MalformedPacket("datagram ends inside the source connection ID")
        scid = bytes(view[pos : pos + CID_LENGTH])
        pos += CID_LENGTH
    header = Header(dcid, 0, 0, epoch=epoch, scid=scid, key_phase=key_phase)
    return _decode_path_packet(view, pos, header)


def _decode_path_packet(view: memoryview, pos: int, header: Header) -> Packet:
    """Decode the path-packet header at ``view[pos]`` into ``header``, then check the rest."""
    path_id, pos = _pull(view, pos)
    if path_id > MAX_PATH_ID:
        raise MalformedPacket(f"path ID {path_id} exceeds 2**32 - 1")
    if pos + 9 > len(view):
        raise MalformedPacket("datagram ends inside the path packet header")
    seq, packet_type = _SEQ_TYPE.unpack_from(view, pos)
    if packet_type not in _PACKET_TYPES:
        raise MalformedPacket(f"unknown packet type 0x{packet_type:02x}")
    frame_count, pos = _pull(view, pos + 9)
    total, pos = _pull(view, pos)
    if pos + 5 > len(view):
        raise MalformedPacket("datagram ends inside the checksum or compression info")
    at = pos
    compression = view[pos + 4]
    start = pos + 5
    if total < TAG_LENGTH + 1:
        raise MalformedPacket("payload shorter than an AEAD tag and one byte")
    checksum = _CHECKSUM.unpack_from(view, at)[0]
    return _finish(
        view,
        header,
        at,
        start,
        checksum,
        path_id,
        seq,
        packet_type,
        frame_count,
        total,
        compression,
    )


#: The whole header of the common shape: envelope without a source CID, then the path-packet
#: header with a one-byte Path ID and Frame Count and a two-byte Total Length.
_SHORT_HEADER = Struct(">BB8sBQBBHIB")
_SHORT_HEADER_LENGTH = _SHORT_HEADER.size
_SHORT_CHECKSUM_AT = _SHORT_HEADER_LENGTH - 5


def _decode_short(view: memoryview) -> Packet:
    """
    The bulk packet's shape in one step: application keys, short envelope, one-byte Path ID and
    Frame Count, two-byte Total Length.

    Equivalent to :func:`_decode_general` on the datagrams :func:`decode_packet` sends here (it
    checked the version, the flags and the one- and two-byte varint prefixes): the same header,
    AAD and payload, or an error of the same class (tests/wire/test_fast_paths.py).
    """
    (_, _, dcid, path_id, seq, packet_type, frame_count, total, checksum, compression) = (
        _SHORT_HEADER.unpack_from(view, 0)
    )
    total &= 0x3FFF
    if total < 0x40:
        raise MalformedPacket(f"packet header: varint {total} is not in its shortest form")
    if packet_type not in _PACKET_TYPES:
        raise MalformedPacket(f"unknown packet type 0x{packet_type:02x}")
    if compression not in _COMPRESSIONS:
        raise MalformedPacket(f"unknown Compression Info 0x{compression:02x}")
    start = _SHORT_HEADER_LENGTH
    if total != len(view) - start:
        raise MalformedPacket(f"Total Length says {total}, the datagram holds {len(view) - start}")
    if frame_count == 0:
        raise MalformedPacket("Frame Count is zero")
    at = _SHORT_CHECKSUM_AT
    aad = view[:at].tobytes() + view[at + 4 : start].tobytes()
    if checksum != crc32(view[start:], crc32(aad)):
        raise ChecksumMismatch("packet checksum mismatch")
    header = Header(
        dcid, path_id, seq, packet_type, frame_count, compression, 1, None, VERSION, total,
        view[1] >> 2,  # the key phase: flags 0x02 (Key Epoch 1) or 0x04 (Key Epoch 2)
    )
    return Packet(header, aad, view[start:])


def _finish(
    view: memoryview,
    header: Header,
    at: int,
    start: int,
    checksum: int,
    path_id: int,
    seq: int,
    packet_type: int,
    frame_count: int,
    total: int,
    compression: int,
) -> Packet:
    """Check what both header shapes share, then the checksum; complete ``header``."""
    if compression not in _COMPRESSIONS:
        raise MalformedPacket(f"unknown Compression Info 0x{compression:02x}")
    if total != len(view) - start:
        raise MalformedPacket(f"Total Length says {total}, the datagram holds {len(view) - start}")
    if frame_count == 0 or frame_count > MAX_FRAME_COUNT:
        raise MalformedPacket(f"Frame Count {frame_count} is not in 1..{MAX_FRAME_COUNT}")
    if checksum != crc32(view[at + 4 :], crc32(view[:at])):
        raise ChecksumMismatch("packet checksum mismatch")
    header.path_id = path_id
    header.seq = seq
    header.packet_type = packet_type
    header.frame_count = frame_count
    header.total_length = total
    header.compression = compression
    return Packet(header, bytes(view[:at]) + bytes(view[at + 4 : start]), view[start:])
