"""
The one error hierarchy of kwik_twisted.

Three families, by what the receiver of the error must do:

* :class:`ProtocolError` and its subclasses: the peer broke the protocol in an
  authenticated packet.  Each class carries its wire error code (see
  ``docs/protocol.rst``, "Error codes"); the connection catches them in exactly
  one place, sends CONNECTION_CLOSE with that code and ends.
* :class:`DroppedPacket` and its subclasses: a datagram that cannot be
  attributed to the peer (bad checksum, failed authentication, truncated
  envelope, unknown version).  It is dropped and counted; it never closes a
  connection, because anybody on the path can forge one.
* :class:`ConfigurationError`: a user handed us something unusable (an
  endpoint argument, a certificate file).  It is also a :class:`ValueError`, so
  Twisted's endpoint-string machinery reports it naturally.

Nothing else may escape from parsing bytes that a peer or a user can send.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Transport error codes carried by CONNECTION_CLOSE (protocol.rst)."""

    NO_ERROR = 0x00
    INTERNAL_ERROR = 0x01
    CONNECTION_REFUSED = 0x02
    FLOW_CONTROL_ERROR = 0x03
    STREAM_LIMIT_ERROR = 0x04
    STREAM_STATE_ERROR = 0x05
    FINAL_SIZE_ERROR = 0x06
    FRAME_ENCODING_ERROR = 0x07
    TRANSPORT_PARAMETER_ERROR = 0x08
    CONNECTION_ID_LIMIT_ERROR = 0x09
    PROTOCOL_VIOLATION = 0x0A
    APPLICATION_ERROR = 0x0C
    HANDSHAKE_BUFFER_EXCEEDED = 0x0D
    AEAD_LIMIT_REACHED = 0x0F
    NO_VIABLE_PATH = 0x10
    CHECKSUM_ERROR = 0x11
    COMPRESSION_ERROR = 0x12
    UNKNOWN_EXTENSION = 0x13
    IDLE_TIMEOUT = 0x14
    #: Never sent: reported locally when the peer answered with a stateless reset.
    STATELESS_RESET = 0x15
    #: Never sent: reported locally when the server speaks none of our versions.
    VERSION_NEGOTIATION = 0x16
    # 0x100..0x1FF: HANDSHAKE_FAILED, the low byte is the TLS alert.
    HANDSHAKE_FAILED = 0x100


class KwikError(Exception):
    """Base class of every error kwik_twisted raises on purpose."""


# --------------------------------------------------------------------------
# Errors that close a connection, with a wire code.


