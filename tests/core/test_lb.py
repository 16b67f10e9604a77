"""
QUIC-LB connection IDs (kwik_twisted.core.lb; protocol.rst, "Connection IDs for load balancers"):
the general plaintext-mode codec against the draft's published test vectors, and Kwik's 8-byte
server CIDs with a worker's route byte.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.config import MAX_SERVER_ID_LENGTH, ConnectionConfig
from kwik_twisted.core import lb
from kwik_twisted.core.entropy import SeededEntropy
from kwik_twisted.errors import ConfigurationError
from kwik_twisted.wire import CID_LENGTH

#: draft-ietf-quic-load-balancers-21 (also -17 to -20), appendix "Load Balancer Test Vectors",
#: "Unencrypted CIDs"; every CID self-encodes its length: (cr_bits, sid, nonce, cid), hex.
DRAFT21_UNENCRYPTED = (("0", "c4605e", "4504cc4f", "07c4605e4504cc4f"),)
#: The draft's second row, as published.  It is not self-consistent (see the erratum test).
DRAFT21_SECOND_ROW = ("1", "350d28b420", "3487d970b", "20a350d28b4203487d970b")

#: draft-ietf-quic-load-balancers-07 and -08, "Plaintext Connection ID Algorithm" (the last
#: drafts listing server-use bytes): (length_self_encoding, sid_len, cid, sid, su), hex; all with
#: cr_bits 0.  Those drafts had 2 config rotation bits and 6 "length or random" bits; without
#: length self-encoding the first octet's low bits are random, so the row's first octet is
#: reproduced from the row itself (in today's 3-bit layout some of those random bits fall into
#: the rotation field: 0x3a reads as rotation 1).
DRAFT07_PLAINTEXT = (
    (True, 1, "01be", "be", ""),
    (True, 1, "0221b7", "21", "b7"),
    (True, 1, "03cadfd8", "ca", "dfd8"),
    (True, 1, "041e0c9328", "1e", "0c9328"),
    (True, 1, "050c8f6d9129", "0c", "8f6d9129"),
    (False, 2, "02aab0", "aab0", ""),
    (False, 2, "3ac4b106", "c4b1", "06"),
    (False, 2, "08bd3cf4a0", "bd3c", "f4a0"),
    (False, 2, "3771d59502d6", "71d5", "9502d6"),
    (False, 2, "1d57dee8b888f3", "57de", "e8b888f3"),
    (True, 3, "0336c976", "36c976", ""),
    (True, 3, "04aa291806", "aa2918", "06"),
    (True, 3, "0586897bd8b6", "86897b", "d8b6"),
    (True, 3, "063625bcae4de0", "3625bc", "ae4de0"),
    (True, 3, "07966fb1f3cb535f", "966fb1", "f3cb535f"),
    (False, 4, "185172fab8", "5172fab8", ""),
    (False, 4, "2eb7ff2c9297", "b7ff2c92", "97"),
    (False, 4, "14f3eb3dd3edbe", "f3eb3dd3", "edbe"),
    (False, 4, "3feb31cece744b74", "eb31cece", "744b74"),
    (False, 4, "06b9f34c353ce23bb5", "b9f34c35", "3ce23bb5"),
    (True, 5, "05bdcd8d0b1d", "bdcd8d0b1d", ""),
    (True, 5, "06aee673725a63", "aee673725a", "63"),
    (True, 5, "07bbf338ddbf37f4", "bbf338ddbf", "37f4"),
    (True, 5, "08fbbca64c26756840", "fbbca64c26", "756840"),
    (True, 5, "09e7737c495b93894e34", "e7737c495b", "93894e34"),
)

#: Kwik's own vectors (protocol.rst): (config_rotation, serverId, worker index, worker count,
#: route byte, random nonce, cid), hex.
KWIK_VECTORS = (
    (0, "", 1, 2, 0x05, "a1b2c3d4e5f6", "0705a1b2c3d4e5f6"),
    (2, "c4605e", 1, 2, 0x2B, "9f8e7d", "47c4605e2b9f8e7d"),
)


class Scripted:
    """An entropy source that returns the given chunks in order, checking each length."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    def random_bytes(self, n: int) -> bytes:
        chunk = self.chunks.pop(0)
        if len(chunk) != n:
            raise AssertionError(f"asked for {n} random bytes, the script has {len(chunk)}")
        return chunk


