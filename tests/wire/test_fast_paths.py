"""
Tests that each fast path of the wire layer agrees with its general path.

The per-packet codecs take the shape of the bulk packet in one step and leave every other shape to
a general path; nothing but these properties keeps the two from drifting apart.  Each property
feeds both the same input, mostly of the fast shape and near it (mutated fields, wrong lengths,
truncations), and asserts the same result or an error of the same class.  The pairs:

1. ``encode_application_packet`` (the short shape sealed directly) and ``encode_packet``;
2. ``decode_packet`` on the short shape (``_decode_short``) and ``_decode_general``;
3. ``_push_header``'s fixed-size headers and ``_push_header_varints``;
4. ``pull_frame``'s fixed-size headers (two- or one-byte Data Length) and ``_pull_header``
   (both then share ``_pull_body``);
5. ``pull_frame``'s inline check of a normal-priority frame's flags and ``_check_flags``
   (exhaustive: the domain is 1,536 cases);
6. ``decode_payload`` on a lone STREAM frame, or an ACK and a STREAM frame (an echo's reply),
   and ``_decode_frames``;
7. ``classify`` on those two shapes and ``_classify_any``;
8. ``push_varint``'s one-byte case and ``encode_varint``.

The general paths are private functions: they are called directly here, and only here, so that a
fast path cannot pass by taking its own shortcut twice.  The default run is derandomized; the
``fuzz``-marked variants draw ``KWIK_FUZZ_EXAMPLES`` random examples (``make fuzz``).
"""

from __future__ import annotations

from zlib import crc32

import lz4.block
import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.errors import FrameEncodingError, ProtocolViolation
from kwik_twisted.wire import (
    MAX_FRAME_COUNT,
    VARINT_MAX,
    AckFrame,
    CompressionInfo,
    Epoch,
    Header,
    PacketType,
    StreamFrame,
    classify,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
    encode_varint,
    push_varint,
)
from kwik_twisted.wire.frames import (
    _check_flags,
    _classify_any,
    _decode_frames,
    _pull_body,
    _pull_header,
    _push_header,
    _push_header_varints,
    pull_frame,
)
from kwik_twisted.wire.packets import (
    _decode_general,
    _decode_short,
    encode_application_packet,
)

from .strategies import (
    COMPRESSED,
    ack_frames,
    derandomized,
    frame_lists,
    frames,
    fuzz,
    outcome,
    raw_datagram,
    raw_frame,
    stream_frames,
    varint,
    varints,
)

PROPERTY = derandomized(300)


def _seal(path_id: int, seq: int, aad: bytes, plaintext: bytes) -> bytes:
    """A stand-in AEAD: the plaintext, then a 16-byte tag derived from the AAD."""
    return bytes(plaintext) + (aad * 16)[:16]


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    """``data`` with byte ``i % len`` set to ``value`` for each edit, then cut at ``cut``."""
    out = bytearray(data)
    for i, value in edits:
        if out:
            out[i % len(out)] = value
    return bytes(out if cut is None else out[:cut])


_EDITS = st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=3)
_CUTS = st.none() | st.integers(0, 2000)


