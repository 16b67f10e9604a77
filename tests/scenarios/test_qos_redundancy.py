"""
Redundancy, in simulated time: the ``redundant`` scheduler copies every packet of stream data onto
every path, and the QoS enforcer copies only a stream whose loss threshold no path meets.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.testing import LinkConfig
from kwik_twisted.testing.qos.model import MessageFlow, PathSpec, with_qos
from kwik_twisted.testing.qos.run import run_scenario
from kwik_twisted.testing.transfer import SERVER_ADDR, run_transfers
from kwik_twisted.wire import QosPolicy

MiB = 1 << 20


class RedundantSchedulerTests(SynchronousTestCase):
    """``scheduler=redundant``: every packet on every path."""

    def test_every_byte_crosses_both_paths(self) -> None:
        """A 1 MiB upload over two 10 Mbit/s paths with the redundant scheduler arrives intact,
        and each path's link carried nearly the whole file, together about twice it (what went
        before the second path was validated is on the first only; copies are ordinary
        retransmissions, counted in ``redundant_packets``)."""
        link = LinkConfig(delay=0.015, rate_bps=10e6, queue_bytes=40000)
        options = {"scheduler": "redundant"}
        result = run_transfers(size=MiB, link=link, extra_paths=[(link, None)],
                               client_options=options, server_options=options)
        self.assertTrue(result.all_intact)
        client = result.clients[0]
        carried = [result.network.link(client.paths[pid].local_addr, SERVER_ADDR)
                   .stats.bytes_delivered for pid in (0, 1)]
        self.assertTrue(all(c >= 0.9 * MiB for c in carried), carried)
        self.assertGreater(sum(carried), 1.9 * MiB)
        self.assertGreater(client.stats["redundant_packets"], 700)

    def test_lowest_rtt_sends_each_byte_once(self) -> None:
        """The same upload with lowest-rtt carries about the file once in all (no copies)."""
        link = LinkConfig(delay=0.015, rate_bps=10e6, queue_bytes=40000)
        result = run_transfers(size=MiB, link=link, extra_paths=[(link, None)])
        client = result.clients[0]
        carried = sum(result.network.link(client.paths[pid].local_addr, SERVER_ADDR)
                      .stats.bytes_delivered for pid in (0, 1))
        self.assertLess(carried, 1.2 * MiB)
        self.assertEqual(client.stats["redundant_packets"], 0)


class SelectiveRedundancyTests(SynchronousTestCase):
    """A loss threshold no path meets: the stream's packets are copied onto a second path."""

    PATHS = [PathSpec(0.020, 10e6, queue_ms=100, loss=0.10),
             PathSpec(0.025, 10e6, queue_ms=100, loss=0.10)]

    def run_messages(self, qos: bool):
        """Messages with loss_threshold 0.1% over two paths that both lose 10%."""
        flows = [MessageFlow("m", qos=QosPolicy(loss_threshold_ppm=1000))]
        return run_scenario(paths=self.PATHS, flows=with_qos(flows, qos), duration=8.0)

    def test_copies_cut_the_late_messages_and_one_violation_is_reported(self) -> None:
        """With the policy: one QoSViolated(loss_threshold) whose measured loss is above 0.1%;
        the stream's bytes cross both paths (redundant copies, about once more); fewer than 5% of
        the messages take longer than 60 ms, against more than 20% without the policy, where
        every loss costs a retransmission round trip."""
        result = self.run_messages(True)
        violations = result.violations_of(side="client")
        self.assertEqual([v.event.metric for v in violations], ["loss_threshold"])
        self.assertGreater(violations[0].event.measured, 0.001)
        messages = result.flows["m"]
        self.assertGreater(messages.cross_path_bytes, 0.5 * messages.bytes_written)
        self.assertGreater(result.client.stats["redundant_bytes"], 0)
        self.assertLess(messages.late_fraction(0.060), 0.05)
        plain = self.run_messages(False).flows["m"]
        self.assertGreater(plain.late_fraction(0.060), 0.20)


class CopyAmplificationTests(SynchronousTestCase):
    """Redundant copies never spend a path's anti-amplification budget."""

    def test_no_copy_goes_on_a_path_whose_address_is_not_validated(self) -> None:
        """With the redundant scheduler, once path 1's peer address is unvalidated again (as
        after a NAT rebinding), what goes on it stays within three times what arrived on it
        since (copies included: they are not exempt), and the upload completes intact."""
        link = LinkConfig(delay=0.015, rate_bps=10e6, queue_bytes=40000)
        options = {"scheduler": "redundant"}
        holder, seen = [], {}

        def setup(network) -> None:
            def unvalidate() -> None:
                client = holder[0]
                path = client.paths.get(1)
                if path is None or not path.usable:
                    network.at(network.now + 0.01, unvalidate)
                    return
                path.restart_amplification()
                seen["sent"], seen["received"] = path.bytes_sent, path.bytes_received

            network.at(0.2, unvalidate)

        result = run_transfers(size=MiB, link=link, extra_paths=[(link, None)],
                               client_options=options, server_options=options, setup=setup,
                               on_start=holder.extend)
        self.assertTrue(result.all_intact)
        client = result.clients[0]
        self.assertIn("sent", seen)
        path = client.paths[1]
        self.assertFalse(path.address_validated)
        sent, received = path.bytes_sent - seen["sent"], path.bytes_received - seen["received"]
        self.assertLessEqual(sent, 3 * received)
