"""
What the Twisted server protocol keeps true of the core dispatcher's bookkeeping: the half-open
count that drives ``retry=auto``.
"""

from __future__ import annotations

from twisted.internet.protocol import Protocol
from twisted.trial.unittest import SynchronousTestCase

from .fakes import SERVER_PORT, FakeKwik


class HalfOpenTests(SynchronousTestCase):
    """``retry=auto`` counts half-open connections: ones whose handshake has not completed."""

    def test_an_established_connection_is_not_half_open(self) -> None:
        """
        After a real handshake on the fake network the server's connection is established, so
        the dispatcher's ``half_open`` set no longer holds it.  (The glue routes every datagram
        of a known connection straight to the core, past ``ServerDispatcher.receive_datagram``,
        where the set is pruned; so every live connection stays "half-open" and ``retry=auto``
        switches Retry on at 64 established connections, not 64 half-open ones.)
        """
        kwik = FakeKwik()
        results = kwik.connect(Protocol)
        self.assertIsInstance(results[0], Protocol)
        dispatcher = kwik.reactor.ports[("127.0.0.1", SERVER_PORT)].protocol.dispatcher
        (core,) = list(dispatcher.live)
        self.assertTrue(core.handshake_complete)
        self.assertEqual(list(dispatcher.half_open), [])

    def test_retry_auto_stays_off_with_many_established_connections(self) -> None:
        """With a threshold of 2, two established connections (none half-open) must not make
        the server ask the third client for a Retry."""
        kwik = FakeKwik(reuse=False)
        dispatcher = kwik.reactor.ports[("127.0.0.1", SERVER_PORT)].protocol.dispatcher
        dispatcher.retry_threshold = 2
        for _ in range(2):
            self.assertIsInstance(kwik.connect(Protocol)[0], Protocol)
        self.assertEqual(len(dispatcher.live), 2)
        self.assertFalse(dispatcher.retry_active())
        self.assertEqual(dispatcher.stats["retry_sent"], 0)
