"""
The test vectors of ``docs/protocol.rst``, checked byte for byte against the codecs.

The spec holds each vector in a literal block of this form, ending at the first blank line::

    # kwik-vector: NAME
    0a 1b 2c ... (hex bytes, whitespace-separated, over one or more lines)

:data:`VECTORS` says, for every name, the value the bytes encode.  Each vector gets its own test:
encoding the value gives exactly the spec's bytes, and decoding the bytes gives back the value.  A
further test requires the names in the spec and in the table to be the same, so that no vector goes
unchecked and no check loses its vector.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from ipaddress import ip_address
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.wire import (
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
    TransportParametersFrame,
    classify,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
    encode_varint,
    pull_varint,
)
from tests.core.crypto.test_tokens import TOKEN_VECTORS
from tests.core.test_lb import LB_VECTORS

SPEC = Path(__file__).parents[2] / "docs" / "protocol.rst"
MARKER = "# kwik-vector:"


class VectorFormatError(Exception):
    """The spec's vector blocks do not follow the agreed form."""


def parse_vectors(text: str) -> dict[str, bytes]:
    """Return ``{name: bytes}`` for every ``# kwik-vector: NAME`` block in ``text``."""
    vectors: dict[str, bytes] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line.startswith(MARKER):
            continue
        name = line[len(MARKER):].strip()
        if not name or name in vectors:
            raise VectorFormatError(f"line {i}: vector name {name!r} is empty or repeated")
        tokens: list[str] = []
        while i < len(lines) and lines[i].strip():
            tokens += lines[i].split()
            i += 1
        vectors[name] = _hex_bytes(name, tokens)
    return vectors


def _hex_bytes(name: str, tokens: list[str]) -> bytes:
    if not tokens:
        raise VectorFormatError(f"vector {name!r} has no bytes")
    for token in tokens:
        if len(token) != 2 or any(c not in "0123456789abcdefABCDEF" for c in token):
            raise VectorFormatError(f"vector {name!r}: {token!r} is not one hex byte")
    return bytes.fromhex("".join(tokens))


