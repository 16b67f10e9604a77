"""
Tests for :mod:`kwik_twisted.testing`: the deterministic network simulator.

Small fake hosts drive it: a paced sender of numbered datagrams, a receiver that records
(and optionally echoes) what arrives, and hosts with scripted deadlines.
"""

from __future__ import annotations

from dataclasses import replace

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.errors import ConfigurationError
from kwik_twisted.testing import EPSILON, LinkConfig, Network, StopReason

A = ("10.0.0.1", 1000)
B = ("10.0.0.2", 443)
A_NEW = ("192.0.2.7", 40000)


def payload(seq: int, size: int) -> bytes:
    """A datagram of ``size`` bytes whose first four bytes carry ``seq``."""
    return seq.to_bytes(4, "big") + b"x" * (size - 4)


def seq_of(data: bytes) -> int:
    return int.from_bytes(data[:4], "big")


class Sender:
    """Sends ``count`` numbered datagrams from ``local`` to ``remote``, one every
    ``interval`` seconds from ``start`` (all at once if ``interval`` is 0)."""

    def __init__(self, local, remote, count, interval, size=100, start=0.0):
        self.local, self.remote = local, remote
        self.count, self.interval, self.size, self.start = count, interval, size, start
        self.sent_at: list[float] = []
        self.received: list[tuple[float, bytes, tuple, tuple]] = []

    def _due(self):
        if len(self.sent_at) >= self.count:
            return None
        return self.start + len(self.sent_at) * self.interval

    def datagrams_to_send(self, *, now):
        out = []
        while (due := self._due()) is not None and due <= now:
            out.append((payload(len(self.sent_at), self.size), self.local, self.remote))
            self.sent_at.append(now)
        return out

    def next_deadline(self):
        return self._due()

    def handle_deadline(self, *, now):
        pass

    def receive_datagram(self, data, local_addr, remote_addr, *, now):
        self.received.append((now, data, local_addr, remote_addr))


class Receiver:
    """Records every arrival; with ``echo`` sends each datagram back where it came from."""

    def __init__(self, echo=False):
        self.echo = echo
        self.received: list[tuple[float, bytes, tuple, tuple]] = []
        self._replies: list[tuple[bytes, tuple, tuple]] = []

    def receive_datagram(self, data, local_addr, remote_addr, *, now):
        self.received.append((now, data, local_addr, remote_addr))
        if self.echo:
            self._replies.append((data, local_addr, remote_addr))

    def datagrams_to_send(self, *, now):
        out, self._replies = self._replies, []
        return out

    def next_deadline(self):
        return None

    def handle_deadline(self, *, now):
        pass

    def seqs(self):
        return [seq_of(data) for _, data, _, _ in self.received]


class Timers:
    """A host with scripted deadlines: ``next_deadline`` is the first unhandled one, or
    ``stuck_at`` forever if set (a broken host that never makes progress)."""

    def __init__(self, deadlines=(), stuck_at=None):
        self.pending = sorted(deadlines)
        self.stuck_at = stuck_at
        self.fired: list[float] = []

    def next_deadline(self):
        if self.stuck_at is not None:
            return self.stuck_at
        return self.pending[0] if self.pending else None

    def handle_deadline(self, *, now):
        self.fired.append(now)
        while self.pending and self.pending[0] <= now:
            self.pending.pop(0)

    def datagrams_to_send(self, *, now):
        return []

    def receive_datagram(self, data, local_addr, remote_addr, *, now):
        pass


def pair(seed=1, ab=None, ba=None, sender=None, receiver=None):
    """A network with ``sender`` at A and ``receiver`` at B joined by one link pair."""
    net = Network(seed)
    net.attach(sender, [A])
    net.attach(receiver, [B])
    net.add_link(A, B, ab=ab, ba=ba)
    return net


def longest_gap(seqs):
    """The longest run of consecutive sequence numbers missing from sorted ``seqs``."""
    return max((b - a - 1 for a, b in zip(seqs, seqs[1:])), default=0)


