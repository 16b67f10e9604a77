"""
WRR over two rate-limited relay paths on real loopback sockets (issue 15, acceptance item 7): the
weights converge on the paths' capacity ratio.

Topology (as in test_relay_multipath): a Kwik server on 127.0.0.1 using the ``wrr`` scheduler,
one :class:`~kwik_twisted.testing.relay.Relay` per path; the client's path 0 goes through relay
1, its path 1 from 127.0.0.2 through relay 2.  Towards the client, relay 1 carries
:data:`FAST_RATE` (8 Mbit/s) with 10 ms of delay and relay 2 :data:`SLOW_RATE` (4 Mbit/s) with
40 ms, each with a drop-tail queue of two bandwidth-delay products of its base RTT; towards the
server only the delay.  The capacity ratio is 2:1, so path 0's share of the weights,
``w0 / (w0 + w1)`` of the server's scheduler when the file is in, must be within
:data:`TOLERANCE` (10%) of 2/3.  Rates are low enough for a loaded two-core machine to fill both
paths with margin.

Two writers: a plain bulk transfer, and a *stop-and-go* writer that hands the stream
:data:`PIECE` bytes every :data:`PAUSE` seconds (each piece fills both paths for about two thirds
of the pause, then they idle).  The second is where the old delivery-rate estimate (a sliding
mean of acknowledged bytes, which counts what an application-limited path was given) drifted:
measured at 32-35% off 2/3 in five runs, against 1-2% with the bottleneck-bandwidth estimate
that leaves application-limited samples out (kwik_twisted/core/paths/metrics.py).  The bulk
transfer converged within 0.1-1.6% either way with these queues (with one-BDP queues the old
estimate ended 0.4-13.5% off, the new one 0.3-9.3%: after a loss CUBIC leaves the link
underused for longer than either estimator's window).
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.trial.unittest import SkipTest

from kwik_twisted.endpoints import KwikServerEndpoint, closeClientConnections
from kwik_twisted.testing.links import LinkConfig
from kwik_twisted.testing.pair import server_config
from kwik_twisted.testing.relay import Relay
from tests.scenarios.test_relay_multipath import (
    SECOND_LOCAL,
    MultipathScenario,
    ObservedFileServer,
    ObservedFileServerFactory,
    second_address_usable,
)
from tests.scenarios.test_relay_scenarios import IDLE_TIMEOUT, KiB, MiB, payload, slow

#: The paths' rates towards the client, bits per second, and their one-way delays.
FAST_RATE, FAST_DELAY = 8e6, 0.010
SLOW_RATE, SLOW_DELAY = 4e6, 0.040
#: Path 0's share of the capacity, and how far (relative) its weight share may be from it.
TARGET = FAST_RATE / (FAST_RATE + SLOW_RATE)
TOLERANCE = 0.10
#: The stop-and-go writer: this many bytes every PAUSE seconds.
PIECE = 256 * KiB
PAUSE = 0.3


class StopAndGoServer(ObservedFileServer):
    """Writes the requested file :data:`PIECE` bytes at a time, one piece every :data:`PAUSE`
    seconds (``factory.pieces`` false: all at once, as :class:`FileServer`)."""

    def dataReceived(self, data: bytes) -> None:
        if self.replied or not self.factory.pieces:
            super().dataReceived(data)
            return
        self.request += data
        if b"\n" in self.request:
            size, seed = map(int, self.request.split(b"\n", 1)[0].split())
            self.replied = True
            self.data = payload(size, seed)
            self.sent = 0
            self.writePiece()

    def writePiece(self) -> None:
        """Write the next piece; FIN after the last, else come back in PAUSE seconds."""
        piece = self.data[self.sent : self.sent + PIECE]
        self.sent += len(piece)
        self.transport.write(piece)
        if self.sent >= len(self.data):
            self.transport.loseWriteConnection()
        else:
            reactor.callLater(PAUSE, self.writePiece)


class WrrServerFactory(ObservedFileServerFactory):
    """Builds :class:`StopAndGoServer` protocols."""

    protocol = StopAndGoServer

    def __init__(self, *, pieces: bool) -> None:
        super().__init__()
        self.pieces = pieces


class WrrConvergenceTests(MultipathScenario):
    """The server's WRR weights end on the 2:1 capacity ratio of its two paths."""

    @defer.inlineCallbacks
    def rateLimitedPaths(self, *, pieces: bool, seed: int):
        """A ``wrr`` server behind one relay per path (module docstring)."""
        if not second_address_usable():
            raise SkipTest(f"cannot bind {SECOND_LOCAL} (needs a loopback that covers 127/8)")
        self.factory = WrrServerFactory(pieces=pieces)
        config = server_config(idle_timeout=IDLE_TIMEOUT, scheduler="wrr")
        endpoint = KwikServerEndpoint(reactor, 0, config=config, interface="127.0.0.1")
        port = yield endpoint.listen(self.factory)
        self.addCleanup(port.stopListening)
        server = ("127.0.0.1", port.getHost().port)
        self.relays = []
        for i, (rate, delay) in enumerate(((FAST_RATE, FAST_DELAY), (SLOW_RATE, SLOW_DELAY))):
            queue = int(rate / 8 * 4 * delay)  # two bandwidth-delay products of the base RTT
            down = LinkConfig(delay=delay, rate_bps=rate, queue_bytes=queue)
            relay = Relay(reactor, server, to_server=LinkConfig(delay=delay), to_client=down,
                          seed=seed + i)  # fmt: skip
            self.relays.append(relay.start())
            self.addCleanup(relay.stop)
        self.relay = self.relays[0]
        self.addCleanup(closeClientConnections, reactor)

    @defer.inlineCallbacks
    def converges(self, size: int, *, pieces: bool, seed: int):
        """Download ``size`` bytes and check the weight share of path 0 against :data:`TARGET`."""
        yield self.rateLimitedPaths(pieces=pieces, seed=seed)
        download = yield self.download(size)
        scheduler = self.server().connection.core.scheduler
        weights = scheduler.weights
        self.assertEqual(sorted(weights), [0, 1])
        share = weights[0] / (weights[0] + weights[1])
        error = abs(share - TARGET) / TARGET
        self.assertLessEqual(
            error,
            TOLERANCE,
            f"path 0's weight share {share:.3f} is {error:.1%} off {TARGET:.3f}; weights "
            f"{weights}, delivered by the relays {self.delivered()}",
        )
        self.assertCarried(self.delivered(), size // 5, "over the transfer")
        yield self.closeAll([download], calm=False)

    @defer.inlineCallbacks
    def test_weights_converge_on_a_bulk_transfer(self):
        """A 3 MiB file written at once: path 0's weight share ends within 10% of 2/3, each
        relay carried at least a fifth of the file, the file is intact and the connection
        closes cleanly."""
        yield self.converges(3 * MiB, pieces=False, seed=81)

    @defer.inlineCallbacks
    def test_weights_converge_with_a_stop_and_go_writer(self):
        """A 3 MiB file written 256 KiB every 300 ms (the paths idle between pieces, and each
        piece ends application-limited): path 0's weight share still ends within 10% of 2/3
        (the old estimate drifted 32-35% here), and the file arrives intact."""
        yield self.converges(3 * MiB, pieces=True, seed=83)

    @slow
    @defer.inlineCallbacks
    def test_weights_converge_on_a_bulk_transfer_full_size(self):
        """The bulk case with 12 MiB."""
        yield self.converges(12 * MiB, pieces=False, seed=85)

    @slow
    @defer.inlineCallbacks
    def test_weights_converge_with_a_stop_and_go_writer_full_size(self):
        """The stop-and-go case with 8 MiB."""
        yield self.converges(8 * MiB, pieces=True, seed=87)
