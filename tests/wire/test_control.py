"""
Tests for :mod:`kwik_twisted.wire.control`: the bodies of the 23 control frames (protocol.rst,
"Control frames"), through the payload codec as a peer's bytes would arrive.
"""

from __future__ import annotations

from ipaddress import ip_address
from zlib import crc32

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.errors import (
    FrameEncodingError,
    ProtocolViolation,
    TransportParameterError,
    TruncatedInput,
)
from kwik_twisted.wire import (
    CONNECTION_ID_LENGTH,
    FRAME_TYPE_STREAM,
    FRAME_TYPE_UNKNOWN,
    MAX_ACK_RANGES,
    MAX_PATH_ID,
    RESET_TOKEN_LENGTH,
    AckFrame,
    AddAddressFrame,
    ConnectionCloseFrame,
    ControlType,
    Epoch,
    HandshakeDoneFrame,
    HandshakeFrame,
    NewConnectionIdFrame,
    PacketType,
    PaddingFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PathState,
    PathStatusFrame,
    PingFrame,
    RetireConnectionIdFrame,
    TransportParameter,
    TransportParametersFrame,
    classify,
    decode_payload,
    encode_payload,
)
from kwik_twisted.wire.control import CONTROL_FRAME_CLASSES

from .strategies import (
    CONTROL_FRAME_STRATEGIES,
    ENCRYPTED,
    EXAMPLE_CONTROL_FRAMES,
    INITIAL_TYPES,
    PRIORITY,
    raw_control,
    varint,
    varints_body,
)

VARINT_FIELDS = {
    ControlType.RESET_STREAM: 3, ControlType.STOP_SENDING: 2, ControlType.MAX_DATA: 1,
    ControlType.MAX_STREAM_DATA: 2, ControlType.MAX_STREAMS: 1, ControlType.DATA_BLOCKED: 1,
    ControlType.STREAM_DATA_BLOCKED: 2, ControlType.STREAMS_BLOCKED: 1,
    ControlType.RETIRE_CONNECTION_ID: 1, ControlType.PATH_ABANDON: 2,
}


def packet_type_of(ctype: int) -> PacketType:
    """The packet type of a payload holding one control frame of type ``ctype``."""
    return {0x00: PacketType.ACK, 0x01: PacketType.KEEP_ALIVE, 0x02: PacketType.ACK}.get(
        ctype, PacketType.CONTROL
    )


def decode_body(ctype: int, body: bytes, epoch: int = Epoch.APPLICATION) -> object:
    """Decode one hand-built control frame of type ``ctype`` and return it."""
    [frame] = decode_payload(
        raw_control(ctype, body, epoch=epoch), frame_count=1, packet_type=packet_type_of(ctype),
        epoch=epoch,
    )
    return frame


def body_of(frame: object) -> bytes:
    """The body the encoder writes for ``frame`` (the Data of its control frame)."""
    plaintext = encode_payload([frame]).plaintext
    # StreamID (one byte for every type), Offset 8, Flags 1, Data Length, Checksum 4, Priority 1,
    # Extensions Length 1 (always 0 on control frames).
    length, pos = plaintext[10], 11
    if length >= 0x40:
        length, pos = int.from_bytes(plaintext[10:12], "big") & 0x3FFF, 12
    return plaintext[pos + 6:]


def assert_body_error(case: SynchronousTestCase, error: type, ctype: int, body: bytes) -> None:
    """Decoding ``body`` as a ``ctype`` frame raises ``error`` naming the frame type."""
    with case.assertRaises(error) as caught:
        decode_body(ctype, body)
    case.assertEqual(caught.exception.frame_type, ctype)


