"""
Multipath scenarios (issue 5's acceptance), in simulated time with the deterministic simulator.

The client has two addresses, each with its own pair of links to the one server address; the server
learns of the second path from its first authenticated packet.  Figures: see docs/testing.rst.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.paths.path import PathPhase
from kwik_twisted.testing import LinkConfig
from kwik_twisted.testing.transfer import run_transfers

from .test_core_simulated import ScenarioMixin

MiB = 1 << 20
SERVER = ("10.0.0.1", 4433)


def link(rate: float = 10e6, delay: float = 0.015, **overrides) -> LinkConfig:
    """A link with a one-BDP drop-tail queue."""
    settings = dict(delay=delay, rate_bps=rate, queue_bytes=max(15000, int(rate * 2 * delay / 8)))
    settings.update(overrides)
    return LinkConfig(**settings)


def bytes_on(result, path_id: int) -> int:
    """Bytes the client's path ``path_id`` carried towards the server (link counters)."""
    client = result.clients[0]
    src = client.paths[path_id].local_addr
    return result.network.link(src, SERVER).stats.bytes_delivered


class AggregationTests(ScenarioMixin, SynchronousTestCase):
    """Two paths add up."""

    def test_two_equal_paths_beat_the_mptcp_selftest_bound(self):
        """2 x 10 Mbit/s, 30 ms RTT each: 16 MiB completes within 7.5 s (line rate 6.7 s)."""
        result = run_transfers(size=16 * MiB, link=link(), extra_paths=[(link(), None)])
        self.assertCleanAndIntact(result)
        self.assertLessEqual(result.duration, 7.5)
        share = bytes_on(result, 1) / (bytes_on(result, 0) + bytes_on(result, 1))
        self.assertGreater(share, 0.4)

    def test_unequal_paths_reach_the_scaled_bound(self):
        """10 Mbit/s at 1 ms plus 3 Mbit/s at 25 ms: within size x 8 x 1.05 / 13 Mbit/s + 0.4 s."""
        size = 8 * MiB
        result = run_transfers(
            size=size, link=link(10e6, 0.001), extra_paths=[(link(3e6, 0.025), None)]
        )
        self.assertCleanAndIntact(result)
        self.assertLessEqual(result.duration, size * 8 * 1.05 / 13e6 + 0.4)

    def test_coupled_lia_takes_both_paths_too(self):
        """With LIA selected by name the two-path transfer still completes within 7.5 s."""
        options = {"congestion_control": "lia"}
        result = run_transfers(
            size=16 * MiB,
            link=link(),
            extra_paths=[(link(), None)],
            client_options=options,
            server_options=options,
        )
        self.assertCleanAndIntact(result)
        self.assertLessEqual(result.duration, 7.5)


class FailoverTests(ScenarioMixin, SynchronousTestCase):
    """A path dies; the other takes over."""

    def test_cutting_the_busier_path_at_one_third_loses_little(self):
        """
        Two 10 Mbit/s paths; 10 MiB; both directions of path 0 die when a third has arrived.

        The transfer completes byte-exact, and takes at most one PTO plus one RTT longer than the
        ideal (a third at 20 Mbit/s, the rest at 10 Mbit/s), plus the handshake and slow start
        margin measured on the uncut run.
        """
        size = 10 * MiB
        cut = {}

        def setup(network):
            def watch():
                delivered = sum(
                    s.bytes_delivered for (src, dst), s in network.stats().items() if dst == SERVER
                )
                if delivered >= size / 3:
                    client_addr = result_holder[0].paths[0].local_addr
                    network.set_link_up(client_addr, SERVER, False)
                    cut["at"] = network.now
                    return
                network.at(network.now + 0.01, watch)

            network.at(0.01, watch)

        result_holder = []
        result = run_transfers(
            size=size,
            link=link(),
            extra_paths=[(link(), None)],
            setup=setup,
            on_start=result_holder.extend,
        )
        self.assertCleanAndIntact(result)
        self.assertIn("at", cut)
        client = result.clients[0]
        self.assertIs(client.paths[0].phase, PathPhase.FAILED)
        ideal_rest = (size * 2 / 3) * 8 / 10e6
        rtt = 0.030
        pto = client.paths[1].recovery.rtt.pto_interval()
        lost_time = result.duration - cut["at"] - ideal_rest
        self.assertLessEqual(lost_time, pto + rtt + 0.35, f"lost {lost_time:.2f} s at failover")

    def test_backup_path_is_idle_until_the_primary_fails(self):
        """A backup path carries ~0% while the primary works, and takes over when it dies."""
        size = 4 * MiB

        def setup(network):
            def backup():
                client = holder[0]
                if client.handshake_complete and 1 in client.paths:
                    client.set_path_backup(1, True)
                    return
                network.at(network.now + 0.001, backup)

            network.at(0.0, backup)

        holder = []
        result = run_transfers(
            size=size,
            link=link(),
            extra_paths=[(link(), None)],
            setup=setup,
            on_start=holder.extend,
        )
        self.assertCleanAndIntact(result)
        share = bytes_on(result, 1) / (bytes_on(result, 0) + bytes_on(result, 1))
        self.assertLess(share, 0.05)

        def cut_primary(network):
            setup(network)
            network.at(
                1.0, lambda: network.set_link_up(holder2[0].paths[0].local_addr, SERVER, False)
            )

        holder2 = []

        def both(network):
            holder.clear()
            holder.extend(holder2)
            cut_primary(network)

        result = run_transfers(
            size=size,
            link=link(),
            extra_paths=[(link(), None)],
            setup=both,
            on_start=holder2.extend,
        )
        self.assertCleanAndIntact(result)
        self.assertGreater(bytes_on(result, 1), size / 2)


