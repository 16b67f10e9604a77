"""
The key schedule (:class:`kwik_twisted.core.keys.KeySchedule`): epoch choices, initial-key
retirement and the early-packet buffer.
"""

from __future__ import annotations

from collections import Counter

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.crypto.protection import initial_protections
from kwik_twisted.core.keys import MAX_EARLY_BYTES, MAX_EARLY_PACKETS, KeySchedule
from kwik_twisted.errors import DecryptionFailed, DroppedPacket
from kwik_twisted.wire import Epoch

DCID = bytes(range(8))
ADDRS = (("10.0.0.1", 4433), ("10.0.0.2", 5000))
INITIAL, APPLICATION = int(Epoch.INITIAL), int(Epoch.APPLICATION)


def schedule(*, is_client: bool = False) -> KeySchedule:
    """A fresh key schedule with its own counters."""
    return KeySchedule(DCID, is_client=is_client, stats=Counter())


def install(keys: KeySchedule) -> None:
    """Install some application keys (any protection object does for the schedule)."""
    keys.install(*initial_protections(b"another", is_client=keys.is_client))


class EarlyPacketTests(SynchronousTestCase):
    """A server holds application packets that overtake the client's Finished, within bounds."""

    def test_undecryptable_packets_are_held_until_the_keys_exist(self) -> None:
        """Held datagrams come back once, in order, after install()."""
        keys = schedule()
        for i in range(3):
            self.assertRaises(
                DecryptionFailed, keys.receive_keys, APPLICATION, 0, bytes([i]) * 10, *ADDRS
            )
        self.assertEqual(keys.early_bytes, 30)
        self.assertEqual(keys.take_early(), [])  # not before the keys
        install(keys)
        self.assertEqual([d[0][0] for d in keys.take_early()], [0, 1, 2])
        self.assertEqual((keys.take_early(), keys.early_bytes), ([], 0))

    def test_the_packet_bound_holds(self) -> None:
        """Past MAX_EARLY_PACKETS datagrams, more are dropped and counted."""
        keys = schedule()
        for _ in range(MAX_EARLY_PACKETS + 5):
            self.assertRaises(DecryptionFailed, keys.receive_keys, APPLICATION, 0, b"x", *ADDRS)
        self.assertEqual(len(keys.early), MAX_EARLY_PACKETS)
        self.assertEqual(keys.stats["early_dropped"], 5)

    def test_the_byte_bound_holds(self) -> None:
        """Datagrams that would pass MAX_EARLY_BYTES are dropped and counted."""
        keys = schedule()
        big = b"x" * 2000
        for _ in range(MAX_EARLY_PACKETS):
            self.assertRaises(DecryptionFailed, keys.receive_keys, APPLICATION, 0, big, *ADDRS)
        self.assertLessEqual(keys.early_bytes, MAX_EARLY_BYTES)
        self.assertEqual(keys.early_bytes, (MAX_EARLY_BYTES // 2000) * 2000)
        self.assertGreater(keys.stats["early_dropped"], 0)

    def test_a_client_holds_nothing(self) -> None:
        """The client never buffers: the server's application packets follow its handshake."""
        keys = schedule(is_client=True)
        self.assertRaises(DecryptionFailed, keys.receive_keys, APPLICATION, 0, b"x", *ADDRS)
        self.assertEqual(keys.early_bytes, 0)


class EpochTests(SynchronousTestCase):
    """Which keys seal and open what."""

    def test_initial_keys_until_application_keys_exist(self) -> None:
        """Before the handshake completes everything is initial."""
        keys = schedule(is_client=True)
        self.assertEqual(keys.handshake_epoch(), INITIAL)
        self.assertEqual(keys.packet_epoch(True), INITIAL)
        self.assertEqual(keys.packet_epoch(False), INITIAL)
        self.assertIs(keys.send_keys(INITIAL), keys.initial_send)

    def test_handshake_bytes_move_to_application_keys_when_the_peer_has_them(self) -> None:
        """Complete but unconfirmed: handshake bytes stay initial until the peer shows it has
        application keys; other packets are application packets."""
        keys = schedule(is_client=True)
        install(keys)
        self.assertEqual(keys.packet_epoch(False), APPLICATION)
        self.assertEqual(keys.packet_epoch(True), INITIAL)
        keys.on_authenticated(APPLICATION)
        self.assertEqual(keys.packet_epoch(True), APPLICATION)

    def test_confirmation_retires_initial_keys(self) -> None:
        """After confirm(), initial-key packets are dropped; before, only off path 0."""
        keys = schedule()
        self.assertIs(keys.receive_keys(INITIAL, 0, b"", *ADDRS), keys.initial_recv)
        self.assertRaises(DroppedPacket, keys.receive_keys, INITIAL, 1, b"", *ADDRS)
        install(keys)
        keys.confirm()
        self.assertRaises(DroppedPacket, keys.receive_keys, INITIAL, 0, b"", *ADDRS)
        self.assertIs(keys.receive_keys(APPLICATION, 0, b"", *ADDRS), keys.app_recv)
        self.assertEqual(keys.handshake_epoch(), APPLICATION)

    def test_initial_acks_cannot_acknowledge_application_packets(self) -> None:
        """An initial-key ACK's ranges are clipped below the first application packet."""
        keys = schedule()
        self.assertEqual(keys.clip_initial_ack(((5, 9),)), ((5, 9),))
        keys.on_sent(7)
        keys.on_sent(12)  # only the first counts
        self.assertEqual(keys.clip_initial_ack(((8, 9), (2, 7))), ((2, 6),))
