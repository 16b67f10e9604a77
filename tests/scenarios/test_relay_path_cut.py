"""
A download over two real loopback paths, one of which is cut and later restored (issue 11, finding
9): the client, which only acknowledges on the cut path, must hear ``PathFailed`` as soon as the
server that sends there, and both must take the path back soon after it returns.

Topology as in :mod:`tests.scenarios.test_relay_multipath`: a Kwik server behind two relays of
10 Mbit/s and 15 ms each way (30 ms RTT), path 0 through relay 1, path 1 from 127.0.0.2 through
relay 2.  Times are read from the reactor's clock when the applications hear each path event.
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.internet.endpoints import connectProtocol
from zope.interface import implementer

from kwik_twisted.events import PathFailed, PathRecovered
from kwik_twisted.interfaces import IKwikConnectionObserver
from tests.polling import until
from tests.scenarios.test_relay_multipath import (
    BEFORE,
    MultipathScenario,
    ObservedDownload,
    ObservedFileServer,
)
from tests.scenarios.test_relay_scenarios import DELAY, MiB, link

RTT = 2 * DELAY
#: The issue's budget for PathFailed at both applications, from the cut.
FAIL_BOUND = 1.0 + 3 * RTT
#: How long the path stays cut.
OUTAGE = 1.0
#: A restored path is taken back within about a second; a quarter second more for a busy host.
BACK_BOUND = 1.0 + 3 * RTT + 0.25


class Timed:
    """Records when (reactor clock) each path event reached the application."""

    def pathEvent(self, event) -> None:
        """Record one path event and its time."""
        self.events.append(event)
        self.times.append(reactor.seconds())

    def first(self, kind: type, path_id: int = 1) -> float | None:
        """When the first ``kind`` event for ``path_id`` arrived, or ``None``."""
        for when, event in zip(self.times, self.events):
            if type(event) is kind and event.path_id == path_id:
                return when
        return None


@implementer(IKwikConnectionObserver)
class TimedDownload(Timed, ObservedDownload):
    """An :class:`ObservedDownload` that timestamps its path events."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.times: list[float] = []


@implementer(IKwikConnectionObserver)
class TimedFileServer(Timed, ObservedFileServer):
    """An :class:`ObservedFileServer` that timestamps its path events."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []


class PathCutTests(MultipathScenario):
    """Relay 2 goes down both ways mid-download, and comes back :data:`OUTAGE` later."""

    @defer.inlineCallbacks
    def test_receiving_client_hears_path_failed_within_the_bound(self):
        """2 MiB over two paths; a quarter in, relay 2 drops everything both ways for 1 s.  The
        client, which only acknowledges on path 1, hears PathFailed within 1 s plus 3 RTTs of
        the cut (before: only after the transfer, if at all), the server too; once relay 2 is
        back both ends hear PathRecovered within about a second, relay 2 carries datagrams
        again, and the file arrives intact."""
        yield self.twoPaths(link(), seed=91)
        self.factory.protocol = TimedFileServer
        cut = self.relays[1]
        marks: dict[str, object] = {}

        def kill() -> None:
            marks["delivered"] = self.delivered()
            marks["cut"] = reactor.seconds()
            cut.set_up(False)
            reactor.callLater(OUTAGE, restore)

        def restore() -> None:
            marks["back"] = reactor.seconds()
            marks["crossed"] = cut.to_client.stats.delivered
            cut.set_up(True)

        size = 2 * MiB
        download = TimedDownload(size, 0, marks=(size // 4,), progress=kill, hold=True)
        yield connectProtocol(self.endpoint(), download)
        yield download.finished
        self.assertIntact([download])
        self.assertCarried(marks["delivered"], BEFORE, "before the cut")
        server = self.server()
        yield until(lambda: "back" in marks, 10)
        for side, log in (("client", download), ("server", server)):
            failed = log.first(PathFailed)
            self.assertIsNotNone(failed, f"{side}: {log.events}")
            self.assertLessEqual(failed - marks["cut"], FAIL_BOUND, f"{side}: {log.events}")
        yield until(
            lambda: download.first(PathRecovered) and server.first(PathRecovered), 2 * BACK_BOUND
        )
        for side, log in (("client", download), ("server", server)):
            recovered = log.first(PathRecovered) - marks["back"]
            self.assertLessEqual(recovered, BACK_BOUND, f"{side}: {log.events}")
            self.assertNotIn(PathFailed, log.kinds(0), f"{side}: {log.events}")
        self.assertGreater(cut.to_client.stats.delivered, marks["crossed"])
        yield self.closeAll([download])
