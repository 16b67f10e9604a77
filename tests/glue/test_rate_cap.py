"""
The rate cap through the Twisted API (``IKwikStreamTransport.maxRate`` and ``setMaxRate``), over
the fake UDP reactor: real Kwik connections in fake time, so the rate a capped stream gets is a
deterministic figure of the fake clock, not of the machine.
"""

from __future__ import annotations

import math

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.qos.shaper import BURST_MIN
from kwik_twisted.errors import ConfigurationError

from .fakes import FakeKwik, Recorder

DATA = bytes(range(256)) * 1200  # 300 KiB


class RateCapTests(SynchronousTestCase):
    """``setMaxRate`` reaches the core's shaper; ``maxRate`` reads it back."""

    def setUp(self) -> None:
        self.kwik = FakeKwik(serverProtocol=Recorder)
        self.first = self.kwik.connect(Recorder)[0]
        self.conn = self.first.transport.kwikConnection

    def open(self):
        """Open a stream, announce it, and return (its transport, the core's stream)."""
        transport = self.conn.openStream(Recorder())
        transport.write(b"hello")
        self.kwik.pump()
        return transport, self.conn.core.streams.streams[transport.streamId]

    def test_a_new_stream_has_no_cap(self) -> None:
        """``maxRate`` is None until set, and the shaper does not track the stream."""
        transport, stream = self.open()
        self.assertIsNone(transport.maxRate)
        self.assertIsNone(stream.shaping)

    def test_set_max_rate_reaches_the_core_and_reads_back(self) -> None:
        """``setMaxRate(2e6)``: the transport reads 2 Mbit/s, the core's stream has the cap (250
        kB/s in its shaper); ``setMaxRate(None)`` lifts it everywhere."""
        transport, stream = self.open()
        transport.setMaxRate(2_000_000)
        self.assertEqual(transport.maxRate, 2e6)
        self.assertEqual(stream.max_rate, 2e6)
        self.assertEqual(stream.shaping.cap, 250_000)
        transport.setMaxRate(None)
        self.assertIsNone(transport.maxRate)
        self.assertIsNone(stream.shaping)

    def test_bad_rates_raise_and_change_nothing(self) -> None:
        """Zero, negative, NaN, infinite, boolean or non-numeric rates raise ConfigurationError
        and leave the cap as it was."""
        transport, stream = self.open()
        transport.setMaxRate(1_000_000)
        for bad in (0, -1, math.nan, math.inf, True, "1 Mbit/s"):
            self.assertRaises(ConfigurationError, transport.setMaxRate, bad)
        self.assertEqual(transport.maxRate, 1e6)

    def test_the_capped_stream_gets_its_rate_in_fake_time(self) -> None:
        """Capped at 800 kbit/s (100 kB/s), 300 KiB written: after one fake second the server
        holds the burst plus 100 kB (within two datagrams), and everything in the end."""
        transport, stream = self.open()
        server = self.kwik.serverProtocols[-1]
        transport.setMaxRate(800_000)
        transport.write(DATA)
        self.kwik.pump()
        start = len(server.received)
        self.assertLess(abs(start - 5 - BURST_MIN), 2800)
        self.kwik.pump(1.0)
        self.assertLess(abs(len(server.received) - start - 100_000), 2800)
        self.kwik.pump(3.0)
        self.assertEqual(server.received, b"hello" + DATA)

    def test_a_stream_gone_keeps_its_last_cap_and_ignores_the_setter(self) -> None:
        """Once the stream is closed and forgotten by the core, ``setMaxRate`` does nothing (no
        error) and ``maxRate`` keeps its last value."""
        transport, stream = self.open()
        transport.setMaxRate(4_000_000)
        self.assertEqual(transport.maxRate, 4e6)
        server = self.kwik.serverProtocols[-1]
        transport.loseConnection()
        server.transport.loseConnection()
        self.kwik.pump(1.0)
        self.assertNotIn(transport.streamId, self.conn.core.streams.streams)
        transport.setMaxRate(1_000_000)
        self.assertEqual(transport.maxRate, 4e6)
