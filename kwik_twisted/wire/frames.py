"""
Kwik v3 frames: the seed's frame header, stream frames, extensions and the payload codec.

Every frame starts with the seed's header::

    StreamID (varint) | Offset (64) | Flags (8) | Data Length (varint) | Checksum (32) | Priority
    (8)
    | Extensions Length (varint) | Extensions (TLV...) | Data (Data Length bytes)

Priority 0x00-0x02 marks a stream frame (normal, high, critical); 0xFF marks a control frame whose
StreamID field holds its :class:`~kwik_twisted.wire.control.ControlType`.  The checksum is CRC-32 of
the frame's data *after decompression*: packets are already authenticated by the AEAD, so this
check's job is to prove that decompression (and the implementation) reproduced exactly what the
sender had.

:func:`encode_payload` turns frames into a packet's plaintext and tells the packet header what to
say (frame count, packet type, compression info); :func:`decode_payload` is its inverse and
enforces every rule of protocol.rst that can be checked without connection state, raising only
:mod:`kwik_twisted.errors`.

Fast paths serve the bulk packet, one normal-priority STREAM frame with a one-byte StreamID and a
two-byte Data Length: the header is written and read with one ``struct`` call (the general code,
:func:`_push_header_varints` and :func:`_pull_header`, goes field by field), the flags of such a
frame are checked inline (:func:`_check_flags` otherwise), and :func:`classify` and
:func:`decode_payload` answer a lone frame before their general loops (:func:`_classify_any`,
:func:`_decode_frames`).  tests/wire/test_fast_paths.py holds each pair to the same result.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag
from struct import Struct
from typing import NamedTuple
from zlib import crc32

import lz4.block

from ..errors import (
    ChecksumError,
    CompressionError,
    FrameEncodingError,
    ProtocolError,
    ProtocolViolation,
    TruncatedInput,
    UnknownExtensionError,
)
from .control import (
    CONTROL_FRAME_CLASSES,
    INITIAL_EPOCH_TYPES,
    AckFrame,
    ControlFrame,
    HandshakeFrame,
)
from .varint import VARINT_MAX, pull_varint, push_varint

_OFFSET_FLAGS = Struct(">QB")
_CHECKSUM_PRIORITY = Struct(">IB")

#: The largest stream data one compressed frame may expand to.
MAX_DECOMPRESSED_FRAME = 16384
#: The most decompressed data one packet may carry in all its frames together.
MAX_DECOMPRESSED_PACKET = 65536


class Epoch(IntEnum):
    """Which keys protect a packet (the envelope's Key Epoch bits)."""

    INITIAL = 0
    APPLICATION = 1


class FrameFlags(IntFlag):
    """The seed's frame flags; bits 6-7 are reserved and must be zero."""

    FIN = 0x01
    PRIORITY = 0x02
    COMPRESSED = 0x04
    ENCRYPTED = 0x08
    ORDERED = 0x10
    RETRANSMIT = 0x20


RESERVED_FLAGS = 0xC0
_DATA = 0x00  # PacketType.DATA as a plain int
# Plain ints for the per-packet path: IntFlag arithmetic costs a Python call per operator.
_FIN, _PRIORITY, _COMPRESSED, _ENCRYPTED, _ORDERED, _RETRANSMIT = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_CONTROL_FORBIDDEN = _FIN | _COMPRESSED | _ORDERED
_APPLICATION = 1
_CONTROL = 0xFF


class Priority(IntEnum):
    """The seed's priority levels; CONTROL marks a control frame."""

    NORMAL = 0x00
    HIGH = 0x01
    CRITICAL = 0x02
    CONTROL = 0xFF


class PacketType(IntEnum):
    """The seed's packet types; :func:`classify` says which one a payload is."""

    DATA = 0x00
    CONTROL = 0x01
    ACK = 0x02
    KEEP_ALIVE = 0x03
    PRIORITY = 0x04
    RETRANSMISSION = 0x05


class CompressionInfo(IntEnum):
    """The packet header's Compression Info: the algorithm of its COMPRESSED frames."""

    NONE = 0x00
    LZ4_BLOCK = 0x01


class ExtensionType(IntEnum):
    """Known frame extensions.  Odd types are critical: unknown ones are refused."""

    QOS = 0x02


class QosPolicy(NamedTuple):
    """The seed's QoSPolicy, sent as the QOS extension on a stream's first frame."""

    min_bandwidth_kbps: int = 0
    max_latency_ms: int = 0
    max_jitter_ms: int = 0
    loss_threshold_ppm: int = 0


class StreamFrame:
    """
    A piece of a stream.

    ``data`` is always the uncompressed bytes.  On encoding, ``compress`` asks for lz4, which is
    used only when it makes the frame smaller; on decoding, ``compressed`` says whether it arrived
    compressed.
    """

    __slots__ = (
        "stream_id",
        "offset",
        "data",
        "fin",
        "priority",
        "ordered",
        "retransmit",
        "compress",
        "compressed",
        "qos",
    )

    def __init__(
        self,
        stream_id: int,
        offset: int,
        data: bytes | memoryview,
        fin: bool = False,
        priority: int = Priority.NORMAL,
        ordered: bool = True,
        retransmit: bool = False,
        compress: bool = False,
        compressed: bool = False,
        qos: QosPolicy | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.offset = offset
        self.data = data
        self.fin = fin
        self.priority = priority
        self.ordered = ordered
        self.retransmit = retransmit
        self.compress = compress
        self.compressed = compressed
        self.qos = qos

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StreamFrame):
            return NotImplemented
        return (
            self.stream_id,
            self.offset,
            bytes(self.data),
            self.fin,
            self.priority,
            self.ordered,
            self.retransmit,
            self.qos,
        ) == (
            other.stream_id,
            other.offset,
            bytes(other.data),
            other.fin,
            other.priority,
            other.ordered,
            other.retransmit,
            other.qos,
        )

    def __repr__(self) -> str:
        return (
            f"StreamFrame(stream_id={self.stream_id}, offset={self.offset}, "
            f"len={len(self.data)}, fin={self.fin}, priority={self.priority}, "
            f"retransmit={self.retransmit})"
        )


Frame = StreamFrame | ControlFrame


class Payload(NamedTuple):
    """What :func:`encode_payload` produces for the packet header and the AEAD."""

    plaintext: bytes
    frame_count: int
    packet_type: PacketType
    compression: CompressionInfo


# --------------------------------------------------------------------------
# Encoding


_HEADER_SHORT_LEN = Struct(">BQBBIBB")  # one-byte StreamID and Data Length, no extensions
_HEADER_LONG_LEN = Struct(">BQBHIBB")  # one-byte StreamID, two-byte Data Length, no extensions


def _push_header(
    buf: bytearray,
    sid: int,
    offset: int,
    flags: int,
    data: bytes | memoryview,
    checksum: int,
    priority: int,
    extensions: bytes,
) -> None:
    n = len(data)
    if 0 <= sid < 0x40 and not extensions and 0 <= offset:
        if n < 0x40:
            buf += _HEADER_SHORT_LEN.pack(sid, offset, flags, n, checksum, priority, 0)
            buf += data
            return
        if n < 0x4000:
            buf += _HEADER_LONG_LEN.pack(sid, offset, flags, n | 0x4000, checksum, priority, 0)
            buf += data
            return
    _push_header_varints(buf, sid, offset, flags, data, checksum, priority, extensions)


def _push_header_varints(
    buf: bytearray,
    sid: int,
    offset: int,
    flags: int,
    data: bytes | memoryview,
    checksum: int,
    priority: int,
    extensions: bytes,
) -> None:
    """:func:`_push_header` for every shape, field by field (the fixed shapes are its fast
    paths: one-byte StreamID, no extensions, one- or two-byte Data Length)."""
    push_varint(buf, sid)
    buf += _OFFSET_FLAGS.pack(offset, flags)
    push_varint(buf, len(data))
    buf += _CHECKSUM_PRIORITY.pack(checksum, priority)
    push_varint(buf, len(extensions))
    buf += extensions
    buf += data


def _encode_qos(qos: QosPolicy) -> bytes:
    body = bytearray()
    for value in qos:
        push_varint(body, value)
    ext = bytearray()
    push_varint(ext, ExtensionType.QOS)
    push_varint(ext, len(body))
    return bytes(ext + body)


def compress_data(data: bytes | memoryview) -> bytes | None:
    """Return the COMPRESSED form of ``data`` if it is smaller, else ``None``."""
    if len(data) > MAX_DECOMPRESSED_FRAME or len(data) < 32:
        return None
    block = lz4.block.compress(data, store_size=False)
    prefix = bytearray()
    push_varint(prefix, len(data))
    if len(prefix) + len(block) >= len(data):
        return None
    return bytes(prefix) + block


def push_stream_frame(buf: bytearray, frame: StreamFrame, epoch: Epoch) -> bool:
    """Append ``frame`` to ``buf``; return whether it went out compressed."""
    if frame.priority not in (0, 1, 2):
        raise FrameEncodingError(f"stream frames have priority 0-2, not {frame.priority}")
    if epoch != _APPLICATION:
        raise ProtocolViolation("stream data is never sent before application keys exist")
    data = frame.data
    end = frame.offset + len(data)
    if frame.stream_id < 0 or frame.offset < 0:
        raise FrameEncodingError("stream IDs and offsets are never negative")
    if frame.stream_id > VARINT_MAX or end > VARINT_MAX:
        raise FrameEncodingError("stream frame beyond the 2**62 limit")
    flags = _ENCRYPTED
    if frame.fin:
        flags |= _FIN
    if frame.priority:
        flags |= _PRIORITY
    if frame.ordered:
        flags |= _ORDERED
    if frame.retransmit:
        flags |= _RETRANSMIT
    checksum = crc32(data)
    wire = compress_data(data) if frame.compress else None
    if wire is not None:
        flags |= _COMPRESSED
        data = wire
    ext = _encode_qos(frame.qos) if frame.qos is not None else b""
    _push_header(buf, frame.stream_id, frame.offset, flags, data, checksum, frame.priority, ext)
    return wire is not None


def push_control_frame(buf: bytearray, frame: ControlFrame, epoch: Epoch) -> None:
    """Append control ``frame`` to ``buf`` under the header rules for ``epoch``."""
    if epoch != _APPLICATION and frame.type not in INITIAL_EPOCH_TYPES:
        raise ProtocolViolation(f"{frame.type.name} is not allowed under initial keys")
    body = bytearray()
    frame.encode_body(body)
    flags = _PRIORITY | _ENCRYPTED if epoch == _APPLICATION else _PRIORITY
    offset = frame.offset if isinstance(frame, HandshakeFrame) else 0
    _push_header(buf, frame.type, offset, flags, body, crc32(body), Priority.CONTROL, b"")


def classify(frames: list[Frame]) -> PacketType:
    """
    The packet type a payload of ``frames`` must carry (protocol.rst, "Packet types").

    In order: PRIORITY if a stream frame is high or critical; RETRANSMISSION if a stream frame is
    re-sent; DATA if there is any stream frame; ACK if only ACK and PADDING frames; KEEP_ALIVE if
    PING with only ACK and PADDING beside it; CONTROL otherwise.
    """
    count = len(frames)
    if count == 1 or (count == 2 and AckFrame in (type(frames[0]), type(frames[1]))):
        # The common bulk packet, one STREAM frame, or the small one: it and an ACK, either order.
        frame = frames[1] if count == 2 and type(frames[0]) is AckFrame else frames[0]
        if type(frame) is StreamFrame:
            if frame.priority:
                return PacketType.PRIORITY
            return PacketType.RETRANSMISSION if frame.retransmit else PacketType.DATA
    return _classify_any(frames)


def _classify_any(frames: list[Frame]) -> PacketType:
    """:func:`classify` for any list of frames (a lone STREAM frame is its fast path)."""
    has_stream = retransmit = False
    others = set()
    for frame in frames:
        if isinstance(frame, StreamFrame):
            if frame.priority:
                return PacketType.PRIORITY
            has_stream = True
            retransmit = retransmit or frame.retransmit
        else:
            others.add(frame.type)
    if retransmit:
        return PacketType.RETRANSMISSION
    if has_stream:
        return PacketType.DATA
    others -= {0x00, 0x02}  # PADDING, ACK
    if not others:
        return PacketType.ACK
    if others == {0x01}:  # PING
        return PacketType.KEEP_ALIVE
    return PacketType.CONTROL


def encode_payload(frames: list[Frame], epoch: Epoch = Epoch.APPLICATION) -> Payload:
    """Encode ``frames`` as a packet's plaintext."""
    if not frames:
        raise FrameEncodingError("a packet carries at least one frame")
    buf = bytearray()
    compressed = False
    for frame in frames:
        if isinstance(frame, StreamFrame):
            compressed = push_stream_frame(buf, frame, epoch) or compressed
        else:
            push_control_frame(buf, frame, epoch)
    info = CompressionInfo.LZ4_BLOCK if compressed else CompressionInfo.NONE
    return Payload(bytes(buf), len(frames), classify(frames), info)


# --------------------------------------------------------------------------
# Decoding


def _pull_extensions(data: memoryview, pos: int, end: int) -> QosPolicy | None:
    qos = None
    seen = set()
    while pos < end:
        ext_type, pos = pull_varint(data, pos)
        length, pos = pull_varint(data, pos)
        stop = pos + length
        if stop > end:
            raise TruncatedInput("an extension runs past the extensions block")
        if ext_type in seen:
            raise FrameEncodingError(f"extension 0x{ext_type:x} repeated")
        seen.add(ext_type)
        if ext_type == ExtensionType.QOS:
            qos = _pull_qos(data, pos, stop)
        elif ext_type & 1:
            raise UnknownExtensionError(f"unknown critical extension 0x{ext_type:x}")
        pos = stop
    if pos != end:
        raise TruncatedInput("the extensions block ends inside an extension header")
    return qos


def _pull_qos(data: memoryview, pos: int, stop: int) -> QosPolicy:
    values = []
    for _ in range(4):
        value, pos = pull_varint(data, pos)
        values.append(value)
    if pos != stop:
        raise FrameEncodingError("QOS extension has the wrong length")
    return QosPolicy(*values)


def _decompress(data: memoryview, compression: int) -> bytes:
    if compression != CompressionInfo.LZ4_BLOCK:
        raise FrameEncodingError("COMPRESSED frame in a packet whose Compression Info is 0")
    size, pos = pull_varint(data, 0)
    if size > MAX_DECOMPRESSED_FRAME:
        raise CompressionError(f"frame claims {size} decompressed bytes; the bound is 16384")
    try:
        out = lz4.block.decompress(data[pos:], uncompressed_size=size)
    except Exception as e:  # lz4 raises LZ4BlockError and others on hostile input
        raise CompressionError(f"lz4 data is invalid: {e}") from None
    if len(out) != size:
        raise CompressionError(f"lz4 data expands to {len(out)} bytes, not the {size} promised")
    return out


def _check_flags(flags: int, priority: int, control: bool, epoch: int) -> None:
    if flags & RESERVED_FLAGS:
        raise FrameEncodingError(f"reserved frame flag bits set (0x{flags:02x})")
    if (not flags & _PRIORITY) != (not priority):
        raise FrameEncodingError("PRIORITY flag disagrees with the Priority field")
    if (not flags & _ENCRYPTED) != (epoch != _APPLICATION):
        raise ProtocolViolation("ENCRYPTED flag disagrees with the packet's protection")
    if control and flags & _CONTROL_FORBIDDEN:
        raise FrameEncodingError("FIN, COMPRESSED and ORDERED are not allowed on control frames")


def _decode_control(
    ctype: int, offset: int, body: memoryview, checksum: int, qos: QosPolicy | None, epoch: int
) -> ControlFrame:
    cls = CONTROL_FRAME_CLASSES.get(ctype)
    if cls is None:
        raise FrameEncodingError(f"unknown control frame type 0x{ctype:x}")
    if epoch != _APPLICATION and ctype not in INITIAL_EPOCH_TYPES:
        raise ProtocolViolation(f"{cls.type.name} arrived under initial keys", frame_type=ctype)
    if qos is not None:
        raise FrameEncodingError("the QOS extension belongs on stream frames", frame_type=ctype)
    if crc32(body) != checksum:
        raise ChecksumError("control frame checksum mismatch", frame_type=ctype)
    if cls is HandshakeFrame:
        return HandshakeFrame(offset, bytes(body))
    if offset:
        raise FrameEncodingError(
            "control frames other than HANDSHAKE have Offset 0", frame_type=ctype
        )
    try:
        return cls.decode_body(body, 0, len(body))
    except ProtocolError as e:
        if e.frame_type is None:
            e.frame_type = ctype
        raise


def _decode_stream(
    sid: int,
    offset: int,
    flags: int,
    body: memoryview,
    checksum: int,
    priority: int,
    qos: QosPolicy | None,
    compression: int,
) -> tuple[StreamFrame, int]:
    compressed = bool(flags & _COMPRESSED)
    data = _decompress(body, compression) if compressed else body
    if crc32(data) != checksum:
        raise ChecksumError(f"stream {sid} frame checksum mismatch")
    if offset + len(data) > VARINT_MAX:
        raise FrameEncodingError(f"stream {sid} frame ends beyond the 2**62 limit")
    frame = StreamFrame(
        sid,
        offset,
        data,
        flags & _FIN != 0,
        priority,
        flags & _ORDERED != 0,
        flags & _RETRANSMIT != 0,
        False,
        compressed,
        qos,
    )
    return frame, len(data) if compressed else 0


def pull_frame(data: memoryview, pos: int, epoch: int, compression: int) -> tuple[Frame, int, int]:
    """
    Decode the frame at ``data[pos]``.

    :returns: ``(frame, position after it, bytes produced by decompression)``.
    """
    size = len(data)
    if pos + 18 <= size and data[pos] < 0x40 and data[pos + 10] & 0xC0 == 0x40:
        # Fast path: one-byte StreamID, two-byte Data Length (the shape of a full data frame).
        sid, offset, flags, length, checksum, priority, ext_length = _HEADER_LONG_LEN.unpack_from(
            data, pos
        )
        length &= 0x3FFF
        if length < 0x40:
            raise FrameEncodingError(f"varint {length} is not in its shortest 1-byte form")
        if ext_length < 0x40:
            pos += 18
        else:
            ext_length, pos = pull_varint(data, pos + 17)
    elif pos + 17 <= size and data[pos] < 0x40 and data[pos + 10] < 0x40 and data[pos + 16] < 0x40:
        # One-byte StreamID, Data Length and extensions length: a control frame (an ACK...) or
        # a small STREAM frame.
        sid, offset, flags, length, checksum, priority, ext_length = _HEADER_SHORT_LEN.unpack_from(
            data, pos
        )
        pos += 17
    else:
        sid, offset, flags, length, checksum, priority, ext_length, pos = _pull_header(data, pos)
    return _pull_body(
        data, pos, epoch, compression, sid, offset, flags, length, checksum, priority, ext_length
    )


def _pull_header(data: memoryview, pos: int) -> tuple[int, int, int, int, int, int, int, int]:
    """
    Decode a frame header of any shape, field by field (:func:`pull_frame` reads the shape of a
    full data frame in one step).

    :returns: ``(sid, offset, flags, length, checksum, priority, extensions length, position of
        the extensions)``.
    """
    size = len(data)
    sid, pos = pull_varint(data, pos)
    if pos + 9 > size:
        raise TruncatedInput("frame header ends inside Offset/Flags")
    offset, flags = _OFFSET_FLAGS.unpack_from(data, pos)
    length, pos = pull_varint(data, pos + 9)
    if pos + 5 > size:
        raise TruncatedInput("frame header ends inside Checksum/Priority")
    checksum, priority = _CHECKSUM_PRIORITY.unpack_from(data, pos)
    ext_length, pos = pull_varint(data, pos + 5)
    return sid, offset, flags, length, checksum, priority, ext_length, pos


def _pull_body(
    data: memoryview,
    pos: int,
    epoch: int,
    compression: int,
    sid: int,
    offset: int,
    flags: int,
    length: int,
    checksum: int,
    priority: int,
    ext_length: int,
) -> tuple[Frame, int, int]:
    """The rest of :func:`pull_frame` once the header is read: extensions, body, checks."""
    size = len(data)
    ext_end = pos + ext_length
    end = ext_end + length
    if end > size:
        raise TruncatedInput("frame data runs past the end of the packet")
    qos = _pull_extensions(data, pos, ext_end) if ext_length else None
    body = data[ext_end:end]
    if priority == _CONTROL:
        _check_flags(flags, priority, True, epoch)
        return _decode_control(sid, offset, body, checksum, qos, epoch), end, 0
    if priority > 2:
        raise FrameEncodingError(f"unknown priority 0x{priority:02x}")
    # The common case, a normal-priority frame under application keys, checked inline.
    if (
        flags & (RESERVED_FLAGS | _PRIORITY)
        or epoch != _APPLICATION
        or not flags & _ENCRYPTED
        or (priority)
    ):
        _check_flags(flags, priority, False, epoch)
        if epoch != _APPLICATION:
            raise ProtocolViolation("stream data arrived under initial keys")
    frame, inflated = _decode_stream(sid, offset, flags, body, checksum, priority, qos, compression)
    return frame, end, inflated


def decode_payload(
    plaintext: bytes | memoryview,
    *,
    frame_count: int,
    packet_type: int,
    compression: int = CompressionInfo.NONE,
    epoch: int = Epoch.APPLICATION,
) -> list[Frame]:
    """
    Decode a packet's plaintext into frames and check it against its header.

    :raises FrameEncodingError: malformed frames, or a Frame Count that disagrees with the frames.
    :raises ProtocolViolation: an empty packet, a Packet Type that disagrees with the frames, or
        frames not allowed under the packet's keys.
    """
    if compression != 0 and compression != 1:
        raise FrameEncodingError(f"unknown Compression Info 0x{compression:02x}")
    data = plaintext if isinstance(plaintext, memoryview) else memoryview(plaintext)
    size = len(data)
    if frame_count <= 2 and packet_type == _DATA and size:
        frame, pos, _ = pull_frame(data, 0, epoch, compression)
        if frame_count == 1:
            if pos == size and type(frame) is StreamFrame and not frame.priority:
                if not frame.retransmit:
                    # The bulk packet: one normal-priority STREAM frame (one frame cannot inflate
                    # past MAX_DECOMPRESSED_FRAME < MAX_DECOMPRESSED_PACKET); every check holds.
                    return [frame]
        elif frame_count == 2 and pos < size:
            # The small packet (an echo's reply): one such STREAM frame and an ACK, either order.
            second, pos, _ = pull_frame(data, pos, epoch, compression)
            stream, ack = (second, frame) if type(frame) is AckFrame else (frame, second)
            if pos == size and type(ack) is AckFrame and type(stream) is StreamFrame:
                if not stream.priority and not stream.retransmit:
                    return [frame, second]
    return _decode_frames(data, frame_count, packet_type, compression, epoch)


def _decode_frames(
    data: memoryview, frame_count: int, packet_type: int, compression: int, epoch: int
) -> list[Frame]:
    """:func:`decode_payload` for any payload, frame by frame (a lone normal-priority STREAM
    frame in a DATA packet, or an ACK and such a frame, is its fast path)."""
    frames: list[Frame] = []
    pos = 0
    inflated = 0
    end = len(data)
    while pos < end:
        frame, pos, produced = pull_frame(data, pos, epoch, compression)
        inflated += produced
        if inflated > MAX_DECOMPRESSED_PACKET:
            raise CompressionError("packet decompresses beyond 65536 bytes")
        frames.append(frame)
    if not frames:
        raise ProtocolViolation("a packet must carry at least one frame")
    if len(frames) != frame_count:
        raise FrameEncodingError(f"Frame Count says {frame_count}, the packet holds {len(frames)}")
    if classify(frames) != packet_type:
        raise ProtocolViolation(
            f"Packet Type 0x{packet_type:02x} disagrees with its frames "
            f"(they make a {classify(frames).name} packet)"
        )
    return frames
