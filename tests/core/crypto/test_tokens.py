"""
Tests for stateless reset, Retry and Version Negotiation (kwik_twisted.core.crypto.tokens).

The vectors of protocol.rst's "Stateless reset", "Retry" and "Version negotiation" sections are
:data:`TOKEN_VECTORS` (name -> how to compute the bytes) and :data:`EXPECTED` (name -> hex); a
test checks each computation against its hex, another against docs/protocol.rst once the
sections are there.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted import wire
from kwik_twisted.core.crypto import tokens
from kwik_twisted.core.crypto.tokens import (
    DEFAULT_BURST,
    DEFAULT_RATE,
    MIN_RESET_SIZE,
    RETRY_INTEGRITY_KEY,
    RETRY_INTEGRITY_NONCE,
    RETRY_TOKEN_LENGTH,
    RateLimiter,
    ResetTokens,
    RetryTokens,
    decode_retry,
    decode_version_negotiation,
    derive_static_secret,
    encode_retry,
    encode_version_negotiation,
    is_version_negotiation,
    match_reset,
    stateless_reset,
    version_negotiation_reply,
)
from kwik_twisted.core.entropy import SeededEntropy
from kwik_twisted.errors import (
    ConfigurationError,
    DecryptionFailed,
    DroppedPacket,
    InternalError,
    MalformedPacket,
    UnsupportedVersion,
)

from .test_protection import reference_hkdf

SECRET = bytes(range(32))
PRIVATE_KEY = b"kwik test private key"
CID = bytes.fromhex("0011223344556677")
CLIENT_SCID = bytes.fromhex("a1a2a3a4a5a6a7a8")
ODCID = bytes.fromhex("8394c8f03e515708")
RSCID = bytes.fromhex("0102030405060708")
IP4 = bytes([192, 0, 2, 7])
IP6 = bytes.fromhex("20010db8000000000000000000000007")
NOW = 1700000000.0
NONCE = bytes(range(12))
V3 = 0x4B574B03


class CountingEntropy:
    """Fixed randomness: the bytes 00 01 02 ... ff 00 01 ... in order, as the vectors use."""

    def __init__(self) -> None:
        self.i = 0

    def random_bytes(self, n: int) -> bytes:
        """The next ``n`` bytes of the counting stream."""
        out = bytes((self.i + k) & 0xFF for k in range(n))
        self.i += n
        return out


def reset_token() -> bytes:
    """The token of ``CID`` under ``SECRET``."""
    return ResetTokens(SECRET).token(CID)


def retry_token() -> bytes:
    """The Retry token of the vectors."""
    return RetryTokens(SECRET).issue(IP4, ODCID, RSCID, NOW, NONCE)


#: Vector name (protocol.rst) -> its bytes, computed by the code under test.
TOKEN_VECTORS: dict[str, Callable[[], bytes]] = {
    "static-secret": lambda: derive_static_secret(PRIVATE_KEY),
    "stateless-reset-token": reset_token,
    "stateless-reset": lambda: stateless_reset(reset_token(), 100, CountingEntropy()) or b"",
    "retry-token": retry_token,
    "retry": lambda: encode_retry(CLIENT_SCID, RSCID, retry_token(), ODCID),
    "version-negotiation": lambda: encode_version_negotiation(CLIENT_SCID, ODCID, [V3], 0x2A),
}
#: The vectors' bytes as published.
EXPECTED = {
    "static-secret": "756722851020e6247e2828b3f6c4b63de3766b363a59597461f4c6a87c2defb9",
    "stateless-reset-token": "8815eb33f2e1269c6056892ffc316227",
    "stateless-reset": (
        "40090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30"
        "313233348815eb33f2e1269c6056892ffc316227"
    ),
    "retry-token": (
        "000102030405060708090a0b969662fb2aef70f59ca72f6f0918b66acd16b7e958b2a18f55ec28f5d8ce"
        "392cf181042f11a48949"
    ),
    "retry": (
        "f04b574b0308a1a2a3a4a5a6a7a8080102030405060708000102030405060708090a0b969662fb2aef70"
        "f59ca72f6f0918b66acd16b7e958b2a18f55ec28f5d8ce392cf181042f11a48949a3c9e0c0ab2d02a57d"
        "40b0c0f0dfd99a"
    ),
    "version-negotiation": "aa0000000008a1a2a3a4a5a6a7a8088394c8f03e5157084b574b03",
}


class VectorTests(SynchronousTestCase):
    """The published vectors, computed by the code under test and by independent references."""

    def test_vectors_are_exact(self) -> None:
        """Every vector computes to exactly its published hex."""
        self.assertEqual(sorted(TOKEN_VECTORS), sorted(EXPECTED))
        for name, compute in TOKEN_VECTORS.items():
            self.assertEqual(compute().hex(), EXPECTED[name], name)

    def test_vectors_match_protocol_rst_where_present(self) -> None:
        """Each of these vectors that docs/protocol.rst carries has the same bytes there."""
        from tests.wire.test_vectors import parse_vectors

        spec = Path(__file__).parents[3] / "docs" / "protocol.rst"
        vectors = parse_vectors(spec.read_text(encoding="utf-8"))
        for name in set(vectors) & set(EXPECTED):
            self.assertEqual(vectors[name].hex(), EXPECTED[name], name)

    def test_derivations_match_a_reference_hkdf_and_hmac(self) -> None:
        """The static secret, K_reset and the token are RFC 5869 / RFC 2104 as written out."""
        self.assertEqual(
            derive_static_secret(PRIVATE_KEY),
            reference_hkdf(b"kwik v3", PRIVATE_KEY, b"static secret", 32),
        )
        k_reset = reference_hkdf(b"\0" * 32, SECRET, b"kwik v3 stateless reset", 32)
        self.assertEqual(reset_token(), hmac.new(k_reset, CID, hashlib.sha256).digest()[:16])

    def test_retry_token_is_aes_gcm_under_the_derived_key(self) -> None:
        """The token opens with AES-128-GCM under HKDF(secret, "kwik v3 retry token")[:16] and
        the client IP as AAD, to time in ms || ODCID || RSCID."""
        key = reference_hkdf(b"\0" * 32, SECRET, b"kwik v3 retry token", 16)
        token = retry_token()
        plain = AESGCM(key).decrypt(token[:12], token[12:], IP4)
        self.assertEqual(plain, (1700000000000).to_bytes(8, "big") + ODCID + RSCID)

    def test_retry_integrity_key_nonce_and_tag(self) -> None:
        """The integrity key and nonce are the SHA-256 prefixes, and the tag is AES-GCM of
        nothing over the pseudo-packet (ODCID length, ODCID, Retry without tag)."""
        self.assertEqual(
            RETRY_INTEGRITY_KEY, hashlib.sha256(b"kwik v3 retry integrity key").digest()[:16]
        )
        self.assertEqual(
            RETRY_INTEGRITY_NONCE, hashlib.sha256(b"kwik v3 retry integrity nonce").digest()[:12]
        )
        retry = bytes.fromhex(EXPECTED["retry"])
        pseudo = b"\x08" + ODCID + retry[:-16]
        self.assertEqual(
            AESGCM(RETRY_INTEGRITY_KEY).encrypt(RETRY_INTEGRITY_NONCE, b"", pseudo), retry[-16:]
        )

    def test_constants_agree_with_the_wire(self) -> None:
        """The version, Retry first byte and token bound are the envelope's."""
        self.assertEqual(wire.VERSION, V3)
        self.assertEqual(tokens.RETRY_FIRST_BYTE, 0xF0)
        self.assertLessEqual(RETRY_TOKEN_LENGTH, wire.packets.MAX_TOKEN_LENGTH)
        self.assertEqual(wire.packets.MAX_TOKEN_LENGTH, 96)
        self.assertEqual((DEFAULT_RATE, DEFAULT_BURST), (100.0, 20))