class LossyPathsTests(ScenarioMixin, SynchronousTestCase):
    """Both paths badly lossy."""

    def test_both_paths_at_thirty_percent_loss(self):
        """Two paths at 30% random loss each way: 5 MiB completes byte-exact."""
        lossy = link(loss=0.30)
        result = run_transfers(size=5 * MiB, link=lossy, extra_paths=[(lossy, None)], timeout=3000)
        self.assertCleanAndIntact(result)


class HeadOfLineTests(SynchronousTestCase):
    """A slow path must not hold back a stream that the fast path can carry."""

    def test_slow_path_does_not_delay_a_one_megabit_stream(self):
        """
        Paths of 10 ms and 100 ms RTT (10 Mbit/s each), the application writing 1 Mbit/s in 1 kB
        chunks: the 99th percentile of write-to-delivery delay is under 1.5x the fast one-way delay.
        """
        from kwik_twisted.core.connection import Connection
        from kwik_twisted.core.dispatcher import ServerDispatcher
        from kwik_twisted.core.entropy import SeededEntropy
        from kwik_twisted.events import StreamDataReceived
        from kwik_twisted.testing import Network
        from kwik_twisted.testing.pair import client_config, server_config
        from kwik_twisted.testing.transfer import _Client, _Server

        network = Network(3)
        fast, slow = ("10.1.0.1", 5000), ("10.2.0.1", 5000)
        network.add_link(fast, SERVER, ab=link(10e6, 0.005), ba=link(10e6, 0.005))
        network.add_link(slow, SERVER, ab=link(10e6, 0.050), ba=link(10e6, 0.050))
        delays: list[float] = []
        sent_at: dict[int, float] = {}
        received = bytearray()

        def on_server(conn, event):
            if isinstance(event, StreamDataReceived):
                received.extend(event.data)
                while len(received) >= 1000:
                    chunk = bytes(received[:1000])
                    del received[:1000]
                    index = int.from_bytes(chunk[:4], "big")
                    delays.append(network.now - sent_at[index])

        dispatcher = ServerDispatcher(server_config(), entropy=SeededEntropy(11))
        network.attach(_Server(dispatcher, on_server), [SERVER])
        client = Connection.client(
            client_config(),
            local_addr=fast,
            remote_addr=SERVER,
            entropy=SeededEntropy(12),
            now=0.0,
        )
        client.open_path(slow, SERVER)
        sid = client.open_stream()
        network.attach(_Client(client, lambda c, e: None), [fast, slow])
        chunks = 600  # 1 kB every 8 ms: 1 Mbit/s for 4.8 s

        def write(index: int) -> None:
            sent_at[index] = network.now
            client.send_stream_data(sid, index.to_bytes(4, "big") + bytes(996))
            if index + 1 < chunks:
                network.at(network.now + 0.008, lambda: write(index + 1))

        network.at(0.5, lambda: write(0))  # after the handshake and path validation
        network.run(until=10.0, stop=lambda: len(delays) == chunks)
        self.assertEqual(len(delays), chunks)
        self.assertTrue(client.paths[1].usable, "the slow path never came up")
        delays.sort()
        p99 = delays[int(0.99 * len(delays)) - 1]
        self.assertLess(p99, 1.5 * 0.005, f"p99 write-to-delivery {p99 * 1000:.2f} ms")