class DelayAndRateTests(SynchronousTestCase):
    """Propagation delay, serialization and the drop-tail queue."""

    def test_delivery_takes_the_configured_delay_without_a_rate(self):
        """With no rate limit a datagram arrives exactly ``delay`` after it was sent."""
        sender, receiver = Sender(A, B, 5, 0.1), Receiver()
        net = pair(ab=LinkConfig(delay=0.037), sender=sender, receiver=receiver)
        self.assertEqual(net.run(), StopReason.IDLE)
        arrivals = [t for t, _, _, _ in receiver.received]
        for sent, arrived in zip(sender.sent_at, arrivals):
            self.assertAlmostEqual(arrived - sent, 0.037, places=12)
        self.assertEqual([(local, remote) for _, _, local, remote in receiver.received],
                         [(B, A)] * 5)

    def test_delivery_takes_the_delay_plus_serialization(self):
        """At 1 Mbit/s a 1000-byte datagram takes 8 ms to serialize, then the delay;
        one sent right behind it waits for the first, so arrives 8 ms later."""
        sender, receiver = Sender(A, B, 2, 0.0, size=1000), Receiver()
        net = pair(ab=LinkConfig(delay=0.05, rate_bps=1e6), sender=sender, receiver=receiver)
        net.run()
        arrivals = [t for t, _, _, _ in receiver.received]
        self.assertAlmostEqual(arrivals[0], 0.058, places=12)
        self.assertAlmostEqual(arrivals[1], 0.066, places=12)

    def test_rate_limit_gives_the_configured_throughput(self):
        """A sender pacing at twice the link rate, with a queue big enough to hold the
        excess, gets exactly the link rate (within 1%) and loses nothing."""
        rate, size, count = 2e6, 1250, 2000
        sender = Sender(A, B, count, size * 8 / (2 * rate), size=size)
        receiver = Receiver()
        config = LinkConfig(delay=0.02, rate_bps=rate, queue_bytes=size * count)
        net = pair(ab=config, sender=sender, receiver=receiver)
        net.run()
        first, last = receiver.received[0][0], receiver.received[-1][0]
        goodput = (count - 1) * size * 8 / (last - first)
        self.assertApproximates(goodput / rate, 1.0, 0.01)
        stats = net.stats()[(A, B)]
        self.assertEqual((stats.delivered, stats.bytes_delivered), (count, count * size))

    def test_queue_overflow_drops_the_excess_and_counts_it(self):
        """A burst of 100 x 1000 bytes into a 10000-byte queue: one datagram serializes at
        once, ten wait in the queue, the other 89 are dropped and counted ``lost_queue``."""
        sender, receiver = Sender(A, B, 100, 0.0, size=1000), Receiver()
        config = LinkConfig(delay=0.01, rate_bps=1e6, queue_bytes=10000)
        net = pair(ab=config, sender=sender, receiver=receiver)
        net.run()
        stats = net.stats()[(A, B)]
        self.assertEqual((stats.sent, stats.delivered, stats.lost_queue), (100, 11, 89))
        self.assertEqual(receiver.seqs(), list(range(11)))

    def test_queue_drains_as_the_link_serializes(self):
        """A datagram leaves the 1000-byte queue when it starts serializing (8 ms each at
        1 Mbit/s): sent every 5 ms, only the one arriving while another waits is dropped."""
        sender, receiver = Sender(A, B, 5, 0.005, size=1000), Receiver()
        config = LinkConfig(delay=0.0, rate_bps=1e6, queue_bytes=1000)
        net = pair(ab=config, sender=sender, receiver=receiver)
        net.run()
        self.assertEqual(receiver.seqs(), [0, 1, 2, 4])
        self.assertEqual(net.stats()[(A, B)].lost_queue, 1)

    def test_default_queue_is_about_two_bandwidth_delay_products(self):
        """Without ``queue_bytes`` the bound is max(30000, 2 BDP) bytes."""
        self.assertEqual(LinkConfig(delay=0.05, rate_bps=1e8).effective_queue_bytes(), 1250000)
        self.assertEqual(LinkConfig(delay=0.001, rate_bps=1e6).effective_queue_bytes(), 30000)

    def test_datagrams_larger_than_the_mtu_are_dropped_and_counted(self):
        """A datagram above the link MTU is dropped as ``too_big``; one of exactly the MTU
        passes."""
        other = ("10.0.0.1", 1001)
        big, small, receiver = Sender(A, B, 3, 0.0, size=1401), Sender(other, B, 1, 0.0,
                                                                        size=1400), Receiver()
        net = Network(1)
        net.attach(big, [A])
        net.attach(small, [other])
        net.attach(receiver, [B])
        net.add_link(A, B, ab=LinkConfig(mtu=1400))
        net.add_link(other, B, ab=LinkConfig(mtu=1400))
        net.run()
        self.assertEqual(net.stats()[(A, B)].too_big, 3)
        self.assertEqual([remote for _, _, _, remote in receiver.received], [other])


