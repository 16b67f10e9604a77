"""
Stream priority, QoS, progress, path assignment and dual-stack lookup over real loopback sockets.

Servers, clients and certificates come from :class:`~kwik_twisted.testing.fixtures.KwikHarness`,
which leaves the reactor clean.  The server's protocols record what they read from their
transports (:class:`~kwik_twisted.interfaces.IKwikStreamTransport`).
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from kwik_twisted.events import PathValidated
from kwik_twisted.streams import Priority, QoSPolicy
from kwik_twisted.testing.fixtures import KwikHarness, writeCertificates
from tests.polling import until

from .fakes import FakeNameResolver
from .test_multipath_glue import Observer

POLICY = QoSPolicy(min_bandwidth=2_000_000, max_latency=0.05, max_jitter=0.01,
                   loss_threshold=0.01)
#: The same policy as endpoint-string arguments.
POLICY_ARGUMENTS = {"minBandwidth": "2M", "maxLatency": "50ms", "maxJitter": "10ms",
                    "lossThreshold": "1%"}
WAIT = 10.0
MiB = 1 << 20
#: The critical stream's transfer in the overtaking test.
URGENT = 512 * 1024


class Reader(Protocol):
    """A server stream: records its transport's priority and policy when the first bytes
    arrive, and every byte with the time it arrived at."""

    def __init__(self, server: ServerRecord) -> None:
        self.server = server
        self.count = 0
        self.seen: tuple | None = None
        self.firstAt: float | None = None
        self.doneAt: float | None = None
        self.ended = False

    def dataReceived(self, data: bytes) -> None:
        if self.seen is None:
            self.seen = (self.transport.priority, self.transport.qos)
            self.firstAt = self.server.clock()
        self.count += len(data)
        self.server.arrivals.append((self, self.count))

    def connectionLost(self, reason) -> None:
        self.ended = True


class ServerRecord(Factory):
    """Builds Readers; remembers them and the order bytes arrived in."""

    def __init__(self) -> None:
        self.readers: list[Reader] = []
        self.arrivals: list[tuple[Reader, int]] = []
        self.ticks = 0

    def clock(self) -> int:
        """A counter of arrivals (ordering, not wall time)."""
        self.ticks += 1
        return self.ticks

    def buildProtocol(self, addr) -> Reader:
        reader = Reader(self)
        self.readers.append(reader)
        return reader


class Loopback(TestCase):
    """A Kwik server on 127.0.0.1 whose streams are Readers."""

    timeout = 30

    def setUp(self) -> None:
        self.kwik = KwikHarness(reactor, writeCertificates(self.mktemp()))
        self.addCleanup(self.kwik.cleanup)
        self.server = ServerRecord()

    def readers(self, count: int) -> defer.Deferred:
        """Fire once ``count`` streams delivered bytes to the server."""
        return until(lambda: sum(r.seen is not None for r in self.server.readers) >= count,
                     WAIT)


class PriorityAndQoSTests(Loopback):
    """What a client asks for, the server's protocol reads from its transport."""

    @defer.inlineCallbacks
    def test_endpoint_strings_carry_each_priority_and_a_policy(self) -> Any:
        """For each priority, a ``kwik:`` string with ``priority=`` and the four QoS arguments
        opens a stream the server reads them from."""
        port = yield self.kwik.listen(self.server)
        for number, priority in enumerate(Priority, start=1):
            description = self.kwik.clientString(port, priority=priority.name.lower(),
                                                 **POLICY_ARGUMENTS)
            proto = yield clientFromString(reactor, description).connect(
                Factory.forProtocol(Protocol))
            self.assertIs(proto.transport.priority, priority)
            proto.transport.write(b"hello")
            yield self.readers(number)
            self.assertEqual(self.server.readers[-1].seen, (priority, POLICY))

    @defer.inlineCallbacks
    def test_open_stream_carries_each_priority_and_a_policy(self) -> Any:
        """Streams opened with ``kwikConnection.openStream`` at each priority, with a policy
        on one of them, reach the server with their own priority and policy."""
        port = yield self.kwik.listen(self.server)
        first = yield self.kwik.clientEndpoint(port).connect(Factory.forProtocol(Protocol))
        first.transport.write(b"first")
        conn = first.transport.kwikConnection
        for priority in Priority:
            qos = POLICY if priority is Priority.HIGH else None
            transport = conn.openStream(Protocol(), priority=priority, qos=qos)
            transport.write(b"more")
        yield self.readers(4)
        seen = [reader.seen for reader in self.server.readers]
        self.assertEqual(seen, [(Priority.NORMAL, None), (Priority.NORMAL, None),
                                (Priority.HIGH, POLICY), (Priority.CRITICAL, None)])

    @defer.inlineCallbacks
    def test_a_critical_stream_overtakes_a_normal_backlog(self) -> Any:
        """
        A normal stream's 2 MiB backlog is queued, then 512 KiB on a critical stream of the same
        connection: the critical data is all delivered before the normal stream has delivered
        a quarter of its backlog.  (Streams of equal priority share the connection round-robin,
        so without the priority the normal stream would have delivered about as much.)
        """
        port = yield self.kwik.listen(self.server)
        first = yield self.kwik.clientEndpoint(port).connect(Factory.forProtocol(Protocol))
        conn = first.transport.kwikConnection
        first.transport.write(b"x")
        yield self.readers(1)
        bulk = conn.openStream(Protocol())
        urgent = conn.openStream(Protocol(), priority=Priority.CRITICAL)
        bulk.write(b"b" * (2 * MiB))
        urgent.write(b"u" * URGENT)
        yield until(lambda: len(self.server.readers) == 3
                    and self.server.readers[1].count == 2 * MiB, WAIT)
        bulkReader, urgentReader = self.server.readers[1], self.server.readers[2]
        self.assertEqual(urgentReader.seen[0], Priority.CRITICAL)
        urgentDone = next(i for i, (reader, count) in enumerate(self.server.arrivals)
                          if reader is urgentReader and count == URGENT)
        bulkBefore = max((count for reader, count in self.server.arrivals[:urgentDone]
                          if reader is bulkReader), default=0)
        self.assertLess(bulkBefore, MiB // 2)


class ProgressTests(Loopback):
    """progress() over real sockets."""

    @defer.inlineCallbacks
    def test_progress_adds_up_after_a_finished_transfer(self) -> Any:
        """After 1 MiB was written, the stream closed and the protocol lost its connection,
        the client's acked == sent == written == 1 MiB, and the server delivered all of it."""
        port = yield self.kwik.listen(self.server)
        lost = defer.Deferred()

        class Sender(Protocol):
            def connectionLost(self, reason) -> None:
                lost.callback(None)

        proto = yield self.kwik.clientEndpoint(port).connect(Factory.forProtocol(Sender))
        proto.transport.write(b"p" * MiB)
        proto.transport.loseConnection()
        yield lost
        progress = proto.transport.progress()
        self.assertEqual(progress.written, MiB)
        self.assertEqual(progress.sent, MiB)
        self.assertEqual(progress.acked, MiB)
        yield until(lambda: self.server.readers[0].ended, WAIT)
        theirs = self.server.readers[0].transport.progress()
        self.assertEqual((theirs.received, theirs.delivered), (MiB, MiB))


class PathAssignmentTests(Loopback):
    """``paths=`` keeps a stream's packets on its paths, and they move when it is gone."""

    @defer.inlineCallbacks
    def connectTwoPaths(self) -> Any:
        """A client connection with paths 0 (127.0.0.1) and 1 (127.0.0.2), both validated."""
        port = yield self.kwik.listen(self.server)
        endpoint = self.kwik.clientEndpoint(port, paths=["127.0.0.2"], reuse=False)
        proto = yield endpoint.connect(Factory.forProtocol(Observer))
        yield proto.waitFor(PathValidated, 1)
        return proto.transport.kwikConnection

    @defer.inlineCallbacks
    def test_a_stream_pinned_to_a_path_keeps_its_packets_there(self) -> Any:
        """A stream opened with ``paths=[1]`` sends its 1 MiB over path 1: path 1's byte
        counter grows by at least the data, path 0's by a few packets at most (bytes, not
        packets: path MTU discovery sizes each path's datagrams)."""
        conn = yield self.connectTwoPaths()
        paths = conn.core.paths
        before = {pid: path.bytes_sent for pid, path in paths.items()}
        transport = conn.openStream(Protocol(), paths=[1])
        transport.write(b"q" * MiB)
        transport.loseWriteConnection()
        yield until(lambda: len(self.server.readers) == 2
                    and self.server.readers[1].count == MiB, WAIT)
        sent = {pid: paths[pid].bytes_sent - before[pid] for pid in (0, 1)}
        self.assertGreater(sent[1], MiB)
        self.assertLess(sent[0], sent[1] // 20)

    @defer.inlineCallbacks
    def test_a_pinned_stream_moves_when_its_path_is_abandoned(self) -> Any:
        """A stream pinned to path 1 whose path is abandoned completes its transfer over path
        0."""
        conn = yield self.connectTwoPaths()
        transport = conn.openStream(Protocol(), paths=[1])
        transport.write(b"r" * 100_000)
        yield until(lambda: len(self.server.readers) == 2, WAIT)
        before = conn.core.paths[0].bytes_sent
        conn.abandonPath(1)
        transport.write(b"s" * MiB)
        transport.loseWriteConnection()
        yield until(lambda: self.server.readers[1].count == MiB + 100_000, WAIT)
        self.assertGreater(conn.core.paths[0].bytes_sent - before, MiB)


def hasIPv6Loopback() -> bool:
    """Whether ::1 can be bound here."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


class ResolvingReactor:
    """The real reactor, with a name resolver (``nameResolver``) that knows only ``names``."""

    def __init__(self, names: dict) -> None:
        self.nameResolver = FakeNameResolver(names)

    def __getattr__(self, name):
        return getattr(reactor, name)


class DualStackTests(Loopback):
    """``host=localhost`` reaches a server listening on ::1 only."""

    def setUp(self) -> None:
        super().setUp()
        if not hasIPv6Loopback():
            self.skipTest("this machine has no IPv6 loopback (::1)")

    @defer.inlineCallbacks
    def test_localhost_reaches_a_server_on_ipv6_loopback(self) -> Any:
        """With the system resolver, ``kwik:host=localhost`` connects to a server listening
        only on ::1, even where the hosts file maps ``localhost`` to 127.0.0.1 only (as on the
        project's machine): ``localhost`` means both loopbacks (RFC 6761, 6.3)."""
        port = yield self.kwik.listen(self.server, interface="::1")
        description = self.kwik.clientString(port.getHost().port, host="localhost")
        proto = yield clientFromString(reactor, description).connect(
            Factory.forProtocol(Protocol))
        self.assertEqual(proto.transport.getPeer().host, "::1")

    @defer.inlineCallbacks
    def test_a_name_with_both_families_reaches_a_server_on_ipv6_only(self) -> Any:
        """A name resolving to 127.0.0.1 first and ::1 second reaches a server that listens on
        ::1 only: the refused IPv4 attempt hands over to the IPv6 one."""
        port = yield self.kwik.listen(self.server, interface="::1")
        react = ResolvingReactor({"localhost": ["127.0.0.1", "::1"]})
        endpoint = self.kwik.clientEndpoint(port.getHost().port, host="localhost",
                                            reactor=react, reuse=False)
        proto = yield endpoint.connect(Factory.forProtocol(Protocol))
        self.assertEqual(proto.transport.getPeer().host, "::1")
        proto.transport.write(b"over six")
        yield self.readers(1)
        self.assertEqual(react.nameResolver.asked, ["localhost"])
