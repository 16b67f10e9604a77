"""
The bandwidth shaper (:mod:`kwik_twisted.core.qos.shaper`) and the send queue's use of it: the
token buckets, guaranteed streams served first within their level under strict priority, capped
streams parked out of the queues, the admission of guarantees, the stream manager's bookkeeping
(``qos_streams``, ``max_rate``), the enforcer's routes, the SHAPER timer, the bounds, and two runs
in simulated time (a 4 Mbit/s guarantee among bulk streams, a 2 Mbit/s cap).
"""

from __future__ import annotations

import math

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.config import ConnectionConfig
from kwik_twisted.core.connection import Connection
from kwik_twisted.core.dispatcher import ServerDispatcher
from kwik_twisted.core.entropy import SeededEntropy
from kwik_twisted.core.qos.shaper import (
    BURST_MIN,
    RATE_WINDOW,
    WAKE_BYTES,
    burst_of,
    check_rate,
)
from kwik_twisted.core.streams.manager import StreamManager
from kwik_twisted.core.timers import TimerKind, timers
from kwik_twisted.errors import ConfigurationError
from kwik_twisted.events import StreamDataReceived
from kwik_twisted.testing import LinkConfig, Network
from kwik_twisted.testing.pair import MemoryPair, client_config, server_config
from kwik_twisted.testing.transfer import _Client, _Server
from kwik_twisted.wire import QosPolicy, ResetStreamFrame, StreamFrame

#: 800 kbit/s: 100,000 bytes per second, a round figure for the buckets.
KBPS_800 = QosPolicy(min_bandwidth_kbps=800)


def manager(is_client: bool = True) -> StreamManager:
    """A stream manager with the default configuration."""
    return StreamManager(is_client=is_client, emit=lambda event: None, config=ConnectionConfig())


def frames(streams: StreamManager, count: int, path_id: int = 0) -> list[int]:
    """The stream IDs of up to ``count`` frames of at most 1000 bytes taken now."""
    out = []
    for _ in range(count):
        got = streams.next_stream_frame(1000, path_id)
        if got is None:
            break
        out.append(got[0].stream_id)
    return out


class BucketTests(SynchronousTestCase):
    """The token buckets and the figures derived from them."""

    def test_check_rate_takes_positive_numbers_and_none(self) -> None:
        """None (no cap) and positive finite numbers pass, as floats; zero, negatives, NaN,
        infinity, booleans and strings raise ConfigurationError (a ValueError)."""
        self.assertIsNone(check_rate(None))
        self.assertEqual(check_rate(2_000_000), 2e6)
        self.assertIsInstance(check_rate(5), float)
        for bad in (0, -1, -0.5, math.nan, math.inf, True, "fast", [1]):
            self.assertRaises(ConfigurationError, check_rate, bad)
        self.assertTrue(issubclass(ConfigurationError, ValueError))

    def test_burst_is_sixteen_kib_or_fifty_milliseconds(self) -> None:
        """A bucket's burst: BURST_MIN below 327,680 bytes/s, 50 ms of the rate above."""
        self.assertEqual(burst_of(1000.0), BURST_MIN)
        self.assertEqual(burst_of(1_000_000.0), 50_000)

    def test_cap_bucket_refills_at_its_rate_up_to_its_burst(self) -> None:
        """A stream capped at 800 kbit/s (100 kB/s) starts with a full burst; spent past zero it
        may not send until its rate refilled it; idle, it never holds more than its burst."""
        streams = manager()
        sid = streams.open(max_rate=800_000)
        shaper = streams.send_queue.shaper
        entry = streams.streams[sid].shaping
        self.assertEqual(entry.tokens, BURST_MIN)
        shaper.charge(entry, BURST_MIN + 1000, 0.0)
        self.assertAlmostEqual(entry.tokens, -1000)
        self.assertFalse(shaper.may_send(entry, 0.005))  # -500
        self.assertTrue(shaper.may_send(entry, 0.02))  # +1000
        self.assertTrue(shaper.may_send(entry, 100.0))
        self.assertEqual(entry.tokens, BURST_MIN)

    def test_guarantee_credit_is_floored_at_minus_its_burst(self) -> None:
        """Fair sharing serving a guaranteed stream far above its rate leaves it at most one
        burst in debt: its guarantee is back within BURST_TIME."""
        streams = manager()
        sid = streams.open(qos=KBPS_800)
        shaper = streams.send_queue.shaper
        entry = streams.streams[sid].shaping
        self.assertEqual(entry.guarantee, 100_000)
        shaper.charge(entry, 10_000_000, 0.0)
        self.assertEqual(entry.credit, -BURST_MIN)
        shaper.charge(entry, 0, 0.2)
        self.assertGreater(entry.credit, 0)

    def test_measured_rate_over_the_last_second(self) -> None:
        """12.5 kB charged every 10 ms reads 10 Mbit/s (within 2 %) once a window has passed, and
        nothing two windows after the last charge; an untracked stream reads 0."""
        streams = manager()
        sid = streams.open(qos=KBPS_800)
        shaper = streams.send_queue.shaper
        entry = streams.streams[sid].shaping
        for step in range(401):
            shaper.charge(entry, 12_500, step / 100)
            if step in (150, 300, 333, 399):
                self.assertLess(abs(shaper.rate(sid, now=step / 100) / 10e6 - 1.0), 0.02)
        self.assertLess(shaper.rate(sid, now=4.5), 6e6)  # the last second, half of it idle
        self.assertEqual(shaper.rate(sid, now=4.0 + 2 * RATE_WINDOW), 0.0)
        self.assertEqual(shaper.rate(sid + 4, now=3.0), 0.0)


