"""
Key update (:mod:`kwik_twisted.core.crypto.keyupdate`): two :class:`KeyPhases` facing each other,
as the two ends of a connection's application keys (protocol.rst, "Key update").
"""

from __future__ import annotations

from collections import Counter
from unittest import mock

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.crypto import keyupdate
from kwik_twisted.core.crypto.keyupdate import DISCARD_PTOS, KeyPhases, next_protection
from kwik_twisted.core.crypto.protection import PacketProtection
from kwik_twisted.errors import DecryptionFailed

C2S, S2C = bytes(range(28)), bytes(range(100, 128))
PTO = 0.1


def protection(secret: bytes) -> PacketProtection:
    """Keys from a 28-byte key || IV."""
    return PacketProtection(secret[:16], secret[16:])


def pair(interval: int = 10, server_interval: int = 1000) -> tuple[KeyPhases, KeyPhases]:
    """A client's and a server's key phases, generation 0, with their own counters (the server's
    interval long, so that the client is the one that updates)."""
    client = KeyPhases(protection(C2S), protection(S2C), interval=interval, pto=lambda: PTO,
                       stats=Counter())
    server = KeyPhases(protection(S2C), protection(C2S), interval=server_interval,
                       pto=lambda: PTO, stats=Counter())
    return client, server


class Wire:
    """Seals packets at one end and opens them at the other, as the connection does."""

    def __init__(self) -> None:
        self.seq = 0

    def seal(self, sender: KeyPhases, now: float, body: bytes = b"data") -> tuple[int, int, bytes]:
        """A packet from ``sender``: ``(seq, key phase, ciphertext)``."""
        keys, phase = sender.sealing(now)
        self.seq += 1
        return self.seq, phase, keys.seal(0, self.seq, b"aad", body)

    def open(self, receiver: KeyPhases, packet: tuple[int, int, bytes], now: float) -> bytes:
        """Open ``packet`` at ``receiver``; on success it counts as authenticated at ``now``."""
        seq, phase, data = packet
        plaintext = receiver.receive(phase).open(0, seq, b"aad", data)
        receiver.on_authenticated(phase, now)
        return plaintext


class DerivationTests(SynchronousTestCase):
    """Both ends derive the same next generation, and it differs from the current one."""

    def test_next_generation_of_send_keys_opens_with_next_receive_keys(self) -> None:
        """One side's next send keys and the other's next receive keys are the same keys."""
        client, server = pair()
        sealed = next_protection(client.send).seal(0, 7, b"", b"hello")
        self.assertEqual(server.next_receive().open(0, 7, b"", sealed), b"hello")
        self.assertRaises(DecryptionFailed, server.recv.open, 0, 7, b"", sealed)


class UpdateTests(SynchronousTestCase):
    """Initiating, responding, late packets and discarding."""

    def setUp(self) -> None:
        self.client, self.server = pair(interval=10)
        self.wire = Wire()

    def exchange(self, now: float, count: int = 1) -> None:
        """``count`` packets each way at ``now``."""
        for _ in range(count):
            self.wire.open(self.server, self.wire.seal(self.client, now), now)
            self.wire.open(self.client, self.wire.seal(self.server, now), now)

    def test_no_update_before_the_peer_is_heard_in_the_phase(self) -> None:
        """Past the interval, a sender that never heard its peer under the current keys keeps
        them (RFC 9001 §6.5)."""
        for _ in range(50):
            self.wire.seal(self.client, 0.0)
        self.assertEqual(self.client.generation, 0)

    def test_the_sender_updates_after_the_interval_and_the_peer_follows(self) -> None:
        """Past ``interval`` packets the sender steps to phase 1; the receiver tries the next
        generation, steps too, and its own packets follow in phase 1."""
        self.exchange(0.0, 10)
        self.assertEqual((self.client.generation, self.server.generation), (0, 0))
        packet = self.wire.seal(self.client, 0.0)
        self.assertEqual((self.client.generation, packet[1]), (1, 1))
        self.assertEqual(self.wire.open(self.server, packet, 0.0), b"data")
        self.assertEqual(self.server.generation, 1)
        self.assertEqual(self.wire.seal(self.server, 0.0)[1], 1)
        self.assertEqual(self.client.stats["key_updates"], 1)
        self.assertEqual(self.server.stats["key_updates"], 1)

    def test_a_packet_sent_before_the_update_still_opens(self) -> None:
        """A packet sealed under generation 0 that arrives after the update opens with the
        previous generation's keys, without stepping the generation again."""
        client, server, wire = self.client, self.server, self.wire
        self.exchange(0.0, 10)
        before = wire.seal(server, 0.0)  # phase 0, in flight across the update
        wire.open(server, wire.seal(client, 0.0), 0.0)  # the client's update reaches the server
        self.assertEqual(wire.open(client, before, 0.01), b"data")
        self.assertEqual((client.generation, server.generation), (1, 1))
        self.assertEqual(client.stats["key_previous_opened"], 1)

    def test_previous_keys_go_after_three_ptos(self) -> None:
        """Three PTOs after the peer is heard in the new phase the previous generation's keys
        are gone: a late packet from one generation back is dropped and counted."""
        self.exchange(0.0, 10)
        before = self.wire.seal(self.server, 0.0)  # phase 0, delayed
        self.wire.open(self.server, self.wire.seal(self.client, 1.0), 1.0)  # update
        self.wire.open(self.client, self.wire.seal(self.server, 1.0), 1.0)  # peer heard, phase 1
        self.assertIsNotNone(self.client.previous)
        self.exchange(1.0 + DISCARD_PTOS * PTO)
        self.assertIsNone(self.client.previous)
        self.assertRaises(DecryptionFailed, self.wire.open, self.client, before, 2.0)
        self.assertEqual(self.client.stats["key_phase_rejected"], 1)
        self.assertEqual(self.client.generation, 1)

    def test_a_packet_from_two_generations_back_is_dropped(self) -> None:
        """After two updates a generation-0 packet (the same phase as generation 2) fails under
        the current keys and is dropped; the generation does not move."""
        self.exchange(0.0, 10)
        ancient = self.wire.seal(self.server, 0.0)
        now = 0.0
        while self.client.generation < 2:
            now += 1.0
            self.exchange(now, 5)
        self.assertEqual(ancient[1], self.client.phase)
        self.assertRaises(DecryptionFailed, self.wire.open, self.client, ancient, now)
        self.assertEqual(self.client.generation, 2)

    def test_no_second_update_while_previous_keys_are_held(self) -> None:
        """A sender past its interval again does not update while it still holds the previous
        generation's receive keys (at most three generations are live)."""
        self.exchange(0.0, 11)
        self.assertEqual(self.client.generation, 1)
        self.exchange(0.0, 30)  # well past the interval, but no time passed: previous still held
        self.assertEqual(self.client.generation, 1)
        self.exchange(1.0, 30)
        self.assertGreaterEqual(self.client.generation, 2)

    def test_request_updates_at_once_when_allowed(self) -> None:
        """request() updates on the next packet once the peer was heard in the phase."""
        self.exchange(0.0, 1)
        self.client.request()
        self.assertEqual(self.wire.seal(self.client, 0.0)[1], 1)
        self.assertEqual(self.client.generation, 1)


