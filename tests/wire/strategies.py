"""
Hypothesis strategies for Kwik v3 wire values, and builders of hand-made wire bytes.

The strategies produce *valid* values (every one encodes and decodes back to itself), so tests of
the codecs and, later, of the connection can draw frames and frame lists from here:

* :func:`varints`, :func:`stream_frames`, :func:`control_frames`, :func:`frames`,
  :func:`frame_lists`;
* :data:`CONTROL_FRAME_STRATEGIES`, one strategy per control frame class, and
  :data:`EXAMPLE_CONTROL_FRAMES`, one fixed example of each;
* :func:`headers` for packet headers.

The builders (:func:`raw_frame`, :func:`raw_control`, :func:`extension`, :func:`raw_datagram`)
write frames and datagrams byte by byte from the layout in ``docs/protocol.rst``, without the
codecs' encoders, so a test can build a hostile input that differs from a valid one in exactly one
field.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from ipaddress import ip_address
from struct import pack
from zlib import crc32

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SkipTest

from kwik_twisted.wire import (
    MAX_PATH_ID,
    MAX_TOKEN_LENGTH,
    VARINT_MAX,
    AckFrame,
    AddAddressFrame,
    ConnectionCloseFrame,
    DataBlockedFrame,
    DatagramFrame,
    Epoch,
    HandshakeDoneFrame,
    HandshakeFrame,
    Header,
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
    Priority,
    QosPolicy,
    ResetStreamFrame,
    RetireConnectionIdFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    StreamsBlockedFrame,
    TransportParameter,
    TransportParametersFrame,
    encode_varint,
)

# Frame flag bits and special values, written out from protocol.rst rather than imported, so that
# the builders check the codecs against the spec instead of against themselves.
FIN, PRIORITY, COMPRESSED, ENCRYPTED, ORDERED, RETRANSMIT = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
CONTROL = 0xFF
QOS_EXTENSION = 0x02
INITIAL_TYPES = frozenset({0x00, 0x01, 0x02, 0x03, 0x13})
# The envelope (protocol.rst, "Envelope"; RFC 8999): first bytes and the 32-bit version.
LONG_INITIAL_BYTE, LONG_RETRY_BYTE, SHORT_BYTE, SHORT_PHASE_1_BYTE = 0xC0, 0xF0, 0x40, 0x44
WIRE_VERSION = 0x4B574B03

# --------------------------------------------------------------------------
# Hand-made wire bytes


def varint(value: int | bytes) -> bytes:
    """The shortest varint for ``value``, or ``value`` itself when it is already bytes (raw)."""
    return value if isinstance(value, bytes) else encode_varint(value)


def extension(ext_type: int | bytes, value: bytes, length: int | bytes | None = None) -> bytes:
    """One extension TLV entry; ``length`` overrides the Length field."""
    return varint(ext_type) + varint(len(value) if length is None else length) + value


def qos_extension(qos: QosPolicy) -> bytes:
    """The QOS extension entry for ``qos``."""
    return extension(QOS_EXTENSION, b"".join(encode_varint(v) for v in qos))


def raw_frame(
    sid: int | bytes,
    data: bytes = b"",
    *,
    offset: int = 0,
    flags: int | None = None,
    priority: int = 0,
    checksum: int | None = None,
    extensions: bytes = b"",
    data_length: int | bytes | None = None,
    ext_length: int | bytes | None = None,
    epoch: int = Epoch.APPLICATION,
) -> bytes:
    """
    One frame with the seed's header, field by field.

    By default the frame is valid: ``flags`` is ENCRYPTED under application keys plus PRIORITY
    when ``priority`` is not normal, ``checksum`` is the CRC-32 of ``data`` and both lengths are the
    true ones.
    Varint fields accept raw bytes to put a non-minimal or truncated encoding on the wire.
    """
    if flags is None:
        flags = (ENCRYPTED if epoch == Epoch.APPLICATION else 0) | (PRIORITY if priority else 0)
    if checksum is None:
        checksum = crc32(data)
    return b"".join((
        varint(sid),
        pack(">QB", offset, flags),
        varint(len(data) if data_length is None else data_length),
        pack(">IB", checksum, priority),
        varint(len(extensions) if ext_length is None else ext_length),
        extensions,
        data,
    ))


def raw_control(ctype: int | bytes, body: bytes = b"", **kw: object) -> bytes:
    """A control frame (priority 0xFF) of type ``ctype`` with ``body``; see :func:`raw_frame`."""
    return raw_frame(ctype, body, priority=CONTROL, **kw)  # type: ignore[arg-type]


def varints_body(*values: int | bytes) -> bytes:
    """The concatenated varints of a control frame body."""
    return b"".join(varint(v) for v in values)


def raw_datagram(
    *,
    payload: bytes = bytes(17),
    dcid: bytes = bytes(range(8)),
    scid: bytes | None = None,
    first_byte: int | None = None,
    version: int = WIRE_VERSION,
    dcid_length: int | None = None,
    scid_length: int | None = None,
    token: bytes = b"",
    token_length: int | bytes | None = None,
    seq: int = 0,
    packet_type: int = 0,
    frame_count: int | bytes = 1,
    total_length: int | bytes | None = None,
    compression: int = 0,
    checksum: int | None = None,
) -> bytes:
    """
    A datagram, field by field, with a correct checksum unless ``checksum`` is given.

    With ``scid`` the envelope is long (first byte 0xC0: an Initial, initial keys): Version,
    DCID Length, DCID, SCID Length, SCID, Token Length, Token; else short (first byte 0x40,
    application keys in key phase 0): just the DCID.  ``first_byte``, ``version``, the two CID
    lengths and ``token_length`` override their field; ``payload`` stands for the protected
    payload (the codec does not open it).  No path ID: it is not on the wire.
    """
    if scid is not None:
        envelope = b"".join((
            bytes((LONG_INITIAL_BYTE if first_byte is None else first_byte,)),
            version.to_bytes(4, "big"),
            bytes((len(dcid) if dcid_length is None else dcid_length,)), dcid,
            bytes((len(scid) if scid_length is None else scid_length,)), scid,
            varint(len(token) if token_length is None else token_length), token,
        ))
    else:
        envelope = bytes((SHORT_BYTE if first_byte is None else first_byte,)) + dcid
    before = b"".join((
        envelope, pack(">QB", seq, packet_type), varint(frame_count),
        varint(len(payload) if total_length is None else total_length),
    ))
    after = bytes((compression,)) + payload
    if checksum is None:
        checksum = crc32(after, crc32(before))
    return before + pack(">I", checksum) + after


def checksum_offset(datagram: bytes) -> int:
    """Where the checksum field of a well-formed ``datagram`` starts (by the spec's layout)."""
    if datagram[0] & 0x80:  # long: first byte, version, two length-prefixed CIDs, the token
        pos = 5
        pos += 1 + datagram[pos]
        pos += 1 + datagram[pos]
        size = 1 << (datagram[pos] >> 6)
        token_length = int.from_bytes(datagram[pos:pos + size], "big") & ((1 << (8 * size - 2)) - 1)
        pos += size + token_length
    else:
        pos = 1 + 8  # first byte, DCID
    pos += 9  # sequence number, packet type
    for _ in range(2):  # frame count, total length
        pos += 1 << (datagram[pos] >> 6)
    return pos


# --------------------------------------------------------------------------
# Examples

#: One hand-picked instance of every control frame class, with non-trivial field values.
EXAMPLE_CONTROL_FRAMES = (
    PaddingFrame(5),
    PingFrame(),
    AckFrame(1, ((90, 100), (50, 80), (3, 10)), 2500),
    HandshakeFrame(7000, b"\x16\x03\x01\x00\x04test"),
    ResetStreamFrame(4, 16, 5000),
    StopSendingFrame(8, 2**40),
    MaxDataFrame(1048576),
    MaxStreamDataFrame(4, 262144),
    MaxStreamsFrame(100),
    DataBlockedFrame(VARINT_MAX),
    StreamDataBlockedFrame(4, 262144),
    StreamsBlockedFrame(64),
    NewConnectionIdFrame(7, bytes.fromhex("0102030405060708"), bytes(range(0xE0, 0xF0))),
    RetireConnectionIdFrame(16384),
    PathChallengeFrame(bytes.fromhex("a1a2a3a4a5a6a7a8")),
    PathResponseFrame(bytes.fromhex("b1b2b3b4b5b6b7b8")),
    PathStatusFrame(2, 9, PathState.AVAILABLE),
    PathAbandonFrame(3, 0x0A),
    AddAddressFrame(1, ip_address("2001:db8::7"), 4433),
    ConnectionCloseFrame(0x0C, "au revoir \u2014 \u00e9t\u00e9", 0x3F, True),
    HandshakeDoneFrame(),
    TransportParametersFrame({1: 30000, 2: 1048576, 7: 4, 8: 1350}),
    DatagramFrame(b"\x00kwik datagram\xff"),
)


# --------------------------------------------------------------------------
# Strategies


def varints(max_value: int = VARINT_MAX) -> st.SearchStrategy[int]:
    """Integers in ``[0, max_value]`` that reach every varint length the bound allows."""
    bounds = [b for b in (0x3F, 0x3FFF, 0x3FFFFFFF, VARINT_MAX) if b < max_value] + [max_value]
    return st.one_of(*(st.integers(0, b) for b in bounds))


def qos_policies() -> st.SearchStrategy[QosPolicy]:
    """Any QoS policy."""
    return st.builds(QosPolicy, varints(), varints(), varints(), varints())


def stream_data(max_size: int = 64) -> st.SearchStrategy[bytes]:
    """Stream data: arbitrary bytes, or repetitive bytes that lz4 can shrink."""
    repetitive = st.builds(
        lambda chunk, n: (chunk * n)[:4096], st.binary(min_size=1, max_size=8), st.integers(4, 300)
    )
    return st.one_of(st.binary(max_size=max_size), repetitive)


@st.composite
def stream_frames(draw: st.DrawFn, data: st.SearchStrategy[bytes] | None = None) -> StreamFrame:
    """A STREAM frame with any flags, priority, QoS extension and compression request."""
    payload = draw(stream_data() if data is None else data)
    return StreamFrame(
        draw(varints()),
        draw(varints(VARINT_MAX - len(payload))),
        payload,
        draw(st.booleans()),
        draw(st.sampled_from([Priority.NORMAL, Priority.HIGH, Priority.CRITICAL])),
        ordered=draw(st.booleans()),
        retransmit=draw(st.booleans()),
        compress=draw(st.booleans()),
        qos=draw(st.none() | qos_policies()),
    )


@st.composite
def ack_frames(draw: st.DrawFn) -> AckFrame:
    """An ACK with 1 to 8 well-formed ranges (descending, neither overlapping nor adjacent)."""
    hi = draw(varints())
    ranges = []
    for _ in range(draw(st.integers(1, 8))):
        lo = hi - draw(st.integers(0, min(hi, 1000)) | st.integers(0, hi))
        ranges.append((lo, hi))
        if lo < 2:
            break
        hi = lo - 2 - draw(st.integers(0, min(lo - 2, 1000)) | st.integers(0, lo - 2))
    return AckFrame(draw(varints(0xFFFFFFFF)), tuple(ranges), draw(varints()))


def new_connection_id_frames() -> st.SearchStrategy[NewConnectionIdFrame]:
    """A NEW_CONNECTION_ID: a path ID (at most 2**32 - 1), an 8-byte CID, a 16-byte token."""
    return st.builds(
        NewConnectionIdFrame, varints(MAX_PATH_ID), st.binary(min_size=8, max_size=8),
        st.binary(min_size=16, max_size=16),
    )


_EIGHT_BYTES = st.binary(min_size=8, max_size=8)
#: Reasons that survive UTF-8 encoding and fit in 1024 bytes: 1- to 4-byte characters.  (A fixed
#: alphabet spares Hypothesis its Unicode tables, which it would cache under .hypothesis/.)
_REASON_ALPHABET = "az09 \x00\x7f\u00e9\u07ff\u2014\u20ac\ufffd\U0001f600"
_REASONS = st.text(st.sampled_from(_REASON_ALPHABET), max_size=60)
_PARAMETERS = st.dictionaries(st.sampled_from([int(p) for p in TransportParameter]), varints())

#: One strategy per control frame class (every class of ``CONTROL_FRAME_CLASSES``).
CONTROL_FRAME_STRATEGIES: dict[type, st.SearchStrategy] = {
    PaddingFrame: st.builds(PaddingFrame, st.integers(0, 64)),
    PingFrame: st.just(PingFrame()),
    AckFrame: ack_frames(),
    HandshakeFrame: st.builds(HandshakeFrame, varints(), st.binary(max_size=64)),
    ResetStreamFrame: st.builds(ResetStreamFrame, varints(), varints(), varints()),
    StopSendingFrame: st.builds(StopSendingFrame, varints(), varints()),
    MaxDataFrame: st.builds(MaxDataFrame, varints()),
    MaxStreamDataFrame: st.builds(MaxStreamDataFrame, varints(), varints()),
    MaxStreamsFrame: st.builds(MaxStreamsFrame, varints()),
    DataBlockedFrame: st.builds(DataBlockedFrame, varints()),
    StreamDataBlockedFrame: st.builds(StreamDataBlockedFrame, varints(), varints()),
    StreamsBlockedFrame: st.builds(StreamsBlockedFrame, varints()),
    NewConnectionIdFrame: new_connection_id_frames(),
    RetireConnectionIdFrame: st.builds(RetireConnectionIdFrame, varints(MAX_PATH_ID)),
    PathChallengeFrame: st.builds(PathChallengeFrame, _EIGHT_BYTES),
    PathResponseFrame: st.builds(PathResponseFrame, _EIGHT_BYTES),
    PathStatusFrame: st.builds(PathStatusFrame, varints(), varints(), st.sampled_from(PathState)),
    PathAbandonFrame: st.builds(PathAbandonFrame, varints(), varints()),
    AddAddressFrame: st.builds(
        AddAddressFrame, varints(), st.ip_addresses(), st.integers(0, 0xFFFF)
    ),
    ConnectionCloseFrame: st.builds(
        ConnectionCloseFrame, varints(), _REASONS, varints(), st.booleans()
    ),
    HandshakeDoneFrame: st.just(HandshakeDoneFrame()),
    TransportParametersFrame: st.builds(TransportParametersFrame, _PARAMETERS),
    DatagramFrame: st.builds(DatagramFrame, st.binary(max_size=1200)),
}


def control_frames(epoch: int = Epoch.APPLICATION) -> st.SearchStrategy:
    """Any control frame allowed under ``epoch``'s keys."""
    allowed = [
        strategy for cls, strategy in CONTROL_FRAME_STRATEGIES.items()
        if epoch == Epoch.APPLICATION or cls.type in INITIAL_TYPES
    ]
    return st.one_of(*allowed)


def frames(epoch: int = Epoch.APPLICATION) -> st.SearchStrategy:
    """Any frame allowed under ``epoch``'s keys (STREAM frames only under application keys)."""
    if epoch == Epoch.APPLICATION:
        return st.one_of(stream_frames(), control_frames(epoch))
    return control_frames(epoch)


def frame_lists(epoch: int = Epoch.APPLICATION, max_size: int = 6) -> st.SearchStrategy[list]:
    """A non-empty list of frames for one packet under ``epoch``'s keys."""
    return st.lists(frames(epoch), min_size=1, max_size=max_size)


@st.composite
def headers(draw: st.DrawFn, epoch: int | None = None) -> Header:
    """A packet header (the payload fields are filled in by the caller from a Payload).

    Under initial keys: a source CID, path 0 and a token of up to MAX_TOKEN_LENGTH bytes (often
    none); under application keys: any path ID (it only enters the nonce) and either key phase.
    """
    if epoch is None:
        epoch = draw(st.sampled_from(Epoch))
    initial = epoch == Epoch.INITIAL
    token = b""
    if initial:
        token = draw(st.just(b"") | st.binary(max_size=MAX_TOKEN_LENGTH))
    return Header(
        draw(_EIGHT_BYTES),
        0 if initial else draw(varints(MAX_PATH_ID)),
        draw(st.integers(0, (1 << 64) - 1)),
        epoch=epoch,
        scid=draw(_EIGHT_BYTES) if initial else None,
        key_phase=0 if initial else draw(st.sampled_from([0, 1])),
        token=token,
    )


# --------------------------------------------------------------------------
# Settings of the equivalence properties (tests/*/test_fast_paths.py)

_SETTINGS = {
    "database": None,
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


def derandomized(max_examples: int) -> settings:
    """Settings for a default-suite property: the same examples every run (CI never goes red on
    a new random draw)."""
    return settings(max_examples=max_examples, derandomize=True, **_SETTINGS)


def fuzz(check: Callable[..., None], **strategies: st.SearchStrategy) -> None:
    """Run ``check`` on KWIK_FUZZ_EXAMPLES random examples drawn from ``strategies``; skip the
    test unless that variable is set (``make fuzz``)."""
    examples = os.environ.get("KWIK_FUZZ_EXAMPLES")
    if not examples:
        raise SkipTest("fuzzing runs only with KWIK_FUZZ_EXAMPLES set (make fuzz)")
    settings(max_examples=int(examples), **_SETTINGS)(given(**strategies)(check))()


def outcome(function: Callable[..., object], *args: object, **kwargs: object) -> tuple:
    """``("ok", result)`` or ``("error", the exception's class)``: what a caller can tell apart
    (messages may differ between a fast path and its general path)."""
    try:
        return ("ok", function(*args, **kwargs))
    except Exception as e:  # noqa: BLE001 - the class is the outcome compared
        return ("error", type(e))


__all__ = [
    "COMPRESSED", "CONTROL", "CONTROL_FRAME_STRATEGIES", "ENCRYPTED", "EXAMPLE_CONTROL_FRAMES",
    "FIN", "INITIAL_TYPES", "LONG_INITIAL_BYTE", "LONG_RETRY_BYTE", "ORDERED", "PRIORITY",
    "QOS_EXTENSION", "RETRANSMIT", "SHORT_BYTE", "SHORT_PHASE_1_BYTE", "WIRE_VERSION",
    "ack_frames", "checksum_offset", "control_frames", "derandomized", "extension",
    "frame_lists", "frames", "fuzz", "headers", "new_connection_id_frames", "outcome",
    "qos_extension", "qos_policies", "raw_control",
    "raw_datagram", "raw_frame", "stream_data", "stream_frames", "varint", "varints",
    "varints_body",
]
