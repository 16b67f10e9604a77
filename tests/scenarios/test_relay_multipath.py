"""
Multipath scenarios over real loopback sockets, one impairment relay per path (the issue's
multipath acceptance cases: a path dies, both paths lossy, a path flapping).

Topology: one Kwik server on 127.0.0.1 and two :class:`~kwik_twisted.testing.relay.Relay`\\ s
in front of it, each with the interop runner's default link (10 Mbit/s, 15 ms one way, a
25-packet queue; :func:`~tests.scenarios.test_relay_scenarios.link`).  The client's handshake
path (path 0) goes from 127.0.0.1 through relay 1; its extra path (path 1) goes from 127.0.0.2
through relay 2, given as ``paths=[("127.0.0.2", "127.0.0.1", relay2_port)]``.  The client asks
for one file on one stream; the server writes it and closes the stream.  Every scenario checks
the file's SHA-256, that both relays carried the file's bytes to the client before the
impairment began, the path events the client's stream saw (``IKwikConnectionObserver``) and a
clean end: both stream sides see ``ConnectionDone`` and both connections close with error code 0
(:meth:`RelayScenario.closeCleanly`).  docs/testing.rst gives each scenario's numbers.

Full-size variants are marked ``slow`` as in test_relay_scenarios.
"""

from __future__ import annotations

import socket

from twisted.internet import defer, reactor
from twisted.internet.endpoints import connectProtocol
from twisted.trial.unittest import SkipTest
from zope.interface import implementer

from kwik_twisted.endpoints import KwikClientEndpoint, KwikServerEndpoint, closeClientConnections
from kwik_twisted.events import PathFailed, PathRecovered
from kwik_twisted.interfaces import IKwikConnectionObserver
from kwik_twisted.testing.links import LinkConfig
from kwik_twisted.testing.pair import client_config, server_config
from kwik_twisted.testing.relay import Relay
from tests.polling import until
from tests.scenarios.test_relay_scenarios import (
    CONNECT_TIMEOUT,
    IDLE_TIMEOUT,
    Download,
    FileServer,
    FileServerFactory,
    KiB,
    MiB,
    RelayScenario,
    link,
    slow,
)

#: The local address of the client's second path.
SECOND_LOCAL = "127.0.0.2"
#: The flapping path's schedule: seconds down, then seconds up, repeated.
FLAP_DOWN = FLAP_UP = 2.0


def second_address_usable() -> bool:
    """Whether this host can bind a UDP socket to :data:`SECOND_LOCAL` (Linux: all of 127/8)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((SECOND_LOCAL, 0))
    except OSError:
        return False
    return True


def in_order(seen: list[type], kinds: list[type]) -> bool:
    """Whether ``kinds`` occur in ``seen`` in that order (not necessarily adjacent)."""
    rest = iter(seen)
    return all(kind in rest for kind in kinds)


class PathLog:
    """Records the path events of a stream's connection (``IKwikConnectionObserver``)."""

    events: list

    def pathEvent(self, event) -> None:
        """Record one path event."""
        self.events.append(event)

    def seen(self, kind: type, path_id: int) -> list:
        """The events of type ``kind`` for ``path_id``."""
        return [e for e in self.events if type(e) is kind and e.path_id == path_id]

    def kinds(self, path_id: int) -> list[type]:
        """The types of the events for ``path_id``, in order."""
        return [type(e) for e in self.events if e.path_id == path_id]


@implementer(IKwikConnectionObserver)
class ObservedDownload(PathLog, Download):
    """A :class:`Download` that records its connection's path events."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.events = []


@implementer(IKwikConnectionObserver)
class ObservedFileServer(PathLog, FileServer):
    """A :class:`FileServer` that records its connection's path events."""

    def __init__(self) -> None:
        self.events = []


class ObservedFileServerFactory(FileServerFactory):
    """Builds :class:`ObservedFileServer` protocols and keeps them."""

    protocol = ObservedFileServer


