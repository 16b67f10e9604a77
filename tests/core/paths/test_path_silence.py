"""
Path failure and recovery seen from both ends, whichever way the data flows (issue 11, finding 9).

In simulated time (:class:`~kwik_twisted.testing.simulator.Network`): a client downloads from a
server over two paths of 5 Mbit/s and 30 ms RTT each; the client only acknowledges, so before the
silence rule it had no probe timer on a path and heard of a cut path only seconds later.  The bound
checked is the issue's: ``PathFailed`` at both applications within 1 s plus 3 RTTs of the cut, and a
path that comes back carrying data again within about 1 s (here: 1 s plus 3 RTTs) of coming back.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.connection import Connection
from kwik_twisted.core.dispatcher import ServerDispatcher
from kwik_twisted.core.entropy import SeededEntropy
from kwik_twisted.core.paths.manager import MAX_PROBE_INTERVAL
from kwik_twisted.events import PathEvent, PathFailed, PathRecovered, StreamDataReceived
from kwik_twisted.testing import LinkConfig, Network
from kwik_twisted.testing.pair import client_config, server_config
from kwik_twisted.testing.transfer import _Client, _Server, make_payload

SERVER = ("10.0.0.1", 4433)
PATH0 = ("10.1.0.1", 5000)
PATH1 = ("10.2.0.1", 5000)
RTT = 0.030
#: The issue's budget for PathFailed at both ends, from the cut.
FAIL_BOUND = 1.0 + 3 * RTT
#: A path that comes back carries data again within this of coming back.
BACK_BOUND = 1.0 + 3 * RTT
MiB = 1 << 20


def link(rate: float = 5e6) -> LinkConfig:
    """One direction of a path: ``rate``, 15 ms one way, a one-BDP queue."""
    return LinkConfig(delay=RTT / 2, rate_bps=rate, queue_bytes=max(15000, int(rate * RTT / 8)))


class Download:
    """
    A client fetching ``size`` bytes from a server over one or two simulated paths.

    :ivar events: ``(time, side, event)`` for every path event of either end.
    :ivar data_on_path1: times at which a datagram of stream data (over 1000 bytes) left the
        server on path 1.
    :ivar client_on_path1: times at which the client sent a datagram on path 1.
    """

    def __init__(self, size: int, *, two_paths: bool = True, seed: int = 7) -> None:
        self.network = network = Network(seed)
        self.payload = make_payload(size, seed)
        self.received = bytearray()
        self.finished: float | None = None
        self.events: list[tuple[float, str, PathEvent]] = []
        self.data_on_path1: list[float] = []
        self.client_on_path1: list[float] = []
        self.addresses = addresses = [PATH0, PATH1] if two_paths else [PATH0]
        for address in addresses:
            network.add_link(address, SERVER, ab=link(), ba=link())
        network.trace = self._trace
        self.servers: list[Connection] = []
        dispatcher = ServerDispatcher(
            server_config(), entropy=SeededEntropy(seed + 1), on_connection=self.servers.append
        )
        network.attach(_Server(dispatcher, self._on_server), [SERVER])
        self.client = Connection.client(
            client_config(),
            local_addr=PATH0,
            remote_addr=SERVER,
            entropy=SeededEntropy(seed + 2),
            now=0.0,
        )
        if two_paths:
            self.client.open_path(PATH1, SERVER)
        stream = self.client.open_stream()
        self.client.send_stream_data(stream, b"GET", end_stream=True)
        network.attach(_Client(self.client, self._on_client), addresses)

    @property
    def server(self) -> Connection:
        """The server's connection."""
        return self.servers[0]

    def _trace(self, now: float, src, dst, size: int, what: str) -> None:
        if what != "sent":
            return
        if src == SERVER and dst == PATH1 and size > 1000:
            self.data_on_path1.append(now)
        elif src == PATH1:
            self.client_on_path1.append(now)

    def _on_server(self, conn: Connection, event) -> None:
        if isinstance(event, PathEvent):
            self.events.append((self.network.now, "server", event))
        elif isinstance(event, StreamDataReceived) and event.end_stream:
            conn.send_stream_data(event.stream_id, self.payload, end_stream=True)

    def _on_client(self, conn: Connection, event) -> None:
        if isinstance(event, PathEvent):
            self.events.append((self.network.now, "client", event))
        elif isinstance(event, StreamDataReceived):
            self.received += event.data
            if event.end_stream:
                self.finished = self.network.now

    def cut(self, at: float, until: float | None = None) -> None:
        """Cut path 1 both ways at ``at`` (path 0 if there is one path), restore it at ``until``."""
        address = self.addresses[-1]
        self.network.at(at, lambda: self.network.set_link_up(address, SERVER, False))
        if until is not None:
            self.network.at(until, lambda: self.network.set_link_up(address, SERVER, True))

    def run(self, until: float) -> None:
        """Run until ``until`` or until the download is complete."""
        self.network.run(until=until, stop=lambda: self.finished is not None)

    def first(self, kind: type, side: str, path_id: int = 1, after: float = 0.0) -> float | None:
        """When ``side`` first saw a ``kind`` event for ``path_id`` at or after ``after``."""
        for when, who, event in self.events:
            if who == side and type(event) is kind and event.path_id == path_id and when >= after:
                return when
        return None

    def kinds(self, side: str) -> list[tuple[str, int]]:
        """``side``'s path events as ``(name, path_id)``."""
        return [(type(e).__name__, e.path_id) for _, who, e in self.events if who == side]