class AdvertisedAddressTests(ScenarioMixin, SynchronousTestCase):
    """ADD_ADDRESS: the server names a second address and the client opens a path to it."""

    def test_client_opens_a_path_to_an_advertised_address(self):
        """The server advertises 10.0.0.2:4433; the client uses it as a second path."""
        second = ("10.0.0.2", 4433)

        def setup(network):
            client_addr = holder[0].paths[0].local_addr
            network.add_link(client_addr, second, ab=link(), ba=link())

        holder = []
        result = run_transfers(
            size=8 * MiB,
            link=link(),
            setup=setup,
            on_start=holder.extend,
            extra_server_addresses=(second,),
            client_options={"use_advertised": True},
            server_options={"advertise": (second,)},
        )
        self.assertCleanAndIntact(result)
        client = result.clients[0]
        remotes = {p.remote_addr for p in client.paths.values()}
        self.assertIn(second, remotes)
        used = [p for p in client.paths.values() if p.remote_addr == second]
        self.assertGreater(used[0].packets_sent, 1000)
        self.assertEqual(client.path_manager.advertised, {1: second})


class PinnedStreamRun:
    """
    Two 10 Mbit/s paths (30 ms RTT) from one client; the server notes on which client address
    each delivery of each stream arrived.

    :ivar arrivals: ``(time, stream_id, client address, bytes)`` per delivery.
    """

    FIRST, SECOND = ("10.1.0.1", 5000), ("10.2.0.1", 5000)

    def __init__(self, seed: int = 5) -> None:
        from kwik_twisted.core.connection import Connection
        from kwik_twisted.core.dispatcher import ServerDispatcher
        from kwik_twisted.core.entropy import SeededEntropy
        from kwik_twisted.events import StreamDataReceived
        from kwik_twisted.testing import Network
        from kwik_twisted.testing.pair import client_config, server_config
        from kwik_twisted.testing.transfer import _Client, _Server

        self.network = network = Network(seed)
        for addr in (self.FIRST, self.SECOND):
            network.add_link(addr, SERVER, ab=link(), ba=link())
        self.arrivals: list[tuple[float, int, tuple, int]] = []
        self.data: dict[int, bytearray] = {}
        self.finished: set[int] = set()
        source = [None]

        def on_server(conn, event):
            if isinstance(event, StreamDataReceived):
                self.data.setdefault(event.stream_id, bytearray()).extend(event.data)
                self.arrivals.append((network.now, event.stream_id, source[0], len(event.data)))
                if event.end_stream:
                    self.finished.add(event.stream_id)

        class Server(_Server):
            def receive_datagram(self, data, local_addr, remote_addr, *, now):
                source[0] = remote_addr
                super().receive_datagram(data, local_addr, remote_addr, now=now)

        dispatcher = ServerDispatcher(server_config(), entropy=SeededEntropy(seed))
        network.attach(Server(dispatcher, on_server), [SERVER])
        self.client = Connection.client(
            client_config(), local_addr=self.FIRST, remote_addr=SERVER,
            entropy=SeededEntropy(seed + 1), now=0.0,
        )
        self.second_path = self.client.open_path(self.SECOND, SERVER)
        network.attach(_Client(self.client, lambda c, e: None), [self.FIRST, self.SECOND])
        self.sent: dict[tuple[int, tuple], int] = {}  # (stream, client address) -> bytes sent
        send_one = self.client.sender._send_one

        def counting(path, out, now, **kw):
            packet = send_one(path, out, now, **kw)
            for record in [] if packet is None else packet.frames:
                stream = getattr(record, "stream", None)
                if stream is not None:
                    key = (stream.id, path.local_addr)
                    self.sent[key] = self.sent.get(key, 0) + record.length
            return packet

        self.client.sender._send_one = counting

    def write_at(self, when: float, sid: int, payload: bytes) -> None:
        """Write ``payload`` and FIN on ``sid`` at ``when`` (once both paths are up)."""
        self.network.at(when, lambda: self.client.send_stream_data(sid, payload, True))

    def run(self, sids, until: float = 30.0) -> None:
        """Run until every stream in ``sids`` was delivered to its end."""
        self.network.run(until=until, stop=lambda: self.finished >= set(sids))

    def sent_via(self, sid: int) -> dict[tuple, int]:
        """Bytes of ``sid``'s STREAM frames the client sent from each of its addresses."""
        return {addr: self.sent.get((sid, addr), 0) for addr in (self.FIRST, self.SECOND)}

    def bytes_via(self, sid: int, after: float = 0.0) -> dict[tuple, int]:
        """Bytes of ``sid`` delivered by datagrams from each client address, after ``after``."""
        out = {self.FIRST: 0, self.SECOND: 0}
        for when, stream_id, addr, size in self.arrivals:
            if stream_id == sid and when >= after:
                out[addr] += size
        return out


