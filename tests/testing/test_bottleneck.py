"""
Tests for the shared bottlenecks of :class:`kwik_twisted.testing.Network`.

Several one-way links routed through one bottleneck share its rate and its drop-tail queue,
then each applies its own delay.  Small fake hosts drive it: senders of tagged datagrams on a
schedule and a receiver that records arrivals.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.errors import ConfigurationError
from kwik_twisted.testing import LinkConfig, Network

A = ("10.0.0.1", 1000)
B = ("10.0.0.2", 1000)
C = ("10.0.0.3", 1000)
SINK = ("10.9.9.9", 443)
RATE = 10e6
SIZE = 1250  # 1 ms at 10 Mbit/s
SLOT = SIZE * 8 / RATE


class Sender:
    """Sends one ``size``-byte datagram tagged ``(tag, seq)`` at each of ``times``."""

    def __init__(self, local, tag, times, size=SIZE, remote=SINK):
        self.local, self.remote, self.tag, self.size = local, remote, tag, size
        self.times = sorted(times)
        self.sent = 0

    def datagrams_to_send(self, *, now):
        out = []
        while self.sent < len(self.times) and self.times[self.sent] <= now:
            data = bytes((self.tag,)) + self.sent.to_bytes(4, "big")
            out.append((data.ljust(self.size, b"."), self.local, self.remote))
            self.sent += 1
        return out

    def next_deadline(self):
        return self.times[self.sent] if self.sent < len(self.times) else None

    def handle_deadline(self, *, now):
        pass

    def receive_datagram(self, data, local_addr, remote_addr, *, now):
        pass


class Receiver:
    """Records ``(time, tag, seq, size)`` for every arrival."""

    def __init__(self):
        self.received: list[tuple[float, int, int, int]] = []

    def receive_datagram(self, data, local_addr, remote_addr, *, now):
        self.received.append((now, data[0], int.from_bytes(data[1:5], "big"), len(data)))

    def datagrams_to_send(self, *, now):
        return []

    def next_deadline(self):
        return None

    def handle_deadline(self, *, now):
        pass

    def of(self, tag):
        """The arrivals of sender ``tag``."""
        return [r for r in self.received if r[1] == tag]


def network(schedules, bottleneck=None, delays=None, shared=None, seed=1):
    """Senders at A, B, C (as many as ``schedules``) towards one receiver at SINK.

    Every sender's link is routed through the bottleneck ``"b"`` (``bottleneck`` config,
    default 10 Mbit/s with a large queue) unless ``shared`` lists the ones that are.
    """
    net = Network(seed)
    receiver = Receiver()
    net.attach(receiver, [SINK])
    net.add_bottleneck("b", bottleneck or LinkConfig(rate_bps=RATE, queue_bytes=10**9))
    for tag, (addr, times) in enumerate(zip((A, B, C), schedules)):
        net.attach(Sender(addr, tag, times), [addr])
        delay = delays[tag] if delays else 0.010
        net.add_link(addr, SINK, ab=LinkConfig(delay=delay))
        if shared is None or tag in shared:
            net.share(addr, SINK, "b")
    return net, receiver


def paced(rate_bps, duration, size=SIZE, start=0.0):
    """Send times for ``rate_bps`` of ``size``-byte datagrams during ``duration`` seconds."""
    interval = size * 8 / rate_bps
    return [start + i * interval for i in range(int(duration / interval))]


class SharedRateTests(SynchronousTestCase):
    """The links routed through a bottleneck share one rate."""

    def test_two_bursts_take_as_long_as_one_burst_of_their_sum(self):
        """
        100 datagrams from each of two senders at t=0 through one 10 Mbit/s bottleneck: the
        last arrives after 200 serialization slots plus the link delay (each alone would
        finish after 100 slots).
        """
        net, receiver = network([[0.0] * 100, [0.0] * 100])
        net.run()
        self.assertEqual(len(receiver.received), 200)
        self.assertAlmostEqual(max(r[0] for r in receiver.received), 200 * SLOT + 0.010, 9)

    def test_two_paced_senders_together_get_the_rate_and_the_excess_is_dropped(self):
        """
        Two senders each offering 8 Mbit/s for 2 s into 10 Mbit/s with a 30 kB queue: from
        0.5 s to 2 s their deliveries add up to the bottleneck rate (within 2 %, where two
        separate links would carry 16 Mbit/s), both get through, and the excess is dropped
        at the bottleneck.  (How the rate is split depends on drop-tail phase effects
        between perfectly paced senders, so only a floor is checked.)
        """
        config = LinkConfig(rate_bps=RATE, queue_bytes=30000)
        net, receiver = network([paced(8e6, 2.0), paced(8e6, 2.0)], bottleneck=config)
        net.run()
        window = 1.5

        def rate(tag):
            sizes = [r[3] for r in receiver.of(tag) if 0.5 <= r[0] < 0.5 + window]
            return sum(sizes) * 8 / window

        self.assertLessEqual(abs((rate(0) + rate(1)) / RATE - 1.0), 0.02)
        self.assertGreater(min(rate(0), rate(1)) / RATE, 0.15)
        self.assertGreater(net.bottleneck("b").stats.lost_queue, 0)

    def test_links_not_routed_through_the_bottleneck_are_not_slowed(self):
        """A third sender whose link is not shared is unaffected by the others' burst."""
        net, receiver = network([[0.0] * 50, [0.0] * 50, [0.0]], shared=(0, 1))
        net.run()
        self.assertEqual([r[0] for r in receiver.of(2)], [0.010])
        self.assertEqual(sorted(net.bottleneck("b").per_link), [(A, SINK), (B, SINK)])

    @settings(max_examples=25, deadline=None)
    @given(
        st.lists(st.floats(0.0, 0.05), max_size=30),
        st.lists(st.floats(0.0, 0.05), max_size=30),
        st.integers(0, 20_000),
    )
    def test_departures_are_spaced_by_the_rate_and_every_datagram_is_accounted(
        self, times_a, times_b, queue
    ):
        """
        For any two send schedules and queue size: the times datagrams leave the bottleneck
        (the links' "sent" trace) are at least one serialization slot apart, every datagram
        offered is either handed on or dropped at the bottleneck, and each link delivers its
        datagrams in the order they were sent.
        """
        config = LinkConfig(rate_bps=RATE, queue_bytes=queue)
        net, receiver = network([times_a, times_b], bottleneck=config)
        trace = []
        net.trace = lambda *event: trace.append(event)
        net.run()
        departures = sorted(t for t, _, _, _, event in trace if event == "sent")
        for earlier, later in zip(departures, departures[1:]):
            self.assertGreaterEqual(later - earlier, SLOT * (1 - 1e-9))
        stats = net.bottleneck("b").stats
        self.assertEqual(stats.sent, len(times_a) + len(times_b))
        self.assertEqual(stats.delivered + stats.lost_queue, stats.sent)
        self.assertEqual(len(receiver.received), stats.delivered)
        dropped = sum(1 for *_, event in trace if event == "lost_bottleneck")
        self.assertEqual(dropped, stats.lost_queue)
        for tag in (0, 1):
            seqs = [r[2] for r in receiver.of(tag)]
            self.assertEqual(seqs, sorted(seqs))