class ControlFrameTests(SynchronousTestCase):
    """Properties shared by all control frames."""

    def test_there_are_23_control_frame_classes_with_examples_and_strategies(self) -> None:
        """CONTROL_FRAME_CLASSES maps each ControlType to its class; the test examples and the
        Hypothesis strategies cover every one of them."""
        self.assertEqual(sorted(CONTROL_FRAME_CLASSES), list(range(0x17)))
        self.assertEqual(set(CONTROL_FRAME_CLASSES), set(ControlType))
        for ctype, cls in CONTROL_FRAME_CLASSES.items():
            self.assertEqual(cls.type, ctype)
        classes = set(CONTROL_FRAME_CLASSES.values())
        self.assertEqual({type(f) for f in EXAMPLE_CONTROL_FRAMES}, classes)
        self.assertEqual(set(CONTROL_FRAME_STRATEGIES), classes)

    def test_every_control_frame_round_trips_alone(self) -> None:
        """Each control frame, alone in a payload, decodes to an equal value."""
        for frame in EXAMPLE_CONTROL_FRAMES:
            payload = encode_payload([frame])
            self.assertEqual(payload.packet_type, packet_type_of(frame.type))
            got = decode_payload(
                payload.plaintext, frame_count=1, packet_type=payload.packet_type
            )
            self.assertEqual(got, [frame])
            self.assertIs(type(got[0]), type(frame))

    def test_all_control_frames_round_trip_together(self) -> None:
        """All 23 control frames in one payload decode in order."""
        frames = list(EXAMPLE_CONTROL_FRAMES)
        payload = encode_payload(frames)
        self.assertEqual(payload.packet_type, PacketType.CONTROL)
        got = decode_payload(payload.plaintext, frame_count=23, packet_type=PacketType.CONTROL)
        self.assertEqual(got, frames)

    def test_control_header_is_the_spec_layout(self) -> None:
        """A control frame's header has its type in StreamID, Offset 0 (HANDSHAKE: its offset),
        PRIORITY and ENCRYPTED flags, the body's CRC-32, priority 0xFF and no extensions."""
        for frame in EXAMPLE_CONTROL_FRAMES:
            body = body_of(frame)
            offset = frame.offset if isinstance(frame, HandshakeFrame) else 0
            expected = raw_control(frame.type, body, offset=offset, flags=PRIORITY | ENCRYPTED)
            self.assertEqual(encode_payload([frame]).plaintext, expected, frame)
            checksum_at = 11 + (len(body) >= 0x40)
            self.assertEqual(expected[checksum_at:checksum_at + 4], crc32(body).to_bytes(4, "big"))

    def test_initial_key_frames_round_trip_with_encrypted_clear(self) -> None:
        """PADDING, PING, ACK, HANDSHAKE and CONNECTION_CLOSE round-trip under initial keys, with
        the PRIORITY flag only."""
        for frame in EXAMPLE_CONTROL_FRAMES:
            if frame.type not in INITIAL_TYPES:
                continue
            payload = encode_payload([frame], Epoch.INITIAL)
            body = body_of(frame)
            offset = frame.offset if isinstance(frame, HandshakeFrame) else 0
            self.assertEqual(
                payload.plaintext, raw_control(frame.type, body, offset=offset, flags=PRIORITY)
            )
            got = decode_payload(
                payload.plaintext, frame_count=1, packet_type=payload.packet_type,
                epoch=Epoch.INITIAL,
            )
            self.assertEqual(got, [frame])

    def test_other_frames_are_refused_under_initial_keys(self) -> None:
        """Every other control type is a PROTOCOL_VIOLATION under initial keys, when encoding
        and when decoding, and the error names the frame type."""
        for frame in EXAMPLE_CONTROL_FRAMES:
            if frame.type in INITIAL_TYPES:
                continue
            self.assertRaises(ProtocolViolation, encode_payload, [frame], Epoch.INITIAL)
            wire = raw_control(frame.type, body_of(frame), epoch=Epoch.INITIAL)
            with self.assertRaises(ProtocolViolation) as caught:
                decode_payload(
                    wire, frame_count=1, packet_type=PacketType.CONTROL, epoch=Epoch.INITIAL
                )
            self.assertEqual(caught.exception.frame_type, frame.type)

    def test_ack_eliciting(self) -> None:
        """PADDING, ACK and CONNECTION_CLOSE are not ack-eliciting; every other frame is."""
        for frame in EXAMPLE_CONTROL_FRAMES:
            expected = frame.type not in (0x00, 0x02, 0x13)
            self.assertEqual(frame.ack_eliciting, expected, frame.type.name)

    def test_frames_are_immutable_values(self) -> None:
        """Control frames compare by value and cannot be modified."""
        frame = NewConnectionIdFrame(1, bytes(8), bytes(16))
        self.assertEqual(frame, NewConnectionIdFrame(1, bytes(8), bytes(16)))
        self.assertNotEqual(frame, NewConnectionIdFrame(2, bytes(8), bytes(16)))
        self.assertNotEqual(frame, NewConnectionIdFrame(1, bytes(8), bytes(15) + b"\x01"))
        with self.assertRaises(AttributeError):
            frame.path_id = 5  # type: ignore[misc]


