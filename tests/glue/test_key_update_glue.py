"""
Key update through the Twisted API, over the fake UDP reactor: ``IKwikConnection.updateKeys``.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from .fakes import FakeKwik, Recorder


class UpdateKeysTests(SynchronousTestCase):
    """An application asks for a key update; both sides step and the stream goes on."""

    def setUp(self) -> None:
        self.kwik = FakeKwik(serverProtocol=Recorder)
        self.client = self.kwik.connect(Recorder)[0]
        self.conn = self.client.transport.kwikConnection
        self.server = self.kwik.serverProtocols[0]

    def generations(self) -> tuple[int, int]:
        """The application key generation of the client's and the server's connection."""
        server = self.server.transport.kwikConnection
        return self.conn.core.keys.phases.generation, server.core.keys.phases.generation

    def test_update_keys_steps_both_sides_and_data_still_flows(self) -> None:
        """updateKeys() returns True; after the next exchange both sides are in generation 1
        (then 2 after another request), and bytes written before, between and after arrive
        in order."""
        self.client.transport.write(b"before ")
        self.kwik.pump()
        self.assertEqual(self.generations(), (0, 0))
        self.assertTrue(self.conn.updateKeys())
        self.client.transport.write(b"between ")
        self.kwik.pump()
        self.assertEqual(self.generations(), (1, 1))
        self.server.transport.write(b"ack")
        self.kwik.pump(5.0)  # the previous keys go after three PTOs
        self.assertTrue(self.conn.updateKeys())
        self.client.transport.write(b"after")
        self.kwik.pump()
        self.assertEqual(self.generations(), (2, 2))
        self.assertEqual(self.server.received, b"before between after")
        self.assertEqual(self.client.received, b"ack")
