"""
Datagrams: the envelope, the seed's path-packet header, and the protected payload.

One UDP datagram carries exactly one packet.  The envelope follows the QUIC invariants (RFC 8999),
so that CID-routing load balancers and QUIC-aware middleboxes can handle Kwik datagrams::

    Long envelope (initial keys, path 0 only):
                  First Byte (8) = 0xC0 | Version (32) = 0x4B574B03 | DCID Length (8) = 8
                  | DCID (64) | SCID Length (8) = 8 | SCID (64) | Token Length (varint) | Token
    Short envelope (application keys):
                  First Byte (8) = 0x40 | Key Phase << 2 | DCID (64)
    Path packet:  Path Sequence Number (64) | Packet Type (8) | Frame Count (varint)
                  | Total Length (varint) | Checksum (32) | Compression Info (8)
    Payload:      Total Length bytes: AEAD ciphertext of the frames, 16-byte tag included

No path ID travels on the wire: every connection ID an endpoint issues belongs to one path, so the
receiver learns the path from the destination CID (and a long envelope is always path 0).  The
decoded :class:`Header` therefore has ``path_id`` 0 until the receiver fills it in; the encoder
takes the path ID only for the nonce, through ``seal``.

The checksum is CRC-32 (ISO-HDLC, as ``zlib.crc32``) over every byte of the datagram except the
checksum field itself; it rejects corrupted datagrams before the AEAD is even tried.  The associated
data of the AEAD is the header, again without the checksum field.  Nothing here decrypts: the caller
passes ``seal`` to :func:`encode_packet` and opens :attr:`Packet.payload` itself, so the wire layer
stays free of keys.  Every error raised while decoding is a
:class:`~kwik_twisted.errors.DroppedPacket`: nothing in an unauthenticated header can close a
connection.

The bulk packet has one shape (short envelope, one-byte Frame Count, two-byte Total Length), and it
alone has fast paths: :func:`encode_application_packet` seals it without building a
:class:`Header`, and :func:`decode_packet` reads its whole header with one ``struct`` call.  Every
other shape, and every error, goes through the general field-by-field code;
tests/wire/test_fast_paths.py checks that both give the same bytes, headers and errors.
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
from .control import MAX_PATH_ID
from .frames import CompressionInfo, Epoch, PacketType
from .varint import VARINT_MAX, pull_varint, push_varint, varint_size

#: The Version field of a long envelope: "KWK" and 3.
VERSION = 0x4B574B03
CID_LENGTH = 8
TAG_LENGTH = 16
#: The longest address-validation token an Initial may carry (protocol.rst, "Retry").
MAX_TOKEN_LENGTH = 96
#: Most frames one packet may carry (Frame Count stays a one-byte varint).  A receiver drops a
#: header claiming more before decrypting: it bounds the per-frame work one datagram can ask for.
MAX_FRAME_COUNT = 63
#: First-byte bits (RFC 8999: the header form; RFC 9000: the fixed bit).
HEADER_FORM = 0x80
FIXED_BIT = 0x40
#: Long envelope types (bits 4-5 of the first byte), as QUIC's.
LONG_INITIAL = 0x00
LONG_RETRY = 0x03
#: The short envelope's key phase bit.
KEY_PHASE_BIT = 0x04
#: The first byte of an Initial, and of a short packet in key phase 0 and 1.
INITIAL_BYTE = HEADER_FORM | FIXED_BIT | (LONG_INITIAL << 4)
RETRY_BYTE = HEADER_FORM | FIXED_BIT | (LONG_RETRY << 4)
SHORT_BYTES = (FIXED_BIT, FIXED_BIT | KEY_PHASE_BIT)
#: Bytes of a long envelope before its token: first byte, version, two CIDs with their lengths.
LONG_PREFIX = 1 + 4 + 1 + CID_LENGTH + 1 + CID_LENGTH
SHORT_ENVELOPE = 1 + CID_LENGTH
#: Bytes of the path-packet header with a one-byte Frame Count and a two-byte Total Length.
PATH_HEADER = 8 + 1 + 1 + 2 + 4 + 1

_SEQ_TYPE = Struct(">QB")
_CHECKSUM = Struct(">I")
#: The long envelope up to its token: first byte, version, and the two 8-byte CIDs with lengths.
LONG_HEADER = Struct(">BIB8sB8s")
_PACKET_TYPES = frozenset(int(t) for t in PacketType)
_COMPRESSIONS = frozenset(int(c) for c in CompressionInfo)
_COMPRESSION_BYTES = {int(c): bytes((int(c),)) for c in CompressionInfo}

#: ``seal(path_id, seq, aad, plaintext) -> ciphertext`` (tag included).
Seal = Callable[[int, int, bytes, bytes], bytes]


def envelope_size(long: bool, token_length: int = 0) -> int:
    """Bytes of the envelope: a short one, or a long one carrying a token of ``token_length``."""
    if not long:
        return SHORT_ENVELOPE
    return LONG_PREFIX + varint_size(token_length) + token_length


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
        "token",
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
        token: bytes = b"",
    ) -> None:
        self.dcid = dcid
        #: The path: not on the wire (implied by ``dcid``); 0 in a decoded header until the
        #: receiver looks the CID up.  The encoder passes it to ``seal`` for the nonce.
        self.path_id = path_id
        self.seq = seq
        self.packet_type = packet_type
        self.frame_count = frame_count
        self.compression = compression
        self.epoch = epoch
        self.scid = scid
        self.version = version
        self.total_length = total_length
        #: The key phase of an application packet (0 or 1): the short envelope's Key Phase bit.
        self.key_phase = key_phase
        #: The address-validation token of an Initial (empty: none).
        self.token = token

    @property
    def long(self) -> bool:
        """Whether the envelope is long (initial keys: source CID, version and token)."""
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
    if header.token and header.scid is None or len(header.token) > MAX_TOKEN_LENGTH:
        raise FrameEncodingError(f"a token goes in an Initial, at most {MAX_TOKEN_LENGTH} bytes")
    if (header.scid is not None and header.path_id != 0) or not 0 <= header.path_id <= MAX_PATH_ID:
        raise FrameEncodingError("path ID out of range (initial keys: path 0 only)")
    if not 0 <= header.seq < 1 << 64:
        raise FrameEncodingError("sequence number out of range")
    if header.packet_type not in _PACKET_TYPES or header.compression not in _COMPRESSION_BYTES:
        raise FrameEncodingError("unknown packet type or compression info")
    if header.version != VERSION or not 0 <= header.frame_count <= VARINT_MAX:
        raise FrameEncodingError("version or frame count out of range")
    if header.key_phase not in (0, 1) or (header.key_phase and header.epoch != Epoch.APPLICATION):
        raise FrameEncodingError("a key phase is 0 or 1, and 1 only under application keys")


def encode_header(header: Header, total_length: int) -> tuple[bytearray, int]:
    """
    Encode ``header`` with ``total_length``; return the bytes and the offset of the checksum field.

    The checksum field is left as zero for :func:`encode_packet` to fill in.
    """
    _check_header(header)
    if header.scid is not None:
        buf = bytearray(LONG_HEADER.pack(
            INITIAL_BYTE, header.version, CID_LENGTH, header.dcid, CID_LENGTH, header.scid
        ))
        push_varint(buf, len(header.token))
        buf += header.token
    else:
        buf = bytearray((SHORT_BYTES[header.key_phase],))
        buf += header.dcid
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


_SHORT_PREFIX = Struct(">B8sQBBH")  # envelope + header up to Total Length, short form


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
    :func:`encode_packet`, so the datagram is the same either way.  ``path_id`` only enters the
    nonce.
    """
    total = len(plaintext) + TAG_LENGTH
    if (
        0 <= frame_count < 0x40
        and 0x40 <= total < 0x4000
        and 0 <= key_phase <= 1
        and len(dcid) == CID_LENGTH
        and 0 <= seq < 1 << 64
        and 0 <= path_id <= MAX_PATH_ID
        and compression in _COMPRESSION_BYTES
        and packet_type in _PACKET_TYPES
    ):
        prefix = _SHORT_PREFIX.pack(
            SHORT_BYTES[key_phase], dcid, seq, packet_type, frame_count, total | 0x4000
        )
        tail = _COMPRESSION_BYTES[compression]
        aad = prefix + tail
        ciphertext = seal(path_id, seq, aad, plaintext)
        if len(ciphertext) != total:
            raise FrameEncodingError("the AEAD must add exactly a 16-byte tag")
        return b"".join((prefix, _CHECKSUM.pack(crc32(ciphertext, crc32(aad))), tail, ciphertext))
    header = Header(dcid, path_id, seq, packet_type, frame_count, compression, Epoch.APPLICATION)
    header.key_phase = key_phase
    return encode_packet(header, plaintext, seal)