class StaticSecretTests(SynchronousTestCase):
    """derive_static_secret."""

    def test_same_key_same_secret_other_key_other_secret(self) -> None:
        """The secret is 32 bytes, a function of the key alone, different for another key."""
        a = derive_static_secret(PRIVATE_KEY)
        self.assertEqual(len(a), 32)
        self.assertEqual(derive_static_secret(bytearray(PRIVATE_KEY)), a)
        self.assertNotEqual(derive_static_secret(PRIVATE_KEY + b"x"), a)

    def test_no_key_is_refused(self) -> None:
        """An empty key is a configuration error, not a secret everybody knows."""
        self.assertRaises(ConfigurationError, derive_static_secret, b"")


class ResetTokenTests(SynchronousTestCase):
    """ResetTokens."""

    def test_tokens_depend_on_cid_and_secret(self) -> None:
        """Tokens are 16 bytes, stable, and differ per CID and per secret."""
        r = ResetTokens(SECRET)
        self.assertEqual(len(r.token(CID)), 16)
        self.assertEqual(r.token(CID), ResetTokens(bytes(SECRET)).token(CID))
        self.assertNotEqual(r.token(CID), r.token(RSCID))
        self.assertNotEqual(r.token(CID), ResetTokens(SECRET[::-1]).token(CID))