class LossTests(SynchronousTestCase):
    """Random loss, loss bursts and the Gilbert-Elliott chain."""

    def test_loss_rate_is_close_to_the_configured_probability(self):
        """With loss 0.1 on 20000 datagrams the loss fraction is 0.1 within 4 sigma, and
        ``lost_random`` counts exactly the datagrams that never arrived."""
        sender, receiver = Sender(A, B, 20000, 0.0001), Receiver()
        net = pair(seed=7, ab=LinkConfig(loss=0.1), sender=sender, receiver=receiver)
        net.run()
        stats = net.stats()[(A, B)]
        self.assertApproximates(stats.lost_random / 20000, 0.1, 0.0085)
        self.assertEqual(stats.lost_random, 20000 - len(receiver.received))

    def test_max_loss_burst_caps_consecutive_losses(self):
        """With loss 0.5 and ``max_loss_burst=2``, never more than 2 consecutive datagrams
        are lost, and bursts of exactly 2 do happen; without the cap longer runs occur."""
        for cap, check in ((2, lambda gap: self.assertEqual(gap, 2)),
                           (None, lambda gap: self.assertGreater(gap, 2))):
            sender, receiver = Sender(A, B, 20000, 0.0001), Receiver()
            config = LinkConfig(loss=0.5, max_loss_burst=cap)
            net = pair(seed=11, ab=config, sender=sender, receiver=receiver)
            net.run()
            check(longest_gap(receiver.seqs()))

    def test_gilbert_elliott_losses_come_in_bursts(self):
        """A Gilbert-Elliott chain (good->bad 0.01, bad->good 0.25, all lost in bad) loses
        about 0.01/0.26 of the datagrams, in bursts averaging about four."""
        sender, receiver = Sender(A, B, 40000, 0.0001), Receiver()
        config = LinkConfig(ge_p_good_to_bad=0.01, ge_p_bad_to_good=0.25)
        net = pair(seed=5, ab=config, sender=sender, receiver=receiver)
        net.run()
        seqs = receiver.seqs()
        gaps = [b - a - 1 for a, b in zip(seqs, seqs[1:]) if b - a > 1]
        self.assertApproximates((40000 - len(seqs)) / 40000, 0.01 / 0.26, 0.01)
        self.assertApproximates(sum(gaps) / len(gaps), 4.0, 0.6)

    def test_probabilities_outside_zero_one_are_refused(self):
        """A LinkConfig with a probability outside [0, 1] is a ConfigurationError."""
        self.assertRaises(ConfigurationError, LinkConfig, loss=1.5)
        self.assertRaises(ConfigurationError, LinkConfig, duplicate=-0.1)
        self.assertRaises(ConfigurationError, LinkConfig, rate_bps=0)