class SharedQueueTests(SynchronousTestCase):
    """The links routed through a bottleneck share one drop-tail queue."""

    def test_bursts_that_each_fit_overflow_the_shared_queue_together(self):
        """
        A 10-datagram queue: 8 datagrams from one sender fit (one in service, 7 waiting);
        8 from each of two senders at once overflow it, so 5 of the later ones are dropped.
        """
        config = LinkConfig(rate_bps=RATE, queue_bytes=10 * SIZE)
        alone, _ = network([[0.0] * 8], bottleneck=config)
        alone.run()
        self.assertEqual(alone.bottleneck("b").stats.lost_queue, 0)
        net, receiver = network([[0.0] * 8, [0.0] * 8], bottleneck=config)
        net.run()
        bottleneck = net.bottleneck("b")
        self.assertEqual(bottleneck.stats.lost_queue, 5)
        self.assertEqual(bottleneck.per_link[(A, SINK)].lost_queue, 0)
        self.assertEqual(bottleneck.per_link[(B, SINK)].lost_queue, 5)
        self.assertEqual(len(receiver.of(0)), 8)
        self.assertEqual([r[2] for r in receiver.of(1)], [0, 1, 2])
        self.assertEqual(net.bottleneck_stats()["b"].lost_queue, 5)

    def test_a_drop_at_the_bottleneck_is_traced_and_not_counted_by_the_link(self):
        """A datagram dropped by the full queue is traced ``lost_bottleneck`` with its link's
        addresses; the link counts only what left the bottleneck."""
        config = LinkConfig(rate_bps=RATE, queue_bytes=SIZE)
        net, _ = network([[0.0] * 3], bottleneck=config)
        trace = []
        net.trace = lambda *event: trace.append(event)
        net.run()
        self.assertEqual([e for e in trace if e[4] == "lost_bottleneck"],
                         [(0.0, A, SINK, SIZE, "lost_bottleneck")])
        link_stats = net.stats()[(A, SINK)]
        self.assertEqual((link_stats.sent, link_stats.delivered), (2, 2))