def peek_dcid(data: bytes) -> bytes:
    """
    Return the destination connection ID of a datagram, for routing, without decoding the rest.

    Where RFC 8999 puts it: right after the first byte of a short envelope, after the version
    and its length byte in a long one.

    :raises MalformedPacket: too short, or a long envelope whose DCID is not 8 bytes.
    """
    if data and data[0] & HEADER_FORM:
        if len(data) < 6 + CID_LENGTH or data[5] != CID_LENGTH:
            raise MalformedPacket("long envelope too short or not an 8-byte DCID")
        return bytes(data[6 : 6 + CID_LENGTH])
    if len(data) < SHORT_ENVELOPE:
        raise MalformedPacket("datagram too short for an envelope")
    return bytes(data[1:SHORT_ENVELOPE])


def _pull(data: memoryview, pos: int) -> tuple[int, int]:
    try:
        return pull_varint(data, pos)
    except FrameEncodingError as e:
        raise MalformedPacket(f"packet header: {e.reason}") from None


def decode_packet(data: bytes | memoryview) -> Packet:
    """
    Decode a datagram's header and check its checksum; the payload stays protected.

    :raises UnsupportedVersion: a long envelope with another version than :data:`VERSION`.
    :raises MalformedPacket: any field is truncated, reserved, out of range, or a length disagrees
        with the datagram (a Retry is not a packet: see :mod:`~kwik_twisted.core.crypto.tokens`).
    :raises ChecksumMismatch: the checksum does not match.
    """
    view = data if isinstance(data, memoryview) else memoryview(data)
    if (
        len(view) >= _SHORT_HEADER_LENGTH + TAG_LENGTH + 1
        and view[0] in SHORT_BYTES
        and view[18] < 0x40
        and view[19] & 0xC0 == 0x40
    ):
        return _decode_short(view)
    return _decode_general(view)