class ProtocolError(KwikError):
    """
    The peer violated the protocol; the connection closes with ``code``.

    :ivar code: the wire error code (an :class:`ErrorCode` or an int in the
        HANDSHAKE_FAILED range).
    :ivar frame_type: the frame type being processed, or ``None``.
    :ivar reason: a human-readable explanation (also sent on the wire).
    """

    code: int = ErrorCode.PROTOCOL_VIOLATION

    def __init__(
        self, reason: str = "", *, frame_type: int | None = None, code: int | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.frame_type = frame_type
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        name = _code_name(self.code)
        where = "" if self.frame_type is None else f" in frame 0x{self.frame_type:02x}"
        return f"{name}{where}: {self.reason}"


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        if 0x100 <= code <= 0x1FF:
            return f"HANDSHAKE_FAILED(alert {code - 0x100})"
        return f"0x{code:x}"


class InternalError(ProtocolError):
    """Our own invariant broke; reported to the peer as INTERNAL_ERROR."""

    code = ErrorCode.INTERNAL_ERROR


class ConnectionRefusedByPeer(ProtocolError):
    """The server refuses the connection (for example, too many connections)."""

    code = ErrorCode.CONNECTION_REFUSED


class FlowControlError(ProtocolError):
    """The peer sent more data than a stream or the connection allowed."""

    code = ErrorCode.FLOW_CONTROL_ERROR


class StreamLimitError(ProtocolError):
    """The peer opened a stream beyond the MAX_STREAMS it was given."""

    code = ErrorCode.STREAM_LIMIT_ERROR


class StreamStateError(ProtocolError):
    """A frame arrived for a stream in a state that does not allow it."""

    code = ErrorCode.STREAM_STATE_ERROR


class FinalSizeError(ProtocolError):
    """A stream's final size changed, or data arrived beyond it."""

    code = ErrorCode.FINAL_SIZE_ERROR


class FrameEncodingError(ProtocolError):
    """A frame or packet is badly formed."""

    code = ErrorCode.FRAME_ENCODING_ERROR


class TruncatedInput(FrameEncodingError):
    """The input ended in the middle of a field."""


class TransportParameterError(ProtocolError):
    """The peer's transport parameters are malformed or out of range."""

    code = ErrorCode.TRANSPORT_PARAMETER_ERROR


class ConnectionIdLimitError(ProtocolError):
    """The peer issued more connection IDs than we allowed."""

    code = ErrorCode.CONNECTION_ID_LIMIT_ERROR


class ProtocolViolation(ProtocolError):
    """A generic violation (for example, an ACK of a packet never sent)."""

    code = ErrorCode.PROTOCOL_VIOLATION


class HandshakeBufferExceeded(ProtocolError):
    """The peer sent more handshake data than we buffer."""

    code = ErrorCode.HANDSHAKE_BUFFER_EXCEEDED


class AeadLimitReached(ProtocolError):
    """Too many packets failed authentication for the keys to stay safe."""

    code = ErrorCode.AEAD_LIMIT_REACHED


class NoViablePath(ProtocolError):
    """Every path failed."""

    code = ErrorCode.NO_VIABLE_PATH


class ChecksumError(ProtocolError):
    """A frame's checksum does not match its (decompressed) data."""

    code = ErrorCode.CHECKSUM_ERROR


class CompressionError(ProtocolError):
    """Compressed data is invalid or would decompress beyond the bound."""

    code = ErrorCode.COMPRESSION_ERROR


class UnknownExtensionError(ProtocolError):
    """A frame carries a critical extension we do not understand."""

    code = ErrorCode.UNKNOWN_EXTENSION


class HandshakeFailed(ProtocolError):
    """
    The TLS handshake failed.

    The wire code is ``0x100 + alert`` where a TLS alert is known, else 0x100.
    """

    code = ErrorCode.HANDSHAKE_FAILED

    def __init__(self, reason: str = "", *, alert: int | None = None, **kw: object) -> None:
        super().__init__(reason, **kw)  # type: ignore[arg-type]
        self.alert = alert
        if alert is not None:
            self.code = 0x100 + (alert & 0xFF)


# --------------------------------------------------------------------------
# Datagrams that are dropped without closing anything.


class DroppedPacket(KwikError):
    """
    A datagram that is dropped and counted, never answered.

    :ivar reason: why it was dropped.
    """

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedPacket(DroppedPacket):
    """The envelope or path-packet header cannot be parsed."""


class ChecksumMismatch(DroppedPacket):
    """The packet checksum does not match (corruption on the way)."""


class UnsupportedVersion(DroppedPacket):
    """The envelope names a version we do not speak."""


class UnknownConnectionId(DroppedPacket):
    """The destination connection ID is not one we issued (or it was retired)."""


class DecryptionFailed(DroppedPacket):
    """AEAD authentication failed (forgery, corruption or wrong keys)."""


class UnknownConnection(DroppedPacket):
    """No connection matches the destination connection ID."""


# --------------------------------------------------------------------------
# Mistakes of the local user.


class ConfigurationError(KwikError, ValueError):
    """A user-supplied setting (endpoint argument, file, option) is unusable."""


class DatagramError(KwikError):
    """An unreliable datagram cannot be sent (``Connection.datagrams.send``, ``sendDatagram``)."""


class DatagramsUnsupported(DatagramError):
    """The peer does not accept DATAGRAM frames (or we disabled them locally)."""


class DatagramTooLarge(DatagramError, ValueError):
    """The datagram is larger than the peer accepts or than one packet can carry."""


__all__ = [
    "UnknownConnectionId",
    "AeadLimitReached",
    "ChecksumError",
    "ChecksumMismatch",
    "CompressionError",
    "ConfigurationError",
    "ConnectionIdLimitError",
    "ConnectionRefusedByPeer",
    "DatagramError",
    "DatagramTooLarge",
    "DatagramsUnsupported",
    "DecryptionFailed",
    "DroppedPacket",
    "ErrorCode",
    "FinalSizeError",
    "FlowControlError",
    "FrameEncodingError",
    "HandshakeBufferExceeded",
    "HandshakeFailed",
    "InternalError",
    "KwikError",
    "MalformedPacket",
    "NoViablePath",
    "ProtocolError",
    "ProtocolViolation",
    "StreamLimitError",
    "StreamStateError",
    "TransportParameterError",
    "TruncatedInput",
    "UnknownConnection",
    "UnknownExtensionError",
    "UnsupportedVersion",
]
