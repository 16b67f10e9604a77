"""
Tests for :mod:`kwik_twisted.testing.relay` over real loopback UDP, with a plain echo server.

A client port sends numbered datagrams to the relay, an echo server behind it sends each one
back, and the tests compare what came back, when, and what the relay counted.  Waits are for
conditions on the relay's counters (polled on the reactor), never fixed sleeps; the only
time-based checks are lower bounds (a delay cannot be shorter than configured), which a loaded
machine cannot break.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import subprocess
import sys

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

import kwik_twisted
from kwik_twisted.testing.links import LinkConfig, LinkStats
from kwik_twisted.testing.relay import (
    Relay,
    build_parser,
    config_from_args,
    main,
    parse_address,
    parse_probability,
    parse_queue,
    parse_rate,
    parse_schedule,
    parse_time,
)
from tests import polling

WAIT = 10.0  # seconds a condition may take before the test fails
TAG = b"kwik-relay-test-"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(kwik_twisted.__file__)))


def datagram(seq: int, size: int = 100) -> bytes:
    """A datagram of ``size`` bytes whose sequence number sits after the corruption window."""
    head = TAG.ljust(60, b".")
    return head + struct.pack("!I", seq) + b"x" * (size - 64)


def seq_of(data: bytes) -> int:
    """The sequence number :func:`datagram` put in ``data``."""
    return struct.unpack("!I", data[60:64])[0]


def accounted(stats: LinkStats) -> bool:
    """Whether every datagram the direction took has reached a final bucket."""
    done = (stats.delivered + stats.lost_random + stats.lost_queue + stats.lost_blackhole
            + stats.lost_down + stats.too_big)
    return done == stats.sent + stats.duplicated


class Echo(DatagramProtocol):
    """Echoes every datagram; remembers the addresses it came from."""

    def __init__(self) -> None:
        self.sources: list[tuple] = []

    def datagramReceived(self, data: bytes, addr) -> None:
        self.sources.append((addr[0], addr[1]))
        self.transport.write(data, addr)


class Client(DatagramProtocol):
    """Sends datagrams to ``target``; collects what comes back with its arrival time."""

    def __init__(self, target: tuple) -> None:
        self.target = target
        self.received: list[bytes] = []
        self.times: list[float] = []
        self.sent: dict[int, float] = {}

    def datagramReceived(self, data: bytes, addr) -> None:
        self.received.append(data)
        self.times.append(reactor.seconds())

    def send(self, seqs, size: int = 100) -> None:
        """Send one datagram per number in ``seqs``."""
        for seq in seqs:
            self.sent[seq] = reactor.seconds()
            self.transport.write(datagram(seq, size), self.target)

    def seqs(self) -> list[int]:
        """Sequence numbers of what came back, in order of arrival."""
        return [seq_of(d) for d in self.received]


def until(condition, timeout: float = WAIT) -> defer.Deferred:
    """:func:`tests.polling.until` at this module's pace (5 ms polls, ``WAIT`` s at most)."""
    return polling.until(condition, timeout, 0.005)