@cache
def spec_vectors() -> dict[str, bytes]:
    """The vectors of docs/protocol.rst (read once)."""
    return parse_vectors(SPEC.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------
# What each vector encodes

CID = bytes.fromhex("0102030405060708")
RESET_TOKEN = bytes.fromhex("8815eb33f2e1269c6056892ffc316227")
CHALLENGE = bytes.fromhex("a1a2a3a4a5a6a7a8")
PACKET_DCID = bytes.fromhex("0011223344556677")
KEY = bytes(range(16))
IV = bytes(range(16, 28))
PACKET_FRAME = StreamFrame(4, 0, b"kwik", fin=True)

#: Varint vectors: name -> value.
VARINT_VECTORS = {
    "varint-0": 0,
    "varint-37": 37,
    "varint-15293": 15293,
    "varint-494878333": 494878333,
    "varint-151288809941952652": 151288809941952652,
}

#: Frame vectors: name -> (frame, epoch); each frame is the whole plaintext of a packet.
FRAME_VECTORS = {
    "stream": (StreamFrame(4, 1024, b"hello kwik", fin=True), Epoch.APPLICATION),
    "stream-critical-qos": (
        StreamFrame(8, 0, b"urgent", priority=Priority.CRITICAL, qos=QosPolicy(1000, 50, 10, 1000)),
        Epoch.APPLICATION,
    ),
    "stream-retransmit": (
        StreamFrame(4, 0, b"again", retransmit=True, ordered=False), Epoch.APPLICATION
    ),
    "stream-compressed": (StreamFrame(0, 0, b"kwik " * 40, compress=True), Epoch.APPLICATION),
    "padding": (PaddingFrame(4), Epoch.APPLICATION),
    "ping": (PingFrame(), Epoch.APPLICATION),
    "ack": (AckFrame(1, ((90, 100), (50, 80), (3, 10)), 2500), Epoch.APPLICATION),
    "handshake": (HandshakeFrame(0, b"\x16\x03\x01\x00\x04test"), Epoch.INITIAL),
    "reset-stream": (ResetStreamFrame(4, 16, 5000), Epoch.APPLICATION),
    "stop-sending": (StopSendingFrame(4, 16), Epoch.APPLICATION),
    "max-data": (MaxDataFrame(1048576), Epoch.APPLICATION),
    "max-stream-data": (MaxStreamDataFrame(4, 262144), Epoch.APPLICATION),
    "max-streams": (MaxStreamsFrame(100), Epoch.APPLICATION),
    "data-blocked": (DataBlockedFrame(1048576), Epoch.APPLICATION),
    "stream-data-blocked": (StreamDataBlockedFrame(4, 262144), Epoch.APPLICATION),
    "streams-blocked": (StreamsBlockedFrame(100), Epoch.APPLICATION),
    "new-connection-id": (NewConnectionIdFrame(1, CID, RESET_TOKEN), Epoch.APPLICATION),
    "retire-connection-id": (RetireConnectionIdFrame(1), Epoch.APPLICATION),
    "path-challenge": (PathChallengeFrame(CHALLENGE), Epoch.APPLICATION),
    "path-response": (PathResponseFrame(CHALLENGE), Epoch.APPLICATION),
    "path-status": (PathStatusFrame(1, 1, PathState.BACKUP), Epoch.APPLICATION),
    "path-abandon": (PathAbandonFrame(1, 0), Epoch.APPLICATION),
    "add-address-v4": (AddAddressFrame(1, ip_address("192.0.2.7"), 4433), Epoch.APPLICATION),
    "add-address-v6": (AddAddressFrame(2, ip_address("2001:db8::7"), 4433), Epoch.APPLICATION),
    "connection-close": (ConnectionCloseFrame(0x0A, "bad ack", 0x02), Epoch.APPLICATION),
    "handshake-done": (HandshakeDoneFrame(), Epoch.APPLICATION),
    "transport-parameters": (
        TransportParametersFrame({1: 30000, 2: 1048576, 3: 262144, 4: 100}), Epoch.APPLICATION
    ),
    "transport-parameters-server-load": (
        TransportParametersFrame({7: 4, 8: 1350, 9: 250}), Epoch.APPLICATION
    ),
    "datagram": (DatagramFrame(b"kwik datagram"), Epoch.APPLICATION),
    "transport-parameters-datagrams": (
        TransportParametersFrame({8: 1350, 0x0A: 1200}), Epoch.APPLICATION
    ),
}

PACKET_VECTORS = ("packet-application",)
#: A whole Initial datagram with a Retry token (protocol.rst, "Envelope"): client keys of
#: INITIAL_DCID, source CID CID, token INITIAL_TOKEN, sequence 0, carrying INITIAL_FRAME.
INITIAL_PACKET_VECTORS = ("packet-initial-token",)
INITIAL_TOKEN = b"kwik token"
INITIAL_FRAME = HandshakeFrame(0, b"\x16\x03\x01\x00\x04test")
INITIAL_DCID = bytes.fromhex("8394c8f03e515708")
#: Initial keys derived from INITIAL_DCID: name -> (is_client, what the bytes are).
KEY_VECTORS = {
    "initial-client-key-iv": (True, "key||iv"),
    "initial-server-key-iv": (False, "key||iv"),
    "initial-client-seal": (True, "seal"),
}
#: Key update (protocol.rst, "Key update"): name -> (generation 0's key || IV, generations on).
KEY_UPDATE_VECTORS = {
    "key-update-generation-1": (bytes(range(28)), 1),
    "key-update-initial-client-generation-2": (None, 2),  # None: initial-client-key-iv
}
#: Packets in key phase 1: sealed with the next generation of KEY || IV.
PHASE_PACKET_VECTORS = ("packet-application-phase-1",)
VECTORS = (
    *VARINT_VECTORS, *FRAME_VECTORS, *PACKET_VECTORS, *KEY_VECTORS, *KEY_UPDATE_VECTORS,
    *PHASE_PACKET_VECTORS, *INITIAL_PACKET_VECTORS, *TOKEN_VECTORS, *LB_VECTORS,
)


def nonce(path_id: int, seq: int) -> bytes:
    """protocol.rst: nonce = IV XOR (path_id as 4 bytes || sequence number as 8 bytes)."""
    mask = path_id.to_bytes(4, "big") + seq.to_bytes(8, "big")
    return bytes(a ^ b for a, b in zip(IV, mask))


def aes_seal(path_id: int, seq: int, aad: bytes, plaintext: bytes) -> bytes:
    """AES-128-GCM with the vector's key and the spec's nonce rule."""
    return AESGCM(KEY).encrypt(nonce(path_id, seq), plaintext, aad)


class VectorTests(SynchronousTestCase):
    """Every vector of the spec, encoded and decoded (one generated test per vector)."""

    def expected(self, name: str) -> bytes:
        """The spec's bytes for ``name``; fails the test if the spec or the vector is missing."""
        if not SPEC.exists():
            self.fail(f"{SPEC} does not exist, so its test vectors cannot be checked")
        vectors = spec_vectors()
        if name not in vectors:
            self.fail(f"vector {name!r} is missing from {SPEC.name}")
        return vectors[name]

    def check_varint(self, name: str) -> None:
        """encode_varint gives the bytes; pull_varint reads the value and all the bytes back."""
        value, data = VARINT_VECTORS[name], self.expected(name)
        self.assertEqual(encode_varint(value).hex(" "), data.hex(" "))
        self.assertEqual(pull_varint(data, 0), (value, len(data)))

    def check_frame(self, name: str) -> None:
        """encode_payload gives the bytes; decode_payload gives the frame back."""
        frame, epoch = FRAME_VECTORS[name]
        data = self.expected(name)
        payload = encode_payload([frame], epoch)
        self.assertEqual(payload.plaintext.hex(" "), data.hex(" "))
        got = decode_payload(
            data, frame_count=1, packet_type=classify([frame]), compression=payload.compression,
            epoch=epoch,
        )
        self.assertEqual(got, [frame])
        self.assertIs(type(got[0]), type(frame))
        if isinstance(frame, StreamFrame):
            self.assertEqual(got[0].compressed, frame.compress)

    def check_packet(self, name: str) -> None:
        """The datagram is built exactly, and it decodes, opens and parses back to its frame."""
        data = self.expected(name)
        payload = encode_payload([PACKET_FRAME])
        header = Header(
            PACKET_DCID, 1, 42, payload.packet_type, payload.frame_count, payload.compression,
            Epoch.APPLICATION,
        )
        self.assertEqual(encode_packet(header, payload.plaintext, aes_seal).hex(" "), data.hex(" "))
        packet = decode_packet(data)
        header.total_length = len(payload.plaintext) + 16
        header.path_id = 0  # not on the wire: the receiver knows it from the DCID
        self.assertEqual(packet.header, header)
        opened = AESGCM(KEY).decrypt(nonce(1, 42), bytes(packet.payload), packet.aad)
        h = packet.header
        got = decode_payload(
            opened, frame_count=h.frame_count, packet_type=h.packet_type,
            compression=h.compression, epoch=h.epoch,
        )
        self.assertEqual(got, [PACKET_FRAME])

    def check_keys(self, name: str) -> None:
        """The initial keys derived from the spec's DCID, and a seal under them, are exact."""
        from kwik_twisted.core.crypto.protection import initial_keys, initial_protections

        is_client, what = KEY_VECTORS[name]
        data = self.expected(name)
        if what == "key||iv":
            key, iv = initial_keys(INITIAL_DCID, client=is_client)
            self.assertEqual((key + iv).hex(" "), data.hex(" "))
            return
        send, _ = initial_protections(INITIAL_DCID, is_client=is_client)
        self.assertEqual(send.seal(0, 0, b"", b"kwik").hex(" "), data.hex(" "))
        _, receive = initial_protections(INITIAL_DCID, is_client=not is_client)
        self.assertEqual(receive.open(0, 0, b"", data), b"kwik")

    def check_key_update(self, name: str) -> None:
        """The next generations' key || IV are exactly the spec's, and each opens what it seals."""
        from kwik_twisted.core.crypto.keyupdate import next_protection, next_secret
        from kwik_twisted.core.crypto.protection import PacketProtection, initial_keys

        secret, generations = KEY_UPDATE_VECTORS[name]
        if secret is None:
            secret = b"".join(initial_keys(INITIAL_DCID, client=True))
        protection = PacketProtection(secret[:16], secret[16:])
        for _ in range(generations):
            secret = next_secret(secret)
            protection = next_protection(protection)
        self.assertEqual(secret.hex(" "), self.expected(name).hex(" "))
        self.assertEqual(protection.secret, secret)

    def check_phase_packet(self, name: str) -> None:
        """A key phase 1 datagram: Key Epoch 2 on the wire, sealed with the next generation, and
        it decodes back to application keys in phase 1."""
        from kwik_twisted.core.crypto.keyupdate import next_secret

        data = self.expected(name)
        secret = next_secret(KEY + IV)
        key, iv = secret[:16], secret[16:]
        mask = (1).to_bytes(4, "big") + (42).to_bytes(8, "big")
        nonce_1 = bytes(a ^ b for a, b in zip(iv, mask))
        payload = encode_payload([PACKET_FRAME])
        header = Header(
            PACKET_DCID, 1, 42, payload.packet_type, payload.frame_count, payload.compression,
            Epoch.APPLICATION,
        )
        header.key_phase = 1

        def seal(path_id: int, seq: int, aad: bytes, plaintext: bytes) -> bytes:
            return AESGCM(key).encrypt(nonce_1, plaintext, aad)

        self.assertEqual(encode_packet(header, payload.plaintext, seal).hex(" "), data.hex(" "))
        packet = decode_packet(data)
        self.assertEqual((packet.header.epoch, packet.header.key_phase), (Epoch.APPLICATION, 1))
        opened = AESGCM(key).decrypt(nonce_1, bytes(packet.payload), packet.aad)
        self.assertEqual(opened, payload.plaintext)

    def check_initial_packet(self, name: str) -> None:
        """An Initial with a token: the long envelope exactly, and it decodes and opens back."""
        from kwik_twisted.core.crypto.protection import initial_protections

        data = self.expected(name)
        send, _ = initial_protections(INITIAL_DCID, is_client=True)
        payload = encode_payload([INITIAL_FRAME], Epoch.INITIAL)
        header = Header(
            INITIAL_DCID, 0, 0, payload.packet_type, payload.frame_count, payload.compression,
            Epoch.INITIAL, CID, token=INITIAL_TOKEN,
        )
        sealed = encode_packet(header, payload.plaintext, send.seal)
        self.assertEqual(sealed.hex(" "), data.hex(" "))
        packet = decode_packet(data)
        self.assertEqual((packet.header.token, packet.header.scid), (INITIAL_TOKEN, CID))
        _, receive = initial_protections(INITIAL_DCID, is_client=False)
        self.assertEqual(receive.open(0, 0, packet.aad, packet.payload), payload.plaintext)

    def check_token(self, name: str) -> None:
        """Stateless reset, Retry and Version Negotiation (computed as tests/core/crypto/
        test_tokens.py does) are exactly the spec's bytes."""
        self.assertEqual(TOKEN_VECTORS[name]().hex(" "), self.expected(name).hex(" "))

    def check(self, name: str) -> None:
        """Check vector ``name`` with the checker for its kind."""
        if name in TOKEN_VECTORS:
            self.check_token(name)
        elif name in LB_VECTORS:
            self.assertEqual(LB_VECTORS[name]().hex(" "), self.expected(name).hex(" "))
        elif name in INITIAL_PACKET_VECTORS:
            self.check_initial_packet(name)
        elif name in KEY_UPDATE_VECTORS:
            self.check_key_update(name)
        elif name in PHASE_PACKET_VECTORS:
            self.check_phase_packet(name)
        elif name in KEY_VECTORS:
            self.check_keys(name)
        elif name in VARINT_VECTORS:
            self.check_varint(name)
        elif name in FRAME_VECTORS:
            self.check_frame(name)
        else:
            self.check_packet(name)

    def test_spec_and_table_name_the_same_vectors(self) -> None:
        """Every vector in protocol.rst has a check here and every check has its vector there."""
        if not SPEC.exists():
            self.fail(f"{SPEC} does not exist, so its test vectors cannot be checked")
        in_spec = set(spec_vectors())
        self.assertEqual(sorted(in_spec - set(VECTORS)), [], "vectors in the spec with no check")
        self.assertEqual(sorted(set(VECTORS) - in_spec), [], "checks with no vector in the spec")


def _vector_test(name: str) -> Callable[[VectorTests], None]:
    def test(self: VectorTests) -> None:
        self.check(name)

    test.__doc__ = (
        f"Vector {name!r}: the codecs encode its value to exactly the spec's bytes, and decode the "
        "bytes back to the value."
    )
    test.__name__ = "test_vector_" + name.replace("-", "_")
    return test


for _name in VECTORS:
    _test = _vector_test(_name)
    setattr(VectorTests, _test.__name__, _test)
del _name, _test


class ParserTests(SynchronousTestCase):
    """The vector block parser itself."""

    def test_blocks_are_read_up_to_the_first_blank_line(self) -> None:
        """A block's hex bytes may span indented lines and end at the first blank line."""
        text = (
            "Intro::\n\n   # kwik-vector: one\n   0a 1B\n   ff\n\n   00 11\n"
            "::\n\n   # kwik-vector: two\n   25\n"
        )
        self.assertEqual(parse_vectors(text), {"one": b"\x0a\x1b\xff", "two": b"\x25"})

    def test_malformed_blocks_are_refused(self) -> None:
        """A repeated or empty name, a block without bytes, or a token not one hex byte: refused."""
        for text in (
            "# kwik-vector: a\n00\n\n# kwik-vector: a\n01\n",
            "# kwik-vector: a\n\n00\n",
            "# kwik-vector: a\n0a1b\n",
            "# kwik-vector: a\nzz\n",
            "# kwik-vector:\n00\n",
        ):
            self.assertRaises(VectorFormatError, parse_vectors, text)