class ConfidentialityLimitTests(SynchronousTestCase):
    """A peer that never answers an update cannot make us seal past the confidentiality limit."""

    def test_keys_are_used_up_when_the_peer_never_answers(self) -> None:
        """The client updates once; the server never sends again, so no second update can
        happen; the keys count as used up exactly at ``limit`` packets, not one before."""
        client, server = pair(interval=10)
        wire = Wire()
        for _ in range(10):  # the peer is heard in phase 0
            wire.open(server, wire.seal(client, 0.0), 0.0)
            wire.open(client, wire.seal(server, 0.0), 0.0)
        wire.open(server, wire.seal(client, 0.0), 0.0)  # the update; the server follows, silently
        self.assertEqual((client.generation, server.generation), (1, 1))
        client.limit = 100
        while client.sent < 99:
            wire.seal(client, 5.0)
        self.assertFalse(client.exhausted)
        wire.seal(client, 5.0)
        self.assertTrue(client.exhausted)
        self.assertEqual(client.generation, 1)

    def test_the_default_limit_is_below_the_aead_limit(self) -> None:
        """By default the keys are used up LIMIT_MARGIN packets before 2**23 (RFC 9001 §6.6)."""
        from kwik_twisted.core.crypto.keyupdate import LIMIT_MARGIN
        from kwik_twisted.core.crypto.protection import CONFIDENTIALITY_LIMIT

        client, _ = pair()
        self.assertEqual(client.limit, CONFIDENTIALITY_LIMIT - LIMIT_MARGIN)
        self.assertLess(client.limit, 2**23)


class HostileTests(SynchronousTestCase):
    """A peer flipping the phase with garbage gets no update and bounded work from us."""

    def test_garbage_in_the_other_phase_never_updates(self) -> None:
        """10,000 forged packets in the other phase: all dropped and counted, no update, the next
        generation derived once, at most two AEAD opens each."""
        client, server = pair(interval=10)
        wire = Wire()
        for _ in range(3):
            wire.open(server, wire.seal(client, 0.0), 0.0)
        derived = []
        real = keyupdate.next_protection

        def counting(p: PacketProtection) -> PacketProtection:
            derived.append(p)
            return real(p)

        with mock.patch.object(keyupdate, "next_protection", counting):
            for seq in range(10_000):
                opener = server.receive(1 - server.phase)
                self.assertRaises(DecryptionFailed, opener.open, 0, seq, b"aad", bytes(40))
        self.assertEqual(server.generation, 0)
        self.assertEqual(server.stats["key_phase_rejected"], 10_000)
        self.assertEqual(server.stats["key_updates"], 0)
        self.assertLessEqual(len(derived), 1)
        self.assertEqual(server.next_receive().failed_opens, 10_000)
        self.assertEqual(server.recv.failed_opens, 0)
        # and the connection still works, and can still update
        self.assertEqual(wire.open(server, wire.seal(client, 0.0), 0.0), b"data")
