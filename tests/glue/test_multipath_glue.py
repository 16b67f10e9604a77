"""
Multipath through the Twisted glue, on the real loopback interface.

Linux routes all of 127.0.0.0/8 to ``lo``, so a client can bind 127.0.0.2 for a second path and a
server can listen on 127.0.0.3 as well as 127.0.0.1.  The checks look at both ends: the client's
paths (``pathMetrics()`` and the core's ``paths``) and the server connection's, so a glue that sent
every path's datagrams out of one socket, or fed them to the core with the wrong local address,
fails.
"""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet import defer, error, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface import implementer

from kwik_twisted.core.paths.metrics import PathMetrics
from kwik_twisted.endpoints import (
    KwikClientEndpoint,
    KwikServerEndpoint,
    closeClientConnections,
    normalizePaths,
)
from kwik_twisted.errors import ConfigurationError
from kwik_twisted.events import PathAbandoned, PathAdded, PathEvent, PathValidated
from kwik_twisted.interfaces import IKwikConnectionObserver
from kwik_twisted.testing.pair import client_config, server_config
from kwik_twisted.wire import PathState

MiB = 1 << 20


def payload(size: int) -> bytes:
    """``size`` bytes that are not one repeated short pattern."""
    block = hashlib.sha256(b"kwik multipath").digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