class GuaranteeOrderTests(SynchronousTestCase):
    """Within a level, the guaranteed streams with credit go before the round-robin."""

    def test_a_guaranteed_stream_goes_first_until_its_credit_is_spent(self) -> None:
        """A bulk stream queued first and a guaranteed one (100 kB/s, 16 KiB of credit): the
        guaranteed stream takes the first 17 frames (16,384 bytes and one past), then the two
        alternate (two more frames of it: 2,616 bytes in debt); 100 ms later (10 kB more credit)
        it goes first again, for 8 frames."""
        streams = manager()
        bulk = streams.open()
        rated = streams.open(qos=KBPS_800)
        streams.write(bulk, b"b" * 60_000)
        streams.write(rated, b"r" * 60_000)
        got = frames(streams, 21)
        self.assertEqual(got[:17], [rated] * 17)
        self.assertEqual(got[17:], [bulk, rated, bulk, rated])
        streams.send_queue.now = 0.1
        self.assertEqual(frames(streams, 10), [rated] * 8 + [bulk, rated])

    def test_strict_priority_stays_above_guarantees(self) -> None:
        """A high-priority bulk stream is served entirely before a normal guaranteed one."""
        streams = manager()
        rated = streams.open(qos=KBPS_800)
        high = streams.open(priority=1)
        streams.write(rated, b"r" * 5000)
        streams.write(high, b"h" * 5000)
        self.assertEqual(frames(streams, 10), [high] * 5 + [rated] * 5)

    def test_over_subscribed_guarantees_share_by_deficit_round_robin(self) -> None:
        """Two guaranteed streams, 100 kB/s and 1 MB/s (turns worth 1,500 and 10,000 bytes, the
        unspent part carried over): while both have credit they alternate in turns, the faster
        one taking about 6.7 times the bytes."""
        streams = manager()
        slow = streams.open(qos=KBPS_800)
        fast = streams.open(qos=QosPolicy(min_bandwidth_kbps=8000))
        streams.write(slow, b"s" * 40_000)
        streams.write(fast, b"f" * 40_000)
        got = frames(streams, 23)
        self.assertEqual(got, [slow, slow] + [fast] * 10 + [slow] + [fast] * 10)

    def test_the_guarantee_goes_with_a_priority_change(self) -> None:
        """A guaranteed stream moved to high is served first there (and leaves the normal
        level's ready queue at once)."""
        streams = manager()
        bulk = streams.open(priority=1)
        rated = streams.open(qos=KBPS_800)
        streams.write(bulk, b"b" * 5000)
        streams.write(rated, b"r" * 5000)
        streams.update(rated, priority=1)
        self.assertEqual(frames(streams, 10), [rated] * 5 + [bulk] * 5)
        self.assertEqual(len(streams.send_queue.shaper.ready[0]), 0)


