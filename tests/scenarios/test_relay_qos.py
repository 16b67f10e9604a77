"""
Issue 15, acceptance 8: QoS scenario 1 (latency), scaled, over real loopback sockets through the
project's impairment relay.

Theory of operation.  The simulated scenario (:func:`kwik_twisted.testing.qos.scenario_latency`)
has two paths of 10 Mbit/s at 10 ms and 25 ms one way with 100 ms drop-tail queues, a bulk
stream saturating both and an interactive stream of 200-byte messages every 20 ms whose policy
is ``QoSPolicy(max_latency=0.04)``.  Here the same traffic crosses real UDP sockets: a Kwik server
on 127.0.0.1 behind two :class:`~kwik_twisted.testing.relay.Relay`\\ s, one per path, each
limiting the client-to-server direction to :data:`RATE` with a drop-tail queue of
:data:`QUEUE_TIME` at that rate, and delaying both directions by the path's one-way delay
(:data:`DELAYS`); the server-to-client direction (acknowledgements) is not rate limited, as in
the simulation.  The client's handshake path (path 0) is the 10 ms one, from 127.0.0.1; its
second path, from 127.0.0.2, the 25 ms one.  Client, server and both relays share one process
and one reactor: 4 Mbit/s per path costs that process about a quarter of a core (2.0-2.3 s of
CPU in the 8 s window), which leaves room on a shared 2-core machine.

Once both paths are validated the client opens the bulk stream (through the endpoint, without a
policy), which a pull producer keeps full, and the interactive stream (``openStream`` with the
policy, or without one for the baseline), which a timer writes a message to every
:data:`INTERVAL`.  Each message carries its sequence number and its write time
(``reactor.seconds()``); the server, in the same process and on the same clock, takes the arrival
of its last byte at the application less the write time as its one-way delay.  The delays are
those of the messages written in the measured window (:data:`WARMUP` after the flows start, for
:data:`MEASURE` seconds); a message that never arrives counts as infinitely late.  Bulk goodput is
what the server application got in the window.

Figures (4 Mbit/s per path, a 2-core machine that other test runs kept at a load of 3-6; the
process waited 0.5-1.5 s of the 8 s window for a CPU and used 2.0-2.3 s of one):

* QoS on, 4 runs on a quiet machine: interactive p50 27 ms, p99 30.7-31.6 ms, max 31.3-38.7 ms
  over 400 messages, none lost; bulk 93-94% of the two rates (path 0 at 100% of its rate, path 1
  at 97-99%); 0-2 reroutes of the interactive stream.  The simulator on the same 4 Mbit/s paths:
  p99 29.2 ms, bulk 94.3%.  (Before the fallback path probed for capacity, path 1 carried 30-46%
  of its rate and bulk got 61-68%: see the cap in kwik_twisted/core/qos/enforcer.py.)
* QoS off (:meth:`RelayQoSTests.test_without_policy`), 7 runs: p99 125-224 ms (the 100 ms queues
  fill; the long tails are messages caught in a queue drop and resent), bulk 93-95%.  The
  simulator: 126.7 ms, 94%.

Where the noise comes from.  The reactor runs 4-17 ms late a few hundred times per run, and
almost always while the process had no CPU (its thread time over the late interval is a fraction
of the wall time): the other processes on the machine, not the relays' or Kwik's own work
(GC pauses stayed under 1.3 ms).  With two more CPU-bound processes on the machine the process
waits 3.5-5 s of the 8 s for a CPU and the run breaks down: p99 58-85 ms, bulk 32-46%, 11-32
reroutes, because scheduling delays look like queueing to the QoS enforcer, which then moves the
interactive stream between the paths and shrinks the caps.  So a failing run in which the
process waited :data:`STARVED_SHARE` of the window for a CPU (Linux: ``schedstat``) is skipped, not
failed.  The late messages of unstarved runs come in bursts when the enforcer moves the
interactive stream to path 1 and back (``qos_reroutes``): path 0's prediction (propagation, the
cap's queue target of about 10 ms, the detector's forecast, our send queue) sits a few
milliseconds under the 36 ms limit, so a late sample tips it.

The bulk share is asserted at :data:`BULK_SHARE` (85%).  Before the fallback path probed for
capacity it was 61-68%: a cap-limited path delivers only what its cap lets through, and with an
RTT inflated by ACK aggregation its estimate (and so its cap) sank round after round.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import connectProtocol
from twisted.internet.interfaces import IPullProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface import implementer

from kwik_twisted.core.paths.path import PathPhase
from kwik_twisted.endpoints import KwikClientEndpoint, KwikServerEndpoint, closeClientConnections
from kwik_twisted.streams import QoSPolicy
from kwik_twisted.testing.links import LinkConfig
from kwik_twisted.testing.pair import client_config, server_config
from kwik_twisted.testing.relay import Relay
from tests.polling import until
from tests.scenarios.test_relay_multipath import SECOND_LOCAL, second_address_usable
from tests.scenarios.test_relay_scenarios import CONNECT_TIMEOUT, IDLE_TIMEOUT, slow

#: Each path's client-to-server rate, bits per second.
RATE = 4e6
#: Each path's one-way delay, both directions: path 0 (the handshake's), path 1.
DELAYS = (0.010, 0.025)
#: Each path's drop-tail queue, in seconds at :data:`RATE`.
QUEUE_TIME = 0.100
#: The interactive stream's policy.
POLICY = QoSPolicy(max_latency=0.040)
#: The interactive messages: size in bytes and period in seconds.
MESSAGE = 200
INTERVAL = 0.020
#: Seconds from the flows' start to the measured window, and the window's length.
WARMUP = 2.0
MEASURE = 8.0
#: Seconds a message written at the window's end may take before it counts as lost.
GRACE = 0.5
#: The acceptance bound on the interactive p99: the policy's 40 ms plus 5 ms.
P99_BOUND = 0.045
#: The least bulk goodput with QoS, as a share of the two paths' rates (see the module docstring).
BULK_SHARE = 0.85
#: The least interactive p99 without the policy: the bulk stream keeps the queues long.
BASELINE_P99 = 0.080
#: A run in which the process waited this share of the window for a CPU measured the host, not
#: Kwik: a failing assertion then skips the test instead (see the module docstring).
STARVED_SHARE = 0.25
#: Where Linux keeps a thread's CPU time and run-queue wait (nanoseconds), if it does.
SCHEDSTAT = "/proc/thread-self/schedstat"
#: Bytes the bulk producer writes at a time.
BULK_CHUNK = 16 * 1024
#: The flows' tags, the first byte of each stream.
BULK, INTERACTIVE = b"B", b"I"
#: The head of every interactive message: its sequence number and its write time.
HEADER = struct.Struct("!Id")


def runqueue_wait() -> float | None:
    """Seconds this thread has waited on a run queue for a CPU so far, or ``None`` where the
    kernel does not say (:data:`SCHEDSTAT`)."""
    try:
        with open(SCHEDSTAT) as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0..100) of ``values``, nearest rank; ``nan`` when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


class Sink(Protocol):
    """The server side of one stream: the first byte says which flow it is (:data:`BULK` or
    :data:`INTERACTIVE`); bulk bytes are counted, interactive messages timed."""

    def connectionMade(self) -> None:
        self.kind = b""
        self.buffer = bytearray()

    def dataReceived(self, data: bytes) -> None:
        if not self.kind:
            self.kind, data = data[:1], data[1:]
        if self.kind == BULK:
            self.factory.bulk_bytes += len(data)
            return
        buffer = self.buffer
        buffer += data
        now = reactor.seconds()
        while len(buffer) >= MESSAGE:
            seq, written = HEADER.unpack_from(buffer)
            self.factory.delays[seq] = now - written
            del buffer[:MESSAGE]


class SinkFactory(Factory):
    """Builds :class:`Sink` protocols; holds what they measured."""

    protocol = Sink

    def __init__(self) -> None:
        self.bulk_bytes = 0
        self.delays: dict[int, float] = {}  # sequence number -> one-way delay


@implementer(IPullProducer)
class BulkSource(Protocol):
    """The bulk flow: from :meth:`begin`, a pull producer writing :data:`BULK_CHUNK` bytes each
    time the transport has room, until :meth:`stop`."""

    fill = bytes(BULK_CHUNK)
    running = False

    def begin(self) -> None:
        """Write the tag and start producing."""
        self.running = True
        self.transport.write(BULK)
        self.transport.registerProducer(self, False)

    def resumeProducing(self) -> None:
        if self.running:
            self.transport.write(self.fill)

    def stopProducing(self) -> None:
        self.running = False

    def stop(self) -> None:
        """Write no more."""
        if self.running:
            self.running = False
            self.transport.unregisterProducer()


class MessageSource(Protocol):
    """The interactive flow: a :data:`MESSAGE`-byte message every :data:`INTERVAL`, each
    starting with :data:`HEADER`; ``written`` holds their write times."""

    padding = bytes(MESSAGE - HEADER.size)

    def connectionMade(self) -> None:
        self.written: list[float] = []
        self.transport.write(INTERACTIVE)
        self.loop = task.LoopingCall(self.tick)
        self.loop.clock = reactor
        self.loop.start(INTERVAL)

    def tick(self) -> None:
        now = reactor.seconds()
        self.transport.write(HEADER.pack(len(self.written), now) + self.padding)
        self.written.append(now)

    def stop(self) -> None:
        """Write no more."""
        if self.loop.running:
            self.loop.stop()


@dataclass
class QoSRun:
    """What one run measured in the window (delays in seconds, ``inf`` for a message that never
    arrived; per path: bytes the relay delivered to the server, datagrams its queue dropped)."""

    delays: list[float] = field(default_factory=list)
    bulk_bytes: int = 0
    path_bytes: list[int] = field(default_factory=list)
    queue_drops: list[int] = field(default_factory=list)
    reroutes: int = 0
    starved: float | None = None

    @property
    def host_starved(self) -> bool:
        """Whether the process waited for a CPU for :data:`STARVED_SHARE` of the window."""
        return self.starved is not None and self.starved > STARVED_SHARE * MEASURE

    @property
    def p99(self) -> float:
        """The interactive messages' 99th percentile one-way delay."""
        return percentile(self.delays, 99)

    @property
    def lost(self) -> int:
        """Messages of the window that never arrived."""
        return sum(1 for d in self.delays if math.isinf(d))

    @property
    def bulk_share(self) -> float:
        """Bulk goodput over the sum of the paths' rates."""
        return self.bulk_bytes * 8 / MEASURE / (RATE * len(DELAYS))

    def summary(self) -> str:
        """The figures, in one line."""
        shares = [f"{b * 8 / MEASURE / RATE:.0%}" for b in self.path_bytes]
        return (f"interactive p50 {percentile(self.delays, 50) * 1e3:.1f} ms, p99 "
                f"{self.p99 * 1e3:.1f} ms, max {max(self.delays, default=math.nan) * 1e3:.1f} ms "
                f"over {len(self.delays)} messages ({self.lost} lost); bulk {self.bulk_share:.0%} "
                f"of {len(DELAYS)} x {RATE / 1e6:g} Mbit/s; paths carried {shares} of their rate, "
                f"queue drops {self.queue_drops}; QoS reroutes {self.reroutes}; waited "
                f"{'?' if self.starved is None else f'{self.starved:.2f}'} s for a CPU")