class MultipathScenario(RelayScenario):
    """A Kwik server behind two relays, one per path of a two-path client."""

    timeout = 120

    @defer.inlineCallbacks
    def twoPaths(self, config: LinkConfig, *, seed: int):
        """Listen and start one relay per path, both with ``config`` each way (seeds ``seed``
        and ``seed + 1``); everything closes at cleanup."""
        if not second_address_usable():
            raise SkipTest(f"cannot bind {SECOND_LOCAL} (needs a loopback that covers 127/8)")
        self.factory = ObservedFileServerFactory()
        endpoint = KwikServerEndpoint(
            reactor, 0, config=server_config(idle_timeout=IDLE_TIMEOUT), interface="127.0.0.1"
        )
        port = yield endpoint.listen(self.factory)
        self.addCleanup(port.stopListening)
        server = ("127.0.0.1", port.getHost().port)
        self.relays = [
            Relay(reactor, server, to_server=config, to_client=config, seed=seed + i).start()
            for i in range(2)
        ]
        for relay in self.relays:
            self.addCleanup(relay.stop)
        self.relay = self.relays[0]
        self.addCleanup(closeClientConnections, reactor)

    def endpoint(self, *, reuse: bool = True, timeout: float = CONNECT_TIMEOUT):
        """A client endpoint: path 0 through relay 1, path 1 from 127.0.0.2 through relay 2."""
        second = self.relays[1].address
        return KwikClientEndpoint(
            reactor,
            "127.0.0.1",
            self.relay.address[1],
            config=client_config(idle_timeout=IDLE_TIMEOUT),
            timeout=timeout,
            reuse=reuse,
            paths=[(SECOND_LOCAL, second[0], second[1])],
        )

    def delivered(self) -> list[int]:
        """Bytes each relay has delivered to the client so far."""
        return [relay.to_client.stats.bytes_delivered for relay in self.relays]

    def assertCarried(self, delivered: list[int], least: int, when: str) -> None:
        """Each relay had delivered at least ``least`` bytes to the client (``delivered``)."""
        for i, count in enumerate(delivered):
            self.assertGreaterEqual(
                count,
                least,
                f"path {i} carried too little {when}: {delivered} bytes delivered by the relays",
            )

    def server(self) -> ObservedFileServer:
        """The server's one stream."""
        (stream,) = self.factory.streams
        return stream

    def assertPathEvents(
        self,
        download: ObservedDownload,
        kinds: list[type],
        *,
        sides: tuple[str, ...] = ("client", "server"),
    ) -> None:
        """Path 1 saw ``kinds`` in that order (among others) on ``sides``, path 0 never
        failed."""
        for side in sides:
            log = download if side == "client" else self.server()
            self.assertTrue(
                in_order(log.kinds(1), kinds),
                f"{side}: expected {[k.__name__ for k in kinds]} for path 1 in {log.events}",
            )
            self.assertNotIn(PathFailed, log.kinds(0), f"{side}: {log.events}")

    @defer.inlineCallbacks
    def download(self, size: int, *, at: float | None = None, event=None, hold: bool = False):
        """Fetch ``size`` bytes; with ``at``, call ``event()`` once that fraction has arrived.
        Fires with the :class:`ObservedDownload` when it is in (see ``Download.hold``)."""
        marks = () if at is None else (int(size * at),)
        download = ObservedDownload(size, 0, marks=marks, progress=event, hold=hold)
        yield connectProtocol(self.endpoint(), download)
        yield (download.finished if hold else download.done)
        self.assertIntact([download])
        paths = download.connection.core.paths
        self.assertEqual(paths[1].local_addr[0], SECOND_LOCAL)
        self.assertEqual(paths[1].remote_addr, self.relays[1].address)
        return download

    @defer.inlineCallbacks
    def closeAll(self, downloads, *, calm: bool = True):
        """:meth:`RelayScenario.closeCleanly` with both relays calmed (base link, no
        blackholes; a relay that was set down stays down)."""
        if calm:
            for relay in self.relays:
                relay.configure(link())
                relay.stop_blackholes()
        servers = yield self.closeCleanly(downloads, calm=False)
        self.assertEqual(len(servers), 1, "expected exactly one handshake")


def crossed(relay: Relay) -> int:
    """Datagrams ``relay`` has delivered, both ways."""
    return relay.to_server.stats.delivered + relay.to_client.stats.delivered


#: Bytes each relay must have delivered to the client before the scenario's event.
BEFORE = 32 * KiB