class CapTests(SynchronousTestCase):
    """A capped stream out of tokens is parked: skipped, not dequeued for good."""

    def setUp(self) -> None:
        self.streams = manager()
        self.queue = self.streams.send_queue
        self.capped = self.streams.open(max_rate=800_000)  # 100 kB/s, 16 KiB burst
        self.streams.write(self.capped, b"c" * 40_000)

    def test_out_of_tokens_it_is_parked_and_there_is_no_data(self) -> None:
        """After its burst (17 frames) the capped stream is parked: no frame, ``has_data``
        False (it stays counted as queued); the SHAPER wake-up is when its bucket holds
        WAKE_BYTES; at that time it is back and sends one frame."""
        self.assertEqual(frames(self.streams, 30), [self.capped] * 17)
        self.assertFalse(self.streams.has_data)
        self.assertTrue(self.streams.streams[self.capped].queued)
        wake = self.queue.shaper.next_refill()
        self.assertAlmostEqual(wake, (WAKE_BYTES + 616) / 100_000)
        self.queue.now = wake - 1e-4
        self.assertFalse(self.streams.has_data)
        self.queue.now = wake
        self.assertTrue(self.streams.has_data)
        self.assertEqual(frames(self.streams, 5), [self.capped] * 2)

    def test_a_parked_stream_does_not_hold_back_the_others(self) -> None:
        """Next to a parked stream, an uncapped one gets every frame."""
        free = self.streams.open()
        self.streams.write(free, b"f" * 20_000)
        self.assertEqual(frames(self.streams, 40), [self.capped, free] * 17 + [free] * 3)

    def test_writing_to_a_parked_stream_queues_it_once(self) -> None:
        """A write while parked does not put the stream back (it is released once, by time)."""
        frames(self.streams, 30)
        self.streams.write(self.capped, b"more")
        self.assertFalse(self.streams.has_data)
        self.queue.now = 1.0
        self.assertEqual(sum(map(len, self.queue.queues)), 1)

    def test_lifting_or_raising_the_cap_unparks_at_once(self) -> None:
        """``update(max_rate=None)`` puts a parked stream back at once, and it is no longer
        tracked; a higher cap puts it back too, and with its debt unchanged it parks again, to
        wake sooner (1,816 bytes at 1 MB/s instead of 100 kB/s)."""
        frames(self.streams, 30)
        self.streams.update(self.capped, max_rate=None)
        self.assertTrue(self.streams.has_data)
        self.assertFalse(self.queue.shaper.active)
        self.assertEqual(len(frames(self.streams, 30)), 23)
        self.streams.update(self.capped, max_rate=800_000)
        self.streams.write(self.capped, b"c" * 40_000)
        frames(self.streams, 30)
        self.streams.update(self.capped, max_rate=8_000_000)
        self.assertTrue(self.streams.has_data)
        self.assertEqual(frames(self.streams, 5), [])
        self.assertAlmostEqual(self.queue.shaper.next_refill(), (WAKE_BYTES + 616) / 1e6)

    def test_a_priority_change_while_parked_takes_effect_on_release(self) -> None:
        """A parked stream raised to critical comes back in the critical queue."""
        frames(self.streams, 30)
        self.streams.update(self.capped, priority=2)
        self.assertFalse(self.streams.has_data)
        self.queue.now = 1.0
        self.assertEqual([len(q) for q in self.queue.queues], [0, 0, 1])


class RouteTests(SynchronousTestCase):
    """The QoS enforcer's routes reuse the pinning: the application's pin wins."""

    def setUp(self) -> None:
        self.streams = manager()
        self.queue = self.streams.send_queue
        self.queue.usable = frozenset({0, 1})
        self.sid = self.streams.open()
        self.stream = self.streams.streams[self.sid]
        self.streams.write(self.sid, b"x" * 3000)

    def test_a_routed_stream_goes_only_on_its_route(self) -> None:
        """Routed on path 1, the stream is not served on path 0 while path 1 is usable, and is
        served on path 1; ``paths`` is the route, the view's ``paths`` (the pin) stays None."""
        self.queue.route(self.stream, frozenset({1}))
        self.assertEqual(self.stream.paths, frozenset({1}))
        self.assertIsNone(self.streams.view(self.sid).paths)
        self.assertEqual(frames(self.streams, 5, path_id=0), [])
        self.assertEqual(frames(self.streams, 5, path_id=1), [self.sid] * 3)

    def test_the_route_applies_only_while_a_route_path_is_usable(self) -> None:
        """With path 1 unusable, the routed stream goes on path 0."""
        self.queue.route(self.stream, frozenset({1}))
        self.queue.usable = frozenset({0})
        self.assertEqual(frames(self.streams, 5, path_id=0), [self.sid] * 3)

    def test_the_pin_wins_over_the_route(self) -> None:
        """Pinned to path 0 and routed on path 1, the stream goes on path 0; unpinned, the route
        is in force again."""
        self.streams.update(self.sid, paths=frozenset({0}))
        self.queue.route(self.stream, frozenset({1}))
        self.assertEqual(self.stream.paths, frozenset({0}))
        self.assertEqual(self.streams.view(self.sid).paths, (0,))
        self.assertEqual(frames(self.streams, 1, path_id=1), [])
        self.streams.update(self.sid, paths=None)
        self.assertEqual(self.stream.paths, frozenset({1}))
        self.assertEqual(frames(self.streams, 1, path_id=0), [])

    def test_clearing_the_route_releases_the_stream(self) -> None:
        """A route set to None lifts the restriction: no stream is pinned any more."""
        self.queue.route(self.stream, frozenset({1}))
        self.queue.route(self.stream, None)
        self.assertIsNone(self.stream.paths)
        self.assertFalse(self.queue.pinned)
        self.assertEqual(frames(self.streams, 5, path_id=0), [self.sid] * 3)


