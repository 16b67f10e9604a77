"""
Pure codecs for the Kwik v3 wire format (``docs/protocol.rst`` is the contract).

Nothing here does I/O, reads a clock, draws randomness or holds keys: bytes in, values out, and every
malformed input raises an error from :mod:`kwik_twisted.errors`.
"""

from .control import (
    CONNECTION_ID_LENGTH,
    FRAME_TYPE_STREAM,
    FRAME_TYPE_UNKNOWN,
    MAX_ACK_RANGES,
    AckFrame,
    AddAddressFrame,
    ConnectionCloseFrame,
    ControlFrame,
    ControlType,
    DataBlockedFrame,
    HandshakeDoneFrame,
    HandshakeFrame,
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
    ResetStreamFrame,
    RetireConnectionIdFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamsBlockedFrame,
    TransportParameter,
    TransportParametersFrame,
)
from .frames import (
    MAX_DECOMPRESSED_FRAME,
    MAX_DECOMPRESSED_PACKET,
    CompressionInfo,
    Epoch,
    Frame,
    FrameFlags,
    PacketType,
    Payload,
    Priority,
    QosPolicy,
    StreamFrame,
    classify,
    decode_payload,
    encode_payload,
)
from .packets import (
    CID_LENGTH,
    TAG_LENGTH,
    VERSION,
    Header,
    Packet,
    decode_packet,
    encode_header,
    encode_packet,
    peek_dcid,
)
from .varint import VARINT_MAX, encode_varint, pull_varint, push_varint, varint_size

__all__ = [
    "CID_LENGTH", "CONNECTION_ID_LENGTH", "FRAME_TYPE_STREAM", "FRAME_TYPE_UNKNOWN",
    "MAX_ACK_RANGES", "MAX_DECOMPRESSED_FRAME", "MAX_DECOMPRESSED_PACKET", "TAG_LENGTH",
    "VARINT_MAX", "VERSION",
    "AckFrame", "AddAddressFrame", "CompressionInfo", "ConnectionCloseFrame", "ControlFrame",
    "ControlType", "DataBlockedFrame", "Epoch", "Frame", "FrameFlags", "HandshakeDoneFrame",
    "HandshakeFrame", "Header", "MaxDataFrame", "MaxStreamDataFrame", "MaxStreamsFrame",
    "NewConnectionIdFrame", "Packet", "PacketType", "PaddingFrame", "PathAbandonFrame",
    "PathChallengeFrame", "PathResponseFrame", "PathState", "PathStatusFrame", "Payload",
    "PingFrame", "Priority", "QosPolicy", "ResetStreamFrame", "RetireConnectionIdFrame",
    "StopSendingFrame", "StreamDataBlockedFrame", "StreamFrame", "StreamsBlockedFrame",
    "TransportParameter", "TransportParametersFrame",
    "classify", "decode_packet", "decode_payload", "encode_header", "encode_packet",
    "encode_payload", "encode_varint", "peek_dcid", "pull_varint", "push_varint", "varint_size",
]