class CutPathTests(SynchronousTestCase):
    """A path of a download is cut both ways, then restored."""

    CUT, BACK = 1.5, 3.0

    def setUp(self) -> None:
        self.download = Download(6 * MiB)
        self.download.cut(self.CUT, self.BACK)
        self.download.run(until=30.0)

    def test_receiving_client_hears_path_failed_within_the_bound(self) -> None:
        """The client, which only acknowledges on the cut path, reports PathFailed within 1 s
        plus 3 RTTs of the cut (it was 4 s late before: after the transfer ended)."""
        failed = self.download.first(PathFailed, "client")
        self.assertIsNotNone(failed, self.download.kinds("client"))
        self.assertLessEqual(failed - self.CUT, FAIL_BOUND)

    def test_sending_server_hears_path_failed_within_the_bound(self) -> None:
        """The server, which sends the data, reports PathFailed within 1 s plus 3 RTTs too."""
        failed = self.download.first(PathFailed, "server")
        self.assertIsNotNone(failed, self.download.kinds("server"))
        self.assertLessEqual(failed - self.CUT, FAIL_BOUND)

    def test_both_ends_recover_the_path_within_a_second_of_its_return(self) -> None:
        """Once the link is back, both ends report PathRecovered within 1 s plus 3 RTTs."""
        for side in ("client", "server"):
            recovered = self.download.first(PathRecovered, side, after=self.BACK)
            self.assertIsNotNone(recovered, f"{side}: {self.download.kinds(side)}")
            self.assertLessEqual(recovered - self.BACK, BACK_BOUND, side)

    def test_restored_path_carries_data_again_within_a_second(self) -> None:
        """The server sends stream data on path 1 again within 1 s plus 3 RTTs of its return,
        and the download completes byte-exact."""
        again = [t for t in self.download.data_on_path1 if t >= self.BACK]
        self.assertTrue(again, "no data on path 1 after it came back")
        self.assertLessEqual(again[0] - self.BACK, BACK_BOUND)
        self.assertEqual(bytes(self.download.received), self.download.payload)

    def test_path_zero_never_fails(self) -> None:
        """The working path is never declared failed at either end, and the cut one only once."""
        for side in ("client", "server"):
            kinds = self.download.kinds(side)
            self.assertNotIn(("PathFailed", 0), kinds, side)
            self.assertEqual(kinds.count(("PathFailed", 1)), 1, f"{side}: {kinds}")


class ProbeBackoffTests(SynchronousTestCase):
    """A failed path is probed soon after it fails, then less often, but at least every second."""

    def test_failed_path_is_probed_from_one_pto_up_to_once_a_second(self) -> None:
        """Path 1 cut for good at 1.5 s: after the client declares it failed, its first probe
        leaves within a PTO (a quarter second here), no gap between probes exceeds
        MAX_PROBE_INTERVAL (1 s), and 5 s later they come at most twice a second."""
        download = Download(4 * MiB)
        download.cut(1.5)
        download.run(until=12.0)
        download.network.run(until=12.0)
        failed = download.first(PathFailed, "client")
        self.assertIsNotNone(failed, download.kinds("client"))
        probes = [t for t in download.client_on_path1 if t > failed] + [12.0]
        self.assertLessEqual(probes[0] - failed, 0.25)
        gaps = [b - a for a, b in zip(probes, probes[1:])]
        self.assertLessEqual(max(gaps), MAX_PROBE_INTERVAL + 1e-6)
        late = [t for t in probes[:-1] if failed + 5.0 <= t < failed + 10.0]
        self.assertLessEqual(len(late), 10)


class QuietTests(SynchronousTestCase):
    """The silence rule stays quiet where it has nothing to say."""

    def test_idle_connection_is_not_probed(self) -> None:
        """After a two-path download completes, 20 s of silence on both paths send no datagram
        at either end and fail no path: the rule probes only while another path delivers."""
        download = Download(MiB)
        download.run(until=20.0)
        self.assertIsNotNone(download.finished)
        download.network.run(until=download.finished + 1.0)  # final ACKs
        before = {key: s.sent for key, s in download.network.stats().items()}
        download.network.run(until=download.finished + 21.0)
        after = {key: s.sent for key, s in download.network.stats().items()}
        self.assertEqual(after, before)
        self.assertEqual(download.client.stats["silence_probes"], 0)
        self.assertNotIn("PathFailed", [k for k, _ in download.kinds("client")])
        self.assertNotIn("PathFailed", [k for k, _ in download.kinds("server")])

    def test_single_path_is_never_failed(self) -> None:
        """A one-path download whose link is cut for 3 s fails nothing at either end (there is
        no other path to take over) and completes once the link is back."""
        download = Download(2 * MiB, two_paths=False)
        download.cut(1.0, 4.0)
        download.run(until=40.0)
        self.assertEqual(download.kinds("client"), [])
        self.assertEqual(download.kinds("server"), [])
        self.assertEqual(bytes(download.received), download.payload)
