"""
The connection core over simulated links (issue 3's acceptance scenarios), in simulated time.

Every run is deterministic (fixed seeds).  The base link follows the QUIC interop runner's default
shape scaled to the issue: 10 Mbit/s, 15 ms one way (30 ms RTT), a one-BDP (37.5 kB) drop-tail
queue. See docs/testing.rst for where each number comes from.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.errors import ErrorCode
from kwik_twisted.testing import LinkConfig
from kwik_twisted.testing.transfer import TransferResult, run_transfers

MiB = 1 << 20
RATE = 10e6
BDP_BYTES = int(RATE * 0.030 / 8)


def link(**overrides) -> LinkConfig:
    """The base link with ``overrides``."""
    settings = dict(delay=0.015, rate_bps=RATE, queue_bytes=BDP_BYTES)
    settings.update(overrides)
    return LinkConfig(**settings)


class ScenarioMixin:
    """Assertions shared by the scenarios."""

    def assertCleanAndIntact(self, result: TransferResult) -> None:
        """Every transfer finished byte-exact and no connection ended with an error."""
        self.assertEqual(len(result.finished), len(result.clients), "not every transfer finished")
        self.assertTrue(result.all_intact, "a transfer arrived corrupted")
        errors = [t for t in result.terminated if t.error_code != ErrorCode.NO_ERROR]
        self.assertEqual(errors, [])


class BulkTests(ScenarioMixin, SynchronousTestCase):
    """Throughput on a clean link."""

    def test_ten_mebibytes_reach_ninety_percent_of_the_link_rate(self):
        """10 MiB over 10 Mbit/s, 30 ms RTT, one-BDP queue: byte-exact at >= 90% of the link
        rate."""
        result = run_transfers(size=10 * MiB, link=link())
        self.assertCleanAndIntact(result)
        self.assertGreaterEqual(result.goodput_bps(), 0.90 * RATE)

    def test_newreno_also_fills_the_link(self):
        """The same transfer with NewReno selected by name reaches >= 90% too."""
        options = {"congestion_control": "newreno"}
        result = run_transfers(
            size=10 * MiB, link=link(), client_options=options, server_options=options
        )
        self.assertCleanAndIntact(result)
        self.assertGreaterEqual(result.goodput_bps(), 0.90 * RATE)


class ImpairmentTests(ScenarioMixin, SynchronousTestCase):
    """Byte-exact completion under each impairment."""

    def test_two_percent_loss_in_bursts_of_up_to_three(self):
        """2% random loss, bursts capped at 3, both directions: the transfer completes intact."""
        result = run_transfers(size=2 * MiB, link=link(loss=0.02, max_loss_burst=3))
        self.assertCleanAndIntact(result)
        self.assertGreater(
            result.network.link(
                result.clients[0].paths[0].local_addr, ("10.0.0.1", 4433)
            ).stats.lost_random,
            0,
        )

    def test_thirty_percent_loss_during_the_handshake_of_fifty_connections(self):
        """30% loss both ways: 50 connections each handshake and deliver a small file."""
        result = run_transfers(size=10_000, connections=50, link=link(loss=0.30))
        self.assertCleanAndIntact(result)

    def test_two_percent_corruption(self):
        """2% of datagrams get one byte overwritten and are still delivered: all are caught."""
        result = run_transfers(size=2 * MiB, link=link(corrupt=0.02))
        self.assertCleanAndIntact(result)
        server = next(iter(result.server.connections.values()))
        dropped = sum(v for k, v in server.stats.items() if k.startswith("dropped_"))
        self.assertGreater(dropped, 0)

    def test_thirty_percent_corruption_during_the_handshake(self):
        """30% corruption both ways: 50 connections handshake and deliver a small file."""
        result = run_transfers(size=10_000, connections=50, link=link(corrupt=0.30))
        self.assertCleanAndIntact(result)

    def test_five_percent_reordering(self):
        """5% of datagrams are delayed past their successors: the stream stays byte-exact."""
        result = run_transfers(size=2 * MiB, link=link(reorder=0.05))
        self.assertCleanAndIntact(result)

    def test_five_percent_duplication(self):
        """5% of datagrams arrive twice: duplicates are dropped and nothing is delivered twice."""
        result = run_transfers(size=2 * MiB, link=link(duplicate=0.05))
        self.assertCleanAndIntact(result)

    def test_five_second_blackhole_in_the_middle(self):
        """Everything is dropped from t=2 s to t=7 s: the connection survives and completes."""
        result = run_transfers(size=5 * MiB, link=link(blackholes=[(2.0, 7.0)]))
        self.assertCleanAndIntact(result)
        self.assertGreater(max(result.finished.values()), 7.0)

    def test_750_ms_one_way_delay(self):
        """A 1.5 s RTT link (with a queue of one BDP at that RTT): the transfer completes."""
        result = run_transfers(size=2 * MiB, link=link(delay=0.75, queue_bytes=2_000_000))
        self.assertCleanAndIntact(result)


class RebindingTests(ScenarioMixin, SynchronousTestCase):
    """The client's NAT changes its port or address mid-transfer."""

    def _rebound(self, new_host: str | None):
        holder = []

        def setup(network):
            old = holder[0].paths[0].local_addr
            new = (new_host or old[0], old[1] + 1000)
            network.rebind(old, new, at=1.0)

        result = run_transfers(size=3 * MiB, link=link(), setup=setup, on_start=holder.extend)
        return result

    def test_port_rebinding_is_revalidated_and_the_transfer_completes(self):
        """At t=1 s the client's source port changes: the server revalidates and goes on."""
        result = self._rebound(None)
        self.assertCleanAndIntact(result)
        server = next(iter(result.server.connections.values()))
        self.assertEqual(server.stats["rebindings"], 1)
        self.assertEqual(server.paths[0].remote_addr[1], 51000)
        self.assertTrue(server.paths[0].address_validated)

    def test_address_rebinding_is_revalidated_and_the_transfer_completes(self):
        """At t=1 s the client's source address changes: the server revalidates and goes on."""
        result = self._rebound("10.9.9.9")
        self.assertCleanAndIntact(result)
        server = next(iter(result.server.connections.values()))
        self.assertEqual(server.paths[0].remote_addr[0], "10.9.9.9")
        self.assertTrue(server.paths[0].address_validated)