class PinnedStreamTests(ScenarioMixin, SynchronousTestCase):
    """``paths=``: a pinned stream keeps to its paths while one works (the seed's
    PathAssignment)."""

    def test_a_pinned_stream_stays_on_its_path_and_an_unpinned_one_uses_both(self):
        """Stream A pinned to path 1 is sent and arrives only through path 1; stream B, unpinned,
        is sent on both paths, more than 1 MiB of it on path 0; both byte-exact."""
        from kwik_twisted.testing.transfer import make_payload

        run = PinnedStreamRun()
        a = run.client.open_stream(paths=[run.second_path])
        b = run.client.open_stream()
        run.write_at(0.5, a, make_payload(2 * MiB, 1))
        run.write_at(0.5, b, make_payload(2 * MiB, 2))
        run.run([a, b])
        self.assertTrue(run.client.paths[run.second_path].usable)
        self.assertEqual(bytes(run.data[a]), make_payload(2 * MiB, 1))
        self.assertEqual(bytes(run.data[b]), make_payload(2 * MiB, 2))
        self.assertEqual(run.bytes_via(a), {run.FIRST: 0, run.SECOND: 2 * MiB})
        self.assertEqual(run.sent_via(a)[run.FIRST], 0)
        # B's bytes by the path that carried them (delivery attribution, by the datagram that
        # completed a gap, moves with the timing of credit updates): path 0 has only B to carry.
        sent_b = run.sent_via(b)
        self.assertGreater(sent_b[run.FIRST], MiB)
        self.assertGreater(sent_b[run.SECOND], 0)

    def test_only_a_pinned_stream_leaves_the_other_path_idle(self):
        """With one stream pinned to path 1, path 0's packet counter stays at a few dozen
        (handshake and ACKs) while path 1's carries the transfer."""
        from kwik_twisted.testing.transfer import make_payload

        run = PinnedStreamRun()
        a = run.client.open_stream(paths=[run.second_path])
        run.write_at(0.5, a, make_payload(2 * MiB, 3))
        run.run([a])
        self.assertEqual(bytes(run.data[a]), make_payload(2 * MiB, 3))
        first, second = run.client.paths[0], run.client.paths[run.second_path]
        self.assertGreater(second.packets_sent, 1400)
        self.assertLess(first.packets_sent, 30)
        self.assertGreater(second.bytes_sent, 2 * MiB)

    def test_a_pinned_stream_moves_when_its_path_fails(self):
        """Path 1 dies under a stream pinned to it: the rest goes on path 0, byte-exact."""
        from kwik_twisted.testing.transfer import make_payload

        run = PinnedStreamRun()
        a = run.client.open_stream(paths=[run.second_path])
        payload = make_payload(3 * MiB, 4)
        run.write_at(0.5, a, payload)
        run.network.at(1.2, lambda: run.network.set_link_up(run.SECOND, SERVER, False))
        run.run([a], until=60.0)
        self.assertEqual(bytes(run.data[a]), payload)
        before = run.bytes_via(a)
        after = run.bytes_via(a, after=1.2 + 0.1)
        self.assertGreater(before[run.SECOND], 0)
        self.assertEqual(after[run.SECOND], 0)
        self.assertGreater(after[run.FIRST], MiB)
        self.assertIs(run.client.paths[run.second_path].phase, PathPhase.FAILED)

    def test_repinning_mid_stream_moves_the_data(self):
        """update_stream(paths=[0]) halfway: the stream's data arrives through path 1 before and
        through path 0 once what was in flight has landed."""
        from kwik_twisted.testing.transfer import make_payload

        run = PinnedStreamRun()
        a = run.client.open_stream(paths=[run.second_path])
        payload = make_payload(3 * MiB, 5)
        run.write_at(0.5, a, payload)
        run.network.at(1.2, lambda: run.client.update_stream(a, paths=[0]))
        run.run([a])
        self.assertEqual(bytes(run.data[a]), payload)
        early = {addr: n for addr, n in run.bytes_via(a).items()}
        late = run.bytes_via(a, after=1.2 + 0.2)
        self.assertGreater(early[run.SECOND] - late[run.SECOND], MiB / 4)
        self.assertEqual(late[run.SECOND], 0)
        self.assertGreater(late[run.FIRST], MiB)