class VarintBodyTests(SynchronousTestCase):
    """Frames whose body is a fixed number of varints, and the empty PING and HANDSHAKE_DONE."""

    def test_varint_bodies_are_their_fields_in_order(self) -> None:
        """RESET_STREAM and friends write their fields as varints in the documented order."""
        for frame in EXAMPLE_CONTROL_FRAMES:
            if frame.type in VARINT_FIELDS:
                values = [getattr(frame, f) for f in frame.__dataclass_fields__]
                self.assertEqual(len(values), VARINT_FIELDS[frame.type])
                self.assertEqual(body_of(frame), varints_body(*values))

    def test_stray_bytes_are_refused(self) -> None:
        """A byte after the last field is a FRAME_ENCODING_ERROR naming the frame type."""
        for ctype, count in VARINT_FIELDS.items():
            assert_body_error(self, FrameEncodingError, ctype, varints_body(*[1] * count) + b"\x00")
        for ctype in (ControlType.PING, ControlType.HANDSHAKE_DONE):
            assert_body_error(self, FrameEncodingError, ctype, b"\x00")

    def test_missing_fields_are_truncated(self) -> None:
        """A body one varint short raises TruncatedInput naming the frame type."""
        for ctype, count in VARINT_FIELDS.items():
            assert_body_error(self, TruncatedInput, ctype, varints_body(*[1] * (count - 1)))

    def test_field_cut_inside_a_varint_is_truncated(self) -> None:
        """A body ending inside a multi-byte varint raises TruncatedInput."""
        for ctype, count in VARINT_FIELDS.items():
            body = varints_body(*[1] * (count - 1), 2**40)
            assert_body_error(self, TruncatedInput, ctype, body[:-1])

    def test_non_minimal_varints_are_refused(self) -> None:
        """A body field in a longer form than needed is a FRAME_ENCODING_ERROR."""
        for ctype, count in VARINT_FIELDS.items():
            body = varints_body(*[1] * (count - 1), b"\x40\x05")
            with self.assertRaises(FrameEncodingError) as caught:
                decode_body(ctype, body)
            self.assertNotIsInstance(caught.exception, TruncatedInput)


class PaddingAndHandshakeTests(SynchronousTestCase):
    """PADDING and HANDSHAKE bodies."""

    def test_padding_of_any_length_round_trips(self) -> None:
        """PADDING of 0, 1 or 1200 zero bytes decodes to its length."""
        for length in (0, 1, 1200):
            self.assertEqual(body_of(PaddingFrame(length)), bytes(length))
            self.assertEqual(decode_body(0x00, bytes(length)), PaddingFrame(length))

    def test_non_zero_padding_is_refused(self) -> None:
        """A non-zero byte anywhere in PADDING is a FRAME_ENCODING_ERROR."""
        for body in (b"\x01", b"\x00\x00\x80", b"\x00" * 99 + b"\x01"):
            assert_body_error(self, FrameEncodingError, 0x00, body)

    def test_handshake_carries_its_offset_in_the_header(self) -> None:
        """HANDSHAKE's body is the TLS bytes; its offset travels in the header's Offset field."""
        frame = HandshakeFrame(123456, b"\x16\x03\x01")
        self.assertEqual(body_of(frame), b"\x16\x03\x01")
        plaintext = encode_payload([frame]).plaintext
        self.assertEqual(int.from_bytes(plaintext[1:9], "big"), 123456)
        wire = raw_control(0x03, b"tls", offset=77)
        [got] = decode_payload(wire, frame_count=1, packet_type=PacketType.CONTROL)
        self.assertEqual(got, HandshakeFrame(77, b"tls"))