class ManagerTests(SynchronousTestCase):
    """The stream manager keeps the shaper and ``qos_streams`` in step with the policies."""

    def test_qos_streams_follow_the_policy_in_force(self) -> None:
        """Opened with a policy: in ``qos_streams`` and tracked; withdrawn: out of both; set
        again: back; a stream without one is never in."""
        streams = manager()
        sid = streams.open(qos=KBPS_800)
        plain = streams.open()
        stream = streams.streams[sid]
        self.assertEqual(streams.qos_streams, {stream})
        self.assertIsNotNone(stream.shaping)
        streams.update(sid, qos=None)
        self.assertEqual(streams.qos_streams, set())
        self.assertIsNone(stream.shaping)
        streams.update(sid, qos=QosPolicy(max_latency_ms=40))
        self.assertEqual(streams.qos_streams, {stream})
        self.assertEqual(stream.shaping.guarantee, 0)
        self.assertIsNone(streams.streams[plain].shaping)

    def test_a_closed_stream_leaves_qos_streams_and_the_shaper(self) -> None:
        """Once both directions are reset (and ours acknowledged) the stream closes: it is out
        of ``qos_streams`` and the shaper holds nothing of it."""
        streams = manager()
        sid = streams.open(qos=KBPS_800, max_rate=1e6)
        streams.reset(sid, 0)
        streams.on_control_acked(ResetStreamFrame(sid, 0, 0))
        streams.on_reset_stream(ResetStreamFrame(sid, 0, 0), now=0.0)
        self.assertNotIn(sid, streams.streams)
        self.assertEqual(streams.qos_streams, set())
        self.assertFalse(streams.send_queue.shaper.entries)
        self.assertEqual(streams.send_queue.shaper.guaranteed, 0)

    def test_the_peers_policy_is_tracked_on_its_stream(self) -> None:
        """A peer stream whose first frame carries a QOS extension is in ``qos_streams`` with
        the peer's guarantee; a later all-zero extension withdraws it."""
        server = manager(is_client=False)
        qos = QosPolicy(min_bandwidth_kbps=2000)
        server.on_stream_frame(
            StreamFrame(0, 0, b"hi", False, 0, True, False, False, False, qos), now=0.0
        )
        stream = server.streams[0]
        self.assertEqual(server.qos_streams, {stream})
        self.assertEqual(stream.shaping.guarantee, 250_000)
        server.on_stream_frame(
            StreamFrame(0, 2, b"!", False, 0, True, False, False, False, QosPolicy()), now=0.0
        )
        self.assertEqual(server.qos_streams, set())

    def test_max_rate_is_checked_and_read_back(self) -> None:
        """``open``/``update`` take a positive ``max_rate`` (bits/s; the view reads it back),
        None lifts it, anything else raises ConfigurationError and changes nothing."""
        streams = manager()
        self.assertRaises(ConfigurationError, streams.open, max_rate=0)
        sid = streams.open(max_rate=2e6)
        self.assertEqual(streams.view(sid).max_rate, 2e6)
        self.assertEqual(streams.streams[sid].shaping.cap, 250_000)
        for bad in (-1, math.nan, math.inf, True, "fast"):
            self.assertRaises(ConfigurationError, streams.update, sid, max_rate=bad)
        self.assertEqual(streams.view(sid).max_rate, 2e6)
        streams.update(sid, max_rate=None)
        self.assertIsNone(streams.view(sid).max_rate)
        self.assertFalse(streams.send_queue.shaper.active)