class DelayTests(SynchronousTestCase):
    """After the bottleneck, each link's own delay and state apply."""

    def test_each_link_adds_its_own_delay_after_the_shared_serialization(self):
        """
        One datagram from each of two senders at t=0, links of 10 ms and 50 ms: the first
        arrives at one slot + 10 ms, the second (serialized after it) at two slots + 50 ms.
        """
        net, receiver = network([[0.0], [0.0]], delays=(0.010, 0.050))
        net.run()
        self.assertAlmostEqual(receiver.of(0)[0][0], SLOT + 0.010, 12)
        self.assertAlmostEqual(receiver.of(1)[0][0], 2 * SLOT + 0.050, 12)

    def test_a_link_cut_while_its_datagram_waits_in_the_bottleneck_drops_it(self):
        """A link taken down before its datagram leaves the bottleneck counts it
        ``lost_down``; the other link's datagrams still arrive."""
        net, receiver = network([[0.0] * 5, [0.0] * 5])
        net.at(0.003, lambda: net.set_link_up(B, SINK, False, both_directions=False))
        net.run()
        self.assertEqual(len(receiver.of(0)), 5)
        self.assertEqual(receiver.of(1), [])
        self.assertEqual(net.stats()[(B, SINK)].lost_down, 5)

    def test_runs_with_the_same_seed_are_identical(self):
        """Two runs with jittery, lossy links behind one bottleneck trace the same events."""
        def run():
            net, receiver = network([paced(8e6, 0.5), paced(6e6, 0.5)],
                                    bottleneck=LinkConfig(rate_bps=RATE, queue_bytes=20000))
            for addr in (A, B):
                net.link(addr, SINK).config = LinkConfig(delay=0.01, jitter=0.005, loss=0.05)
            trace = []
            net.trace = lambda *event: trace.append(event)
            net.run()
            return trace

        first = run()
        self.assertGreater(len(first), 1000)
        self.assertEqual(first, run())

    def test_a_rebound_address_keeps_going_through_the_bottleneck(self):
        """After a NAT rebinding the new address's link is routed through the same
        bottleneck, so its datagrams still wait behind the other sender's."""
        new = ("192.0.2.7", 40000)
        net, receiver = network([[0.0, 0.1], [0.1] * 10])
        net.rebind(A, new, at=0.05)
        net.run()
        self.assertIn((new, SINK), net.bottleneck("b").per_link)
        self.assertAlmostEqual(max(r[0] for r in receiver.received), 0.1 + 11 * SLOT + 0.010, 9)


class ConfigurationTests(SynchronousTestCase):
    """Misuse is reported with :class:`ConfigurationError`."""

    def setUp(self):
        self.net = Network(1)
        self.net.add_link(A, SINK)

    def test_a_bottleneck_needs_a_rate(self):
        """A bottleneck without ``rate_bps`` is refused."""
        self.assertRaises(ConfigurationError, self.net.add_bottleneck, "b", LinkConfig())

    def test_impairments_belong_on_the_links(self):
        """Loss or jitter on a bottleneck is refused rather than silently ignored."""
        for config in (LinkConfig(rate_bps=RATE, loss=0.1), LinkConfig(rate_bps=RATE, jitter=1)):
            self.assertRaises(ConfigurationError, self.net.add_bottleneck, "b", config)

    def test_names_and_links_must_exist_and_be_unique(self):
        """Duplicate bottleneck names, unknown names or links, and sharing twice fail."""
        config = LinkConfig(rate_bps=RATE)
        self.net.add_bottleneck("b", config)
        self.assertRaises(ConfigurationError, self.net.add_bottleneck, "b", config)
        self.assertRaises(ConfigurationError, self.net.share, A, SINK, "nope")
        self.assertRaises(ConfigurationError, self.net.share, B, SINK, "b")
        self.assertRaises(ConfigurationError, self.net.bottleneck, "nope")
        self.net.share(A, SINK, "b")
        self.assertRaises(ConfigurationError, self.net.share, A, SINK, "b")
