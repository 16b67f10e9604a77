"""
Tests for :mod:`kwik_twisted.wire.varint`: QUIC varints, shortest form only (protocol.rst).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.errors import FrameEncodingError, KwikError, TruncatedInput
from kwik_twisted.wire import VARINT_MAX, encode_varint, pull_varint, push_varint, varint_size

from .strategies import varints

# RFC 9000, appendix A.1, plus every length boundary.
KNOWN = [
    (0, "00"),
    (37, "25"),
    (63, "3f"),
    (64, "4040"),
    (15293, "7bbd"),
    (16383, "7fff"),
    (16384, "80004000"),
    (494878333, "9d7f3e7d"),
    (2**30 - 1, "bfffffff"),
    (2**30, "c000000040000000"),
    (151288809941952652, "c2197c5eff14e88c"),
    (VARINT_MAX, "ffffffffffffffff"),
]

# Values written in a longer form than they need: each must be refused.
NON_MINIMAL = [
    "4000",  # 0 in two bytes
    "4001",  # 1 in two bytes
    "403f",  # 63, the largest one-byte value, in two bytes
    "80000000",
    "80003fff",  # 16383 in four bytes
    "c000000000000000",
    "c00000003fffffff",  # 2**30 - 1 in eight bytes
]

SETTINGS = settings(max_examples=300, derandomize=True, database=None, deadline=None)


class EncodeTests(SynchronousTestCase):
    """Encoding integers."""

    def test_known_values_encode_to_known_bytes(self) -> None:
        """The RFC 9000 examples and every length boundary encode to the expected bytes."""
        for value, hexed in KNOWN:
            self.assertEqual(encode_varint(value).hex(), hexed, value)

    def test_size_is_the_length_of_the_encoding(self) -> None:
        """varint_size gives 1, 2, 4 or 8, the length of the shortest encoding."""
        for value, hexed in KNOWN:
            self.assertEqual(varint_size(value), len(hexed) // 2, value)

    def test_push_appends_the_same_bytes_as_encode(self) -> None:
        """push_varint appends exactly encode_varint's bytes after what the buffer held."""
        for value, hexed in KNOWN:
            buf = bytearray(b"\xaa")
            push_varint(buf, value)
            self.assertEqual(buf.hex(), "aa" + hexed, value)

    def test_values_out_of_range_are_refused(self) -> None:
        """Negative integers and 2**62 upwards raise FrameEncodingError from every encoder."""
        for value in (-1, -64, VARINT_MAX + 1, 2**64):
            self.assertRaises(FrameEncodingError, encode_varint, value)
            self.assertRaises(FrameEncodingError, push_varint, bytearray(), value)
            if value > 0:
                self.assertRaises(FrameEncodingError, varint_size, value)


class DecodeTests(SynchronousTestCase):
    """Decoding integers."""

    def test_known_bytes_decode_to_known_values(self) -> None:
        """The RFC 9000 examples and the boundaries decode, and the position moves past them."""
        for value, hexed in KNOWN:
            data = bytes.fromhex(hexed)
            self.assertEqual(pull_varint(data, 0), (value, len(data)), hexed)

    def test_decoding_starts_at_the_given_position(self) -> None:
        """pull_varint reads at ``pos`` and returns the position after the integer."""
        data = b"\xff\xff" + bytes.fromhex("7bbd") + b"\x25"
        value, pos = pull_varint(data, 2)
        self.assertEqual((value, pos), (15293, 4))
        self.assertEqual(pull_varint(data, pos), (37, 5))

    def test_memoryview_input_is_accepted(self) -> None:
        """A memoryview decodes like the bytes it views."""
        for value, hexed in KNOWN:
            view = memoryview(bytes.fromhex("00" + hexed))[1:]
            self.assertEqual(pull_varint(view, 0)[0], value)

    def test_non_minimal_encodings_are_refused(self) -> None:
        """A value in a longer form than necessary is a FRAME_ENCODING_ERROR, not a truncation."""
        for hexed in NON_MINIMAL:
            with self.assertRaises(FrameEncodingError, msg=hexed) as caught:
                pull_varint(bytes.fromhex(hexed), 0)
            self.assertNotIsInstance(caught.exception, TruncatedInput)

    def test_smallest_values_of_each_length_are_accepted(self) -> None:
        """64, 16384 and 2**30 are the smallest values of their lengths and decode."""
        for hexed, value in (("4040", 64), ("80004000", 16384), ("c000000040000000", 2**30)):
            self.assertEqual(pull_varint(bytes.fromhex(hexed), 0), (value, len(hexed) // 2))

    def test_empty_input_is_truncated(self) -> None:
        """Nothing to read, or a position at the end, raises TruncatedInput."""
        self.assertRaises(TruncatedInput, pull_varint, b"", 0)
        self.assertRaises(TruncatedInput, pull_varint, b"\x25", 1)
        self.assertRaises(TruncatedInput, pull_varint, b"\x25", 5)

    def test_every_cut_of_every_encoding_is_truncated(self) -> None:
        """Each proper prefix of a multi-byte varint raises TruncatedInput."""
        for _, hexed in KNOWN:
            data = bytes.fromhex(hexed)
            for cut in range(len(data)):
                self.assertRaises(TruncatedInput, pull_varint, data[:cut], 0)

    def test_byte_at_a_time_decodes_only_when_complete(self) -> None:
        """Feeding a varint's bytes one by one fails until the last byte has arrived."""
        data = bytes.fromhex("c2197c5eff14e88c")
        fed = b""
        for byte in data[:-1]:
            fed += bytes((byte,))
            self.assertRaises(TruncatedInput, pull_varint, fed, 0)
        self.assertEqual(pull_varint(fed + data[-1:], 0), (151288809941952652, 8))


class PropertyTests(SynchronousTestCase):
    """Properties over all varints."""

    @SETTINGS
    @given(varints())
    def test_round_trip(self, value: int) -> None:
        """Every value in range decodes back from its encoding, whose length is varint_size."""
        data = encode_varint(value)
        self.assertEqual(len(data), varint_size(value))
        self.assertEqual(pull_varint(data + b"\x00", 0), (value, len(data)))

    @SETTINGS
    @given(st.binary(max_size=9), st.integers(0, 10))
    def test_any_bytes_decode_or_raise_a_typed_error(self, data: bytes, pos: int) -> None:
        """Arbitrary bytes give a value or a KwikError; a value re-encodes to the same bytes."""
        try:
            value, end = pull_varint(data, pos)
        except KwikError:
            return
        self.assertEqual(encode_varint(value), data[pos:end])