def _as_is_or_mutated(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """``valid`` bytes unchanged about half the time, else with a few bytes set or cut short."""
    return valid | st.builds(_mutate, valid, _EDITS, _CUTS)


# --------------------------------------------------------------------------
# 1, 2: packets


def _application_fields() -> dict:
    """The fields of an application-key packet, around the limits of the short shape."""
    return {
        "path_id": st.sampled_from([0, 1, 63, 64, 1000, 2**32 - 1]),
        "seq": st.integers(0, 2**64 - 1),
        "packet_type": st.sampled_from(list(PacketType)),
        "frame_count": st.sampled_from([0, 1, 2, 63, 64, 300]),
        "compression": st.sampled_from(list(CompressionInfo)),
        "size": st.sampled_from([1, 47, 48, 100, 1300, 16350, 16351, 16400]),
        "key_phase": st.sampled_from([0, 1]),
    }


def _short_datagrams() -> st.SearchStrategy[bytes]:
    """Datagrams of the short shape, most valid, others with one field wrong or cut short; and
    long envelopes (whose first byte the fast path must not take)."""
    valid = st.builds(
        lambda first, seq, packet_type, frame_count, compression, size, total: raw_datagram(
            payload=bytes(range(256)) * (size // 256) + bytes(size % 256),
            first_byte=first,
            seq=seq,
            packet_type=packet_type,
            frame_count=frame_count,
            compression=compression,
            total_length=total,
        ),
        first=st.sampled_from([0x40, 0x44, 0x40, 0x44, 0x00, 0x41, 0x48, 0x60, 0xC0]),
        seq=st.integers(0, 2**64 - 1),
        packet_type=st.integers(0, 255),
        frame_count=st.integers(0, 63),
        compression=st.integers(0, 3),
        size=st.sampled_from([17, 40, 63, 64, 65, 200, 1316]),
        total=st.sampled_from([None, None, None, b"\x40\x10", b"\x40\x50", 64, 200]),
    )
    long = st.builds(
        lambda size, token: raw_datagram(
            payload=bytes(size), scid=bytes(range(8, 16)), token=token
        ),
        size=st.sampled_from([17, 64, 200]),
        token=st.sampled_from([b"", b"\x40", bytes(96)]),
    )
    return _as_is_or_mutated(valid | long)


class PacketTests(SynchronousTestCase):
    """The datagram encoder and decoder of the bulk packet against the general ones."""

    def check_encoders(
        self, path_id, seq, packet_type, frame_count, compression, size, key_phase
    ) -> None:
        """encode_application_packet builds the bytes encode_packet builds from a Header, and
        hands the seal the same path ID (for the nonce)."""
        plaintext = bytes(range(256)) * (size // 256) + bytes(size % 256)
        header = Header(
            b"abcdefgh", path_id, seq, packet_type, frame_count, compression, key_phase=key_phase
        )
        sealed: list[int] = []

        def seal(p: int, s: int, aad: bytes, pt: bytes) -> bytes:
            sealed.append(p)
            return _seal(p, s, aad, pt)

        expected = encode_packet(header, plaintext, seal)
        got = encode_application_packet(
            b"abcdefgh", path_id, seq, packet_type, frame_count, compression,
            bytearray(plaintext), seal, key_phase,
        )
        self.assertEqual(sealed, [path_id, path_id])
        self.assertEqual(got, expected)
        if 1 <= frame_count <= MAX_FRAME_COUNT:
            self.assertEqual(decode_packet(got).header, decode_packet(expected).header)
        else:  # encodable, but a receiver drops it (protocol.rst, "Frame Count")
            self.assertEqual(outcome(decode_packet, got)[0], "error")

    @PROPERTY
    @given(**_application_fields())
    def test_application_encoder_builds_what_encode_packet_builds(self, **fields) -> None:
        """Both encoders produce identical bytes, in the short shape and outside it."""
        self.check_encoders(**fields)

    @pytest.mark.fuzz
    def test_fuzz_application_encoder(self) -> None:
        """The encoder property on random examples."""
        fuzz(self.check_encoders, **_application_fields())

    def check_decoders(self, data: bytes) -> None:
        """decode_packet and the general decoder agree on ``data``: the same header, AAD and
        payload, or an error of the same class."""

        def decoded(decode):
            result = outcome(decode, memoryview(data))
            if result[0] == "ok":
                packet = result[1]
                return "ok", packet.header, bytes(packet.aad), bytes(packet.payload)
            return result

        self.assertEqual(decoded(decode_packet), decoded(_decode_general))

    @PROPERTY
    @given(_short_datagrams() | st.binary(max_size=80))
    def test_short_decoder_agrees_with_the_general_decoder(self, data: bytes) -> None:
        """The short-shape decoder gives what the general decoder gives, on any bytes."""
        self.check_decoders(data)

    def test_the_short_shape_is_decoded_by_the_short_decoder(self) -> None:
        """The property's inputs reach the fast path: a valid short datagram (in either key
        phase) decodes through _decode_short, and its header says so (one-byte Frame Count,
        two-byte Total Length, path 0 until the receiver looks up the DCID)."""
        for first, phase in ((0x40, 0), (0x44, 1)):
            data = raw_datagram(payload=bytes(100), first_byte=first, frame_count=3, seq=7)
            header = _decode_short(memoryview(data)).header
            self.assertEqual(
                (header.path_id, header.frame_count, header.total_length, header.key_phase),
                (0, 3, 100, phase),
            )
            self.assertEqual(decode_packet(data).header, header)
            self.check_decoders(data)

    @pytest.mark.fuzz
    def test_fuzz_short_decoder(self) -> None:
        """The decoder property on random examples."""
        fuzz(self.check_decoders, data=_short_datagrams() | st.binary(max_size=200))


# --------------------------------------------------------------------------
# 3, 4, 5: frame headers and flags


def _header_fields() -> dict:
    """The fields of a frame header, around the limits of the fixed-size shapes."""
    return {
        "sid": st.sampled_from([0, 1, 63]) | st.sampled_from([64, 16384, 2**20]) | varints(),
        "offset": st.integers(0, 2**64 - 1),
        "flags": st.integers(0, 255),
        "size": st.sampled_from([0, 1, 63, 64, 65, 1300, 16383, 16384]),
        "checksum": st.integers(0, 2**32 - 1),
        "priority": st.integers(0, 255),
        "extensions": st.sampled_from([b"", b"", b"\x02\x00", bytes(70)]),
    }


def _frame_bytes() -> st.SearchStrategy[bytes]:
    """Frames of the fixed-size shapes (one-byte StreamID, one- or two-byte Data Length), valid or
    one field off, and encodings of any frame, all possibly mutated or cut."""
    fixed = st.builds(
        lambda sid, data, offset, flags, priority, ext, length: raw_frame(
            sid, data, offset=offset, flags=flags, priority=priority, extensions=ext,
            data_length=length,
        ),
        sid=st.integers(0, 63),
        data=st.binary(min_size=64, max_size=300) | st.binary(max_size=63),
        offset=st.sampled_from([0, 1, 2**62 - 400, 2**64 - 1]),
        flags=st.none() | st.integers(0, 255),
        priority=st.sampled_from([0, 0, 1, 2, 3, 0xFF]),
        ext=st.sampled_from([b"", b"\x02\x00", b"\x03\x00", bytes(70)]),
        length=st.sampled_from([None, None, None, b"\x40\x05", b"\x40\x3f", 64, 400, 5, 63]),
    )
    encoded = frame_lists(max_size=2).map(lambda fs: encode_payload(fs).plaintext)
    return _as_is_or_mutated(fixed | encoded)


def _general_pull(view: memoryview, epoch: int, compression: int) -> tuple:
    """pull_frame through the general header reader."""
    sid, offset, flags, length, checksum, priority, ext_length, pos = _pull_header(view, 0)
    return _pull_body(
        view, pos, epoch, compression, sid, offset, flags, length, checksum, priority, ext_length
    )


class FrameTests(SynchronousTestCase):
    """Frame headers of the fixed-size shapes against the general field-by-field codec."""

    def check_push_header(self, sid, offset, flags, size, checksum, priority, extensions) -> None:
        """_push_header writes what _push_header_varints writes."""
        data = bytes(range(256)) * (size // 256) + bytes(size % 256)
        fast, general = bytearray(), bytearray()
        _push_header(fast, sid, offset, flags, data, checksum, priority, extensions)
        _push_header_varints(general, sid, offset, flags, data, checksum, priority, extensions)
        self.assertEqual(fast, general)

    @PROPERTY
    @given(**_header_fields())
    def test_fixed_size_headers_are_the_varint_encoding(self, **fields) -> None:
        """The fixed-size header shapes write the bytes the varint encoder writes."""
        self.check_push_header(**fields)

    @pytest.mark.fuzz
    def test_fuzz_fixed_size_headers(self) -> None:
        """The header encoder property on random examples."""
        fuzz(self.check_push_header, **_header_fields())

    def check_pull_frame(self, data: bytes, epoch: int, compression: int) -> None:
        """pull_frame and the general header reader give the same frame, end and inflation, or
        an error of the same class."""
        view = memoryview(data)

        def pulled(pull):
            result = outcome(pull, view, epoch, compression)
            if result[0] == "ok":
                frame, end, inflated = result[1]
                extra = (getattr(frame, "compressed", None), getattr(frame, "qos", None))
                return "ok", type(frame), frame, extra, end, inflated
            return result

        fast = pulled(lambda v, e, c: pull_frame(v, 0, e, c))
        self.assertEqual(fast, pulled(_general_pull))

    @PROPERTY
    @given(_frame_bytes(), st.sampled_from(list(Epoch)), st.sampled_from([0, 1]))
    def test_fixed_size_frame_header_is_read_as_the_general_reader_reads_it(
        self, data: bytes, epoch: int, compression: int
    ) -> None:
        """The one-step header read agrees with the field-by-field read, on any bytes."""
        self.check_pull_frame(data, epoch, compression)

    @pytest.mark.fuzz
    def test_fuzz_frame_header_reader(self) -> None:
        """The header reader property on random examples."""
        fuzz(
            self.check_pull_frame,
            data=_frame_bytes() | st.binary(max_size=100),
            epoch=st.sampled_from(list(Epoch)),
            compression=st.sampled_from([0, 1]),
        )

    def test_stream_frame_flags_follow_the_general_rules(self) -> None:
        """For every Flags byte, priority and epoch, pull_frame accepts a stream frame exactly
        when _check_flags and the epoch rule do, and otherwise raises the same error."""
        text = b"kwik" * 40
        block = lz4.block.compress(text, store_size=False)
        for epoch in Epoch:
            for priority in (0, 1, 2):
                for flags in range(256):
                    compressed = bool(flags & COMPRESSED)
                    body = varint(len(text)) + block if compressed else text
                    data = raw_frame(
                        4, body, flags=flags, priority=priority, checksum=crc32(text)
                    )
                    got = outcome(pull_frame, memoryview(data), 0, epoch, 1)
                    rule = outcome(_check_flags, flags, priority, False, epoch)
                    if rule[0] == "error":
                        self.assertEqual(got, rule, (epoch, priority, flags))
                    elif epoch != Epoch.APPLICATION:
                        self.assertEqual(got, ("error", ProtocolViolation), (priority, flags))
                    else:
                        self.assertEqual(got[0], "ok", (priority, flags))
                        self.assertEqual(bytes(got[1][0].data), text)


# --------------------------------------------------------------------------
# 6, 7: payloads


def _payload_cases() -> dict:
    """Payload plaintexts (mostly one STREAM frame) with header fields that may disagree."""
    lone = st.builds(
        lambda frame: encode_payload([frame]).plaintext, stream_frames(st.binary(max_size=1300))
    )
    several = frame_lists(max_size=3).map(lambda fs: encode_payload(fs).plaintext)
    trailed = st.builds(bytes.__add__, lone, st.binary(min_size=1, max_size=30) | several)
    return {
        "plaintext": _as_is_or_mutated(lone | trailed | several) | st.binary(max_size=40),
        "frame_count": st.sampled_from([1, 1, 1, 2, 3]),
        "packet_type": st.sampled_from([PacketType.DATA] * 3 + list(PacketType)),
        "compression": st.sampled_from([0, 1]),  # others are refused before either path
        "epoch": st.sampled_from([Epoch.APPLICATION, Epoch.APPLICATION, Epoch.INITIAL]),
    }


def _ack_stream_cases() -> dict:
    """Payload plaintexts of the small packet's shape (an ACK and one STREAM frame, either order)
    and near it, with header fields that may disagree."""
    small = st.builds(
        lambda ack, frame, ack_first: encode_payload(
            [ack, frame] if ack_first else [frame, ack]
        ).plaintext,
        ack_frames(),
        stream_frames(st.binary(max_size=200)),
        st.booleans(),
    )
    trailed = st.builds(bytes.__add__, small, st.binary(min_size=1, max_size=30))
    return {
        "plaintext": _as_is_or_mutated(small | trailed),
        "frame_count": st.sampled_from([2, 2, 2, 1, 3]),
        "packet_type": st.sampled_from([PacketType.DATA] * 3 + list(PacketType)),
        "compression": st.sampled_from([0, 1]),
        "epoch": st.sampled_from([Epoch.APPLICATION, Epoch.APPLICATION, Epoch.INITIAL]),
    }


class PayloadTests(SynchronousTestCase):
    """The lone-frame payload shortcuts against the frame-by-frame paths."""

    def check_decode_payload(self, plaintext, frame_count, packet_type, compression, epoch):
        """decode_payload and _decode_frames return equal frames or raise the same class."""

        def decoded(decode, *args, **kw):
            result = outcome(decode, *args, **kw)
            if result[0] == "ok":
                return "ok", [
                    (type(f), f, getattr(f, "compressed", None), getattr(f, "qos", None))
                    for f in result[1]
                ]
            return result

        fast = decoded(
            decode_payload, plaintext, frame_count=frame_count, packet_type=packet_type,
            compression=compression, epoch=epoch,
        )
        general = decoded(
            _decode_frames, memoryview(plaintext), frame_count, packet_type, compression, epoch
        )
        self.assertEqual(fast, general)

    @PROPERTY
    @given(**_payload_cases())
    def test_lone_stream_frame_decodes_as_the_general_loop_decodes_it(self, **case) -> None:
        """The one-frame shortcut of decode_payload agrees with the loop, on any plaintext."""
        self.check_decode_payload(**case)

    @pytest.mark.fuzz
    def test_fuzz_lone_frame_payloads(self) -> None:
        """The payload decoder property on random examples."""
        fuzz(self.check_decode_payload, **_payload_cases())

    @PROPERTY
    @given(**_ack_stream_cases())
    def test_ack_and_stream_frame_decode_as_the_general_loop_decodes_them(self, **case) -> None:
        """The ACK + STREAM shortcut of decode_payload agrees with the loop, near its shape."""
        self.check_decode_payload(**case)

    @pytest.mark.fuzz
    def test_fuzz_ack_stream_payloads(self) -> None:
        """The ACK + STREAM payload property on random examples."""
        fuzz(self.check_decode_payload, **_ack_stream_cases())

    def test_ack_and_stream_frame_take_the_shortcut(self) -> None:
        """An ACK and a normal-priority STREAM frame decode to themselves, in either order."""
        ack = AckFrame(0, ((0, 3),), 25)
        frame = StreamFrame(4, 64, b"y" * 64, False, 0, True, False)
        payload = encode_payload([ack, frame])
        self.assertEqual(payload.packet_type, PacketType.DATA)
        got = decode_payload(payload.plaintext, frame_count=2, packet_type=PacketType.DATA)
        self.assertEqual(got, [ack, frame])
        payload = encode_payload([frame, ack])
        got = decode_payload(payload.plaintext, frame_count=2, packet_type=PacketType.DATA)
        self.assertEqual(got, [frame, ack])

    def test_lone_stream_frame_takes_the_shortcut_and_matches_a_longer_payload(self) -> None:
        """A lone normal-priority frame decodes to itself, as it decodes before other frames."""
        frame = StreamFrame(4, 1000, b"x" * 1300, False, 0, True, False)
        alone = encode_payload([frame])
        both = encode_payload([frame, frame])
        got = decode_payload(alone.plaintext, frame_count=1, packet_type=alone.packet_type)
        self.assertEqual(got, [frame])
        self.assertEqual(
            decode_payload(both.plaintext, frame_count=2, packet_type=both.packet_type)[0], got[0]
        )

    def check_classify(self, frame_list: list) -> None:
        """classify gives what _classify_any gives."""
        self.assertEqual(classify(frame_list), _classify_any(frame_list))

    @PROPERTY
    @given(
        st.lists(frames(), min_size=1, max_size=1)
        | frame_lists(max_size=3)
        | st.tuples(ack_frames(), frames()).map(list)
        | st.tuples(frames(), ack_frames()).map(list)
        | st.lists(stream_frames(), min_size=2, max_size=2)
    )
    def test_lone_stream_frame_is_classified_as_the_general_rules_say(self, frame_list) -> None:
        """The one-frame and ACK + frame shortcuts of classify agree with the general rules."""
        self.check_classify(frame_list)

    @pytest.mark.fuzz
    def test_fuzz_classify(self) -> None:
        """The classify property on random examples."""
        fuzz(self.check_classify, frame_list=frame_lists(max_size=4))


# --------------------------------------------------------------------------
# 8: varints


class VarintTests(SynchronousTestCase):
    """push_varint's one-byte case against encode_varint."""

    def check_push_varint(self, value: int) -> None:
        """push_varint appends what encode_varint returns, or raises the same class."""

        def pushed(v):
            buf = bytearray(b"\xaa")
            push_varint(buf, v)
            return bytes(buf[1:])

        self.assertEqual(outcome(pushed, value), outcome(encode_varint, value))

    @PROPERTY
    @given(st.integers(-70, 70) | varints() | st.integers(VARINT_MAX - 2, VARINT_MAX + 2))
    def test_push_varint_appends_the_shortest_encoding(self, value: int) -> None:
        """Every value, in range or not, is pushed as encode_varint encodes it."""
        self.check_push_varint(value)

    @pytest.mark.fuzz
    def test_fuzz_push_varint(self) -> None:
        """The varint property on random examples."""
        fuzz(self.check_push_varint, value=st.integers(-(2**70), 2**70))

    def test_negative_values_are_refused_by_both(self) -> None:
        """A negative value is a FrameEncodingError on both paths."""
        self.assertEqual(outcome(encode_varint, -1), ("error", FrameEncodingError))
        self.check_push_varint(-1)