class RelayTestCase(TestCase):
    """An echo server, a relay in front of it, and clients; all closed at cleanup."""

    timeout = 60

    def setUp(self) -> None:
        self.echo = Echo()
        port = reactor.listenUDP(0, self.echo, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.server = ("127.0.0.1", port.getHost().port)

    def relay(self, **kw) -> Relay:
        """A started relay in front of the echo server."""
        relay = Relay(reactor, self.server, **kw).start()
        self.addCleanup(relay.stop)
        return relay

    def client(self, relay: Relay) -> Client:
        """A client port sending to ``relay``."""
        client = Client(relay.address)
        port = reactor.listenUDP(0, client, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return client

    def settled(self, relay: Relay, client: Client, sent: int):
        """Fire once ``sent`` datagrams went through both directions and reached the client."""
        def done() -> bool:
            up, down = relay.to_server.stats, relay.to_client.stats
            return (up.sent == sent and accounted(up) and down.sent == up.delivered
                    and accounted(down) and len(client.received) == down.delivered)
        return until(done)

    @defer.inlineCallbacks
    def sendPaced(self, client: Client, seqs, batch: int = 50):
        """Send in batches, one per reactor turn, so no socket buffer overflows."""
        seqs = list(seqs)
        for i in range(0, len(seqs), batch):
            client.send(seqs[i:i + batch])
            yield task.deferLater(reactor, 0.002, lambda: None)


class ForwardingTests(RelayTestCase):
    """Plain forwarding and addressing."""

    @defer.inlineCallbacks
    def test_datagrams_go_both_ways_and_the_server_sees_the_relay(self):
        """Every datagram is echoed back intact; the server sees the relay's source port,
        not the client's, and the counters say five each way."""
        relay = self.relay()
        client = self.client(relay)
        client.send(range(5))
        yield self.settled(relay, client, 5)
        self.assertEqual(client.seqs(), [0, 1, 2, 3, 4])
        self.assertEqual(client.received, [datagram(i) for i in range(5)])
        self.assertEqual(set(self.echo.sources), set(relay.source_addresses()))
        self.assertNotIn(client.transport.getHost().port, [p for _, p in self.echo.sources])
        for stats in relay.stats().values():
            self.assertEqual((stats.sent, stats.delivered, stats.bytes_delivered), (5, 5, 500))

    @defer.inlineCallbacks
    def test_each_client_address_gets_its_own_mapping(self):
        """Two clients leave from two different relay ports, and each gets its own echoes."""
        relay = self.relay()
        first, second = self.client(relay), self.client(relay)
        first.send([1])
        second.send([2])
        yield until(lambda: first.received and second.received)
        self.assertEqual((first.seqs(), second.seqs()), ([1], [2]))
        self.assertEqual(len(set(self.echo.sources)), 2)
        self.assertEqual(len(relay.source_addresses()), 2)

    @defer.inlineCallbacks
    def test_stop_drops_what_is_in_flight_and_leaves_no_timer(self):
        """Stopping with datagrams in flight counts them lost_down and cancels every timer
        (trial fails a test that leaves a delayed call behind)."""
        relay = Relay(reactor, self.server, to_server=LinkConfig(delay=5.0)).start()
        client = self.client(relay)
        client.send(range(3))
        yield until(lambda: relay.to_server.stats.sent == 3)
        yield relay.stop()
        self.assertEqual(relay.to_server.stats.lost_down, 3)
        self.assertEqual(self.echo.sources, [])


class ImpairmentTests(RelayTestCase):
    """The LinkConfig impairments, in real time."""

    @defer.inlineCallbacks
    def test_delay_is_applied_in_each_direction(self):
        """With 40 ms one way each direction, no echo comes back in less than 80 ms."""
        relay = self.relay(to_server=LinkConfig(delay=0.040), to_client=LinkConfig(delay=0.040))
        client = self.client(relay)
        client.send(range(5))
        yield self.settled(relay, client, 5)
        for seq, arrived in zip(client.seqs(), client.times):
            self.assertGreaterEqual(arrived - client.sent[seq], 0.080)

    @defer.inlineCallbacks
    def test_rate_serializes_and_the_queue_drops_the_tail(self):
        """At 100 kbit/s a 1250-byte datagram takes 100 ms: of ten sent at once, the first is
        serialized, two fit the 2500-byte queue, seven are dropped; arrivals are 100 ms apart."""
        config = LinkConfig(delay=0.0, rate_bps=100e3, queue_bytes=2500)
        relay = self.relay(to_server=config)
        client = self.client(relay)
        client.send(range(10), size=1250)
        yield self.settled(relay, client, 10)
        self.assertEqual(relay.to_server.stats.lost_queue, 7)
        self.assertEqual(client.seqs(), [0, 1, 2])
        gaps = [b - a for a, b in zip(client.times, client.times[1:])]
        self.assertTrue(all(gap >= 0.095 for gap in gaps), gaps)

    @defer.inlineCallbacks
    def loss_pattern(self, seed: int, count: int = 1000):
        """The sequence numbers that survive 20% loss to the server with ``seed``."""
        relay = self.relay(to_server=LinkConfig(delay=0.0, loss=0.20), seed=seed)
        client = self.client(relay)
        yield self.sendPaced(client, range(count))
        yield self.settled(relay, client, count)
        self.assertEqual(relay.to_server.stats.lost_random, count - len(client.received))
        return relay.to_server.stats.lost_random, client.seqs()

    @defer.inlineCallbacks
    def test_loss_rate_and_pattern_follow_the_seed(self):
        """20% loss over 1000 datagrams loses 20% +- 5 standard deviations; the same seed
        loses the same datagrams again, another seed others."""
        lost, pattern = yield self.loss_pattern(seed=7)
        self.assertTrue(200 - 5 * 12.7 <= lost <= 200 + 5 * 12.7, lost)
        again = yield self.loss_pattern(seed=7)
        other = yield self.loss_pattern(seed=8)
        self.assertEqual(again, (lost, pattern))
        self.assertNotEqual(other[1], pattern)

    @defer.inlineCallbacks
    def test_loss_bursts_are_capped(self):
        """At 60% loss with bursts capped at 2, never more than two consecutive datagrams
        are missing, yet bursts of two do happen."""
        relay = self.relay(to_server=LinkConfig(delay=0.0, loss=0.6, max_loss_burst=2), seed=3)
        client = self.client(relay)
        yield self.sendPaced(client, range(500))
        yield self.settled(relay, client, 500)
        seqs = [-1] + client.seqs() + [500]
        gaps = [b - a - 1 for a, b in zip(seqs, seqs[1:])]
        self.assertEqual(max(gaps), 2)
        self.assertGreater(relay.to_server.stats.lost_random, 100)

    @defer.inlineCallbacks
    def test_corrupted_datagrams_are_delivered_with_one_early_byte_changed(self):
        """With corrupt=1 towards the server, every echo arrives, differing from what was sent
        in exactly one byte among the first 50; the counter says so."""
        relay = self.relay(to_server=LinkConfig(delay=0.0, corrupt=1.0))
        client = self.client(relay)
        client.send(range(50))
        yield self.settled(relay, client, 50)
        self.assertEqual(sorted(client.seqs()), list(range(50)))
        for data in client.received:
            original = datagram(seq_of(data))
            diffs = [i for i, (a, b) in enumerate(zip(data, original)) if a != b]
            self.assertEqual(len(diffs), 1)
            self.assertLess(diffs[0], 50)
            self.assertEqual(len(data), len(original))
        self.assertEqual(relay.to_server.stats.corrupted, 50)

    @defer.inlineCallbacks
    def test_duplicated_datagrams_arrive_twice(self):
        """With duplicate=1 towards the server, every datagram is echoed twice."""
        relay = self.relay(to_server=LinkConfig(delay=0.0, duplicate=1.0))
        client = self.client(relay)
        client.send(range(10))
        yield self.settled(relay, client, 10)
        self.assertEqual(sorted(client.seqs()), sorted(list(range(10)) * 2))
        self.assertEqual(relay.to_server.stats.duplicated, 10)

    @defer.inlineCallbacks
    def test_reordered_datagrams_are_overtaken(self):
        """A datagram held back by the reorder delay (200 ms) is overtaken by one sent after it
        (the config is switched to no reordering in between) and counted reordered."""
        relay = self.relay(to_server=LinkConfig(delay=0.0, reorder=1.0, reorder_delay=0.2))
        client = self.client(relay)
        client.send([0])
        yield until(lambda: relay.to_server.stats.sent == 1)
        relay.to_server.config = LinkConfig(delay=0.0)
        client.send([1])
        yield self.settled(relay, client, 2)
        self.assertEqual(client.seqs(), [1, 0])
        self.assertEqual(relay.to_server.stats.reordered, 1)

    @defer.inlineCallbacks
    def test_mtu_drops_larger_datagrams(self):
        """Datagrams over the MTU are dropped and counted too_big; smaller ones pass."""
        relay = self.relay(to_server=LinkConfig(delay=0.0, mtu=500))
        client = self.client(relay)
        client.send([0], size=501)
        client.send([1], size=500)
        yield self.settled(relay, client, 2)
        self.assertEqual(client.seqs(), [1])
        self.assertEqual(relay.to_server.stats.too_big, 1)

    @defer.inlineCallbacks
    def test_counters_account_for_every_datagram(self):
        """Under mixed impairments every datagram ends in exactly one bucket and the client
        received exactly what the relay says it delivered."""
        mixed = LinkConfig(delay=0.005, rate_bps=2e6, queue_bytes=3000, loss=0.1,
                           reorder=0.1, duplicate=0.1, corrupt=0.1, jitter=0.003)
        relay = self.relay(to_server=mixed, to_client=mixed, seed=11)
        client = self.client(relay)
        yield self.sendPaced(client, range(300), batch=20)
        yield self.settled(relay, client, 300)
        for stats in relay.stats().values():
            self.assertTrue(accounted(stats), stats)
            self.assertGreater(stats.lost_random, 0)
        self.assertEqual(len(client.received), relay.to_client.stats.delivered)


class ScriptingTests(RelayTestCase):
    """Changing a running relay."""

    @defer.inlineCallbacks
    def test_config_change_applies_to_later_datagrams(self):
        """A direction losing everything passes everything once its config is replaced."""
        relay = self.relay(to_server=LinkConfig(delay=0.0, loss=1.0))
        client = self.client(relay)
        client.send(range(5))
        yield self.settled(relay, client, 5)
        relay.to_server.config = LinkConfig(delay=0.0)
        client.send(range(5, 10))
        yield self.settled(relay, client, 10)
        self.assertEqual(client.seqs(), [5, 6, 7, 8, 9])
        self.assertEqual(relay.to_server.stats.lost_random, 5)

    @defer.inlineCallbacks
    def test_going_down_drops_what_is_in_flight(self):
        """set_up(False) drops the datagrams still in flight and everything after
        (lost_down); set_up(True) restores the path."""
        relay = self.relay(to_server=LinkConfig(delay=0.5))
        client = self.client(relay)
        client.send(range(3))
        yield until(lambda: relay.to_server.stats.sent == 3)
        relay.set_up(False)
        client.send([3])
        yield self.settled(relay, client, 4)
        self.assertEqual(relay.to_server.stats.lost_down, 4)
        relay.set_up(True)
        relay.to_server.config = LinkConfig(delay=0.0)
        client.send([4])
        yield self.settled(relay, client, 5)
        self.assertEqual(client.seqs(), [4])

    @defer.inlineCallbacks
    def test_blackhole_schedule_drops_only_while_down(self):
        """A one-cycle schedule (up 0 s, down 0.2 s) drops what arrives in the hole as
        lost_blackhole and passes what arrives after it."""
        relay = self.relay()
        client = self.client(relay)
        relay.blackhole(up=0.0, down=0.2, cycles=1)
        yield until(lambda: relay.to_server.blackholed)
        client.send(range(3))
        yield self.settled(relay, client, 3)
        yield until(lambda: not relay.to_server.blackholed)
        client.send(range(3, 6))
        yield self.settled(relay, client, 6)
        self.assertEqual(client.seqs(), [3, 4, 5])
        self.assertEqual(relay.to_server.stats.lost_blackhole, 3)

    @defer.inlineCallbacks
    def test_stopping_a_blackhole_schedule_reopens_the_path_for_good(self):
        """stop_blackholes() ends an endless schedule in its hole: datagrams pass at once and
        the schedule never closes the path again."""
        relay = self.relay()
        client = self.client(relay)
        relay.blackhole(up=0.0, down=0.05)
        yield until(lambda: relay.to_server.blackholed)
        relay.stop_blackholes()
        client.send([0])
        yield self.settled(relay, client, 1)
        start = relay.now()
        yield until(lambda: relay.now() >= start + 0.2)
        self.assertFalse(relay.to_server.blackholed)
        client.send([1])
        yield self.settled(relay, client, 2)
        self.assertEqual(client.seqs(), [0, 1])
        self.assertEqual(relay.to_server.stats.lost_blackhole, 0)

    @defer.inlineCallbacks
    def test_blackhole_windows_of_the_config_use_the_relay_clock(self):
        """LinkConfig.blackholes windows count from the relay's start, as in the simulator."""
        relay = self.relay(to_server=LinkConfig(delay=0.0, blackholes=[(0.0, 0.15)]))
        client = self.client(relay)
        client.send([0])
        yield self.settled(relay, client, 1)
        sent_at = relay.now()
        yield until(lambda: relay.now() >= 0.15)
        client.send([1])
        yield self.settled(relay, client, 2)
        self.assertEqual(client.seqs(), [1] if sent_at < 0.15 else [0, 1])
        self.assertEqual(relay.to_server.stats.lost_blackhole, 1 if sent_at < 0.15 else 0)

    @defer.inlineCallbacks
    def test_filter_refuses_datagrams(self):
        """A direction's filter drops what it refuses (lost_down) and passes the rest."""
        relay = self.relay()
        relay.to_server.filter = lambda data: seq_of(data) % 2 == 0
        client = self.client(relay)
        client.send(range(6))
        yield self.settled(relay, client, 6)
        self.assertEqual(client.seqs(), [0, 2, 4])
        self.assertEqual(relay.to_server.stats.lost_down, 3)

    @defer.inlineCallbacks
    def test_rebind_changes_the_source_port_the_server_sees(self):
        """After rebind() the server sees the client at a new port of the same address, and
        the echoes sent there still reach the client."""
        relay = self.relay()
        client = self.client(relay)
        client.send([0])
        yield self.settled(relay, client, 1)
        relay.rebind()
        client.send([1])
        yield self.settled(relay, client, 2)
        before, after = self.echo.sources
        self.assertEqual(before[0], after[0])
        self.assertNotEqual(before[1], after[1])
        self.assertEqual(relay.source_addresses(), [after])
        self.assertEqual(client.seqs(), [0, 1])

    @defer.inlineCallbacks
    def test_rebind_to_a_new_address(self):
        """rebind(new_address='127.0.0.3') makes the server see the client at 127.0.0.3."""
        relay = self.relay()
        client = self.client(relay)
        client.send([0])
        yield self.settled(relay, client, 1)
        relay.rebind(new_address="127.0.0.3")
        client.send([1])
        yield self.settled(relay, client, 2)
        self.assertEqual([host for host, _ in self.echo.sources], ["127.0.0.1", "127.0.0.3"])
        self.assertEqual(client.seqs(), [0, 1])

    @defer.inlineCallbacks
    def test_rebind_at_a_relay_time(self):
        """rebind(at=t) leaves the mapping alone until relay time t, then moves it."""
        relay = self.relay()
        client = self.client(relay)
        client.send([0])
        yield self.settled(relay, client, 1)
        first = relay.source_addresses()
        relay.rebind(at=relay.now() + 0.1)
        self.assertEqual(relay.source_addresses(), first)
        yield until(lambda: relay.source_addresses() != first)
        client.send([1])
        yield self.settled(relay, client, 2)
        self.assertNotEqual(self.echo.sources[0], self.echo.sources[1])


class CommandLineTests(SynchronousTestCase):
    """Parsing the command line."""

    def test_the_issue_example_becomes_the_expected_config(self):
        """The documented example command parses into the interop runner's link with loss."""
        args = build_parser().parse_args(
            "--listen 127.0.0.1:5000 --server 127.0.0.1:4433 --delay 15ms --rate 10mbit "
            "--queue 25 --loss 2% --burst 3 --reorder 1% --duplicate 1% --corrupt 1% --seed 1 "
            "--blackhole 5s/2s".split())
        self.assertEqual(config_from_args(args), LinkConfig(
            delay=0.015, rate_bps=10e6, queue_bytes=37500, loss=0.02, max_loss_burst=3,
            reorder=0.01, duplicate=0.01, corrupt=0.01))
        self.assertEqual((args.listen, args.server), (("127.0.0.1", 5000), ("127.0.0.1", 4433)))
        self.assertEqual((args.seed, args.blackhole), (1, (5.0, 2.0)))

    def test_units(self):
        """Times, rates, probabilities, queues and addresses accept their documented forms."""
        self.assertAlmostEqual(parse_time("15ms"), 0.015)
        self.assertAlmostEqual(parse_time("2s"), 2.0)
        self.assertAlmostEqual(parse_time("250us"), 0.00025)
        self.assertEqual(parse_rate("10mbit"), 10e6)
        self.assertEqual(parse_rate("1.5Gbps"), 1.5e9)
        self.assertEqual(parse_rate("64000"), 64000)
        self.assertAlmostEqual(parse_probability("2%"), 0.02)
        self.assertAlmostEqual(parse_probability("0.3"), 0.3)
        self.assertEqual(parse_queue("25"), 37500)
        self.assertEqual(parse_queue("37.5kB"), 37500)
        self.assertEqual(parse_queue("64KiB"), 65536)
        self.assertEqual(parse_address("[::1]:4433"), ("::1", 4433))
        self.assertEqual(parse_schedule("500ms/1s"), (0.5, 1.0))

    def test_bad_values_are_refused(self):
        """A time without a unit, a probability over 100% and malformed values exit with
        a usage error."""
        for argv in (["--delay", "15"], ["--loss", "120%"], ["--rate", "fast"],
                     ["--blackhole", "5s"], ["--listen", "nowhere"], ["--queue", "10 apples"]):
            with contextlib.redirect_stderr(io.StringIO()):
                with self.assertRaises(SystemExit):
                    build_parser().parse_args(["--server", "127.0.0.1:4433", *argv])

    def test_gilbert_elliott_fills_the_four_parameters(self):
        """--gilbert 1%/30% means P(g->b)=1%, P(b->g)=30%, 100% loss when bad, 0 when good."""
        args = build_parser().parse_args(["--server", "127.0.0.1:1", "--gilbert", "1%/30%"])
        config = config_from_args(args)
        self.assertEqual((config.ge_p_good_to_bad, config.ge_p_bad_to_good, config.ge_loss_bad,
                          config.ge_loss_good), (0.01, 0.30, 1.0, 0.0))

    def test_help_runs_as_a_module_and_every_option_is_documented(self):
        """``python -m kwik_twisted.testing.relay --help`` works, and docs/testing.rst
        mentions every option it lists."""
        env = dict(os.environ, PYTHONPATH=ROOT, COLUMNS="200")
        done = subprocess.run([sys.executable, "-m", "kwik_twisted.testing.relay", "--help"],
                              capture_output=True, text=True, env=env, timeout=60, check=False)
        self.assertEqual(done.returncode, 0, done.stderr)
        options = set(re.findall(r"--[a-z][a-z-]*[a-z]", done.stdout)) - {"--help"}
        self.assertGreaterEqual(len(options), 18)
        with open(os.path.join(ROOT, "docs", "testing.rst"), encoding="utf-8") as f:
            docs = f.read()
        self.assertEqual(sorted(o for o in options if f"``{o}" not in docs), [])


class MainTests(RelayTestCase):
    """``main()`` starts a working relay."""

    @defer.inlineCallbacks
    def test_main_relays_with_the_parsed_impairments(self):
        """main() parses its arguments, starts a relay that forwards both ways, and says what
        it relays."""
        out = io.StringIO()
        relay = main(["--listen", "127.0.0.1:0", "--server", f"{self.server[0]}:{self.server[1]}",
                      "--delay", "1ms", "--seed", "5"], reactor=reactor, out=out)
        self.addCleanup(relay.stop)
        client = self.client(relay)
        client.send(range(3))
        yield self.settled(relay, client, 3)
        self.assertEqual(client.seqs(), [0, 1, 2])
        self.assertIn("relaying 127.0.0.1:", out.getvalue())
