"""
Per-path counters and state in :meth:`Connection.path_metrics` (issue 14).

In simulated time, a client downloads from a server over two paths (the harness of
``test_path_silence``): the counters of both paths must add up to what the links carried, a cut
path must show state ``failed`` (not its old figures as if healthy) while its lost counter grows,
and it must show ``active`` again once restored.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.paths.metrics import PathMetrics
from tests.core.paths.test_path_silence import PATH0, PATH1, SERVER, Download

MiB = 1 << 20


class _Tally:
    """Datagram bytes the simulated links saw, by ``(src, dst, what)``."""

    def __init__(self, download: Download) -> None:
        self.bytes: dict[tuple, int] = {}
        self.previous = download.network.trace
        download.network.trace = self

    def __call__(self, now: float, src, dst, size: int, what: str) -> None:
        key = (src, dst, what)
        self.bytes[key] = self.bytes.get(key, 0) + size
        self.previous(now, src, dst, size, what)


class CountersAddUpTests(SynchronousTestCase):
    """A complete two-path download without a cut."""

    def setUp(self) -> None:
        self.download = Download(2 * MiB)
        self.tally = _Tally(self.download)
        self.download.run(until=30.0)
        self.assertIsNotNone(self.download.finished)

    def test_both_paths_carry_data_and_report_it(self) -> None:
        """Each path of the sending server reports packets and bytes sent, each path of the
        receiving client packets and bytes received, and both are active."""
        for conn in (self.download.server, self.download.client):
            metrics = conn.path_metrics()
            self.assertEqual(sorted(metrics), [0, 1])
            for m in metrics.values():
                self.assertIsInstance(m, PathMetrics)
                self.assertEqual(m.state, "active")
                self.assertGreater(m.packets_sent, 0)
                self.assertGreater(m.packets_received, 0)
                self.assertGreater(m.datagram_size, 0)
                self.assertIsNotNone(m.last_activity)
        for m in self.download.server.path_metrics().values():
            self.assertGreater(m.bytes_sent, 100_000)

    def test_bytes_of_the_paths_add_up_to_what_was_sent(self) -> None:
        """Per path and in total, the server's ``bytes_sent`` is what its link carried from it,
        and the client's ``bytes_received`` what the link delivered to it; the two paths'
        bytes sent add up to more than the payload."""
        tally = self.tally.bytes
        server = self.download.server.path_metrics()
        client = self.download.client.path_metrics()
        total = 0
        for path_id, address in ((0, PATH0), (1, PATH1)):
            self.assertEqual(server[path_id].bytes_sent, tally.get((SERVER, address, "sent"), 0))
            self.assertEqual(
                client[path_id].bytes_received, tally.get((SERVER, address, "delivered"), 0)
            )
            self.assertEqual(client[path_id].bytes_sent, tally.get((address, SERVER, "sent"), 0))
            total += server[path_id].bytes_sent
        self.assertGreater(total, len(self.download.payload))

    def test_last_activity_is_the_last_arrival(self) -> None:
        """``last_activity`` is a time on the connection's clock no later than now."""
        for m in self.download.client.path_metrics().values():
            self.assertLessEqual(m.last_activity, self.download.network.now)
            self.assertGreater(m.last_activity, 0.0)


class CutPathCountersTests(SynchronousTestCase):
    """Path 1 of a download is cut at 1.5 s and restored at 3.5 s."""

    CUT, BACK = 1.5, 3.5

    def setUp(self) -> None:
        self.download = Download(8 * MiB)
        self.download.cut(self.CUT, self.BACK)

    def test_cut_path_shows_failed_and_counts_losses(self) -> None:
        """While cut, the sender's path 1 shows state ``failed`` and more packets lost than
        before the cut; path 0 stays active; after the return it is ``active`` again."""
        self.download.run(until=self.CUT)
        before = self.download.server.path_metrics()[1]
        self.assertEqual(before.state, "active")
        self.download.run(until=self.BACK - 0.1)
        during = self.download.server.path_metrics()
        self.assertEqual(during[1].state, "failed")
        self.assertEqual(during[0].state, "active")
        self.assertGreater(during[1].packets_lost, before.packets_lost)
        self.assertGreater(during[1].bytes_lost, before.bytes_lost)
        self.assertGreaterEqual(during[1].packets_retransmitted, 1)
        self.assertLessEqual(during[1].last_activity, self.CUT)
        self.download.run(until=self.BACK + 1.5)
        self.assertEqual(self.download.server.path_metrics()[1].state, "active")

    def test_backup_path_shows_backup(self) -> None:
        """A path made a backup shows state ``backup``."""
        self.download.run(until=0.5)
        self.download.client.set_path_backup(1, True)
        self.assertEqual(self.download.client.path_metrics()[1].state, "backup")
