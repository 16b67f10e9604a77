"""
Control frames (protocol.rst, "Control frames").

Every frame on the wire has the seed's header (StreamID, Offset, Flags, Data Length, Checksum,
Priority, Extensions).  A *control* frame is one whose Priority byte is 0xFF: its StreamID field
then holds the control frame type from :class:`ControlType`, and its data is the body encoded here.

Each class is a small frozen value with ``encode_body(buf)`` and ``decode_body(data, pos, end)``;
the latter must consume exactly ``data[pos:end]`` and raises only :mod:`kwik_twisted.errors` errors.
The HANDSHAKE frame is the one control frame that uses the header's Offset field (its byte offset in
the handshake stream); every other control frame requires Offset 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import ClassVar

from ..errors import FrameEncodingError, TransportParameterError, TruncatedInput
from .varint import pull_varint, push_varint

CONNECTION_ID_LENGTH = 8
PATH_CHALLENGE_LENGTH = 8
#: Bytes of a stateless reset token (protocol.rst, "Stateless reset").
RESET_TOKEN_LENGTH = 16
#: The largest path ID (it enters the AEAD nonce as four bytes).
MAX_PATH_ID = 0xFFFFFFFF
MAX_ACK_RANGES = 256
MAX_REASON_LENGTH = 1024

#: CONNECTION_CLOSE frame-type values that are not control types.
FRAME_TYPE_STREAM = 0x3E
FRAME_TYPE_UNKNOWN = 0x3F


class ControlType(IntEnum):
    """Control frame types, carried in the StreamID field of a priority-0xFF frame."""

    PADDING = 0x00
    PING = 0x01
    ACK = 0x02
    HANDSHAKE = 0x03
    RESET_STREAM = 0x04
    STOP_SENDING = 0x05
    MAX_DATA = 0x06
    MAX_STREAM_DATA = 0x07
    MAX_STREAMS = 0x08
    DATA_BLOCKED = 0x09
    STREAM_DATA_BLOCKED = 0x0A
    STREAMS_BLOCKED = 0x0B
    NEW_CONNECTION_ID = 0x0C
    RETIRE_CONNECTION_ID = 0x0D
    PATH_CHALLENGE = 0x0E
    PATH_RESPONSE = 0x0F
    PATH_STATUS = 0x10
    PATH_ABANDON = 0x11
    ADD_ADDRESS = 0x12
    CONNECTION_CLOSE = 0x13
    HANDSHAKE_DONE = 0x14
    TRANSPORT_PARAMETERS = 0x15
    DATAGRAM = 0x16


class PathState(IntEnum):
    """PATH_STATUS values."""

    AVAILABLE = 1
    BACKUP = 2


def _pull(data: memoryview, pos: int, end: int) -> tuple[int, int]:
    """Pull a varint that must end at or before ``end``."""
    value, pos = pull_varint(data, pos)
    if pos > end:
        raise TruncatedInput("a field runs past the end of its frame")
    return value, pos


def _pull_bytes(data: memoryview, pos: int, end: int, length: int) -> tuple[bytes, int]:
    stop = pos + length
    if stop > end:
        raise TruncatedInput(f"a {length}-byte field runs past the end of its frame")
    return bytes(data[pos:stop]), stop


def _expect_end(pos: int, end: int, name: str) -> None:
    if pos != end:
        raise FrameEncodingError(f"{end - pos} stray bytes after the {name} body")


class ControlFrame:
    """Base of the control frame values."""

    __slots__ = ()
    type: ClassVar[ControlType]
    #: Whether receiving the frame obliges the receiver to acknowledge soon.
    ack_eliciting: ClassVar[bool] = True

    def encode_body(self, buf: bytearray) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    @classmethod
    def decode_body(cls, data: memoryview, pos: int, end: int) -> ControlFrame:
        raise NotImplementedError  # pragma: no cover - overridden


def _varint_frame(name: str, ctype: ControlType, *fields: str) -> type[ControlFrame]:
    """Build a frozen control frame class whose body is a sequence of varints."""

    def encode_body(self: ControlFrame, buf: bytearray) -> None:
        for f in fields:
            push_varint(buf, getattr(self, f))

    @classmethod  # type: ignore[misc]
    def decode_body(cls: type, data: memoryview, pos: int, end: int) -> ControlFrame:
        values = []
        for _ in fields:
            value, pos = _pull(data, pos, end)
            values.append(value)
        _expect_end(pos, end, name)
        return cls(*values)

    namespace = {
        "__annotations__": {f: int for f in fields},
        "type": ctype,
        "encode_body": encode_body,
        "decode_body": decode_body,
        "__doc__": f"{ctype.name} control frame: {', '.join(fields) or 'no fields'}.",
        "__module__": __name__,
    }
    return dataclass(frozen=True, slots=True)(type(name, (ControlFrame,), namespace))


PingFrame = _varint_frame("PingFrame", ControlType.PING)
HandshakeDoneFrame = _varint_frame("HandshakeDoneFrame", ControlType.HANDSHAKE_DONE)
ResetStreamFrame = _varint_frame(
    "ResetStreamFrame", ControlType.RESET_STREAM, "stream_id", "error_code", "final_size"
)
StopSendingFrame = _varint_frame(
    "StopSendingFrame", ControlType.STOP_SENDING, "stream_id", "error_code"
)
MaxDataFrame = _varint_frame("MaxDataFrame", ControlType.MAX_DATA, "maximum")
MaxStreamDataFrame = _varint_frame(
    "MaxStreamDataFrame", ControlType.MAX_STREAM_DATA, "stream_id", "maximum"
)
MaxStreamsFrame = _varint_frame("MaxStreamsFrame", ControlType.MAX_STREAMS, "maximum")
DataBlockedFrame = _varint_frame("DataBlockedFrame", ControlType.DATA_BLOCKED, "limit")
StreamDataBlockedFrame = _varint_frame(
    "StreamDataBlockedFrame", ControlType.STREAM_DATA_BLOCKED, "stream_id", "limit"
)
StreamsBlockedFrame = _varint_frame("StreamsBlockedFrame", ControlType.STREAMS_BLOCKED, "limit")
RetireConnectionIdFrame = _varint_frame(
    "RetireConnectionIdFrame", ControlType.RETIRE_CONNECTION_ID, "path_id"
)
PathAbandonFrame = _varint_frame(
    "PathAbandonFrame", ControlType.PATH_ABANDON, "path_id", "error_code"
)


@dataclass(frozen=True, slots=True)
class PaddingFrame(ControlFrame):
    """PADDING: ``length`` zero bytes of body; makes a datagram bigger."""

    length: int = 0
    type: ClassVar[ControlType] = ControlType.PADDING
    ack_eliciting: ClassVar[bool] = False

    def encode_body(self, buf: bytearray) -> None:
        buf += bytes(self.length)

    @classmethod
    def decode_body(cls, data: memoryview, pos: int, end: int) -> PaddingFrame:
        if any(data[pos:end]):
            raise FrameEncodingError("PADDING body must be all zero bytes")
        return cls(end - pos)


@dataclass(frozen=True, slots=True)
class HandshakeFrame(ControlFrame):
    """HANDSHAKE: TLS bytes at ``offset`` (carried in the header's Offset field)."""

    offset: int
    data: bytes
    type: ClassVar[ControlType] = ControlType.HANDSHAKE

    def encode_body(self, buf: bytearray) -> None:
        buf += self.data

    @classmethod
    def decode_body(cls, data: memoryview, pos: int, end: int) -> HandshakeFrame:
        # The offset is filled in by the frame decoder, which owns the header.
        return cls(0, bytes(data[pos:end]))


@dataclass(frozen=True, slots=True)
class AckFrame(ControlFrame):
    """
    ACK of one path's sequence-number space.

    ``ranges`` are inclusive ``(first, last)`` pairs, highest first, neither overlapping nor
    adjacent. ``ack_delay`` is in microseconds.
    """

    path_id: int
    ranges: tuple[tuple[int, int], ...]
    ack_delay: int = 0
    type: ClassVar[ControlType] = ControlType.ACK
    ack_eliciting: ClassVar[bool] = False

    @property
    def largest(self) -> int:
        """The largest acknowledged sequence number."""
        return self.ranges[0][1]

    def encode_body(self, buf: bytearray) -> None:
        ranges = self.ranges
        if not ranges or len(ranges) > MAX_ACK_RANGES + 1:
            raise FrameEncodingError(f"an ACK carries 1 to {MAX_ACK_RANGES + 1} ranges")
        first, largest = ranges[0]
        for value in (self.path_id, largest, self.ack_delay, len(ranges) - 1, largest - first):
            push_varint(buf, value)
        smallest = first
        for lo, hi in ranges[1:]:
            gap = smallest - hi - 2
            if gap < 0 or hi < lo:
                raise FrameEncodingError("ACK ranges must be descending and not adjacent")
            push_varint(buf, gap)
            push_varint(buf, hi - lo)
            smallest = lo
        if first > largest or smallest < 0:
            raise FrameEncodingError("ACK ranges must be well formed")

    @classmethod
    def decode_body(cls, data: memoryview, pos: int, end: int) -> AckFrame:
        path_id, pos = _pull(data, pos, end)
        largest, pos = _pull(data, pos, end)
        ack_delay, pos = _pull(data, pos, end)
        count, pos = _pull(data, pos, end)
        if count > MAX_ACK_RANGES:
            raise FrameEncodingError(f"{count} ACK ranges; at most {MAX_ACK_RANGES} are accepted")
        length, pos = _pull(data, pos, end)
        smallest = largest - length
        if smallest < 0:
            raise FrameEncodingError("first ACK range reaches below sequence number 0")
        ranges = [(smallest, largest)]
        for _ in range(count):
            gap, pos = _pull(data, pos, end)
            length, pos = _pull(data, pos, end)
            hi = smallest - gap - 2
            smallest = hi - length
            if smallest < 0:
                raise FrameEncodingError("an ACK range reaches below sequence number 0")
            ranges.append((smallest, hi))
        _expect_end(pos, end, "ACK")
        return cls(path_id, tuple(ranges), ack_delay)


@dataclass(frozen=True, slots=True)
class NewConnectionIdFrame(ControlFrame):
    """
    NEW_CONNECTION_ID: the 8-byte connection ID the peer addresses us with on path ``path_id``,
    and the stateless reset token that goes with it (protocol.rst, "Connection IDs and routing").
    """

    path_id: int
    connection_id: bytes
    reset_token: bytes
    type: ClassVar[ControlType] = ControlType.NEW_CONNECTION_ID

    def encode_body(self, buf: bytearray) -> None:
        if len(self.connection_id) != CONNECTION_ID_LENGTH:
            raise FrameEncodingError("connection IDs are 8 bytes")
        if len(self.reset_token) != RESET_TOKEN_LENGTH:
            raise FrameEncodingError("stateless reset tokens are 16 bytes")
        push_varint(buf, self.path_id)
        buf += self.connection_id
        buf += self.reset_token

    @classmethod
    def decode_body(cls, data: memoryview, pos: int, end: int) -> NewConnectionIdFrame:
        path_id, pos = _pull(data, pos, end)
        cid, pos = _pull_bytes(data, pos, end, CONNECTION_ID_LENGTH)
        token, pos = _pull_bytes(data, pos, end, RESET_TOKEN_LENGTH)
        _expect_end(pos, end, "NEW_CONNECTION_ID")
        if path_id > MAX_PATH_ID:
            raise FrameEncodingError(f"NEW_CONNECTION_ID for path {path_id} beyond 2**32 - 1")
        return cls(path_id, cid, token)


@dataclass(frozen=True, slots=True)
class _EightBytes(ControlFrame):
    data: bytes

    def encode_body(self, buf: bytearray) -> None:
        if len(self.data) != PATH_CHALLENGE_LENGTH:
            raise FrameEncodingError(f"{self.type.name} carries exactly 8 bytes")
        buf += self.data

    @classmethod
    def decode_body(cls, data: memoryview, pos: int, end: int) -> _EightBytes:
        value, pos = _pull_bytes(data, pos, end, PATH_CHALLENGE_LENGTH)
        _expect_end(pos, end, cls.type.name)
        return cls(value)


@dataclass(frozen=True, slots=True)
class PathChallengeFrame(_EightBytes):
    """PATH_CHALLENGE: 8 unpredictable bytes the peer must echo on the same path."""

    type: ClassVar[ControlType] = ControlType.PATH_CHALLENGE


@dataclass(frozen=True, slots=True)
class PathResponseFrame(_EightBytes):
    """PATH_RESPONSE: echoes a PATH_CHALLENGE's 8 bytes."""

    type: ClassVar[ControlType] = ControlType.PATH_RESPONSE


@dataclass(frozen=True, slots=True)
class PathStatusFrame(ControlFrame):
    """PATH_STATUS: marks a path available or backup; ``sequence`` orders updates."""

    path_id: int
    sequence: int
    status: PathState
    type: ClassVar[ControlType] = ControlType.PATH_STATUS

    def encode_body(self, buf: bytearray) -> None:
        push_varint(buf, self.path_id)
        push_varint(buf, self.sequence)
        push_varint(buf, int(self.status))

    @classmethod
    def decode_body(cls, data: memoryview, pos: int, end: int) -> PathStatusFrame:
        path_id, pos = _pull(data, pos, end)
        sequence, pos = _pull(data, pos, end)
        status, pos = _pull(data, pos, end)
        _expect_end(pos, end, "PATH_STATUS")
        try:
            state = PathState(status)
        except ValueError:
            raise FrameEncodingError(f"unknown path status {status}") from None
        return cls(path_id, sequence, state)


@dataclass(frozen=True, slots=True)
class AddAddressFrame(ControlFrame):
    """ADD_ADDRESS: the server advertises another address a client may open a path to."""

    address_id: int
    host: IPv4Address | IPv6Address
    port: int
    type: ClassVar[ControlType] = ControlType.ADD_ADDRESS

    def encode_body(self, buf: bytearray) -> None:
        if not 0 <= self.port <= 0xFFFF:
            raise FrameEncodingError(f"port {self.port} is out of range")
        push_varint(buf, self.address_id)
        buf.append(self.host.version)
        buf += self.host.packed
        buf += self.port.to_bytes(2, "big")

    @classmethod
    def decode_body(cls, data: memoryview, pos: int, end: int) -> AddAddressFrame:
        address_id, pos = _pull(data, pos, end)
        version, pos = _pull_bytes(data, pos, end, 1)
        if version[0] not in (4, 6):
            raise FrameEncodingError(f"unknown IP version {version[0]} in ADD_ADDRESS")
        packed, pos = _pull_bytes(data, pos, end, 4 if version[0] == 4 else 16)
        port, pos = _pull_bytes(data, pos, end, 2)
        _expect_end(pos, end, "ADD_ADDRESS")
        return cls(address_id, ip_address(packed), int.from_bytes(port, "big"))


@dataclass(frozen=True, slots=True)
class ConnectionCloseFrame(ControlFrame):
    """CONNECTION_CLOSE: ends the connection with an error code and a reason."""

    error_code: int
    reason: str = ""
    frame_type: int = FRAME_TYPE_UNKNOWN
    application: bool = False
    type: ClassVar[ControlType] = ControlType.CONNECTION_CLOSE
    ack_eliciting: ClassVar[bool] = False

    def encode_body(self, buf: bytearray) -> None:
        reason = self.reason.encode("utf-8", "replace")
        if len(reason) > MAX_REASON_LENGTH:  # cut on a character boundary
            reason = reason[:MAX_REASON_LENGTH].decode("utf-8", "ignore").encode("utf-8")
        buf.append(1 if self.application else 0)
        push_varint(buf, self.error_code)
        push_varint(buf, self.frame_type)
        push_varint(buf, len(reason))
        buf += reason

    @classmethod
    def decode_body(cls, data: memoryview, pos: int, end: int) -> ConnectionCloseFrame:
        kind, pos = _pull_bytes(data, pos, end, 1)
        if kind[0] > 1:
            raise FrameEncodingError(f"unknown CONNECTION_CLOSE kind {kind[0]}")
        code, pos = _pull(data, pos, end)
        frame_type, pos = _pull(data, pos, end)
        length, pos = _pull(data, pos, end)
        if length > MAX_REASON_LENGTH:
            raise FrameEncodingError(f"close reason of {length} bytes exceeds {MAX_REASON_LENGTH}")
        reason, pos = _pull_bytes(data, pos, end, length)
        _expect_end(pos, end, "CONNECTION_CLOSE")
        return cls(code, reason.decode("utf-8", "replace"), frame_type, bool(kind[0]))


@dataclass(frozen=True, slots=True)
class DatagramFrame(ControlFrame):
    """DATAGRAM: one unreliable datagram; the body is its bytes (the header's Data Length is
    its length).  Ack-eliciting, never retransmitted (RFC 9221 adapted)."""

    data: bytes
    type: ClassVar[ControlType] = ControlType.DATAGRAM

    def encode_body(self, buf: bytearray) -> None:
        buf += self.data

    @classmethod
    def decode_body(cls, data: memoryview, pos: int, end: int) -> DatagramFrame:
        return cls(bytes(data[pos:end]))


class TransportParameter(IntEnum):
    """Identifiers of the transport parameters (all varint-valued in v3)."""

    MAX_IDLE_TIMEOUT_MS = 0x01
    INITIAL_MAX_DATA = 0x02
    INITIAL_MAX_STREAM_DATA = 0x03
    INITIAL_MAX_STREAMS = 0x04
    MAX_ACK_DELAY_MS = 0x05
    ACTIVE_CONNECTION_ID_LIMIT = 0x06
    MAX_PATHS = 0x07
    MAX_DATAGRAM_SIZE = 0x08
    #: Server only: its load in permille (0..1000) when the handshake completed.
    SERVER_LOAD = 0x09
    #: The largest DATAGRAM frame payload the sender accepts; absent or 0: none (RFC 9221).
    MAX_DATAGRAM_FRAME_SIZE = 0x0A


@dataclass(frozen=True, slots=True)
class TransportParametersFrame(ControlFrame):
    """TRANSPORT_PARAMETERS: the sender's limits, sent once, first, under application keys."""

    parameters: dict[int, int] = field(default_factory=dict)
    type: ClassVar[ControlType] = ControlType.TRANSPORT_PARAMETERS

    def encode_body(self, buf: bytearray) -> None:
        for ident in sorted(self.parameters):
            value = bytearray()
            push_varint(value, self.parameters[ident])
            push_varint(buf, ident)
            push_varint(buf, len(value))
            buf += value

    @classmethod
    def decode_body(cls, data: memoryview, pos: int, end: int) -> TransportParametersFrame:
        params: dict[int, int] = {}
        seen: set[int] = set()
        while pos < end:
            ident, pos = _pull(data, pos, end)
            length, pos = _pull(data, pos, end)
            stop = pos + length
            if stop > end:
                raise TruncatedInput("a transport parameter runs past the end of its frame")
            if ident in seen:
                raise TransportParameterError(f"transport parameter 0x{ident:x} repeated")
            seen.add(ident)
            if ident in TransportParameter.__members__.values():
                params[ident] = _parameter_value(data, pos, stop, ident)
            pos = stop
        return cls(params)


def _parameter_value(data: memoryview, pos: int, stop: int, ident: int) -> int:
    try:
        value, after = pull_varint(data, pos)
    except FrameEncodingError as e:
        raise TransportParameterError(f"transport parameter 0x{ident:x}: {e.reason}") from None
    if after != stop:
        raise TransportParameterError(f"transport parameter 0x{ident:x} is not one varint")
    return value


CONTROL_FRAME_CLASSES: dict[int, type[ControlFrame]] = {
    cls.type: cls
    for cls in (
        PaddingFrame,
        PingFrame,
        AckFrame,
        HandshakeFrame,
        ResetStreamFrame,
        StopSendingFrame,
        MaxDataFrame,
        MaxStreamDataFrame,
        MaxStreamsFrame,
        DataBlockedFrame,
        StreamDataBlockedFrame,
        StreamsBlockedFrame,
        NewConnectionIdFrame,
        RetireConnectionIdFrame,
        PathChallengeFrame,
        PathResponseFrame,
        PathStatusFrame,
        PathAbandonFrame,
        AddAddressFrame,
        ConnectionCloseFrame,
        HandshakeDoneFrame,
        TransportParametersFrame,
        DatagramFrame,
    )
}

#: Control types allowed in packets protected with initial (handshake) keys.
INITIAL_EPOCH_TYPES = frozenset(
    {
        ControlType.PADDING,
        ControlType.PING,
        ControlType.ACK,
        ControlType.HANDSHAKE,
        ControlType.CONNECTION_CLOSE,
    }
)