class PathDiesTests(MultipathScenario):
    """One of two paths dies mid-transfer."""

    @defer.inlineCallbacks
    def dies(self, size: int):
        """Download ``size`` bytes; relay 2 goes down for good a third of the way in."""
        yield self.twoPaths(link(), seed=61)
        dead = self.relays[1]
        at_death: list[list[int]] = []

        def kill() -> None:
            at_death.append(self.delivered())
            dead.set_up(False)

        download = yield self.download(size, at=1 / 3, event=kill)
        (before,) = at_death
        self.assertCarried(before, BEFORE, "before the path died")
        self.assertPathEvents(download, [PathFailed])
        self.assertGreater(dead.to_server.stats.lost_down, 0, "nothing was sent to the dead path")
        after = self.delivered()
        self.assertEqual(after[1], before[1], "the dead relay delivered")
        yield self.closeAll([download])

    @defer.inlineCallbacks
    def test_transfer_completes_when_a_path_dies(self):
        """*path dies*, scaled: 2 MiB over two paths; when a third is in, relay 2 drops
        everything both ways for good.  Both ends declare path 1 failed (PathFailed; path 0
        never), the rest (at least 60% of the file) crosses relay 1, the file is intact and
        the connection closes cleanly over path 0."""
        yield self.dies(2 * MiB)

    @slow
    @defer.inlineCallbacks
    def test_transfer_completes_when_a_path_dies_full_size(self):
        """*path dies* at full size: 5 MiB."""
        yield self.dies(5 * MiB)


class BothPathsLossyTests(MultipathScenario):
    """Both paths at 30% loss."""

    @defer.inlineCallbacks
    def lossy(self, size: int):
        """Download ``size`` bytes with both relays losing 30% each way."""
        yield self.twoPaths(link(loss=0.30, max_loss_burst=3), seed=62)
        download = yield self.download(size)
        self.assertCarried(self.delivered(), size // 10, "over the transfer")
        for relay in self.relays:
            for direction in (relay.to_server, relay.to_client):
                self.assertGreater(direction.stats.lost_random, 0)
        yield self.closeAll([download])

    @defer.inlineCallbacks
    def test_transfer_over_two_paths_at_thirty_percent_loss(self):
        """*both paths lossy*, scaled: 512 KiB while both relays lose 30% of the datagrams each
        way at random (bursts of at most 3); each relay delivers at least a tenth of the
        file's size to the client, the file is intact and the connection closes cleanly."""
        yield self.lossy(512 * KiB)

    @slow
    @defer.inlineCallbacks
    def test_transfer_over_two_paths_at_thirty_percent_loss_full_size(self):
        """*both paths lossy* at full size: 2 MiB."""
        yield self.lossy(2 * MiB)


class FlappingPathTests(MultipathScenario):
    """A path that goes down for 2 s and up for 2 s, over and over."""

    @defer.inlineCallbacks
    def flapping(self, size: int):
        """Download ``size`` bytes; relay 2 flaps (2 s down, 2 s up) from a tenth of the way in."""
        yield self.twoPaths(link(), seed=63)
        flapper = self.relays[1]
        before: list[list[int]] = []
        back: list[int] = []

        def flap() -> None:
            before.append(self.delivered())
            begin = flapper.now()
            # down at once for FLAP_DOWN, then up for FLAP_UP, and so on
            flapper.blackhole(up=FLAP_UP, down=FLAP_DOWN, start=begin - FLAP_UP)
            flapper.at(begin + FLAP_DOWN, lambda: back.append(crossed(flapper)))

        download = yield self.download(size, at=0.1, event=flap, hold=True)
        self.assertCarried(before[0], BEFORE, "before the path began to flap")
        server = self.server()
        try:
            # the transfer may end before the first recovery: the held stream waits for it
            yield until(
                lambda: in_order(server.kinds(1), [PathFailed, PathRecovered]),
                2 * (FLAP_DOWN + FLAP_UP),
            )
        except AssertionError:
            pass  # assertPathEvents says what was seen
        self.assertPathEvents(download, [PathFailed, PathRecovered], sides=("server",))
        for direction in (flapper.to_server, flapper.to_client):
            self.assertGreater(direction.stats.lost_blackhole, 0, "the path never went down")
        self.assertGreater(crossed(flapper), back[0], "nothing crossed the path once it was up")
        yield self.closeAll([download])

    @defer.inlineCallbacks
    def test_transfer_survives_a_flapping_path(self):
        """*flapping path*, scaled: 3 MiB; from a tenth in, relay 2 drops everything both ways
        for 2 s, passes for 2 s, and so on.  The file arrives intact; the server, which sends
        it, sees path 1 fail and later recover (PathFailed then PathRecovered; path 0 never
        fails); relay 2 counted datagrams dropped in its holes both ways and delivered
        datagrams after the first hole; the connection closes cleanly."""
        yield self.flapping(3 * MiB)

    @slow
    @defer.inlineCallbacks
    def test_transfer_survives_a_flapping_path_full_size(self):
        """*flapping path* at full size: 8 MiB."""
        yield self.flapping(8 * MiB)
