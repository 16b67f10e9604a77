"""
Hypothesis properties of the wire codecs.

1. Any byte string given to :func:`decode_packet` decodes or raises a
   :class:`~kwik_twisted.errors.KwikError` (in fact a DroppedPacket), never anything else; and an
   accepted datagram is canonical: re-encoding its header and payload gives the same bytes.
2. The same for :func:`decode_payload`, with any Frame Count, Packet Type, Compression Info and
   epoch.
3. Random frame lists (from :mod:`tests.wire.strategies`) survive encode then decode, alone and
   inside a packet.

Inputs for 1 and 2 are random bytes, mutations of valid encodings, and hand-built frames and
datagrams with random fields (and correct checksums), so that the checks behind the first few bytes
are reached.

The default run uses a few hundred examples per property.  The ``fuzz`` variants run
``KWIK_FUZZ_EXAMPLES`` examples (``make fuzz``); they are deselected by pytest's default ``-m`` and
skipped, under any runner, unless that variable is set.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import lz4.block
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from kwik_twisted.errors import DroppedPacket, KwikError, ProtocolError
from kwik_twisted.wire import (
    TAG_LENGTH,
    Epoch,
    Packet,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
    peek_dcid,
)

from .strategies import (
    extension,
    frame_lists,
    headers,
    qos_extension,
    qos_policies,
    raw_datagram,
    raw_frame,
    varint,
    varints,
)

_COMMON = {
    "derandomize": True,
    "database": None,
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
DEFAULT = settings(max_examples=300, **_COMMON)


def fuzz_settings() -> settings:
    """Settings for a fuzz run; skips the test unless KWIK_FUZZ_EXAMPLES is set."""
    examples = os.environ.get("KWIK_FUZZ_EXAMPLES")
    if not examples:
        raise SkipTest("fuzzing runs only with KWIK_FUZZ_EXAMPLES set (make fuzz)")
    return settings(max_examples=int(examples), **_COMMON)


def fake_seal(path_id: int, seq: int, aad: bytes, plaintext: bytes) -> bytes:
    """A stand-in AEAD: the plaintext and a zero tag."""
    return plaintext + bytes(TAG_LENGTH)


# --------------------------------------------------------------------------
# Hostile inputs


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding with a few bytes flipped, inserted, deleted, or cut off."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0x3F, 0x40, 0x7F, 0x80, 0xC0, 0xFF]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 4))]
        else:
            del data[pos:]
    return bytes(data)


def valid_plaintexts() -> st.SearchStrategy[bytes]:
    """Plaintexts of valid application-key payloads."""
    return frame_lists(max_size=4).map(lambda frames: encode_payload(frames).plaintext)


@st.composite
def valid_datagrams(draw: st.DrawFn) -> bytes:
    """A valid datagram (fake seal) for either epoch."""
    epoch = draw(st.sampled_from(Epoch))
    payload = encode_payload(draw(frame_lists(epoch, max_size=3)), epoch)
    hdr = draw(headers(epoch))
    hdr.packet_type, hdr.frame_count = payload.packet_type, payload.frame_count
    hdr.compression = payload.compression
    return encode_packet(hdr, payload.plaintext, fake_seal)


@st.composite
def mostly(draw: st.DrawFn, usual: st.SearchStrategy, unusual: st.SearchStrategy) -> object:
    """Draw from ``usual`` about three times in four, else from ``unusual``."""
    return draw(unusual) if draw(st.integers(0, 3)) == 3 else draw(usual)


def raw_varint_field() -> st.SearchStrategy[int | bytes]:
    """A varint field: a value (encoded minimally) or raw bytes (maybe non-minimal or cut)."""
    return st.one_of(varints(), st.integers(0, 70), st.binary(min_size=0, max_size=9))


@st.composite
def hostile_datagrams(draw: st.DrawFn) -> bytes:
    """A datagram with plausible but random header fields and a correct checksum."""
    long = draw(st.booleans())
    payload = draw(st.binary(max_size=64) | st.binary(min_size=64, max_size=200))
    usual_first = st.just(0xC0) if long else st.sampled_from([0x40, 0x44])
    envelope: dict = {}
    if long:
        envelope = {
            "scid": draw(mostly(st.binary(min_size=8, max_size=8), st.binary(max_size=20))),
            "version": draw(mostly(st.just(0x4B574B03), st.integers(0, 2**32 - 1))),
            "dcid_length": draw(mostly(st.none(), st.integers(0, 255))),
            "token": draw(st.binary(max_size=8) | st.binary(min_size=90, max_size=100)),
            "token_length": draw(mostly(st.none(), raw_varint_field())),
        }
    return raw_datagram(
        payload=payload,
        dcid=draw(mostly(st.binary(min_size=8, max_size=8), st.binary(max_size=20))),
        first_byte=draw(mostly(usual_first, st.integers(0, 255))),
        seq=draw(st.integers(0, 2**64 - 1)),
        packet_type=draw(mostly(st.integers(0, 5), st.integers(0, 255))),
        frame_count=draw(mostly(st.integers(1, 70), raw_varint_field())),
        total_length=draw(mostly(st.none(), raw_varint_field())),
        compression=draw(mostly(st.integers(0, 1), st.integers(0, 255))),
        **envelope,
    )


def datagrams() -> st.SearchStrategy[bytes]:
    """Byte strings for decode_packet: random, mutated valid datagrams, hostile headers."""
    return st.one_of(
        st.binary(max_size=120), valid_datagrams(), mutated(valid_datagrams()), hostile_datagrams()
    )


@st.composite
def hostile_frames(draw: st.DrawFn) -> bytes:
    """One frame with plausible but random header fields, extensions and (maybe lz4) data.

    Most fields are usually valid, so that the checks deep in the decoder are reached; any of them
    may be anything."""
    priority = draw(mostly(st.sampled_from([0, 1, 2, 0xFF]), st.integers(0, 255)))
    control = priority == 0xFF
    sid = draw(mostly(st.integers(0, 0x16) if control else varints(), raw_varint_field()))
    data = draw(st.binary(max_size=40) | st.binary(min_size=64, max_size=150))
    flags = draw(st.sampled_from(Epoch)) and 0x08
    flags |= 0x02 if priority else 0
    if not control:
        flags |= draw(st.sampled_from([0x00, 0x01, 0x10, 0x11, 0x20, 0x30]))
        if draw(st.booleans()):  # lz4 data, maybe lying about its length
            plain = draw(st.binary(max_size=300) | st.builds(bytes, st.integers(0, 20000)))
            claimed = draw(mostly(st.just(len(plain)), varints()))
            data = varint(claimed) + lz4.block.compress(plain, store_size=False)
            flags |= 0x04
    flags ^= draw(mostly(st.just(0), st.integers(0, 255)))
    ext_types = st.one_of(st.just(0x02), st.integers(0, 8), varints())
    extensions = b"".join(draw(st.lists(
        st.builds(extension, ext_types, st.binary(max_size=12)) | qos_policies().map(qos_extension),
        max_size=2,
    )))
    return raw_frame(
        sid,
        data,
        offset=draw(mostly(st.just(0), st.sampled_from([1, 2**62 - 1, 2**64 - 1]))),
        flags=flags,
        priority=priority,
        checksum=draw(mostly(st.none(), st.integers(0, 2**32 - 1))),
        extensions=extensions,
        data_length=draw(mostly(st.none(), raw_varint_field())),
        ext_length=draw(mostly(st.none(), raw_varint_field())),
    )


@st.composite
def payload_cases(draw: st.DrawFn) -> tuple[bytes, int, int, int, int]:
    """(plaintext, frame_count, packet_type, compression, epoch) for decode_payload."""
    kind = draw(st.sampled_from(["random", "valid", "mutated", "hostile"]))
    epoch = draw(mostly(st.just(Epoch.APPLICATION), st.just(Epoch.INITIAL)))
    if kind == "random":
        plaintext, count, packet_type, compression = draw(st.binary(max_size=120)), 1, 0, 0
    elif kind in ("valid", "mutated"):
        payload = encode_payload(draw(frame_lists(epoch, max_size=4)), epoch)
        plaintext, count = payload.plaintext, payload.frame_count
        packet_type, compression = payload.packet_type, payload.compression
        if kind == "mutated":
            plaintext = draw(mutated(st.just(plaintext)))
    else:
        parts = draw(st.lists(hostile_frames(), min_size=1, max_size=4))
        plaintext, count = b"".join(parts), len(parts)
        packet_type, compression = draw(st.integers(0, 5)), draw(st.sampled_from([0, 1]))
    return (
        plaintext,
        draw(mostly(st.just(count), st.integers(0, 8) | varints())),
        draw(mostly(st.just(packet_type), st.integers(0, 255))),
        draw(mostly(st.just(compression), st.integers(0, 255))),
        epoch,
    )


# --------------------------------------------------------------------------
# Checks shared by the default and the fuzz runs


def check_decode_packet(data: bytes) -> None:
    """decode_packet accepts ``data`` canonically or raises a DroppedPacket; what it accepts has
    path ID 0 (not on the wire), and peek_dcid finds the same DCID."""
    try:
        packet = decode_packet(data)
    except DroppedPacket:
        return
    assert isinstance(packet, Packet)
    assert packet.header.path_id == 0
    assert peek_dcid(data) == packet.header.dcid
    payload = bytes(packet.payload)
    assert packet.header.total_length == len(payload) >= TAG_LENGTH + 1
    again = encode_packet(packet.header, payload[:-TAG_LENGTH], lambda p, s, a, pt: payload)
    assert again == bytes(data), "an accepted datagram must be the one encoding of its header"


def check_decode_payload(case: tuple[bytes, int, int, int, int]) -> None:
    """decode_payload returns ``frame_count`` frames or raises a ProtocolError."""
    plaintext, frame_count, packet_type, compression, epoch = case
    try:
        frames = decode_payload(
            plaintext, frame_count=frame_count, packet_type=packet_type, compression=compression,
            epoch=epoch,
        )
    except ProtocolError:
        return
    assert len(frames) == frame_count >= 1


def run(check: Callable, strategy: st.SearchStrategy, config: settings) -> None:
    """Run ``check`` over ``strategy`` with ``config``."""
    config(given(strategy)(check))()


class DecodeNeverCrashesTests(SynchronousTestCase):
    """Properties 1 and 2: only typed errors escape from decoding."""

    def test_decode_packet_raises_only_typed_errors(self) -> None:
        """Any byte string decodes (canonically) or raises a DroppedPacket, a KwikError."""
        self.assertTrue(issubclass(DroppedPacket, KwikError))
        run(check_decode_packet, datagrams(), DEFAULT)

    def test_decode_payload_raises_only_typed_errors(self) -> None:
        """Any plaintext with any header fields decodes or raises a ProtocolError, a KwikError."""
        self.assertTrue(issubclass(ProtocolError, KwikError))
        run(check_decode_payload, payload_cases(), DEFAULT)

    @pytest.mark.fuzz
    def test_fuzz_decode_packet(self) -> None:
        """Property 1 with KWIK_FUZZ_EXAMPLES examples."""
        run(check_decode_packet, datagrams(), fuzz_settings())

    @pytest.mark.fuzz
    def test_fuzz_decode_payload(self) -> None:
        """Property 2 with KWIK_FUZZ_EXAMPLES examples."""
        run(check_decode_payload, payload_cases(), fuzz_settings())


class RoundTripTests(SynchronousTestCase):
    """Property 3: encoding then decoding gives the frames back."""

    @DEFAULT
    @given(frame_lists())
    def test_application_payloads_round_trip(self, frames: list) -> None:
        """Random frame lists round-trip under application keys, header fields as encoded."""
        payload = encode_payload(frames)
        got = decode_payload(
            payload.plaintext, frame_count=payload.frame_count, packet_type=payload.packet_type,
            compression=payload.compression,
        )
        self.assertEqual(got, frames)

    @DEFAULT
    @given(frame_lists(Epoch.INITIAL))
    def test_initial_payloads_round_trip(self, frames: list) -> None:
        """Random lists of initial-key frames round-trip under initial keys."""
        payload = encode_payload(frames, Epoch.INITIAL)
        got = decode_payload(
            payload.plaintext, frame_count=payload.frame_count, packet_type=payload.packet_type,
            compression=payload.compression, epoch=Epoch.INITIAL,
        )
        self.assertEqual(got, frames)

    @DEFAULT
    @given(st.data())
    def test_packets_round_trip(self, data: st.DataObject) -> None:
        """Random headers (tokens and key phases included) and frames survive encode_payload,
        encode_packet, decode_packet and decode_payload; the path ID goes only to the seal."""
        epoch = data.draw(st.sampled_from(Epoch))
        frames = data.draw(frame_lists(epoch, max_size=3))
        hdr = data.draw(headers(epoch))
        payload = encode_payload(frames, epoch)
        hdr.packet_type, hdr.frame_count = payload.packet_type, payload.frame_count
        hdr.compression = payload.compression
        sealed: list[int] = []

        def seal(path_id: int, seq: int, aad: bytes, plaintext: bytes) -> bytes:
            sealed.append(path_id)
            return fake_seal(path_id, seq, aad, plaintext)

        packet = decode_packet(encode_packet(hdr, payload.plaintext, seal))
        self.assertEqual(sealed, [hdr.path_id])  # the path ID only enters the nonce
        hdr.total_length = len(payload.plaintext) + TAG_LENGTH
        hdr.path_id = 0  # not on the wire: the receiver fills it in from the DCID
        self.assertEqual(packet.header, hdr)
        h = packet.header
        got = decode_payload(
            bytes(packet.payload)[:-TAG_LENGTH], frame_count=h.frame_count,
            packet_type=h.packet_type, compression=h.compression, epoch=h.epoch,
        )
        self.assertEqual(got, frames)