def path_link(delay: float, *, limited: bool) -> LinkConfig:
    """One direction of a path: ``delay``, and (``limited``) :data:`RATE` with its queue."""
    if not limited:
        return LinkConfig(delay=delay)
    # A real 4 Mbit/s link carries 1500-byte IP packets (1472 bytes of UDP payload): path MTU
    # discovery finds that, where a link without an MTU would let it grow datagrams to 16 KiB,
    # 33 ms of serialization each at this rate.
    return LinkConfig(delay=delay, rate_bps=RATE, queue_bytes=int(RATE * QUEUE_TIME / 8), mtu=1472)


class RelayQoSTests(TestCase):
    """Scenario 1 of issue 15 over two relayed loopback paths."""

    timeout = 60

    @defer.inlineCallbacks
    def network(self):
        """The server and one relay per path; everything closes at cleanup."""
        if not second_address_usable():
            raise SkipTest(f"cannot bind {SECOND_LOCAL} (needs a loopback that covers 127/8)")
        self.factory = SinkFactory()
        endpoint = KwikServerEndpoint(reactor, 0, config=server_config(idle_timeout=IDLE_TIMEOUT),
                                      interface="127.0.0.1")
        port = yield endpoint.listen(self.factory)
        self.addCleanup(port.stopListening)
        server = ("127.0.0.1", port.getHost().port)
        self.relays = [
            Relay(reactor, server, to_server=path_link(delay, limited=True),
                  to_client=path_link(delay, limited=False), seed=150 + i).start()
            for i, delay in enumerate(DELAYS)
        ]
        for relay in self.relays:
            self.addCleanup(relay.stop)
        self.addCleanup(closeClientConnections, reactor)

    def endpoint(self) -> KwikClientEndpoint:
        """The client: path 0 through relay 1, path 1 from :data:`SECOND_LOCAL` through relay 2."""
        first, second = (relay.address for relay in self.relays)
        return KwikClientEndpoint(reactor, "127.0.0.1", first[1],
                                  config=client_config(idle_timeout=IDLE_TIMEOUT),
                                  timeout=CONNECT_TIMEOUT, paths=[(SECOND_LOCAL, *second)])

    def counters(self) -> tuple:
        """Bulk bytes received, each relay's bytes delivered to the server and queue drops, and
        the run-queue wait so far."""
        return (self.factory.bulk_bytes,
                [relay.to_server.stats.bytes_delivered for relay in self.relays],
                [relay.to_server.stats.lost_queue for relay in self.relays], runqueue_wait())

    @defer.inlineCallbacks
    def scenario(self, policy: QoSPolicy | None):
        """Run the traffic with ``policy`` on the interactive stream; fire with a
        :class:`QoSRun`."""
        yield self.network()
        # The flows start once the handshake is done and both paths are validated, as in the
        # simulation: the bulk stream opens first but writes nothing until then.
        bulk = yield connectProtocol(self.endpoint(), BulkSource())
        conn = bulk.transport.kwikConnection
        paths = conn.core.paths
        yield until(lambda: len(paths) == len(DELAYS)
                    and all(p.phase is PathPhase.ACTIVE for p in paths.values()), 10)
        bulk.begin()
        messages = MessageSource()
        conn.openStream(messages, qos=policy)
        started = reactor.seconds()
        before = yield task.deferLater(reactor, WARMUP, self.counters)
        reroutes = conn.core.stats["qos_reroutes"]
        after = yield task.deferLater(reactor, MEASURE, self.counters)
        reroutes = conn.core.stats["qos_reroutes"] - reroutes
        yield task.deferLater(reactor, GRACE, lambda: None)
        messages.stop()
        bulk.stop()
        begin, end = started + WARMUP, started + WARMUP + MEASURE
        delays = [self.factory.delays.get(seq, math.inf)
                  for seq, written in enumerate(messages.written) if begin <= written < end]
        (bulk0, bytes0, drops0, wait0), (bulk1, bytes1, drops1, wait1) = before, after
        return QoSRun(delays, bulk1 - bulk0, [b - a for a, b in zip(bytes0, bytes1)],
                      [b - a for a, b in zip(drops0, drops1)], reroutes,
                      None if wait0 is None or wait1 is None else wait1 - wait0)

    def check(self, result: QoSRun, failures: list[str]) -> None:
        """Fail with ``failures`` (if any); skip instead when the host starved the run."""
        if not failures:
            return
        message = "; ".join(failures) + f" ({result.summary()})"
        if result.host_starved:
            raise SkipTest(f"the host starved the process, timing says nothing: {message}")
        self.fail(message)

    @defer.inlineCallbacks
    def test_interactive_p99_within_budget(self):
        """With ``max_latency=40 ms`` on the interactive stream, the p99 one-way delay of its
        messages over two real relayed paths, both saturated by a bulk stream, is within the
        budget plus 5 ms, no message is lost, and the bulk stream still gets at least 85% of
        the two paths' rates."""
        result = yield self.scenario(POLICY)
        failures = []
        if len(result.delays) < MEASURE / INTERVAL * 0.9:
            failures.append(f"only {len(result.delays)} messages written in the window")
        if result.lost:
            failures.append(f"{result.lost} messages lost")
        if not result.p99 <= P99_BOUND:
            failures.append(f"p99 {result.p99 * 1e3:.1f} ms > {P99_BOUND * 1e3:g} ms")
        if result.bulk_share < BULK_SHARE:
            failures.append(f"bulk {result.bulk_share:.0%} < {BULK_SHARE:.0%}")
        self.check(result, failures)

    @slow
    @defer.inlineCallbacks
    def test_without_policy(self):
        """The same traffic without the policy: the bulk stream fills both 100 ms queues, so the
        interactive p99 is past :data:`BASELINE_P99` (measured 125-224 ms) while the bulk stream
        gets over 90% of the two rates (measured 93-95%)."""
        result = yield self.scenario(None)
        failures = []
        if not result.p99 > BASELINE_P99:
            failures.append(f"p99 {result.p99 * 1e3:.1f} ms <= {BASELINE_P99 * 1e3:g} ms")
        if result.bulk_share < 0.90:
            failures.append(f"bulk {result.bulk_share:.0%} < 90%")
        self.check(result, failures)