def _decode_general(view: memoryview) -> Packet:
    """:func:`decode_packet` for every shape: the envelope, then the path-packet header."""
    if not len(view):
        raise MalformedPacket("empty datagram")
    first = view[0]
    if not first & HEADER_FORM:
        if first not in SHORT_BYTES:
            raise MalformedPacket(f"reserved bits in a short envelope (0x{first:02x})")
        if len(view) < SHORT_ENVELOPE:
            raise MalformedPacket("datagram too short for an envelope")
        header = Header(bytes(view[1:SHORT_ENVELOPE]), 0, 0, key_phase=(first >> 2) & 1)
        return _decode_path_packet(view, SHORT_ENVELOPE, header)
    if len(view) < LONG_PREFIX:
        raise MalformedPacket("datagram too short for a long envelope")
    _, version, dcid_length, dcid, scid_length, scid = LONG_HEADER.unpack_from(view, 0)
    if version != VERSION:
        raise UnsupportedVersion(f"version 0x{version:08x} is not Kwik v3")
    if first != INITIAL_BYTE:
        raise MalformedPacket(f"a long envelope that is not an Initial (0x{first:02x})")
    if dcid_length != CID_LENGTH or scid_length != CID_LENGTH:
        raise MalformedPacket("connection IDs are 8 bytes")
    token_length, pos = _pull(view, LONG_PREFIX)
    if token_length > MAX_TOKEN_LENGTH or pos + token_length > len(view):
        raise MalformedPacket(f"token longer than {MAX_TOKEN_LENGTH} bytes or the datagram")
    token = bytes(view[pos : pos + token_length])
    header = Header(dcid, 0, 0, epoch=Epoch.INITIAL, scid=scid, token=token)
    return _decode_path_packet(view, pos + token_length, header)


def _decode_path_packet(view: memoryview, pos: int, header: Header) -> Packet:
    """Decode the path-packet header at ``view[pos]`` into ``header``, then check the rest."""
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
        view, header, at, start, checksum, seq, packet_type, frame_count, total, compression
    )


#: The whole header of the common shape: short envelope, then the path-packet header with a
#: one-byte Frame Count and a two-byte Total Length.
_SHORT_HEADER = Struct(">B8sQBBHIB")
_SHORT_HEADER_LENGTH = _SHORT_HEADER.size
_SHORT_CHECKSUM_AT = _SHORT_HEADER_LENGTH - 5


def _decode_short(view: memoryview) -> Packet:
    """
    The bulk packet's shape in one step: short envelope, one-byte Frame Count, two-byte Total
    Length.

    Equivalent to :func:`_decode_general` on the datagrams :func:`decode_packet` sends here (it
    checked the first byte and the one- and two-byte varint prefixes): the same header, AAD and
    payload, or an error of the same class (tests/wire/test_fast_paths.py).
    """
    (first, dcid, seq, packet_type, frame_count, total, checksum, compression) = (
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
        dcid, 0, seq, packet_type, frame_count, compression, 1, None, VERSION, total,
        (first >> 2) & 1,  # the key phase bit
    )
    return Packet(header, aad, view[start:])


def _finish(
    view: memoryview,
    header: Header,
    at: int,
    start: int,
    checksum: int,
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
    header.seq = seq
    header.packet_type = packet_type
    header.frame_count = frame_count
    header.total_length = total
    header.compression = compression
    return Packet(header, bytes(view[:at]) + bytes(view[at + 4 : start]), view[start:])