class AckTests(SynchronousTestCase):
    """ACK bodies (RFC 9000 section 19.3.1 ranges)."""

    def test_ack_body_is_rfc9000_ranges(self) -> None:
        """Ranges 90-100, 50-80, 3-10 are path, largest, delay, count 2, first 10, (8, 30),
        (38, 7)."""
        frame = AckFrame(1, ((90, 100), (50, 80), (3, 10)), 2500)
        self.assertEqual(body_of(frame), varints_body(1, 100, 2500, 2, 10, 8, 30, 38, 7))
        self.assertEqual(frame.largest, 100)

    def test_ack_from_a_hand_built_body(self) -> None:
        """A hand-built body decodes to its inclusive ranges, highest first."""
        body = varints_body(3, 1000, 0, 1, 0, 0, 5)
        self.assertEqual(decode_body(0x02, body), AckFrame(3, ((1000, 1000), (993, 998)), 0))

    def test_ranges_reaching_zero_are_accepted(self) -> None:
        """A range whose smallest number is 0 is allowed."""
        frame = AckFrame(0, ((10, 12), (0, 8)))
        self.assertEqual(decode_body(0x02, body_of(frame)), frame)
        self.assertEqual(decode_body(0x02, varints_body(0, 5, 0, 0, 5)), AckFrame(0, ((0, 5),)))

    def test_the_most_ranges_round_trip(self) -> None:
        """An ACK with 256 additional ranges (257 in all) is accepted."""
        ranges = tuple((n, n) for n in range(2 * MAX_ACK_RANGES, -1, -2))
        self.assertEqual(len(ranges), MAX_ACK_RANGES + 1)
        frame = AckFrame(0, ranges)
        self.assertEqual(decode_body(0x02, body_of(frame)), frame)

    def test_more_ranges_are_refused(self) -> None:
        """An ACK Range Count of 257, with all its ranges present, is a FRAME_ENCODING_ERROR;
        the encoder refuses 258 ranges."""
        count = MAX_ACK_RANGES + 1
        body = varints_body(0, 2 * count, 0, count, 0, *[0, 0] * count)
        assert_body_error(self, FrameEncodingError, 0x02, body)
        ranges = tuple((n, n) for n in range(2 * count, -1, -2))
        self.assertRaises(FrameEncodingError, encode_payload, [AckFrame(0, ranges)])

    def test_first_range_below_zero_is_refused(self) -> None:
        """A First ACK Range larger than Largest Acknowledged is a FRAME_ENCODING_ERROR."""
        assert_body_error(self, FrameEncodingError, 0x02, varints_body(0, 5, 0, 0, 6))

    def test_later_range_below_zero_is_refused(self) -> None:
        """A gap or length that takes a later range below 0 is a FRAME_ENCODING_ERROR."""
        for gap, length in ((8, 1), (9, 0), (100, 0)):
            body = varints_body(0, 10, 0, 1, 0, gap, length)
            assert_body_error(self, FrameEncodingError, 0x02, body)

    def test_missing_ranges_are_truncated(self) -> None:
        """A Range Count promising more ranges than the body holds is a truncation."""
        assert_body_error(self, TruncatedInput, 0x02, varints_body(0, 100, 0, 2, 0, 1, 1))

    def test_stray_bytes_after_ranges_are_refused(self) -> None:
        """A byte after the last range is a FRAME_ENCODING_ERROR."""
        body = body_of(AckFrame(0, ((5, 9),))) + b"\x00"
        assert_body_error(self, FrameEncodingError, 0x02, body)

    def test_encoder_refuses_malformed_ranges(self) -> None:
        """No ranges, ascending, overlapping, adjacent, inverted or negative ranges are refused."""
        for ranges in (
            (), ((0, 3), (5, 9)), ((5, 9), (3, 6)), ((5, 9), (2, 4)), ((9, 5),),
            ((20, 30), (10, 8)), ((-2, 4),),
        ):
            self.assertRaises(FrameEncodingError, encode_payload, [AckFrame(0, ranges)])