class Sink(Protocol):
    """The server side: hashes what arrives; ``done`` fires with (byte count, digest, self)."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.count = 0
        self.done: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.hash.update(data)
        self.count += len(data)

    def connectionLost(self, reason) -> None:
        self.done.callback((self.count, self.hash.digest(), self))


@implementer(IKwikConnectionObserver)
class Observer(Protocol):
    """A client stream protocol that records the path events of its connection."""

    def __init__(self) -> None:
        self.events: list[PathEvent] = []
        self.waiting: dict[tuple, defer.Deferred] = {}
        self.connectedWhenFirstEvent: bool | None = None

    def pathEvent(self, event: PathEvent) -> None:
        if self.connectedWhenFirstEvent is None:
            self.connectedWhenFirstEvent = self.transport is not None and self.transport.connected
        self.events.append(event)
        d = self.waiting.pop((type(event), event.path_id), None)
        if d is not None:
            d.callback(event)

    def waitFor(self, kind: type, path_id: int) -> defer.Deferred:
        """Fire with the first ``kind`` event of ``path_id`` (at once if already seen)."""
        for event in self.events:
            if type(event) is kind and event.path_id == path_id:
                return defer.succeed(event)
        d = self.waiting[(kind, path_id)] = defer.Deferred()
        return d


class LoopbackTestCase(TestCase):
    """A Kwik server on 127.0.0.1 (optionally 127.0.0.3 too) and clients to it."""

    timeout = 30

    @defer.inlineCallbacks
    def listen(self, host: str = "127.0.0.1", **kwargs: Any) -> Any:
        """Listen on an ephemeral port; return the port number."""
        self.sinks: list[Sink] = []

        def build() -> Sink:
            sink = Sink()
            self.sinks.append(sink)
            return sink

        endpoint = KwikServerEndpoint(
            reactor, 0, config=server_config(), interface=host, **kwargs
        )
        port = yield endpoint.listen(Factory.forProtocol(build))
        self.addCleanup(port.stopListening)
        self.addCleanup(closeClientConnections, reactor)
        return port.getHost().port

    def client(self, port: int, **kwargs: Any) -> KwikClientEndpoint:
        return KwikClientEndpoint(reactor, "127.0.0.1", port, config=client_config(),
                                  reuse=False, **kwargs)

    @defer.inlineCallbacks
    def send(self, endpoint: KwikClientEndpoint, data: bytes, protocol=Protocol) -> Any:
        """Open a stream, write ``data``, close; return (client protocol, server sink)."""
        proto = yield endpoint.connect(Factory.forProtocol(protocol))
        proto.transport.write(data)
        proto.transport.loseConnection()
        yield self.waitForSink()
        count, digest, sink = yield self.sinks[0].done
        self.assertEqual(count, len(data))
        self.assertEqual(digest, hashlib.sha256(data).digest())
        return proto, sink

    @defer.inlineCallbacks
    def waitForSink(self) -> Any:
        while not self.sinks:
            yield deferLater(0.01)


def deferLater(seconds: float) -> defer.Deferred:
    from twisted.internet import task

    return task.deferLater(reactor, seconds, lambda: None)


class TwoPathTransferTests(LoopbackTestCase):
    """Two local addresses, one server: the data goes over both."""

    @defer.inlineCallbacks
    def test_eight_megabytes_cross_two_paths_byte_exact(self) -> Any:
        """
        A client with paths from 127.0.0.1 and 127.0.0.2 sends 8 MiB byte-exact; each path
        sends at least 2% of the client's packets, and the server sees path 1 arrive from
        127.0.0.2 (its own socket) with a matching share of the packets.

        The bar follows from the scheduler, not from a hoped-for split.  Unconstrained loopback
        paths never fill their windows, so the default lowest-RTT scheduler (like MPTCP's) keeps
        nearly everything on whichever path's RTT samples are lower: its split is noise, and
        nothing bounds it from below.  The client therefore uses ``wrr``, whose weights never go
        under ``min_weight`` (5%); its bandwidth estimates here measure what each path was given
        (the samples are application-limited), so the weights drift apart and path 1's share
        was measured at 5-39% on a loaded machine.  The default scheduler's use of both paths is
        checked where the paths have capacities, in tests/scenarios/test_relay_multipath.py.
        """
        port = yield self.listen()
        endpoint = KwikClientEndpoint(
            reactor, "127.0.0.1", port, config=client_config(scheduler="wrr"), reuse=False,
            paths=["127.0.0.2"],
        )
        proto, sink = yield self.send(endpoint, payload(8 * MiB))
        conn = proto.transport.kwikConnection
        metrics = conn.pathMetrics()
        self.assertEqual(sorted(metrics), [0, 1])
        self.assertTrue(all(isinstance(m, PathMetrics) for m in metrics.values()))
        paths = conn.core.paths
        self.assertEqual(paths[0].local_addr[0], "127.0.0.1")
        self.assertEqual(paths[1].local_addr[0], "127.0.0.2")
        self.assertNotEqual(paths[0].local_addr, paths[1].local_addr)
        total = paths[0].packets_sent + paths[1].packets_sent
        self.assertGreater(total, 8 * MiB // 1350)
        for path in paths.values():
            self.assertGreater(path.packets_sent, total // 50)
        server_paths = sink.transport.kwikConnection.core.paths
        self.assertEqual(server_paths[1].remote_addr, paths[1].local_addr)
        self.assertEqual(server_paths[0].remote_addr, paths[0].local_addr)
        self.assertGreater(server_paths[1].packets_received, total // 50)

    @defer.inlineCallbacks
    def test_a_path_to_the_servers_second_address(self) -> Any:
        """
        A server listening on 127.0.0.1 and 127.0.0.3 gives the core the address a datagram
        arrived on: the client's path 127.0.0.2 -> 127.0.0.3 validates and carries data, and
        the server's path 1 has 127.0.0.3 as its local address.
        """
        port = yield self.listen(extraInterfaces=["127.0.0.3"])
        endpoint = self.client(port, paths=[("127.0.0.2", "127.0.0.3", None)])
        proto, sink = yield self.send(endpoint, payload(2 * MiB))
        client_path = proto.transport.kwikConnection.core.paths[1]
        self.assertEqual(client_path.remote_addr, ("127.0.0.3", port))
        self.assertTrue(client_path.usable)
        self.assertGreater(client_path.packets_sent, 100)
        server_paths = sink.transport.kwikConnection.core.paths
        self.assertEqual(server_paths[1].local_addr, ("127.0.0.3", port))
        self.assertEqual(server_paths[0].local_addr, ("127.0.0.1", port))

    @defer.inlineCallbacks
    def test_backup_path_stays_idle_while_the_primary_works(self) -> Any:
        """
        ``backup=[1]`` marks path 1 backup (the server learns it by PATH_STATUS): the 2 MiB go over
        path 0 while path 1 only carries its validation and acknowledgements.
        """
        port = yield self.listen()
        endpoint = self.client(port, paths=["127.0.0.2"], backup=[1])
        proto = yield endpoint.connect(Factory.forProtocol(Observer))
        yield proto.waitFor(PathValidated, 1)
        proto.transport.write(payload(2 * MiB))
        proto.transport.loseConnection()
        yield self.waitForSink()
        count, _, sink = yield self.sinks[0].done
        self.assertEqual(count, 2 * MiB)
        paths = proto.transport.kwikConnection.core.paths
        self.assertGreater(paths[0].packets_sent, 1000)
        self.assertLess(paths[1].packets_sent, 50)
        server_path = sink.transport.kwikConnection.core.paths[1]
        self.assertEqual(server_path.peer_status, PathState.BACKUP)


    @defer.inlineCallbacks
    def test_ipv6_path_sockets(self) -> Any:
        """Over ::1, a second socket of the same address makes a second path that carries data."""
        try:
            port = yield self.listen("::1")
        except error.CannotListenError:
            raise SkipTest("no IPv6 loopback here") from None
        endpoint = KwikClientEndpoint(reactor, "::1", port, config=client_config(), reuse=False,
                                      paths=["::1"])
        proto, sink = yield self.send(endpoint, payload(MiB))
        paths = proto.transport.kwikConnection.core.paths
        self.assertEqual(paths[1].local_addr[0], "::1")
        self.assertNotEqual(paths[1].local_addr, paths[0].local_addr)
        self.assertGreater(paths[1].packets_sent, 50)
        server_paths = sink.transport.kwikConnection.core.paths
        self.assertEqual(server_paths[1].remote_addr, paths[1].local_addr)


class ObserverTests(LoopbackTestCase):
    """IKwikConnectionObserver and the path calls of ``transport.kwikConnection``."""

    @defer.inlineCallbacks
    def test_observer_sees_path_one_added_then_validated(self) -> Any:
        """
        A stream protocol providing IKwikConnectionObserver gets PathAdded then PathValidated for
        the endpoint's extra path, from 127.0.0.2, after its stream was connected.
        """
        port = yield self.listen()
        proto = yield self.client(port, paths=["127.0.0.2"]).connect(
            Factory.forProtocol(Observer))
        yield proto.waitFor(PathValidated, 1)
        kinds = [(type(e), e.path_id) for e in proto.events]
        self.assertLess(kinds.index((PathAdded, 1)), kinds.index((PathValidated, 1)))
        self.assertTrue(proto.connectedWhenFirstEvent)
        added = proto.events[kinds.index((PathAdded, 1))]
        self.assertEqual(added.local_addr[0], "127.0.0.2")
        self.assertEqual(added.remote_addr, ("127.0.0.1", port))
        proto.transport.loseConnection()

    @defer.inlineCallbacks
    def test_open_path_on_a_live_connection(self) -> Any:
        """
        ``kwikConnection.openPath("127.0.0.2")`` binds a socket and opens path 1, which validates;
        ``abandonPath(1)`` ends it (PathAbandoned); unknown path IDs, abandoning the last path
        and a server connection's ``openPath`` are refused.
        """
        port = yield self.listen()
        proto = yield self.client(port).connect(Factory.forProtocol(Observer))
        proto.transport.write(b"hello")
        conn = proto.transport.kwikConnection
        self.assertEqual(sorted(conn.pathMetrics()), [0])
        path_id = conn.openPath("127.0.0.2")
        self.assertEqual(path_id, 1)
        validated = yield proto.waitFor(PathValidated, 1)
        self.assertEqual(validated.local_addr, conn.core.paths[1].local_addr)
        self.assertEqual(sorted(conn.pathMetrics()), [0, 1])
        self.assertRaises(ConfigurationError, conn.setPathBackup, 7)
        self.assertRaises(ConfigurationError, conn.abandonPath, 7)
        conn.abandonPath(1)
        abandoned = yield proto.waitFor(PathAbandoned, 1)
        self.assertEqual(abandoned.local_addr, validated.local_addr)
        self.assertEqual(sorted(conn.pathMetrics()), [0])
        self.assertRaises(ConfigurationError, conn.abandonPath, 0)
        self.assertEqual(sorted(conn.pathMetrics()), [0])
        yield self.waitForSink()
        server_conn = self.sinks[0].transport.kwikConnection
        self.assertRaises(ConfigurationError, server_conn.openPath, "127.0.0.1")
        proto.transport.loseConnection()

    @defer.inlineCallbacks
    def test_unbindable_path_address_fails_the_connection_attempt(self) -> Any:
        """A path from an address this host does not have fails connect() with
        CannotListenError (192.0.2.1 is TEST-NET-1), and no socket stays bound."""
        port = yield self.listen()
        d = self.client(port, paths=["192.0.2.1"]).connect(Factory.forProtocol(Protocol))
        yield self.assertFailure(d, error.CannotListenError)
        yield closeClientConnections(reactor)


class EndpointPathArgumentTests(SynchronousTestCase):
    """KwikClientEndpoint checks its ``paths`` and ``backup`` arguments at once."""

    def endpoint(self, **kwargs: Any) -> KwikClientEndpoint:
        return KwikClientEndpoint(reactor, "127.0.0.1", 4433, config=client_config(), **kwargs)

    def test_path_forms_are_accepted(self) -> None:
        """A bare address, a 1-tuple, a 2-tuple and a full triple are all valid paths, each
        normalised to (local host, remote host or None, remote port or None)."""
        short = ["127.0.0.2", ("127.0.0.3",), ("::1", "::1")]
        self.endpoint(paths=short)
        self.assertEqual(
            normalizePaths(short),
            (("127.0.0.2", None, None), ("127.0.0.3", None, None), ("::1", "::1", None)),
        )
        full = [("127.0.0.4", "127.0.0.5", 99), ("127.0.0.4", None, 4434)]
        self.endpoint(paths=full)
        self.assertEqual(
            normalizePaths(full), (("127.0.0.4", "127.0.0.5", 99), ("127.0.0.4", None, 4434))
        )

    def test_malformed_paths_are_refused(self) -> None:
        """Host names, ports out of range, empty tuples and too many paths raise
        ConfigurationError."""
        for bad in (["localhost"], [("127.0.0.2", "example.com", 1)], [("127.0.0.2", None, 0)],
                    [()], [("127.0.0.2", None, 1, 2)], ["127.0.0.2"] * 4):
            self.assertRaises(ConfigurationError, self.endpoint, paths=bad)

    def test_backup_indexes_are_checked(self) -> None:
        """Backup indexes run from 0 (the handshake's path) to the number of extra paths."""
        self.endpoint(paths=["127.0.0.2"], backup=[0, 1])
        for bad in ([2], [-1], ["1"]):
            self.assertRaises(ConfigurationError, self.endpoint, paths=["127.0.0.2"], backup=bad)