def short_packet(dcid: bytes, seq: int) -> bytes:
    """A real short-header packet (a PING under application keys) as the wire encodes it."""
    payload = wire.encode_payload([wire.PingFrame()])
    aead = AESGCM(bytes(16))

    def seal(path_id: int, s: int, aad: bytes, plaintext: bytes) -> bytes:
        return aead.encrypt(s.to_bytes(12, "big"), plaintext, aad)

    return wire.packets.encode_application_packet(
        dcid, 0, seq, payload.packet_type, payload.frame_count, payload.compression,
        payload.plaintext, seal,
    )


class StatelessResetTests(SynchronousTestCase):
    """stateless_reset and match_reset."""

    def test_nothing_answers_a_datagram_of_the_minimum_size_or_less(self) -> None:
        """Datagrams of 0, 41 and 42 bytes get no reset; 43 bytes gets a 42-byte one."""
        for size in (0, 41, MIN_RESET_SIZE):
            self.assertIsNone(stateless_reset(reset_token(), size, SeededEntropy(1)))
        reset = stateless_reset(reset_token(), MIN_RESET_SIZE + 1, SeededEntropy(1))
        assert reset is not None
        self.assertEqual(len(reset), MIN_RESET_SIZE)

    def test_sizes_cover_the_range_and_stay_below_the_datagram(self) -> None:
        """Sizes are in [42, min(received - 1, 74)], every value occurs, both key phases occur,
        and the token ends every reset."""
        entropy = SeededEntropy(7)
        for received, largest in ((50, 49), (1500, 74)):
            sizes, firsts = set(), set()
            for _ in range(2000):
                reset = stateless_reset(reset_token(), received, entropy)
                assert reset is not None
                sizes.add(len(reset))
                firsts.add(reset[0])
                self.assertEqual(reset[-16:], reset_token())
            self.assertEqual(sizes, set(range(MIN_RESET_SIZE, largest + 1)))
            self.assertEqual(firsts, {0x40, 0x44})

    def test_a_reset_never_answers_a_reset(self) -> None:
        """Two stateless ends answering each other's resets stop: sizes strictly fall, and a
        reset of the minimum size is never answered."""
        entropy = SeededEntropy(3)
        size, answers = 1500, 0
        while (reset := stateless_reset(reset_token(), size, entropy)) is not None:
            self.assertLess(len(reset), size)
            size, answers = len(reset), answers + 1
        self.assertLessEqual(size, MIN_RESET_SIZE)
        self.assertLessEqual(answers, 1 + 74 - MIN_RESET_SIZE)

    def test_a_real_reset_is_recognised(self) -> None:
        """match_reset finds the token among several, from a list or a generator."""
        reset = stateless_reset(reset_token(), 1200, SeededEntropy(5))
        assert reset is not None
        others = [ResetTokens(SECRET).token(bytes([i]) * 8) for i in range(4)]
        self.assertTrue(match_reset(reset, [*others, reset_token()]))
        self.assertTrue(match_reset(reset, [reset_token(), *others]))
        self.assertTrue(match_reset(memoryview(reset), (t for t in [reset_token()])))
        self.assertFalse(match_reset(reset, others))
        self.assertFalse(match_reset(reset, []))

    def test_a_normal_packet_of_the_same_length_is_not_a_reset(self) -> None:
        """A real short packet is not taken for a reset of the same length, with the token of
        its own DCID among those checked."""
        packet = short_packet(CID, 42)
        self.assertLess(len(packet), 75)
        entropy = SeededEntropy(9)
        for _ in range(5000):
            reset = stateless_reset(reset_token(), len(packet) + 1, entropy)
            assert reset is not None
            if len(reset) == len(packet):
                break
        self.assertEqual(len(reset), len(packet))
        self.assertTrue(match_reset(reset, [reset_token()]))
        self.assertFalse(match_reset(packet, [reset_token()]))

    def test_shape_is_checked_before_the_token(self) -> None:
        """The token alone is not enough: too short or a long header is no reset."""
        reset = stateless_reset(reset_token(), 1200, SeededEntropy(2))
        assert reset is not None
        self.assertFalse(match_reset(reset[-41:], [reset_token()]))
        self.assertFalse(match_reset(bytes([0xC0]) + reset[1:], [reset_token()]))
        self.assertFalse(match_reset(bytes([0x00]) + reset[1:], [reset_token()]))
        self.assertTrue(match_reset(bytes([0x7F]) + reset[1:], [reset_token()]))
        self.assertFalse(match_reset(b"", [reset_token()]))

    def test_a_token_of_the_wrong_size_is_refused(self) -> None:
        """Building a reset with a token that is not 16 bytes is our own bug."""
        self.assertRaises(InternalError, stateless_reset, b"short", 100, SeededEntropy(1))