class ConnectionIdAndPathTests(SynchronousTestCase):
    """NEW_CONNECTION_ID, PATH_CHALLENGE, PATH_RESPONSE, PATH_STATUS and ADD_ADDRESS bodies."""

    def test_new_connection_id_body(self) -> None:
        """NEW_CONNECTION_ID is the path ID (varint), the 8-byte CID, then the 16-byte stateless
        reset token; path IDs up to 2**32 - 1 round-trip."""
        token = bytes(range(0xF0, 0x100))
        for path_id in (0, 63, 300, MAX_PATH_ID):
            frame = NewConnectionIdFrame(path_id, bytes(range(8)), token)
            self.assertEqual(body_of(frame), varint(path_id) + bytes(range(8)) + token)
            self.assertEqual(decode_body(0x0C, body_of(frame)), frame)
        self.assertEqual(RESET_TOKEN_LENGTH, 16)

    def test_new_connection_id_beyond_path_2_32_is_refused(self) -> None:
        """A Path ID above 2**32 - 1 (it could not enter the nonce) is a FRAME_ENCODING_ERROR."""
        for path_id in (MAX_PATH_ID + 1, 2**62 - 1):
            body = varint(path_id) + bytes(CONNECTION_ID_LENGTH) + bytes(RESET_TOKEN_LENGTH)
            assert_body_error(self, FrameEncodingError, 0x0C, body)

    def test_connection_id_of_the_wrong_length_is_refused(self) -> None:
        """A 7- or 9-byte CID is refused when encoding; on the wire a body too short for the CID
        and the token is truncated, one byte too long is refused."""
        token = bytes(RESET_TOKEN_LENGTH)
        assert_body_error(self, TruncatedInput, 0x0C, varint(1) + bytes(7) + token)
        assert_body_error(self, FrameEncodingError, 0x0C, varint(1) + bytes(9) + token)
        for cid in (bytes(7), bytes(9)):
            self.assertRaises(
                FrameEncodingError, encode_payload, [NewConnectionIdFrame(1, cid, token)]
            )

    def test_reset_token_of_the_wrong_length_is_refused(self) -> None:
        """A 15- or 17-byte stateless reset token is refused when encoding; on the wire a body
        cut inside the token is truncated, one with a byte more refused."""
        cid = bytes(CONNECTION_ID_LENGTH)
        for size in (0, 15):
            assert_body_error(self, TruncatedInput, 0x0C, varint(1) + cid + bytes(size))
        assert_body_error(self, FrameEncodingError, 0x0C, varint(1) + cid + bytes(17))
        for token in (bytes(15), bytes(17)):
            self.assertRaises(
                FrameEncodingError, encode_payload, [NewConnectionIdFrame(1, cid, token)]
            )

    def test_retire_connection_id_names_a_path(self) -> None:
        """RETIRE_CONNECTION_ID is one varint, the path ID whose CID is retired."""
        for path_id in (0, 5, 16384, MAX_PATH_ID):
            frame = RetireConnectionIdFrame(path_id)
            self.assertEqual(frame.path_id, path_id)
            self.assertEqual(body_of(frame), varint(path_id))
            self.assertEqual(decode_body(0x0D, varint(path_id)), frame)

    def test_path_challenge_and_response_carry_eight_bytes(self) -> None:
        """PATH_CHALLENGE and PATH_RESPONSE bodies are exactly 8 bytes, else refused."""
        for cls in (PathChallengeFrame, PathResponseFrame):
            self.assertEqual(decode_body(cls.type, b"abcdefgh"), cls(b"abcdefgh"))
            assert_body_error(self, TruncatedInput, cls.type, b"abcdefg")
            assert_body_error(self, FrameEncodingError, cls.type, b"abcdefghi")
            self.assertRaises(FrameEncodingError, encode_payload, [cls(b"short")])

    def test_path_status_values(self) -> None:
        """PATH_STATUS carries 1 (available) or 2 (backup); anything else is refused."""
        for state in PathState:
            frame = PathStatusFrame(4, 2, state)
            self.assertEqual(body_of(frame), varints_body(4, 2, int(state)))
            self.assertEqual(decode_body(0x10, body_of(frame)), frame)
        for status in (0, 3, 63, 2**20):
            assert_body_error(self, FrameEncodingError, 0x10, varints_body(4, 2, status))

    def test_add_address_both_families(self) -> None:
        """ADD_ADDRESS carries an IPv4 or IPv6 address with its version byte and port."""
        v4 = AddAddressFrame(1, ip_address("192.0.2.7"), 0)
        self.assertEqual(body_of(v4), b"\x01\x04" + bytes((192, 0, 2, 7)) + b"\x00\x00")
        v6 = AddAddressFrame(300, ip_address("2001:db8::7"), 65535)
        self.assertEqual(
            body_of(v6), varint(300) + b"\x06" + ip_address("2001:db8::7").packed + b"\xff\xff"
        )
        for frame in (v4, v6):
            self.assertEqual(decode_body(0x12, body_of(frame)), frame)

    def test_add_address_unknown_ip_version_is_refused(self) -> None:
        """An IP Version other than 4 or 6 is a FRAME_ENCODING_ERROR."""
        for version in (0, 5, 7, 0x46, 255):
            body = b"\x01" + bytes((version,)) + bytes(16) + b"\x11\x51"
            assert_body_error(self, FrameEncodingError, 0x12, body)

    def test_add_address_of_the_wrong_size_is_refused(self) -> None:
        """An address shorter or longer than its version says is refused."""
        assert_body_error(self, TruncatedInput, 0x12, b"\x01\x06" + bytes(4) + b"\x11\x51")
        assert_body_error(self, FrameEncodingError, 0x12, b"\x01\x04" + bytes(16) + b"\x11\x51")
        assert_body_error(self, TruncatedInput, 0x12, b"\x01\x04" + bytes(4) + b"\x11")

    def test_add_address_port_out_of_range_is_refused_when_encoding(self) -> None:
        """Ports outside 0-65535 cannot be encoded."""
        for port in (-1, 65536):
            frame = AddAddressFrame(1, ip_address("192.0.2.1"), port)
            self.assertRaises(FrameEncodingError, encode_payload, [frame])