class TimerTests(SynchronousTestCase):
    """The SHAPER timer wakes the connection when a parked stream may send again."""

    def test_a_parked_stream_arms_the_shaper_timer(self) -> None:
        """A stream capped at 800 kbit/s (100 kB/s) on an in-memory pair sends its burst and
        parks; the connection's timers include SHAPER at the shaper's next refill; 100 ms later
        (the timers firing) it sent 10 kB more, within a datagram."""
        pair = MemoryPair().handshake()
        client = pair.client
        sid = client.open_stream()
        client.streams.update(sid, max_rate=800_000)
        client.send_stream_data(sid, b"x" * 100_000)
        pair.pump()
        sent = client.streams.streams[sid].send.sent_offset
        self.assertLess(abs(sent - BURST_MIN), 1400)
        wake = client.streams.send_queue.shaper.next_refill()
        self.assertIsNotNone(wake)
        armed = {kind: deadline for kind, _path, deadline in timers(client, now=pair.now)}
        self.assertEqual(armed[TimerKind.SHAPER], wake)
        self.assertLessEqual(client.next_deadline(), wake)
        pair.advance(0.1)
        more = client.streams.streams[sid].send.sent_offset - sent
        self.assertLess(abs(more - 10_000), 1400)


class BoundTests(SynchronousTestCase):
    """What a peer (or a busy application) can make the shaper hold stays bounded."""

    def test_a_policy_toggled_many_times_leaves_bounded_state(self) -> None:
        """A peer flipping its guarantee on and off on every frame, 10,000 times, on a stream we
        keep queued: the ready queues and heaps hold a bounded number of entries."""
        server = manager(is_client=False)
        on, off = QosPolicy(min_bandwidth_kbps=800), QosPolicy()
        server.on_stream_frame(
            StreamFrame(0, 0, b"", False, 0, True, False, False, False, on), now=0.0
        )
        server.write(0, b"x" * 100_000)
        shaper = server.send_queue.shaper
        for i in range(10_000):
            policy = off if i % 2 else on
            frame = StreamFrame(0, 0, b"", False, 0, True, False, False, False, policy)
            server.on_stream_frame(frame, now=0.0)
            if i % 7 == 0:
                server.next_stream_frame(1000)
        held = sum(map(len, shaper.ready)) + len(shaper._parked) + len(shaper._waits)
        self.assertLess(held, 100)

    def test_many_closed_streams_leave_nothing_behind(self) -> None:
        """2,000 capped, guaranteed streams that parked and waited, then forgotten: the shaper
        holds a bounded number of stale entries and no live one."""
        streams = manager()
        streams.local_limit = 10_000
        queue = streams.send_queue
        for _ in range(2000):
            sid = streams.open(qos=KBPS_800, max_rate=800_000)
            stream = streams.streams[sid]
            streams.write(sid, b"x" * 20_000)
            frames(streams, 20)
            del streams.streams[sid]
            queue.forget(stream)
        shaper = queue.shaper
        self.assertFalse(shaper.entries)
        held = sum(map(len, shaper.ready)) + len(shaper._parked) + len(shaper._waits)
        self.assertLess(held, 100)


class AdmissionTests(SynchronousTestCase):
    """Guarantees admitted by priority then registration within 95 % of the capacity."""

    def test_guarantees_past_the_capacity_are_returned(self) -> None:
        """On 10 Mbit/s (1.25 MB/s), two 4 Mbit/s guarantees fit; a third does not and is
        returned with its bound (bits/s) and what it is getting."""
        streams = manager()
        policy = QosPolicy(min_bandwidth_kbps=4000)
        first, second = streams.open(qos=policy), streams.open(qos=policy)
        shaper = streams.send_queue.shaper
        self.assertEqual(shaper.admission(1.25e6, now=0.0), [])
        third = streams.open(qos=policy)
        shaper.charge(streams.streams[third].shaping, 50_000, 0.5)
        [(sid, measured, bound)] = shaper.admission(1.25e6, now=1.0)
        self.assertEqual((sid, bound), (third, 4e6))
        self.assertAlmostEqual(measured, 400_000)
        self.assertEqual({first, second} & {sid}, set())

    def test_priority_first_then_age_and_none_after_the_first_refused(self) -> None:
        """A critical 6 Mbit/s guarantee opened last is admitted first; the older normal 4
        Mbit/s ones then do not fit (10 > 9.5 Mbit/s), nor the 1 Mbit/s one after them."""
        streams = manager()
        older = streams.open(qos=QosPolicy(min_bandwidth_kbps=4000))
        small = streams.open(qos=QosPolicy(min_bandwidth_kbps=1000))
        critical = streams.open(priority=2, qos=QosPolicy(min_bandwidth_kbps=6000))
        refused = [sid for sid, _m, _b in streams.send_queue.shaper.admission(1.25e6, now=0.0)]
        self.assertEqual(refused, [older, small])
        self.assertNotIn(critical, refused)