class RateLimiterTests(SynchronousTestCase):
    """RateLimiter, in simulated time."""

    def test_burst_then_refusal(self) -> None:
        """A full bucket allows ``burst`` events at once, then none until time passes."""
        limiter = RateLimiter()
        self.assertEqual(sum(limiter.allow(5.0) for _ in range(50)), DEFAULT_BURST)
        self.assertFalse(limiter.allow(5.0))
        self.assertTrue(limiter.allow(5.011))

    def test_rate_over_ten_seconds(self) -> None:
        """Offered 1000 events/s for 10 s, it allows the burst plus 100 per second."""
        limiter = RateLimiter(100.0, 20)
        allowed = sum(limiter.allow(i / 1000) for i in range(10001))
        self.assertEqual(allowed, 1020)

    def test_idle_time_refills_only_up_to_the_burst(self) -> None:
        """An hour of silence gives back ``burst`` events, not 360,000."""
        limiter = RateLimiter(100.0, 20)
        limiter.allow(0.0)
        self.assertEqual(sum(limiter.allow(3600.0) for _ in range(100)), 20)

    def test_time_going_backwards_adds_nothing(self) -> None:
        """A clock stepping back neither refills nor breaks the bucket."""
        limiter = RateLimiter(10.0, 1)
        self.assertTrue(limiter.allow(100.0))
        self.assertFalse(limiter.allow(50.0))
        self.assertFalse(limiter.allow(100.05))
        self.assertTrue(limiter.allow(100.1))

    def test_bad_settings_are_refused(self) -> None:
        """A zero rate or burst is a configuration error."""
        self.assertRaises(ConfigurationError, RateLimiter, 0.0, 20)
        self.assertRaises(ConfigurationError, RateLimiter, 100.0, 0)


