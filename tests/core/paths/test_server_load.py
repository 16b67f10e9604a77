"""
The server's load (the ``server_load`` transport parameter), in memory
(:class:`~kwik_twisted.testing.pair.MemoryPair`, whose server side is a real
:class:`~kwik_twisted.core.dispatcher.ServerDispatcher`): the dispatcher's figure, read when a
connection's handshake completes, reaches every path's
:class:`~kwik_twisted.core.paths.metrics.PathMetrics` on the client; a value out of range, or one a
client sends, is a TRANSPORT_PARAMETER_ERROR.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.dispatcher import ServerDispatcher
from kwik_twisted.core.entropy import SeededEntropy
from kwik_twisted.errors import ErrorCode
from kwik_twisted.events import ConnectionTerminated, PathValidated
from kwik_twisted.testing.pair import MemoryPair, client_config, server_config
from kwik_twisted.wire import TransportParameter

SECOND_LOCAL = ("192.0.2.77", 5555)


def closes(events: list) -> list[int]:
    """The error codes of the ConnectionTerminated events."""
    return [e.error_code for e in events if isinstance(e, ConnectionTerminated)]


def on_each_server_connection(pair: MemoryPair, change: Callable) -> None:
    """Call ``change(connection)`` on every server connection as the dispatcher creates it
    (before its handshake completes)."""
    keep = pair.dispatcher.on_connection

    def hook(conn) -> None:
        change(conn)
        keep(conn)

    pair.dispatcher.on_connection = hook


class DispatcherLoadTests(SynchronousTestCase):
    """ServerDispatcher.load: the connections it routes over its limit, in permille."""

    def test_load_counts_routed_connections_against_the_limit(self) -> None:
        """No connection is 0; each connection counts once, however many CIDs route to it; at
        the limit (where new connections are refused) the load is 1000, and never more."""
        dispatcher = ServerDispatcher(server_config(), entropy=SeededEntropy(1),
                                      max_connections=4)
        self.assertEqual(dispatcher.load(), 0)
        for n in range(1, 6):  # a number stands in for a connection with three routing CIDs
            dispatcher.live[n] = None
            for cid in (b"odcid%03d" % n, b"local%03d" % n, b"path1%03d" % n):
                dispatcher.connections[cid] = n
            self.assertEqual(dispatcher.load(), min(1000, n * 250))


class ServerLoadTests(SynchronousTestCase):
    """The load the server reports reaches the client's path metrics."""

    def test_every_client_path_shows_the_servers_load(self) -> None:
        """With a limit of 4 connections, one connection is a quarter of the capacity: the
        client's path 0 and a second path both report server_load 0.25; the server's own
        metrics report none."""
        pair = MemoryPair(client_config(), server_config())
        pair.dispatcher.max_connections = 4
        pair.handshake()
        path_id = pair.client.open_path(SECOND_LOCAL, pair.client.paths[0].remote_addr)
        pair.advance(1.0)
        self.assertTrue(any(isinstance(e, PathValidated) and e.path_id == path_id
                            for e in pair.client_events))
        metrics = pair.client.path_metrics()
        self.assertEqual(sorted(metrics), [0, path_id])
        self.assertEqual([m.server_load for m in metrics.values()], [0.25, 0.25])
        self.assertEqual(pair.client.path_manager.server_load, 0.25)
        self.assertIsNone(pair.server.path_metrics()[0].server_load)

    def test_the_load_is_read_when_the_handshake_completes(self) -> None:
        """The figure sent is the dispatcher's when the connection's parameters go out (here
        changed after the connection was accepted), not when the connection was created."""
        pair = MemoryPair(client_config(), server_config())
        on_each_server_connection(pair, lambda conn: setattr(pair.dispatcher, "max_connections", 1))
        pair.handshake()
        pair.advance(0.5)
        self.assertEqual(pair.client.path_metrics()[0].server_load, 1.0)

    def test_without_the_parameter_the_load_is_unknown(self) -> None:
        """A server that does not send server_load leaves the client's figure None."""
        pair = MemoryPair(client_config(), server_config())
        on_each_server_connection(pair, lambda conn: setattr(conn.handshake, "server_load", None))
        pair.handshake()
        pair.advance(0.5)
        self.assertIsNone(pair.client.path_metrics()[0].server_load)
        self.assertNotIn(TransportParameter.SERVER_LOAD, pair.client.handshake.peer_parameters)


class HostileServerLoadTests(SynchronousTestCase):
    """Out-of-range or misplaced server_load is a TRANSPORT_PARAMETER_ERROR."""

    def test_a_load_above_1000_permille_closes_the_connection(self) -> None:
        """A server announcing server_load 1001 is closed by the client with
        TRANSPORT_PARAMETER_ERROR."""
        pair = MemoryPair(client_config(), server_config())

        def lie(conn) -> None:
            honest = conn.handshake.local_parameters
            conn.handshake.local_parameters = lambda: {
                **honest(), TransportParameter.SERVER_LOAD: 1001}
            conn.handshake.server_load = None

        on_each_server_connection(pair, lie)
        pair.advance(1.0)
        self.assertEqual(closes(pair.client_events), [ErrorCode.TRANSPORT_PARAMETER_ERROR])
        self.assertIsNone(pair.client.path_manager.server_load)

    def test_the_largest_load_is_accepted(self) -> None:
        """1000 permille (a full server) is in range: the client records 1.0."""
        pair = MemoryPair(client_config(), server_config())
        on_each_server_connection(
            pair, lambda conn: setattr(conn.handshake, "server_load", lambda: 1000))
        pair.handshake()
        pair.advance(0.5)
        self.assertEqual(closes(pair.client_events), [])
        self.assertEqual(pair.client.path_manager.server_load, 1.0)

    def test_a_client_sending_a_load_is_closed(self) -> None:
        """server_load is the server's: a client that sends it is closed by the server with
        TRANSPORT_PARAMETER_ERROR."""
        pair = MemoryPair(client_config(), server_config())
        honest = pair.client.handshake.local_parameters
        pair.client.handshake.local_parameters = lambda: {
            **honest(), TransportParameter.SERVER_LOAD: 10}
        pair.advance(1.0)
        self.assertEqual(closes(pair.server_events), [ErrorCode.TRANSPORT_PARAMETER_ERROR])
