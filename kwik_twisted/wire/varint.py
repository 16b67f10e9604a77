"""
Variable-length integers (protocol.rst, "Variable-length integers").

The encoding is QUIC's (RFC 9000 §16): the two most significant bits of the first byte give the
length (1, 2, 4 or 8 bytes) and the remaining bits, big-endian, the value, up to 2**62 - 1.  Unlike
QUIC, Kwik requires the *shortest* encoding: a value that fits in fewer bytes but arrives in a
longer form is a FRAME_ENCODING_ERROR.  Canonical encodings make every message have exactly one byte
form, which is what lets the test vectors in the spec be checked byte for byte, and removes a
malleability that nothing needs.

Decoders take ``(data, pos)`` and return ``(value, new_pos)``: a tuple return is the cheapest shape
for CPython's per-packet path.  They raise :class:`~kwik_twisted.errors.TruncatedInput` when the
input ends inside the integer, never ``IndexError``.
"""

from __future__ import annotations

from struct import Struct

from ..errors import FrameEncodingError, TruncatedInput

VARINT_MAX = (1 << 62) - 1

_U16 = Struct(">H")
_U32 = Struct(">I")
_U64 = Struct(">Q")
_MIN_FOR_LENGTH = {2: 1 << 6, 4: 1 << 14, 8: 1 << 30}


def varint_size(value: int) -> int:
    """Return the number of bytes the shortest encoding of ``value`` takes."""
    if value < 0x40:
        return 1
    if value < 0x4000:
        return 2
    if value < 0x40000000:
        return 4
    if value <= VARINT_MAX:
        return 8
    raise FrameEncodingError(f"integer {value} is beyond the varint range")


def encode_varint(value: int) -> bytes:
    """Return the shortest encoding of ``value`` (0 <= value < 2**62)."""
    if value < 0:
        raise FrameEncodingError(f"negative integer {value} cannot be a varint")
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return _U16.pack(value | 0x4000)
    if value < 0x40000000:
        return _U32.pack(value | 0x80000000)
    if value <= VARINT_MAX:
        return _U64.pack(value | 0xC000000000000000)
    raise FrameEncodingError(f"integer {value} is beyond the varint range")


def push_varint(buf: bytearray, value: int) -> None:
    """Append the shortest encoding of ``value`` to ``buf``."""
    if 0 <= value < 0x40:
        buf.append(value)
    else:
        buf += encode_varint(value)


def pull_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """
    Decode the varint at ``data[pos]``.

    :returns: ``(value, position after it)``.
    :raises TruncatedInput: the input ends inside the integer.
    :raises FrameEncodingError: the encoding is longer than necessary.
    """
    try:
        first = data[pos]
    except IndexError:
        raise TruncatedInput("input ends where a varint should start") from None
    prefix = first >> 6
    if prefix == 0:
        return first, pos + 1
    length = 1 << prefix
    end = pos + length
    if end > len(data):
        raise TruncatedInput(f"input ends inside a {length}-byte varint")
    if length == 2:
        value = _U16.unpack_from(data, pos)[0] & 0x3FFF
    elif length == 4:
        value = _U32.unpack_from(data, pos)[0] & 0x3FFFFFFF
    else:
        value = _U64.unpack_from(data, pos)[0] & 0x3FFFFFFFFFFFFFFF
    if value < _MIN_FOR_LENGTH[length]:
        raise FrameEncodingError(
            f"varint {value} is not in its shortest {varint_size(value)}-byte form"
        )
    return value, end