class RetryTokenTests(SynchronousTestCase):
    """RetryTokens.issue and validate."""

    def setUp(self) -> None:
        self.tokens = RetryTokens(SECRET)
        self.token = self.tokens.issue(IP4, ODCID, RSCID, NOW, NONCE)

    def test_round_trip_ipv4_and_ipv6(self) -> None:
        """A fresh token validates for its address and Retry SCID, giving back the ODCID."""
        self.assertEqual(len(self.token), RETRY_TOKEN_LENGTH)
        self.assertEqual(self.tokens.validate(self.token, IP4, RSCID, NOW + 1), ODCID)
        six = self.tokens.issue(IP6, ODCID, RSCID, NOW, NONCE)
        self.assertEqual(self.tokens.validate(six, IP6, RSCID, NOW), ODCID)

    def test_another_worker_or_restart_validates(self) -> None:
        """A RetryTokens from the same secret (another worker, a restart) accepts the token;
        one from another secret does not."""
        self.assertEqual(RetryTokens(SECRET).validate(self.token, IP4, RSCID, NOW), ODCID)
        self.assertIsNone(RetryTokens(SECRET[::-1]).validate(self.token, IP4, RSCID, NOW))

    def test_another_address_fails(self) -> None:
        """A token used from another IP (or the v6 form of a v4 address) is refused."""
        self.assertIsNone(self.tokens.validate(self.token, bytes([192, 0, 2, 8]), RSCID, NOW))
        mapped = bytes(10) + b"\xff\xff" + IP4
        self.assertIsNone(self.tokens.validate(self.token, mapped, RSCID, NOW))

    def test_lifetime_and_clock_skew(self) -> None:
        """Valid up to ``lifetime`` after issue and up to 1 s before it; not beyond."""
        v = self.tokens.validate
        self.assertEqual(v(self.token, IP4, RSCID, NOW + 10.0), ODCID)
        self.assertIsNone(v(self.token, IP4, RSCID, NOW + 10.01))
        self.assertEqual(v(self.token, IP4, RSCID, NOW - 1.0), ODCID)
        self.assertIsNone(v(self.token, IP4, RSCID, NOW - 1.01))
        short = RetryTokens(SECRET, lifetime=2.0)
        self.assertIsNone(short.validate(self.token, IP4, RSCID, NOW + 3))

    def test_wrong_retry_scid_fails(self) -> None:
        """An Initial not sent to the Retry's SCID (for example, to the ODCID) is refused."""
        self.assertIsNone(self.tokens.validate(self.token, IP4, ODCID, NOW))
        self.assertIsNone(self.tokens.validate(self.token, IP4, RSCID[:7], NOW))

    def test_every_tampered_byte_fails(self) -> None:
        """Flipping any bit of the token, or cutting or extending it, makes it invalid."""
        for i in range(len(self.token)):
            for bit in (0x01, 0x80):
                bad = bytearray(self.token)
                bad[i] ^= bit
                self.assertIsNone(self.tokens.validate(bytes(bad), IP4, RSCID, NOW), (i, bit))
        self.assertIsNone(self.tokens.validate(self.token[:-1], IP4, RSCID, NOW))
        self.assertIsNone(self.tokens.validate(self.token + b"\0", IP4, RSCID, NOW))
        self.assertIsNone(self.tokens.validate(b"", IP4, RSCID, NOW))

    def test_misuse_is_refused(self) -> None:
        """Bad local arguments are bugs (InternalError) or configuration errors."""
        self.assertRaises(InternalError, self.tokens.issue, IP4[:3], ODCID, RSCID, NOW, NONCE)
        self.assertRaises(InternalError, self.tokens.issue, IP4, ODCID[:7], RSCID, NOW, NONCE)
        self.assertRaises(InternalError, self.tokens.issue, IP4, ODCID, RSCID, NOW, NONCE[:11])
        self.assertRaises(InternalError, self.tokens.issue, IP4, ODCID, RSCID, -1.0, NONCE)
        self.assertRaises(InternalError, self.tokens.validate, self.token, b"", RSCID, NOW)
        self.assertRaises(ConfigurationError, RetryTokens, SECRET, 0.0)

    @given(data=st.binary(max_size=200))
    @settings(max_examples=200, deadline=None)
    def test_random_tokens_are_refused_quietly(self, data: bytes) -> None:
        """Whatever a client puts in its token, validate returns None and raises nothing."""
        self.assertIsNone(self.tokens.validate(data, IP4, RSCID, NOW))


