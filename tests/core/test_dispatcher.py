"""
The server dispatcher: routing by CID, what it takes to create a connection, and its cap.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.connection import Connection
from kwik_twisted.core.dispatcher import ServerDispatcher
from kwik_twisted.core.entropy import SeededEntropy
from kwik_twisted.testing.pair import CLIENT_ADDR, SERVER_ADDR, client_config, server_config


def first_flight(seed: int) -> bytes:
    """A fresh client's first datagram (its ClientHello under initial keys)."""
    client = Connection.client(
        client_config(), local_addr=CLIENT_ADDR, remote_addr=SERVER_ADDR,
        entropy=SeededEntropy(seed), now=0.0,
    )  # fmt: skip
    return client.datagrams_to_send(now=0.0)[0][0]


class DispatcherTests(SynchronousTestCase):
    """What creates connections, and how many."""

    def test_each_new_first_flight_creates_one_connection_routed_by_both_cids(self) -> None:
        """Two clients: two connections, each reachable by its original and its own CID."""
        created = []
        dispatcher = ServerDispatcher(
            server_config(), entropy=SeededEntropy(9), on_connection=created.append
        )
        for seed in (1, 2):
            dispatcher.receive_datagram(first_flight(seed), SERVER_ADDR, CLIENT_ADDR, now=0.0)
        self.assertEqual(len(created), 2)
        self.assertEqual(dispatcher.stats["accepted"], 2)
        for conn in created:
            self.assertIs(dispatcher.connections[conn.original_dcid], conn)
            self.assertIs(dispatcher.connections[conn.local_cid], conn)

    def test_garbage_creates_nothing(self) -> None:
        """A 1200-byte datagram that is not sealed with the initial keys creates no connection."""
        dispatcher = ServerDispatcher(server_config(), entropy=SeededEntropy(9))
        datagram = bytearray(first_flight(1))
        datagram[-5] ^= 0xFF
        self.assertIsNone(
            dispatcher.receive_datagram(bytes(datagram), SERVER_ADDR, CLIENT_ADDR, now=0.0)
        )
        self.assertEqual(dispatcher.connections, {})

    def test_connections_beyond_the_cap_are_refused(self) -> None:
        """With max_connections=3, the fourth and fifth first flights are refused and counted."""
        dispatcher = ServerDispatcher(server_config(), entropy=SeededEntropy(9), max_connections=3)
        for seed in range(5):
            dispatcher.receive_datagram(first_flight(seed), SERVER_ADDR, CLIENT_ADDR, now=0.0)
        self.assertEqual(dispatcher.stats["accepted"], 3)
        self.assertEqual(dispatcher.stats["refused_too_many"], 2)
        self.assertEqual(len(set(dispatcher.connections.values())), 3)

    def test_a_forgotten_connection_frees_its_place(self) -> None:
        """Once the owner forgets a connection, a new client takes its place under the cap."""
        created = []
        dispatcher = ServerDispatcher(
            server_config(), entropy=SeededEntropy(9), max_connections=1,
            on_connection=created.append,
        )  # fmt: skip
        dispatcher.receive_datagram(first_flight(1), SERVER_ADDR, CLIENT_ADDR, now=0.0)
        dispatcher.receive_datagram(first_flight(2), SERVER_ADDR, CLIENT_ADDR, now=0.0)
        self.assertEqual(dispatcher.stats["refused_too_many"], 1)
        dispatcher.forget(created[0])
        dispatcher.receive_datagram(first_flight(2), SERVER_ADDR, CLIENT_ADDR, now=0.0)
        self.assertEqual(dispatcher.stats["accepted"], 2)
