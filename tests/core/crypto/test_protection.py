"""
Tests for AEAD packet protection and the initial keys
(kwik_twisted.core.crypto.protection).
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.crypto.protection import (
    INITIAL_SALT,
    PacketProtection,
    initial_keys,
    initial_protections,
)
from kwik_twisted.errors import DecryptionFailed, InternalError

KEY = bytes(range(16))
IV = bytes(range(100, 112))
AAD = b"\x01header-bytes"
PLAINTEXT = b"some frames " * 10

# The published test vector (docs/protocol.rst): initial keys of the client
# for original DCID 8394c8f03e515708, sealing b"kwik" on path 0, seq 0, no AAD.
VECTOR_DCID = bytes.fromhex("8394c8f03e515708")
VECTOR_CLIENT_KEY = bytes.fromhex("077b66623338185b90531bb2cbde17d4")
VECTOR_CLIENT_IV = bytes.fromhex("92e391c0596c10c305d375ab")
VECTOR_SERVER_KEY = bytes.fromhex("67f9ef49bf645ae0e3afe19012c1b671")
VECTOR_SERVER_IV = bytes.fromhex("6663e6bf75a27cc6c56ba23a")
VECTOR_CIPHERTEXT = bytes.fromhex("59e1428f3a64e937cf22b1d4cd9c1fd8549fc1ba")

path_ids = st.integers(min_value=0, max_value=2**32 - 1)
seqs = st.integers(min_value=0, max_value=2**64 - 1)


def reference_hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-SHA256, written out with hmac, independent of the code under test."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def reference_nonce(iv: bytes, path_id: int, seq: int) -> bytes:
    """The nonce as protocol.rst defines it: IV XOR (path_id 32 bits BE || seq 64 bits BE)."""
    return bytes(a ^ b for a, b in zip(iv, struct.pack(">IQ", path_id, seq)))


class PacketProtectionTests(SynchronousTestCase):
    """Sealing and opening packets with AES-128-GCM."""

    def setUp(self) -> None:
        self.protection = PacketProtection(KEY, IV)

    def test_open_returns_what_seal_sealed(self) -> None:
        """A sealed payload opens to the same plaintext with the same path, seq and AAD."""
        sealed = self.protection.seal(3, 77, AAD, PLAINTEXT)
        self.assertEqual(len(sealed), len(PLAINTEXT) + 16)
        self.assertEqual(self.protection.open(3, 77, AAD, sealed), PLAINTEXT)

    def test_empty_plaintext_round_trips(self) -> None:
        """An empty payload seals to a bare 16-byte tag that still authenticates."""
        sealed = self.protection.seal(0, 0, AAD, b"")
        self.assertEqual(len(sealed), 16)
        self.assertEqual(self.protection.open(0, 0, AAD, sealed), b"")

    @given(path_id=path_ids, seq=seqs)
    @settings(max_examples=50)
    def test_seal_uses_the_documented_nonce(self, path_id: int, seq: int) -> None:
        """Sealing equals AES-GCM with nonce IV XOR (path_id || seq), computed independently."""
        expected = AESGCM(KEY).encrypt(reference_nonce(IV, path_id, seq), PLAINTEXT, AAD)
        self.assertEqual(self.protection.seal(path_id, seq, AAD, PLAINTEXT), expected)

    def test_tampering_with_any_ciphertext_byte_is_detected(self) -> None:
        """Flipping any single bit of ciphertext or tag makes open raise DecryptionFailed."""
        sealed = self.protection.seal(1, 2, AAD, b"x" * 40)
        for i in range(len(sealed)):
            tampered = bytearray(sealed)
            tampered[i] ^= 0x01
            with self.assertRaises(DecryptionFailed):
                self.protection.open(1, 2, AAD, bytes(tampered))
        self.assertEqual(self.protection.failed_opens, len(sealed))

    def test_tampering_with_any_aad_byte_is_detected(self) -> None:
        """Changing any byte of the header (the AAD) makes open raise DecryptionFailed."""
        sealed = self.protection.seal(1, 2, AAD, PLAINTEXT)
        for i in range(len(AAD)):
            aad = bytearray(AAD)
            aad[i] ^= 0x80
            with self.assertRaises(DecryptionFailed):
                self.protection.open(1, 2, bytes(aad), sealed)
        with self.assertRaises(DecryptionFailed):
            self.protection.open(1, 2, AAD + b"\x00", sealed)

    def test_other_path_or_sequence_number_is_rejected(self) -> None:
        """A packet sealed for (path, seq) does not open as another path or sequence number."""
        sealed = self.protection.seal(5, 1000, AAD, PLAINTEXT)
        for path_id, seq in [(4, 1000), (6, 1000), (5, 999), (5, 1001), (0, 0)]:
            with self.assertRaises(DecryptionFailed):
                self.protection.open(path_id, seq, AAD, sealed)
        self.assertEqual(self.protection.failed_opens, 5)

    def test_other_key_or_iv_is_rejected(self) -> None:
        """A packet does not open under a different key, nor under a different IV."""
        sealed = self.protection.seal(0, 1, AAD, PLAINTEXT)
        for other in (PacketProtection(bytes(16), IV), PacketProtection(KEY, bytes(12))):
            with self.assertRaises(DecryptionFailed):
                other.open(0, 1, AAD, sealed)

    def test_short_or_out_of_range_input_raises_decryption_failed(self) -> None:
        """Stubs shorter than a tag and impossible path IDs or sequence numbers fail typed."""
        sealed = self.protection.seal(0, 1, AAD, PLAINTEXT)
        cases = [
            (0, 1, b""),
            (0, 1, sealed[:15]),
            (-1, 1, sealed),
            (2**32, 1, sealed),
            (0, -1, sealed),
            (0, 2**64 + 1, sealed),
        ]
        for path_id, seq, data in cases:
            with self.assertRaises(DecryptionFailed):
                self.protection.open(path_id, seq, AAD, data)
        self.assertEqual(self.protection.failed_opens, len(cases))

    def test_sealing_with_out_of_range_numbers_is_an_internal_error(self) -> None:
        """
        Sealing refuses a path ID beyond 32 bits or a sequence number beyond 64
        bits: seq 2**64 on path 0 would otherwise reuse path 1's first nonce.
        """
        for path_id, seq in [(0, 2**64), (2**32, 0), (-1, 0), (0, -1)]:
            with self.assertRaises(InternalError):
                self.protection.seal(path_id, seq, AAD, PLAINTEXT)

    def test_nonces_are_unique_across_path_and_sequence_pairs(self) -> None:
        """
        Distinct (path_id, seq) pairs, including ones whose bits would collide if
        the fields overlapped, give distinct nonces (so distinct keystreams).
        """
        pairs = [
            (p, s) for p in (0, 1, 2, 2**31, 2**32 - 1) for s in (0, 1, 2**32, 2**63, 2**64 - 1)
        ]
        zeros = bytes(16)
        keystreams = {self.protection.seal(p, s, b"", zeros)[:16] for p, s in pairs}
        self.assertEqual(len(keystreams), len(pairs))

    @given(a=st.tuples(path_ids, seqs), b=st.tuples(path_ids, seqs))
    @settings(max_examples=50)
    def test_any_two_distinct_pairs_never_share_a_nonce(self, a, b) -> None:
        """For arbitrary pairs, the sealed zero block (the keystream) differs iff the pairs do."""
        zeros = bytes(16)
        ka = self.protection.seal(*a, b"", zeros)[:16]
        kb = self.protection.seal(*b, b"", zeros)[:16]
        self.assertEqual(ka == kb, a == b)

    def test_wrong_key_or_iv_length_is_an_internal_error(self) -> None:
        """Keys must be 16 bytes and IVs 12 bytes; anything else is our own bug."""
        for key, iv in [(bytes(15), IV), (bytes(32), IV), (KEY, bytes(11)), (KEY, bytes(16))]:
            with self.assertRaises(InternalError):
                PacketProtection(key, iv)


class InitialProtectionTests(SynchronousTestCase):
    """The initial (handshake) keys derived from the original destination connection ID."""

    def test_salt_is_the_documented_value(self) -> None:
        """INITIAL_SALT is the first 20 bytes of SHA-256("kwik v3 initial salt")."""
        self.assertEqual(INITIAL_SALT, hashlib.sha256(b"kwik v3 initial salt").digest()[:20])

    def test_keys_follow_hkdf_over_the_connection_id(self) -> None:
        """Each direction's key || IV is HKDF-SHA256(salt, dcid, info) of 28 bytes."""
        dcid = bytes.fromhex("0011223344556677")
        for client, info in [(True, b"kwik v3 client initial"), (False, b"kwik v3 server initial")]:
            key, iv = initial_keys(dcid, client=client)
            self.assertEqual(key + iv, reference_hkdf(INITIAL_SALT, dcid, info, 28))

    def test_published_test_vector(self) -> None:
        """The keys and the sealed b"kwik" for DCID 8394c8f03e515708 match protocol.rst."""
        self.assertEqual(
            initial_keys(VECTOR_DCID, client=True), (VECTOR_CLIENT_KEY, VECTOR_CLIENT_IV)
        )
        self.assertEqual(
            initial_keys(VECTOR_DCID, client=False), (VECTOR_SERVER_KEY, VECTOR_SERVER_IV)
        )
        send, _ = initial_protections(VECTOR_DCID, is_client=True)
        self.assertEqual(send.seal(0, 0, b"", b"kwik"), VECTOR_CIPHERTEXT)

    def test_client_send_is_server_receive_and_back(self) -> None:
        """What the client seals the server opens, and the reverse, but not crosswise."""
        client_send, client_receive = initial_protections(VECTOR_DCID, is_client=True)
        server_send, server_receive = initial_protections(VECTOR_DCID, is_client=False)
        self.assertEqual(server_receive.open(0, 7, AAD, client_send.seal(0, 7, AAD, b"hi")), b"hi")
        self.assertEqual(client_receive.open(0, 7, AAD, server_send.seal(0, 7, AAD, b"yo")), b"yo")
        with self.assertRaises(DecryptionFailed):
            client_receive.open(0, 7, AAD, client_send.seal(0, 7, AAD, b"hi"))

    def test_other_connection_id_gives_other_keys(self) -> None:
        """Initial keys for a different original DCID cannot open the packet."""
        send, _ = initial_protections(VECTOR_DCID, is_client=True)
        _, receive = initial_protections(bytes(8), is_client=False)
        with self.assertRaises(DecryptionFailed):
            receive.open(0, 0, b"", send.seal(0, 0, b"", b"kwik"))