class RetryPacketTests(SynchronousTestCase):
    """encode_retry and decode_retry."""

    def setUp(self) -> None:
        self.token = retry_token()
        self.retry = encode_retry(CLIENT_SCID, RSCID, self.token, ODCID)

    def test_round_trip(self) -> None:
        """The client reads back the server's new SCID and the token, with and without the
        check of its own SCID."""
        self.assertEqual(decode_retry(self.retry, ODCID), (RSCID, self.token))
        self.assertEqual(decode_retry(memoryview(self.retry), ODCID, CLIENT_SCID)[0], RSCID)
        self.assertEqual(self.retry[0], 0xF0)
        self.assertEqual(self.retry[1:5], V3.to_bytes(4, "big"))
        one = encode_retry(CLIENT_SCID, RSCID, b"t", ODCID)
        self.assertEqual(decode_retry(one, ODCID), (RSCID, b"t"))
        big = encode_retry(CLIENT_SCID, RSCID, b"t" * 96, ODCID)
        self.assertEqual(decode_retry(big, ODCID), (RSCID, b"t" * 96))

    def test_the_tag_binds_the_original_dcid(self) -> None:
        """A Retry is accepted only by the client whose first Initial went to that ODCID."""
        self.assertRaises(DecryptionFailed, decode_retry, self.retry, RSCID[::-1])

    def test_every_tampered_byte_is_dropped(self) -> None:
        """Any flipped bit raises a DroppedPacket (mostly the tag: DecryptionFailed)."""
        for i in range(len(self.retry)):
            bad = bytearray(self.retry)
            bad[i] ^= 0x01
            with self.assertRaises(DroppedPacket, msg=str(i)):
                decode_retry(bytes(bad), ODCID)
        bad = bytearray(self.retry)
        bad[20] ^= 0x01
        self.assertRaises(DecryptionFailed, decode_retry, bytes(bad), ODCID)

    def test_shape_errors(self) -> None:
        """Wrong version, first byte, CID length, DCID, size and trailing bytes are dropped
        with the matching error."""
        r = self.retry
        self.assertRaises(UnsupportedVersion, decode_retry, r[:1] + b"\0\0\0\1" + r[5:], ODCID)
        self.assertRaises(MalformedPacket, decode_retry, b"\xc0" + r[1:], ODCID)
        self.assertRaises(MalformedPacket, decode_retry, r[:5] + b"\x07" + r[6:], ODCID)
        self.assertRaises(MalformedPacket, decode_retry, r[:14] + b"\x09" + r[15:], ODCID)
        self.assertRaises(MalformedPacket, decode_retry, r, ODCID, RSCID)
        self.assertRaises(MalformedPacket, decode_retry, r[:39], ODCID)  # no token
        self.assertRaises(MalformedPacket, decode_retry, b"", ODCID)
        self.assertRaises(DecryptionFailed, decode_retry, r + b"\0", ODCID)
        longest = encode_retry(CLIENT_SCID, RSCID, b"t" * 96, ODCID)
        self.assertRaises(MalformedPacket, decode_retry, longest[:23] + b"t" + longest[23:], ODCID)

    def test_a_retry_must_name_a_new_cid(self) -> None:
        """A Retry whose SCID is the ODCID is refused (even with a good tag)."""
        same = encode_retry(CLIENT_SCID, ODCID, self.token, ODCID)
        self.assertRaises(MalformedPacket, decode_retry, same, ODCID)

    def test_encoding_misuse_is_refused(self) -> None:
        """Empty or oversized tokens and CIDs other than 8 bytes are bugs of the caller."""
        self.assertRaises(InternalError, encode_retry, CLIENT_SCID, RSCID, b"", ODCID)
        self.assertRaises(InternalError, encode_retry, CLIENT_SCID, RSCID, b"t" * 97, ODCID)
        self.assertRaises(InternalError, encode_retry, CLIENT_SCID[:7], RSCID, b"t", ODCID)
        self.assertRaises(InternalError, decode_retry, self.retry, ODCID[:4])

    @given(data=st.binary(max_size=160))
    @settings(max_examples=300, deadline=None)
    def test_random_bytes_raise_only_dropped_packet(self, data: bytes) -> None:
        """decode_retry on arbitrary bytes raises a DroppedPacket subclass and nothing else."""
        with self.assertRaises(DroppedPacket):
            decode_retry(data, ODCID)

    @given(tail=st.binary(max_size=140), cid_lengths=st.sampled_from([b"\x08", b"\x00", b"\xff"]))
    @settings(max_examples=300, deadline=None)
    def test_retry_shaped_bytes_raise_only_dropped_packet(
        self, tail: bytes, cid_lengths: bytes
    ) -> None:
        """Bytes with a Retry's first byte and version get past the first checks and still
        raise only DroppedPacket subclasses."""
        data = b"\xf0" + V3.to_bytes(4, "big") + cid_lengths + tail
        with self.assertRaises(DroppedPacket):
            decode_retry(data, ODCID)