class DuplicationReorderCorruptionTests(SynchronousTestCase):
    """Impairments that deliver something other than one intact copy in order."""

    def test_duplicates_are_counted_and_delivered(self):
        """With duplicate 0.1 about 10% of datagrams arrive twice; each extra arrival is
        counted once in ``duplicated`` and in ``delivered``."""
        sender, receiver = Sender(A, B, 10000, 0.001), Receiver()
        net = pair(seed=3, ab=LinkConfig(duplicate=0.1), sender=sender, receiver=receiver)
        net.run()
        stats = net.stats()[(A, B)]
        seqs = receiver.seqs()
        self.assertApproximates(stats.duplicated, 1000, 120)
        self.assertEqual(len(seqs) - len(set(seqs)), stats.duplicated)
        self.assertEqual(stats.delivered, 10000 + stats.duplicated)
        self.assertEqual(set(seqs), set(range(10000)))

    def test_reordered_datagrams_arrive_after_later_ones(self):
        """With reorder 0.1 and a reorder delay of 5 intervals, every held-back datagram is
        overtaken: the number of late arrivals equals ``reordered`` (about 10%)."""
        sender, receiver = Sender(A, B, 10000, 0.001), Receiver()
        config = LinkConfig(delay=0.02, reorder=0.1, reorder_delay=0.005)
        net = pair(seed=9, ab=config, sender=sender, receiver=receiver)
        net.run()
        seqs = receiver.seqs()
        late, highest = 0, -1
        for seq in seqs:
            if seq < highest:
                late += 1
            highest = max(highest, seq)
        reordered = net.stats()[(A, B)].reordered
        self.assertApproximates(reordered, 1000, 120)
        self.assertEqual(late, reordered)
        self.assertEqual(sorted(seqs), list(range(10000)))

    def test_jitter_delays_within_bounds_without_reordering(self):
        """Jitter adds 0..jitter to the delay but keeps the link FIFO: arrivals are in order
        and each lies within [sent + delay, sent + delay + jitter]."""
        sender, receiver = Sender(A, B, 5000, 0.001), Receiver()
        config = LinkConfig(delay=0.02, jitter=0.01)
        net = pair(seed=4, ab=config, sender=sender, receiver=receiver)
        net.run()
        self.assertEqual(receiver.seqs(), list(range(5000)))
        extra = [t - sender.sent_at[seq_of(d)] - 0.02 for t, d, _, _ in receiver.received]
        self.assertGreaterEqual(min(extra), -1e-12)
        self.assertLessEqual(max(extra), 0.01 + 1e-12)
        self.assertGreater(max(extra) - min(extra), 0.009)
        self.assertEqual(net.stats()[(A, B)].reordered, 0)

    def test_corruption_changes_one_byte_among_the_first_fifty(self):
        """With corrupt 1.0 every datagram still arrives, differing from what was sent in
        exactly one byte, at an index below 50 (below the length for short ones)."""
        for size in (200, 10):
            sender, receiver = Sender(A, B, 300, 0.001, size=size), Receiver()
            net = pair(seed=size, ab=LinkConfig(corrupt=1.0), sender=sender, receiver=receiver)
            net.run()
            self.assertEqual(net.stats()[(A, B)].corrupted, 300)
            self.assertEqual(len(receiver.received), 300)
            indexes = set()
            for i, (_, data, _, _) in enumerate(receiver.received):
                diff = [j for j, (x, y) in enumerate(zip(data, payload(i, size))) if x != y]
                self.assertEqual((len(data), len(diff)), (size, 1))
                indexes.add(diff[0])
            self.assertLess(max(indexes), min(50, size))
            self.assertGreater(len(indexes), min(40, size - 1))


class LinkControlTests(SynchronousTestCase):
    """Blackholes, cutting links, changing their configuration and unroutable datagrams."""

    def test_blackhole_drops_everything_sent_inside_the_window(self):
        """Datagrams sent during [1, 2) are all dropped as ``lost_blackhole``; all others
        arrive."""
        sender, receiver = Sender(A, B, 300, 0.01, start=0.005), Receiver()
        config = LinkConfig(delay=0.05, blackholes=[(1.0, 2.0)])
        net = pair(ab=config, sender=sender, receiver=receiver)
        net.run()
        expected = [i for i, t in enumerate(sender.sent_at) if not 1.0 <= t < 2.0]
        self.assertEqual(receiver.seqs(), expected)
        self.assertEqual(net.stats()[(A, B)].lost_blackhole, 300 - len(expected))
        self.assertEqual(len(expected), 200)

    def test_link_down_drops_sent_and_in_flight_datagrams_until_it_is_up(self):
        """Cutting a link at t=1 loses what is in flight and what is sent until it is
        restored at t=2; both directions are cut."""
        sender, receiver = Sender(A, B, 300, 0.01, start=0.005), Receiver(echo=True)
        net = pair(ab=LinkConfig(delay=0.1), sender=sender, receiver=receiver)
        net.at(1.0, lambda: net.set_link_up(A, B, False))
        net.at(2.0, lambda: net.set_link_up(A, B, True))
        net.run()
        expected = [i for i, t in enumerate(sender.sent_at) if t + 0.1 < 1.0 or t >= 2.0]
        self.assertEqual(receiver.seqs(), expected)
        self.assertEqual(net.stats()[(A, B)].lost_down, 300 - len(expected))
        echoed = [seq_of(d) for _, d, _, _ in sender.received]
        self.assertEqual(echoed, [i for i in expected if sender.sent_at[i] + 0.11 < 1.0
                                  or sender.sent_at[i] >= 2.0])

    def test_config_change_mid_run_applies_to_later_datagrams(self):
        """Assigning a new config at t=1 changes the delay of datagrams sent from then on;
        those already in flight keep theirs."""
        sender, receiver = Sender(A, B, 20, 0.1, start=0.05), Receiver()
        net = pair(ab=LinkConfig(delay=0.01), sender=sender, receiver=receiver)
        link = net.link(A, B)
        net.at(1.0, lambda: setattr(link, "config", replace(link.config, delay=0.2)))
        net.run()
        delays = {round(t - sender.sent_at[seq_of(d)], 9) for t, d, _, _ in receiver.received}
        by_seq = {seq_of(d): t - sender.sent_at[seq_of(d)] for t, d, _, _ in receiver.received}
        self.assertEqual(delays, {0.01, 0.2})
        self.assertAlmostEqual(by_seq[9], 0.01)
        self.assertAlmostEqual(by_seq[10], 0.2)

    def test_datagram_without_a_link_is_unroutable(self):
        """Sending to an address no link leads to drops the datagram, counted on the
        network; so does a link whose far end nobody owns."""
        sender = Sender(A, ("203.0.113.1", 9), 3, 0.0)
        net = Network(1)
        net.attach(sender, [A])
        net.add_link(A, B)
        net.run()
        self.assertEqual(net.unroutable, 3)
        sender.remote, sender.count = B, 5
        net.run()
        self.assertEqual(net.unroutable, 5)

    def test_misuse_is_a_configuration_error(self):
        """Duplicate links or addresses, unknown links and scheduling in the past are
        ConfigurationErrors."""
        net = Network(1)
        net.attach(Receiver(), [A])
        net.add_link(A, B)
        self.assertRaises(ConfigurationError, net.add_link, B, A)
        self.assertRaises(ConfigurationError, net.attach, Receiver(), [A])
        self.assertRaises(ConfigurationError, net.link, A, A_NEW)
        net.run(until=1.0)
        self.assertRaises(ConfigurationError, net.at, 0.5, lambda: None)


