"""
Path MTU discovery (core/paths/pmtud.py): the search of one path, unit by unit, and whole
transfers through simulated links with an MTU.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from types import SimpleNamespace

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.config import ConnectionConfig
from kwik_twisted.core.congestion.base import create as create_controller
from kwik_twisted.core.paths.pmtud import (
    BASE_PLPMTU,
    MAX_PROBES,
    MIN_STEP,
    PMTU_RAISE_TIMER,
    MtuState,
    PathMtu,
)
from kwik_twisted.core.recovery.loss import LossRecovery, SentPacket
from kwik_twisted.core.recovery.pacing import Pacer
from kwik_twisted.errors import ConfigurationError
from kwik_twisted.testing.links import LinkConfig
from kwik_twisted.testing.transfer import SERVER_ADDR, run_transfers

PMTUD = {"pmtud": True}
MiB = 1024 * 1024


class Recorder:
    """A qlog tracer keeping the ``kwik:path_mtu_updated`` events and the sent packet sizes."""

    def __init__(self) -> None:
        self.updates: list[tuple[float, dict]] = []

    def event(self, now: float, name: str, data: dict) -> None:
        if name == "kwik:path_mtu_updated":
            self.updates.append((now, data))


def fake_path() -> SimpleNamespace:
    controller = create_controller("newreno", max_datagram_size=1350)
    return SimpleNamespace(
        id=3,
        max_datagram_size=0,
        recovery=SimpleNamespace(controller=controller),
        pacer=Pacer(cwnd=controller.cwnd, srtt=0.0, max_datagram_size=1350),
    )


def new_mtu(limit: int = 16384, enabled: bool = True):
    owner = SimpleNamespace(stats=Counter(), trace=None)
    path = fake_path()
    return PathMtu(path, enabled=enabled, max_udp_payload=limit, owner=owner), path, owner


def probe(mtu: PathMtu, now: float = 0.0) -> SentPacket:
    """Send the probe ``mtu`` wants now, as the sender does."""
    size = mtu.next_probe(now=now)
    assert size, "no probe wanted"
    packet = SentPacket(0, now, size)
    mtu.on_probe_sent(packet)
    return packet


class SearchTests(SynchronousTestCase):
    """The binary search, the probe count and the raise timer."""

    def test_binary_search_steps_and_completion(self) -> None:
        """Each probe is the midpoint of the confirmed size and the upper bound; an ACK confirms
        it at once (the path's size, controller and pacer follow); the search stops when the
        step falls below MIN_STEP."""
        mtu, path, owner = new_mtu()
        mtu.start(1350, 16384, now=0.0)
        self.assertEqual(path.max_datagram_size, 1350)
        sizes = []
        while mtu.state is MtuState.SEARCHING:
            packet = probe(mtu)
            sizes.append(packet.size)
            mtu.on_acked([packet], now=0.0)
            self.assertEqual(path.max_datagram_size, packet.size)
        self.assertEqual(sizes[:3], [1350 + 7517, 8867 + 3759, 12626 + 1879])
        self.assertGreater(path.max_datagram_size, 16384 - 2 * MIN_STEP)
        self.assertEqual(path.recovery.controller.max_datagram_size, path.max_datagram_size)
        self.assertEqual(path.pacer.max_datagram_size, path.max_datagram_size)
        self.assertEqual(owner.stats["pmtud_probes_acked"], len(sizes))
        self.assertEqual(mtu.next_probe(now=1.0), 0)

    def test_a_size_is_given_up_after_max_probes_losses(self) -> None:
        """A lost probe is sent again at the same size; after MAX_PROBES losses the upper bound
        drops below it and the next probe is smaller; the size in use never changes."""
        mtu, path, owner = new_mtu()
        mtu.start(1350, 16384, now=0.0)
        first = mtu.next_probe(now=0.0)
        for _ in range(MAX_PROBES):
            packet = probe(mtu)
            self.assertEqual(packet.size, first)
            self.assertEqual(mtu.on_lost([packet], now=0.0), [])  # no loss of the path's
        self.assertEqual(mtu.upper, first - 1)
        self.assertLess(mtu.next_probe(now=0.0), first)
        self.assertEqual(path.max_datagram_size, 1350)
        self.assertEqual(owner.stats["pmtud_probes_lost"], MAX_PROBES)

    def test_raise_timer_searches_again(self) -> None:
        """After a completed search nothing is probed until PMTU_RAISE_TIMER has passed; then the
        search runs again up to the original upper bound."""
        mtu, path, _ = new_mtu(limit=1500)
        mtu.start(1350, 65527, now=0.0)
        while mtu.state is MtuState.SEARCHING:  # every probe is lost: the search ends at 1350
            size = mtu.next_probe(now=0.0)
            for _ in range(MAX_PROBES):
                packet = probe(mtu)
                mtu.on_lost([packet], now=0.0)
            self.assertLess(mtu.upper, size)
        self.assertEqual(path.max_datagram_size, 1350)
        self.assertEqual(mtu.next_probe(now=PMTU_RAISE_TIMER - 1), 0)
        self.assertGreater(mtu.next_probe(now=PMTU_RAISE_TIMER + 1), 1350)
        self.assertEqual(mtu.upper, 1500)

    def test_upper_bound_is_ours_whatever_the_peer_announces(self) -> None:
        """A peer announcing a huge max_datagram_size cannot raise the search beyond our
        max_udp_payload."""
        mtu, _, _ = new_mtu(limit=4000)
        mtu.start(1350, 2**62, now=0.0)
        self.assertEqual(mtu.upper, 4000)
        while mtu.state is MtuState.SEARCHING:
            packet = probe(mtu)
            self.assertLessEqual(packet.size, 4000)
            mtu.on_acked([packet], now=0.0)

    def test_a_probe_forgotten_with_a_failed_path_is_sent_again(self) -> None:
        """A path that failed forgot its in-flight probe (its fate is never told); when it
        recovers with a fresh controller, the controller counts in the path's size and the same
        size is probed again."""
        mtu, path, _ = new_mtu()
        mtu.start(1350, 16384, now=0.0)
        packet = probe(mtu)
        self.assertEqual(mtu.next_probe(now=1.0), 0)  # one probe in flight at a time
        path.recovery.controller = create_controller("newreno", max_datagram_size=999)
        mtu.refresh()
        self.assertEqual(path.recovery.controller.max_datagram_size, 1350)
        self.assertLessEqual(mtu.due, 1.0)
        self.assertEqual(mtu.next_probe(now=1.0), packet.size)

    def test_disabled_never_probes(self) -> None:
        """With pmtud off the sender is never asked for a probe and the size stays the
        connection's."""
        mtu, path, _ = new_mtu(enabled=False)
        self.assertEqual(mtu.state, MtuState.DISABLED)
        self.assertEqual(mtu.due, float("inf"))
        self.assertEqual(path.max_datagram_size, 0)


class FallbackTests(SynchronousTestCase):
    """EMSGSIZE and black holes bring the size back to BASE_PLPMTU."""

    def searched(self, to: int) -> tuple[PathMtu, SimpleNamespace, SimpleNamespace]:
        mtu, path, owner = new_mtu(limit=to)
        mtu.start(1350, to, now=0.0)
        while mtu.state is MtuState.SEARCHING:
            packet = probe(mtu)
            mtu.on_acked([packet], now=0.0)
        return mtu, path, owner

    def test_too_big_for_a_probe_lowers_the_upper_bound(self) -> None:
        """EMSGSIZE for a probe counts it lost at once and bounds the search below it."""
        mtu, path, _ = new_mtu()
        mtu.start(1350, 16384, now=0.0)
        packet = probe(mtu)
        mtu.on_too_big(packet.size, now=0.0)
        self.assertEqual(mtu.upper, packet.size - 1)
        self.assertLess(mtu.next_probe(now=0.0), packet.size)
        self.assertEqual(mtu.on_lost([packet], now=0.1), [])  # its later loss changes nothing
        self.assertEqual(path.max_datagram_size, 1350)

    def test_too_big_for_the_size_in_use_falls_back_to_base(self) -> None:
        """EMSGSIZE for a datagram of the size in use: back to BASE_PLPMTU, search below it;
        the change is traced with its reason."""
        mtu, path, owner = self.searched(9000)
        owner.trace = SimpleNamespace(path_mtu_updated=lambda *a: calls.append(a))
        calls: list = []
        size = path.max_datagram_size
        mtu.on_too_big(size, now=5.0)
        self.assertEqual(path.max_datagram_size, BASE_PLPMTU)
        self.assertEqual(mtu.upper, size - 1)
        self.assertEqual(calls, [(3, size, BASE_PLPMTU, "too_big", 5.0)])
        self.assertEqual(path.recovery.controller.minimum_window, 2 * BASE_PLPMTU)

    def test_large_losses_while_small_packets_pass_are_a_black_hole(self) -> None:
        """Packets above BASE_PLPMTU lost while only smaller ones are acknowledged mean the
        size no longer passes: back to BASE_PLPMTU."""
        mtu, path, owner = self.searched(3000)
        big = [SentPacket(i, 1.0, path.max_datagram_size) for i in range(3)]
        self.assertEqual(mtu.on_lost(big[:1], now=1.1), big[:1])  # an ordinary loss, reported
        mtu.on_acked([SentPacket(9, 1.0, 300)], now=1.2)  # an ACK-sized packet got through
        mtu.on_lost(big[1:], now=1.3)
        self.assertEqual(path.max_datagram_size, BASE_PLPMTU)
        self.assertEqual(owner.stats["pmtud_black_holes"], 1)

    def test_congestion_losses_are_no_black_hole(self) -> None:
        """Large packets lost in bursts while other large packets are acknowledged (a full
        queue) leave the size alone."""
        mtu, path, _ = self.searched(3000)
        size = path.max_datagram_size
        for round_ in range(5):
            lost = [SentPacket(i, 1.0, size) for i in range(10)]
            mtu.on_lost(lost, now=1.0 + round_)
            mtu.on_acked([SentPacket(11, 1.0, size), SentPacket(12, 1.0, 300)], now=1.0 + round_)
        self.assertEqual(path.max_datagram_size, size)

    def test_repeated_timeouts_fall_back(self) -> None:
        """A second probe timeout in a row above BASE_PLPMTU is a black hole; the first is not."""
        mtu, path, _ = self.searched(3000)
        size = path.max_datagram_size
        mtu.on_pto(1, now=1.0)
        self.assertEqual(path.max_datagram_size, size)
        mtu.on_pto(2, now=2.0)
        self.assertEqual(path.max_datagram_size, BASE_PLPMTU)
        self.assertEqual(mtu.state, MtuState.SEARCHING)


class ProbeLossTests(SynchronousTestCase):
    """A lost probe is no congestion signal."""

    def test_probe_loss_leaves_the_window_alone(self) -> None:
        """The same losses shrink the window when they are data and leave it when they are
        MTU probes."""
        windows = []
        for is_probe in (False, True):
            recovery = LossRecovery(create_controller("newreno", max_datagram_size=1350))
            lost = SentPacket(0, 0.0, 9000)
            lost.mtu_probe = is_probe
            recovery.on_packet_sent(lost)
            for seq in range(1, 6):
                recovery.on_packet_sent(SentPacket(seq, 0.01, 1350))
            result = recovery.on_ack_received([(1, 5)], 0.0, now=0.1)
            self.assertEqual(result.lost, [lost])
            windows.append(recovery.controller.ssthresh)
        self.assertLess(windows[0], float("inf"))
        self.assertEqual(windows[1], float("inf"))


class ConfigTests(SynchronousTestCase):
    """The configuration fields and what we announce."""

    def test_max_udp_payload_bounds(self) -> None:
        """max_udp_payload may not be below max_datagram_size nor above the UDP limit."""
        self.assertRaises(ConfigurationError, ConnectionConfig, max_udp_payload=1300)
        self.assertRaises(ConfigurationError, ConnectionConfig, max_udp_payload=65528)
        self.assertEqual(ConnectionConfig().max_udp_payload, 16384)
        self.assertTrue(ConnectionConfig().pmtud)

    def test_announced_datagram_size(self) -> None:
        """With PMTUD we announce max_udp_payload as our max_datagram_size, without it the
        configured max_datagram_size."""
        from kwik_twisted.core.handshake import local_parameters
        from kwik_twisted.wire import TransportParameter

        key = TransportParameter.MAX_DATAGRAM_SIZE
        self.assertEqual(local_parameters(ConnectionConfig(max_udp_payload=9000))[key], 9000)
        self.assertEqual(local_parameters(ConnectionConfig(pmtud=False))[key], 1350)


def client_sizes(network, client_addr=("10.1.0.1", 50000)) -> list[tuple[float, int]]:
    """Hook the network's trace: the (time, size) of every datagram the client's link
    delivered."""
    seen: list[tuple[float, int]] = []

    def trace(now, src, dst, size, event):
        if src == client_addr and dst == SERVER_ADDR and event == "delivered":
            seen.append((now, size))

    network.trace = trace
    return seen


class SimulatedTransferTests(SynchronousTestCase):
    """Bulk transfers over simulated links with an MTU (deterministic, simulated time)."""

    def transfer(self, link: LinkConfig, *, size: int = 4 * MiB, setup=None, **options):
        seen: list = []
        recorder = Recorder()

        def hook(network):
            sizes = client_sizes(network)
            seen.append(sizes)
            if setup is not None:
                setup(network)

        result = run_transfers(
            size=size, link=link, client_options={**PMTUD, **options},
            server_options={**PMTUD, **options}, setup=hook,
            new_tracer=lambda odcid, is_client: recorder if is_client else None,
        )
        self.assertTrue(result.all_intact)
        self.assertEqual(result.terminated, [])
        return result, seen[0], recorder

    def test_rises_to_the_link_mtu(self) -> None:
        """On a 1500-byte link the path's size ends just below 1500; the bulk after
        the search uses the bigger datagrams; byte-exact; pathMetrics and qlog report it."""
        result, sizes, recorder = self.transfer(
            LinkConfig(delay=0.01, rate_bps=50e6, mtu=1500), size=12 * MiB
        )
        conn = result.clients[0]
        size = conn.paths[0].max_datagram_size
        self.assertGreaterEqual(size, 1500 - 2 * MIN_STEP)  # the last step is below MIN_STEP
        self.assertLessEqual(size, 1500)
        done = recorder.updates[-1][0]
        after = [s for t, s in sizes if t > done + 0.05]
        self.assertGreater(len(after), 1000)
        self.assertGreater(sum(1 for s in after if s > 1350), 0.9 * len(after))
        self.assertLessEqual(max(s for _, s in sizes), 1500)
        self.assertEqual(conn.path_metrics()[0].datagram_size, size)
        self.assertEqual(recorder.updates[0][1]["reason"], "start")
        self.assertEqual(recorder.updates[-1][1]["new"], size)
        self.assertGreater(conn.stats["pmtud_probes_lost"], 0)

    def test_falls_back_when_the_link_mtu_drops(self) -> None:
        """The link MTU drops from 1500 to 1280 mid-transfer: within half a second the path's
        datagrams fit 1280 again, and the transfer completes byte-exact."""
        drop_at = 1.0

        def setup(network):
            def drop():
                for src, dst in list(network.stats()):
                    link = network.link(src, dst)
                    link.config = dataclasses.replace(link.config, mtu=1280)

            network.at(drop_at, drop)

        result, sizes, recorder = self.transfer(
            LinkConfig(delay=0.01, rate_bps=50e6, mtu=1500), size=12 * MiB, setup=setup
        )
        fell = [t for t, data in recorder.updates if t > drop_at and data["new"] <= 1280]
        self.assertTrue(fell)
        self.assertLess(fell[0] - drop_at, 0.5)
        self.assertIn(recorder.updates[-1][1]["new"], range(1280 - 2 * MIN_STEP, 1281))
        late = [s for t, s in sizes if t > fell[0] + 0.1]
        self.assertTrue(late)
        self.assertLessEqual(max(late), 1280)

    def test_probe_losses_do_not_shrink_the_window(self) -> None:
        """On a link that loses nothing but oversized datagrams (its queue never overflows),
        the lost probes never cut the congestion window and count as no loss of the path."""
        link = LinkConfig(delay=0.01, rate_bps=50e6, queue_bytes=256 * MiB, mtu=1500)
        result, _, _ = self.transfer(link, size=8 * MiB)
        conn = result.clients[0]
        self.assertGreaterEqual(conn.stats["pmtud_probes_lost"], 2 * MAX_PROBES)
        self.assertEqual(conn.paths[0].recovery.controller.ssthresh, float("inf"))
        self.assertEqual(conn.paths[0].packets_lost, 0)

    def test_without_pmtud_sizes_stay_1350(self) -> None:
        """pmtud=False: every datagram is at most 1350 bytes, nothing is probed."""
        result, sizes, recorder = self.transfer(LinkConfig(delay=0.01), size=MiB, pmtud=False)
        conn = result.clients[0]
        self.assertEqual(max(s for _, s in sizes), 1350)
        self.assertEqual(conn.stats["pmtud_probes_sent"], 0)
        self.assertEqual(recorder.updates, [])
        self.assertEqual(conn.path_metrics()[0].datagram_size, 1350)

    def test_a_huge_peer_limit_does_not_raise_ours(self) -> None:
        """A server announcing 65507 bytes does not make a client with max_udp_payload=4000
        send anything bigger, on a link that carries any size."""
        seen = []
        result = run_transfers(
            size=4 * MiB, link=LinkConfig(delay=0.01),
            client_options={"pmtud": True, "max_udp_payload": 4000},
            server_options={"pmtud": True, "max_udp_payload": 65507},
            setup=lambda network: seen.append(client_sizes(network)),
        )
        self.assertTrue(result.all_intact)
        self.assertLessEqual(max(s for _, s in seen[0]), 4000)
        self.assertGreater(result.clients[0].paths[0].max_datagram_size, 4000 - 2 * MIN_STEP)