def decode_vn_any(data: bytes) -> tuple[bytes, bytes, tuple[int, ...]]:
    """A Version Negotiation's CIDs of any length and its versions (test helper)."""
    dcid_end = 6 + data[5]
    scid_end = dcid_end + 1 + data[dcid_end]
    count = (len(data) - scid_end) // 4
    versions = tuple(
        int.from_bytes(data[scid_end + 4 * i : scid_end + 4 * i + 4], "big") for i in range(count)
    )
    return data[6:dcid_end], data[dcid_end + 1 : scid_end], versions


class VersionNegotiationTests(SynchronousTestCase):
    """encode/decode_version_negotiation, is_version_negotiation, version_negotiation_reply."""

    def test_round_trip(self) -> None:
        """CIDs and the version list come back; the first byte has the form bit and 7 random
        bits."""
        vn = encode_version_negotiation(CLIENT_SCID, ODCID, [V3, 0x1A2A3A4A], 0xFF)
        self.assertEqual(vn[0], 0xFF)
        self.assertTrue(is_version_negotiation(vn))
        self.assertEqual(decode_version_negotiation(vn), (CLIENT_SCID, ODCID, (V3, 0x1A2A3A4A)))
        self.assertEqual(encode_version_negotiation(CLIENT_SCID, ODCID, [V3], 0x100)[0], 0x80)

    def test_recognition(self) -> None:
        """Only long headers with version 0 are Version Negotiation."""
        retry = encode_retry(CLIENT_SCID, RSCID, b"t", ODCID)
        self.assertFalse(is_version_negotiation(retry))
        self.assertFalse(is_version_negotiation(b"\x40\0\0\0\0" + bytes(40)))
        self.assertFalse(is_version_negotiation(b"\x80\0\0\0"))
        self.assertTrue(is_version_negotiation(b"\x80\0\0\0\0"))

    def test_malformed_version_negotiation(self) -> None:
        """No versions, a partial version, CIDs other than 8 bytes, or not VN: dropped."""
        vn = encode_version_negotiation(CLIENT_SCID, ODCID, [V3], 0)
        for bad in (vn[:23], vn + b"\0", vn[:-1], vn[:5] + b"\x07" + vn[6:],
                    vn[:14] + b"\x00" + vn[15:], b"\x80\0\0\0\0", retry_token()):
            self.assertRaises(MalformedPacket, decode_version_negotiation, bad)

    def test_encoding_misuse_is_refused(self) -> None:
        """No versions, version 0 or too large, or CIDs over 255 bytes are the caller's bugs;
        any CID length up to 255 is echoed (RFC 8999)."""
        for versions in ([], [0], [2**32]):
            self.assertRaises(
                InternalError, encode_version_negotiation, CLIENT_SCID, ODCID, versions, 0
            )
        self.assertRaises(InternalError, encode_version_negotiation, b"x" * 256, ODCID, [V3], 0)
        vn = encode_version_negotiation(b"", b"y" * 20, [V3], 0)
        self.assertEqual(vn[5:7], b"\x00\x14")

    def test_server_reply(self) -> None:
        """An unknown-version Initial-sized datagram gets a VN echoing its CIDs swapped;
        known versions, version 0, short headers and small datagrams get nothing."""
        head = b"\xc0" + (0x1A2A3A4A).to_bytes(4, "big") + b"\x08" + ODCID + b"\x08" + CLIENT_SCID
        datagram = head + bytes(1200 - len(head))
        reply = version_negotiation_reply(datagram, 0x2A)
        self.assertEqual(reply, bytes.fromhex(EXPECTED["version-negotiation"]))
        self.assertIsNone(version_negotiation_reply(datagram[:1199], 0x2A))
        self.assertIsNotNone(version_negotiation_reply(datagram[:40], 0x2A, min_size=0))
        known = datagram[:1] + V3.to_bytes(4, "big") + datagram[5:]
        self.assertIsNone(version_negotiation_reply(known, 0))
        vn = datagram[:1] + bytes(4) + datagram[5:]
        self.assertIsNone(version_negotiation_reply(vn, 0))
        self.assertIsNone(version_negotiation_reply(b"\x40" + datagram[1:], 0))
        # A QUIC v1 client's 20-byte DCID is echoed as it came (RFC 8999, section 6).
        quic = b"\xc0" + (1).to_bytes(4, "big") + b"\x14" + b"d" * 20 + b"\x05" + b"s" * 5
        reply = version_negotiation_reply(quic + bytes(1200), 0)
        self.assertEqual(decode_vn_any(reply), (b"s" * 5, b"d" * 20, (V3,)))
        self.assertIsNone(version_negotiation_reply(datagram[:22], 0, min_size=0))
        self.assertIsNone(version_negotiation_reply(datagram[:6] + b"\xff", 0, min_size=0))

    @given(data=st.binary(max_size=120))
    @settings(max_examples=300, deadline=None)
    def test_random_bytes_raise_only_dropped_packet(self, data: bytes) -> None:
        """decode_version_negotiation on arbitrary bytes raises only DroppedPacket subclasses."""
        try:
            decode_version_negotiation(data)
        except DroppedPacket:
            pass

    @given(tail=st.binary(max_size=120), first=st.integers(0x80, 0xFF))
    @settings(max_examples=300, deadline=None)
    def test_vn_shaped_bytes_decode_or_drop(self, tail: bytes, first: int) -> None:
        """Bytes with a VN's first byte and version 0 either decode to a whole number of
        versions or raise a DroppedPacket subclass; replies to random bytes raise nothing."""
        data = bytes([first]) + bytes(4) + tail
        try:
            dcid, scid, versions = decode_version_negotiation(data)
        except DroppedPacket:
            pass
        else:
            self.assertEqual(23 + 4 * len(versions), len(data))
            self.assertEqual((len(dcid), len(scid)), (8, 8))
        version_negotiation_reply(bytes([first]) + tail, 0, min_size=0)