class RebindingTests(SynchronousTestCase):
    """NAT rebinding of a host's address."""

    def test_rebinding_changes_the_source_seen_by_the_peer_and_replies_still_arrive(self):
        """After ``rebind(A, A_NEW, at=1)`` the echo server sees datagrams from A_NEW and
        its replies to A_NEW reach the client at A; replies still addressed to A are
        unroutable, and the new links copy the old configs."""
        client, server = Sender(A, B, 200, 0.01, start=0.005), Receiver(echo=True)
        config = LinkConfig(delay=0.02, loss=0.0, jitter=0.001)
        net = pair(ab=config, ba=replace(config, delay=0.03), sender=client, receiver=server)
        net.rebind(A, A_NEW, at=1.0)
        net.run()
        seen = [(client.sent_at[seq_of(d)] >= 1.0, r) for _, d, _, r in server.received]
        self.assertEqual(set(seen), {(False, A), (True, A_NEW)})
        self.assertEqual({(local, remote) for _, _, local, remote in client.received}, {(A, B)})
        self.assertEqual(len(server.received), 200)
        self.assertEqual(len(client.received) + net.unroutable, 200)
        self.assertGreater(net.unroutable, 0)
        self.assertEqual(net.link(A_NEW, B).config, net.link(A, B).config)
        self.assertEqual(net.link(B, A_NEW).config.delay, 0.03)
        self.assertEqual(net.stats()[(A_NEW, B)].delivered, len(
            [r for _, _, _, r in server.received if r == A_NEW]))

    def test_rebinding_twice_follows_the_latest_address(self):
        """A second rebinding moves the host again: the peer sees the newest address and
        the intermediate one is no longer reachable."""
        newest = ("198.51.100.1", 50000)
        client, server = Sender(A, B, 300, 0.01, start=0.005), Receiver(echo=True)
        net = pair(sender=client, receiver=server)
        net.rebind(A, A_NEW, at=1.0)
        net.rebind(A_NEW, newest, at=2.0)
        net.run()
        expected = {A if t < 1.0 else A_NEW if t < 2.0 else newest for t in client.sent_at}
        self.assertEqual({r for _, _, _, r in server.received}, expected)
        self.assertEqual(len(server.received), 300)
        self.assertEqual(len(client.received) + net.unroutable, 300)

    def test_rebinding_an_unknown_address_is_refused(self):
        """Rebinding an address no host is reachable at is a ConfigurationError."""
        net = Network(1)
        self.assertRaises(ConfigurationError, net.rebind, A, A_NEW)