class ConnectionCloseTests(SynchronousTestCase):
    """CONNECTION_CLOSE bodies."""

    def test_body_layout(self) -> None:
        """The body is kind, error code, frame type, reason length and the UTF-8 reason."""
        frame = ConnectionCloseFrame(0x0A, "bad ack", 0x02)
        self.assertEqual(body_of(frame), b"\x00" + varints_body(0x0A, 0x02, 7) + b"bad ack")
        app = ConnectionCloseFrame(2**20, "\u00e9", application=True)
        self.assertEqual(body_of(app), b"\x01" + varints_body(2**20, 0x3F, 2) + b"\xc3\xa9")

    def test_defaults_and_kinds_round_trip(self) -> None:
        """Transport and application closes round-trip; Frame Type defaults to 0x3f."""
        self.assertEqual(ConnectionCloseFrame(0).frame_type, FRAME_TYPE_UNKNOWN)
        for frame in (
            ConnectionCloseFrame(0), ConnectionCloseFrame(7, "x", FRAME_TYPE_STREAM),
            ConnectionCloseFrame(99, "app", application=True),
        ):
            self.assertEqual(decode_body(0x13, body_of(frame)), frame)

    def test_reason_of_1024_bytes_is_accepted(self) -> None:
        """A reason of exactly 1024 bytes decodes."""
        body = b"\x00" + varints_body(1, 0x3F, 1024) + b"r" * 1024
        self.assertEqual(decode_body(0x13, body), ConnectionCloseFrame(1, "r" * 1024))

    def test_reason_over_1024_bytes_is_refused(self) -> None:
        """A Reason Length of 1025 is a FRAME_ENCODING_ERROR."""
        body = b"\x00" + varints_body(1, 0x3F, 1025) + b"r" * 1025
        assert_body_error(self, FrameEncodingError, 0x13, body)

    def test_invalid_utf8_is_decoded_with_replacement(self) -> None:
        """Invalid UTF-8 in the reason decodes with U+FFFD instead of raising."""
        body = b"\x00" + varints_body(1, 0x3F, 4) + b"a\xff\xfeb"
        frame = decode_body(0x13, body)
        self.assertEqual(frame.reason, "a\ufffd\ufffdb")

    def test_long_reason_is_cut_to_1024_bytes(self) -> None:
        """The encoder cuts a long reason to 1024 bytes, so the frame stays decodable."""
        frame = decode_body(0x13, body_of(ConnectionCloseFrame(1, "x" * 5000)))
        self.assertEqual(frame.reason, "x" * 1024)

    def test_long_reason_is_cut_on_a_character_boundary(self) -> None:
        """Cutting a long reason never splits a UTF-8 character: the Reason stays valid UTF-8."""
        body = body_of(ConnectionCloseFrame(1, "x" + "\u00e9" * 600))
        reason = body[1 + len(varints_body(1, 0x3F, 1000)):]
        self.assertLessEqual(len(reason), 1024)
        self.assertEqual(reason.decode("utf-8"), "x" + "\u00e9" * 511)

    def test_unknown_kind_is_refused(self) -> None:
        """A Kind other than 0 or 1 is a FRAME_ENCODING_ERROR."""
        for kind in (2, 0xFF):
            body = bytes((kind,)) + varints_body(1, 0x3F, 0)
            assert_body_error(self, FrameEncodingError, 0x13, body)

    def test_reason_past_the_body_is_truncated(self) -> None:
        """A Reason Length beyond the body is a truncation."""
        assert_body_error(self, TruncatedInput, 0x13, b"\x00" + varints_body(1, 0x3F, 5) + b"abc")