def kwik_vector(rotation: int, sid: str, index: int, count: int, route: int, nonce: str) -> bytes:
    """The CID :func:`lb.new_cid` makes for a worker whose random bytes give ``route`` and
    ``nonce`` (random_below's 8 bytes select the route byte; the first random byte is replaced)."""
    cfg = ConnectionConfig(
        server_id=bytes.fromhex(sid),
        config_rotation=rotation,
        worker_index=index,
        worker_count=count,
    )
    below = (route - index) // count
    return lb.new_cid(cfg, Scripted(b"\xff" + bytes.fromhex(nonce), below.to_bytes(8, "big")))


#: The QUIC-LB vectors of docs/protocol.rst ("Connection IDs for load balancers"): name -> a
#: function computing the bytes (for tests/wire/test_vectors.py, as TOKEN_VECTORS).
LB_VECTORS: dict[str, Callable[[], bytes]] = {
    "lb-cid-worker": lambda: kwik_vector(*KWIK_VECTORS[0][:6]),
    "lb-cid-server-id": lambda: kwik_vector(*KWIK_VECTORS[1][:6]),
    "lb-cid-draft": lambda: lb.encode_cid(
        0, bytes.fromhex("c4605e"), bytes.fromhex("4504cc4f"), True
    ),
}


def config(**fields) -> ConnectionConfig:
    return ConnectionConfig(**fields)