class DeterminismTests(SynchronousTestCase):
    """Runs depend on the seed and nothing else."""

    def traced_run(self, seed):
        trace = []
        sender, receiver = Sender(A, B, 2000, 0.0005, size=600), Receiver(echo=True)
        config = LinkConfig(delay=0.01, rate_bps=8e6, queue_bytes=6000, loss=0.05,
                            reorder=0.05, duplicate=0.05, corrupt=0.05, jitter=0.002)
        net = pair(seed=seed, ab=config, ba=config, sender=sender, receiver=receiver)
        net.trace = lambda *event: trace.append(event)
        net.run()
        return trace, [(t, d) for t, d, _, _ in receiver.received], net.stats()

    def test_same_seed_gives_an_identical_trace(self):
        """Two runs with the same seed produce the same trace and the same arrivals."""
        self.assertEqual(self.traced_run(42)[:2], self.traced_run(42)[:2])

    def test_different_seeds_give_different_traces(self):
        """Changing the seed changes the random draws, hence the trace."""
        self.assertNotEqual(self.traced_run(42)[0], self.traced_run(43)[0])

    def test_trace_reports_sends_losses_and_deliveries(self):
        """The trace has one event per send, loss and delivery, agreeing with the
        counters of each link."""
        trace, _, stats = self.traced_run(1)
        for key, link_stats in stats.items():
            for event in ("sent", "delivered", "lost_random", "lost_queue"):
                traced = [e for e in trace if (e[1], e[2]) == key and e[4] == event]
                self.assertEqual(len(traced), getattr(link_stats, event))
                self.assertGreater(len(traced), 0)


class DeadlineTests(SynchronousTestCase):
    """Host deadlines, ``until``/``stop`` and the livelock guard."""

    def test_deadlines_fire_at_their_simulated_times(self):
        """Each deadline is handled exactly at its time, and ``now`` follows."""
        host = Timers([0.5, 1.25, 3.0])
        net = Network(1)
        net.attach(host, [A])
        self.assertEqual(net.run(), StopReason.IDLE)
        self.assertEqual(host.fired, [0.5, 1.25, 3.0])
        self.assertEqual(net.now, 3.0)
        self.assertEqual(net.stalled_deadlines, 0)

    def test_run_until_stops_there_and_resumes(self):
        """``run(until=1)`` handles only what is due by then and sets ``now`` to 1; the
        next run carries on."""
        host = Timers([0.5, 1.25])
        net = Network(1)
        net.attach(host, [A])
        self.assertEqual(net.run(until=1.0), StopReason.UNTIL)
        self.assertEqual((host.fired, net.now), ([0.5], 1.0))
        net.run(until=10.0)
        self.assertEqual((host.fired, net.now), ([0.5, 1.25], 10.0))

    def test_stop_predicate_is_checked_after_each_event(self):
        """``run(stop=...)`` returns right after the event that made the predicate true."""
        sender, receiver = Sender(A, B, 100, 0.01), Receiver()
        net = pair(sender=sender, receiver=receiver)
        reason = net.run(stop=lambda: len(receiver.received) >= 7)
        self.assertEqual((reason, len(receiver.received)), (StopReason.STOP, 7))

    def test_past_deadline_fires_once_at_the_current_time(self):
        """A deadline already in the past is handled once, at ``now``, not back in time."""
        host = Timers([0.5])
        net = Network(1)
        net.at(2.0, lambda: None)
        net.attach(Receiver(), [B])
        net.run(until=2.0)
        net.attach(host, [A])
        net.run()
        self.assertEqual(host.fired, [2.0])

    def test_livelock_guard_defers_a_host_stuck_on_one_deadline(self):
        """A host that keeps asking for the same past deadline is called once per
        distinct time, EPSILON apart, each deferral counted, and the run still ends."""
        host = Timers(stuck_at=0.0)
        net = Network(1)
        net.attach(host, [A])
        self.assertEqual(net.run(until=100 * EPSILON), StopReason.UNTIL)
        self.assertEqual(len(host.fired), len(set(host.fired)))
        self.assertAlmostEqual(host.fired[1] - host.fired[0], EPSILON)
        self.assertIn(len(host.fired), (100, 101))
        self.assertEqual(net.stalled_deadlines, len(host.fired) - 1)

    def test_max_events_bounds_a_run(self):
        """``max_events`` stops a run that would go on for ever."""
        net = Network(1)
        net.attach(Timers(stuck_at=0.0), [A])
        self.assertEqual(net.run(max_events=50), StopReason.MAX_EVENTS)
        self.assertEqual(net.stalled_deadlines, 49)