class TransportParametersTests(SynchronousTestCase):
    """TRANSPORT_PARAMETERS bodies."""

    def test_body_is_sorted_id_length_value_entries(self) -> None:
        """Parameters are written by ascending ID, whatever the dict's order, as ID, length,
        varint value."""
        frame = TransportParametersFrame({4: 100, 1: 30000})
        self.assertEqual(body_of(frame), bytes.fromhex("01 04 80007530 04 02 4064"))
        self.assertEqual(body_of(TransportParametersFrame({1: 30000, 4: 100})), body_of(frame))

    def test_empty_and_full_sets_round_trip(self) -> None:
        """No parameters, and all nine known ones, round-trip."""
        for params in ({}, {ident: ident * 1000 for ident in range(1, 10)}):
            frame = TransportParametersFrame(params)
            self.assertEqual(decode_body(0x15, body_of(frame)), frame)

    def test_unknown_ids_are_ignored(self) -> None:
        """Unknown IDs are skipped whatever their value, and known ones around them are kept."""
        body = bytes.fromhex("01 01 05") + bytes.fromhex("3f 03 ffffff") + varint(2**40)
        body += bytes.fromhex("00") + bytes.fromhex("02 01 07")
        self.assertEqual(decode_body(0x15, body), TransportParametersFrame({1: 5, 2: 7}))

    def test_repeated_id_is_refused(self) -> None:
        """A known ID given twice is a TRANSPORT_PARAMETER_ERROR."""
        with self.assertRaises(TransportParameterError):
            decode_body(0x15, bytes.fromhex("01 01 05 01 01 05"))

    def test_repeated_unknown_id_is_refused(self) -> None:
        """protocol.rst: "an ID that repeats is a TRANSPORT_PARAMETER_ERROR", unknown IDs too."""
        with self.assertRaises(TransportParameterError):
            decode_body(0x15, bytes.fromhex("3f 01 05 3f 01 05"))

    def test_value_that_is_not_one_varint_is_refused(self) -> None:
        """An empty value, two varints, a cut varint or a non-minimal one is a
        TRANSPORT_PARAMETER_ERROR."""
        for entry in ("01 00", "01 02 0505", "01 01 40", "01 02 4005"):
            with self.assertRaises(TransportParameterError, msg=entry):
                decode_body(0x15, bytes.fromhex(entry))

    def test_parameter_past_the_body_is_refused(self) -> None:
        """An entry whose length runs past the body, or a body ending in an entry header, is a
        FRAME_ENCODING_ERROR (or TRANSPORT_PARAMETER_ERROR)."""
        for body in ("01 04 05", "01", "3f 05 0000"):
            with self.assertRaises((FrameEncodingError, TransportParameterError), msg=body):
                decode_body(0x15, bytes.fromhex(body))

    def test_known_parameter_ids_match_the_spec(self) -> None:
        """The spec's nine IDs 0x01-0x09 are the known ones: each survives decoding."""
        body = b"".join(bytes((ident, 1, ident)) for ident in range(1, 10))
        self.assertEqual(
            decode_body(0x15, body).parameters, {ident: ident for ident in range(1, 10)}
        )

    def test_server_load_round_trips_in_permille(self) -> None:
        """SERVER_LOAD (0x09) is one varint: 0, 250 (two bytes) and 1000 round-trip, and its
        encoding is ID, length, value."""
        self.assertEqual(TransportParameter.SERVER_LOAD, 0x09)
        for load in (0, 250, 1000):
            frame = TransportParametersFrame({TransportParameter.SERVER_LOAD: load})
            self.assertEqual(decode_body(0x15, body_of(frame)), frame)
        frame = TransportParametersFrame({TransportParameter.SERVER_LOAD: 250})
        self.assertEqual(body_of(frame), bytes.fromhex("09 02 40fa"))

    def test_a_server_load_that_is_not_one_varint_is_refused(self) -> None:
        """A SERVER_LOAD value of two varints is a TRANSPORT_PARAMETER_ERROR at decoding (the
        range, 0..1000, is the handshake's check)."""
        with self.assertRaises(TransportParameterError):
            decode_body(0x15, bytes.fromhex("09 02 0505"))

    def test_classify_treats_every_non_ack_frame_as_control(self) -> None:
        """A TRANSPORT_PARAMETERS frame with HANDSHAKE_DONE makes a CONTROL packet."""
        frames = [TransportParametersFrame({}), HandshakeDoneFrame(), PingFrame()]
        self.assertEqual(classify(frames), PacketType.CONTROL)