class DraftVectorTests(SynchronousTestCase):
    """The general codec against the QUIC-LB drafts' unencrypted test vectors."""

    def test_draft21_unencrypted_vectors(self) -> None:
        """Each draft-21 row encodes to its CID exactly and decodes back to its fields."""
        for cr, sid, nonce, cid in DRAFT21_UNENCRYPTED:
            sid_b, nonce_b, cid_b = bytes.fromhex(sid), bytes.fromhex(nonce), bytes.fromhex(cid)
            self.assertEqual(lb.encode_cid(int(cr), sid_b, nonce_b, True), cid_b)
            self.assertEqual(lb.decode_server_id(cid_b, len(sid_b)), sid_b)
            self.assertEqual(lb.server_use_of(cid_b, len(sid_b)), nonce_b)
            self.assertEqual(lb.config_rotation_of(cid_b), int(cr))
            self.assertEqual(lb.self_encoded_length(cid_b), len(cid_b))

    def test_draft21_second_row_is_an_erratum(self) -> None:
        """
        The draft's second unencrypted row cannot be reproduced byte for byte by any encoder:
        its nonce has an odd number of hex digits, and its CID's first octet (0x20) self-encodes
        no length although the section says every CID does.  What the row does determine our
        encoder matches: rotation 1 in the top bits, an 11-byte CID (so a 5-byte nonce and the
        self-encoded length 10: first octet 0x2a), the server ID right after the first octet.
        """
        cr, sid, nonce, published = DRAFT21_SECOND_ROW
        published_b = bytes.fromhex(published)
        self.assertEqual(len(nonce) % 2, 1)
        self.assertEqual(lb.config_rotation_of(published_b), int(cr))
        self.assertNotEqual(lb.self_encoded_length(published_b), len(published_b))
        nonce_b = bytes(len(published_b) - 1 - len(sid) // 2)
        ours = lb.encode_cid(int(cr), bytes.fromhex(sid), nonce_b, True)
        self.assertEqual(len(ours), len(published_b))
        self.assertEqual(ours[0], 0x2A)
        self.assertEqual(ours[0] >> 5, published_b[0] >> 5)
        self.assertEqual(lb.decode_server_id(ours, 5), bytes.fromhex(sid))

    def test_draft07_plaintext_table(self) -> None:
        """Every row of the draft-07/-08 plaintext table: the server ID and server-use bytes
        decode exactly, and the CID encodes exactly (length-self-encoding rows from rotation 0
        alone, the others with the row's random first-octet bits)."""
        for self_encoding, sid_len, cid, sid, su in DRAFT07_PLAINTEXT:
            cid_b, sid_b, su_b = bytes.fromhex(cid), bytes.fromhex(sid), bytes.fromhex(su)
            self.assertEqual(len(sid_b), sid_len)
            self.assertEqual(lb.decode_server_id(cid_b, sid_len), sid_b)
            self.assertEqual(lb.server_use_of(cid_b, sid_len), su_b)
            if self_encoding:
                self.assertEqual(lb.config_rotation_of(cid_b), 0)
                self.assertEqual(lb.self_encoded_length(cid_b), len(cid_b))
                self.assertEqual(lb.encode_cid(0, sid_b, su_b, True), cid_b)
            else:
                rotation, bits = cid_b[0] >> 5, cid_b[0] & lb.LENGTH_MASK
                self.assertEqual(lb.encode_cid(rotation, sid_b, su_b, False, low_bits=bits), cid_b)

    def test_codec_limits(self) -> None:
        """The codec takes any CID length QUIC v1 allows (1..20 bytes) and nothing else, rotation
        0..7 (7: unroutable CIDs) and nothing else; random first-octet bits need a source and
        stay within 5 bits; a CID too short for the server ID is refused (unroutable)."""
        longest = lb.encode_cid(6, bytes(10), bytes(9), True)
        self.assertEqual((len(longest), longest[0]), (20, 6 << 5 | 19))
        self.assertEqual(lb.encode_cid(7, b"", bytes(7), True)[0], 0xE7)
        self.assertRaises(ValueError, lb.encode_cid, 0, bytes(10), bytes(10), True)
        self.assertRaises(ValueError, lb.encode_cid, 8, b"\x01", bytes(4), True)
        self.assertRaises(ValueError, lb.encode_cid, -1, b"\x01", bytes(4), True)
        self.assertRaises(ValueError, lb.encode_cid, 0, b"\x01", bytes(4), False)
        self.assertRaises(ValueError, lb.encode_cid, 0, b"\x01", bytes(4), False, low_bits=32)
        entropy = SeededEntropy(3)
        cids = [lb.encode_cid(5, b"\x01", bytes(4), False, entropy=entropy) for _ in range(200)]
        firsts = {cid[0] for cid in cids}
        self.assertEqual({f >> 5 for f in firsts}, {5})
        self.assertEqual(len(firsts), 32)  # all 32 values of the random bits occur
        self.assertRaises(ValueError, lb.decode_server_id, bytes.fromhex("07c4"), 3)
        self.assertRaises(ValueError, lb.config_rotation_of, b"")


class KwikCidTests(SynchronousTestCase):
    """new_cid, ROUTE_OFFSET, route_byte and owns: Kwik's 8-byte CIDs for worker processes."""

    def test_kwik_vectors(self) -> None:
        """Kwik's documented vectors come out of both encode_cid and new_cid (given the same
        random bytes), and decode back to server ID, route byte and nonce."""
        for rotation, sid, index, count, route, nonce, cid in KWIK_VECTORS:
            sid_b, nonce_b, cid_b = bytes.fromhex(sid), bytes.fromhex(nonce), bytes.fromhex(cid)
            cfg = config(
                server_id=sid_b, config_rotation=rotation, worker_index=index, worker_count=count
            )
            self.assertEqual(lb.encode_cid(rotation, sid_b, bytes((route,)) + nonce_b), cid_b)
            self.assertEqual(kwik_vector(rotation, sid, index, count, route, nonce), cid_b)
            self.assertEqual(lb.ROUTE_OFFSET(cfg), 1 + len(sid_b))
            self.assertEqual(lb.route_byte(cid_b, cfg), route)
            self.assertEqual(lb.decode_server_id(cid_b, len(sid_b)), sid_b)
            self.assertTrue(lb.owns(cid_b, cfg))

    def test_new_cid_layout(self) -> None:
        """Outside a worker set a CID is 8 bytes: rotation and length 7 in the first octet, the
        server ID, then 4..7 random bytes (the route byte among them takes every value)."""
        for sid in (b"", b"\xab", b"\xab\xcd\xef"):
            cfg = config(server_id=sid, config_rotation=3)
            entropy = SeededEntropy(len(sid))
            cids = [lb.new_cid(cfg, entropy) for _ in range(3000)]
            self.assertEqual({len(c) for c in cids}, {CID_LENGTH})
            self.assertEqual({c[0] for c in cids}, {3 << 5 | 7})
            self.assertEqual({lb.decode_server_id(c, len(sid)) for c in cids}, {sid})
            self.assertEqual(len(set(cids)), len(cids))
            self.assertEqual(len({lb.route_byte(c, cfg) for c in cids}), 256)
            self.assertTrue(all(lb.owns(c, cfg) for c in cids))

    def test_a_worker_issues_only_its_own_route_bytes_uniformly(self) -> None:
        """A worker's route bytes are all congruent to its index modulo the worker count and
        below count * (256 // count), every such value occurs, none much more than others, and
        no other worker owns the CIDs."""
        for count, index in ((2, 0), (2, 1), (3, 2), (7, 4), (255, 254)):
            cfg = config(worker_index=index, worker_count=count, server_id=b"\x01")
            entropy = SeededEntropy(count * 1000 + index)
            cids = [lb.new_cid(cfg, entropy) for _ in range(4000)]
            routes = Counter(lb.route_byte(c, cfg) for c in cids)
            expected = set(range(index, count * (256 // count), count))
            self.assertEqual(set(routes), expected)
            mean = len(cids) / len(expected)
            if len(expected) > 1:
                self.assertLess(max(routes.values()), 2 * mean)
            self.assertTrue(all(lb.owns(c, cfg) for c in cids))
            for i in [i for i in range(count) if i != index][:5]:
                other = config(worker_index=i, worker_count=count, server_id=b"\x01")
                self.assertFalse(any(lb.owns(c, other) for c in cids[:200]))

    def test_exactly_one_worker_owns_any_cid(self) -> None:
        """A client's random first DCID routes by the same arithmetic: of N workers exactly one
        owns it (the one the reuseport program picks: byte at ROUTE_OFFSET mod N), and the
        route byte's offset follows the server ID's length."""
        entropy = SeededEntropy(9)
        for sid in (b"", b"\x01\x02"):
            workers = [config(server_id=sid, worker_index=i, worker_count=3) for i in range(3)]
            for _ in range(300):
                dcid = entropy.random_bytes(8)
                owners = [i for i, w in enumerate(workers) if lb.owns(dcid, w)]
                self.assertEqual(owners, [dcid[1 + len(sid)] % 3])

    def test_owns_without_workers_and_short_cids(self) -> None:
        """Not a worker: every CID is ours.  A CID too short to hold a route byte has none and
        is not judged."""
        self.assertTrue(lb.owns(b"\x00\x01", config()))
        worker = config(worker_index=1, worker_count=2, server_id=b"\x01\x02")
        self.assertIsNone(lb.route_byte(b"\x07\x01\x02", worker))
        self.assertTrue(lb.owns(b"\x07\x01\x02", worker))
        self.assertFalse(lb.owns(b"\x07\x01\x02\x04", worker))


class SpecVectorTests(SynchronousTestCase):
    """The table of spec vectors gives the bytes the spec shows."""

    def test_lb_vectors(self) -> None:
        """Each LB_VECTORS entry computes the CID written next to it in this file's tables."""
        self.assertEqual(LB_VECTORS["lb-cid-worker"]().hex(), KWIK_VECTORS[0][6])
        self.assertEqual(LB_VECTORS["lb-cid-server-id"]().hex(), KWIK_VECTORS[1][6])
        self.assertEqual(LB_VECTORS["lb-cid-draft"]().hex(), DRAFT21_UNENCRYPTED[0][3])


class ConfigTests(SynchronousTestCase):
    """ConnectionConfig's QUIC-LB and worker fields."""

    def test_defaults(self) -> None:
        """By default: no server ID, rotation 0, not a worker (one worker)."""
        cfg = config()
        self.assertEqual(
            (cfg.server_id, cfg.config_rotation, cfg.worker_index, cfg.worker_count),
            (b"", 0, None, 1),
        )
        self.assertEqual(1 + MAX_SERVER_ID_LENGTH + lb.MIN_NONCE_LENGTH, CID_LENGTH)

    def test_bad_values_are_refused(self) -> None:
        """A server ID over 3 bytes (or not bytes), rotation 7 (unroutable) or outside 0..6, a
        worker count outside 1..255 and an index outside 0..count-1 are refused."""
        for bad in (
            {"server_id": b"\x00" * 4},
            {"server_id": "abc"},
            {"config_rotation": 7},
            {"config_rotation": -1},
            {"worker_count": 0},
            {"worker_count": 256},
            {"worker_index": 2, "worker_count": 2},
            {"worker_index": -1, "worker_count": 2},
        ):
            with self.assertRaises(ConfigurationError, msg=repr(bad)):
                config(**bad)
        ok = config(
            server_id=b"\x01\x02\x03", config_rotation=6, worker_index=254, worker_count=255
        )
        self.assertEqual(ok.worker_index, 254)