# -- simulated time ------------------------------------------------------------------------------

SERVER, CLIENT = ("10.0.0.1", 4433), ("10.1.0.1", 5000)


def run_link(
    *,
    bulk: int,
    rated: QosPolicy | None = None,
    offered: float = 0.0,
    cap: float | None = None,
    until: float = 8.0,
    start: float = 3.0,
) -> dict[int, float]:
    """
    One 10 Mbit/s path (15 ms each way, a one-BDP queue): ``bulk`` streams with more data than
    the run can carry (the first capped at ``cap`` bits/s if given), and, with ``offered``, one
    more stream (policy ``rated``) written ``offered`` bits/s in 10 ms chunks.  Returns each
    stream's goodput at the receiver over ``[start, until]``, bits per second, by stream ID.
    """
    network = Network(1)
    link = LinkConfig(delay=0.015, rate_bps=10e6, queue_bytes=37_500)
    network.add_link(CLIENT, SERVER, ab=link, ba=link)
    received: dict[int, int] = {}

    def on_server(conn, event) -> None:
        if isinstance(event, StreamDataReceived) and network.now >= start:
            received[event.stream_id] = received.get(event.stream_id, 0) + len(event.data)

    dispatcher = ServerDispatcher(server_config(), entropy=SeededEntropy(11))
    network.attach(_Server(dispatcher, on_server), [SERVER])
    client = Connection.client(
        client_config(), local_addr=CLIENT, remote_addr=SERVER, entropy=SeededEntropy(12), now=0.0
    )
    network.attach(_Client(client, lambda c, e: None), [CLIENT])
    for i in range(bulk):
        sid = client.open_stream()
        client.send_stream_data(sid, bytes(20_000_000))
        if i == 0 and cap is not None:
            client.streams.update(sid, max_rate=cap)
    if offered:
        sid = client.open_stream(qos=rated)
        chunk = int(offered / 8 * 0.01)

        def write() -> None:
            client.send_stream_data(sid, bytes(chunk))
            network.at(network.now + 0.01, write)

        network.at(0.1, write)
    network.run(until=until)
    return {sid: count * 8 / (until - start) for sid, count in received.items()}


class SimulatedTests(SynchronousTestCase):
    """Issue 15's shaping acceptance, in simulated time (deterministic figures)."""

    def test_a_guarantee_among_four_bulk_streams(self) -> None:
        """Four bulk streams and one offering 4 Mbit/s with min_bandwidth 4 Mbit/s on 10 Mbit/s:
        it receives at least 3.9 Mbit/s, the bulk streams share the rest evenly."""
        rates = run_link(bulk=4, rated=QosPolicy(min_bandwidth_kbps=4000), offered=4e6)
        self.assertGreaterEqual(rates[16], 3.9e6)
        bulk = [rates[sid] for sid in (0, 4, 8, 12)]
        self.assertGreater(sum(bulk) + rates[16], 9e6)
        self.assertLess(max(bulk) - min(bulk), 0.05e6)

    def test_without_the_guarantee_it_gets_a_fair_share(self) -> None:
        """The same stream without a policy gets about a fifth of the link: about 2 Mbit/s."""
        rates = run_link(bulk=4, offered=4e6)
        self.assertLess(abs(rates[16] / 1.9e6 - 1.0), 0.1)

    def test_a_capped_bulk_stream_and_one_taking_the_rest(self) -> None:
        """A bulk stream capped at 2 Mbit/s gets 2 Mbit/s (+-10 %), the other bulk stream the
        rest of the link."""
        rates = run_link(bulk=2, cap=2e6)
        self.assertLess(abs(rates[0] / 2e6 - 1.0), 0.1)
        self.assertGreater(rates[4], 7e6)
