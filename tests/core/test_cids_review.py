"""
Connection IDs and stateless answers in the corners a reviewer found: paths that never reached
the server, different CID limits on the two sides, an off-path attacker using up stateless
resets, and CID collisions across connections.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.connection import Connection
from kwik_twisted.core.dispatcher import ServerDispatcher
from kwik_twisted.core.entropy import SeededEntropy
from kwik_twisted.errors import ErrorCode
from kwik_twisted.events import ConnectionTerminated, PathAbandoned, PathValidated
from kwik_twisted.testing.pair import (
    SERVER_ADDR,
    MemoryPair,
    client_config,
    server_config,
)

SECRET = bytes(range(32))
SECOND_LOCAL = ("192.0.2.77", 5555)
THIRD_LOCAL = ("192.0.2.78", 5556)
ATTACKER = ("198.51.100.66", 4444)


def client_ends(pair: MemoryPair) -> list[ConnectionTerminated]:
    """The client's ConnectionTerminated events so far."""
    pair._collect()
    return [e for e in pair.client_events if isinstance(e, ConnectionTerminated)]


class AsymmetricCidLimitTests(SynchronousTestCase):
    """Each side issues CIDs up to the *other* side's limit, so the two sides can hold CIDs for
    different path IDs."""

    def test_client_does_not_start_a_path_the_server_holds_no_cid_for(self) -> None:
        """
        Client limit 8, server limit 2: the server gives the client CIDs for paths 1..7, the
        client gives the server a CID for path 1 only.  A second path (ID 2) must not be started
        blind: it waits (pending) until the client may issue a CID for it; it must not be
        challenged into silence and abandoned.
        """
        pair = MemoryPair(
            client_config(active_connection_id_limit=8),
            server_config(active_connection_id_limit=2),
        ).handshake()
        first = pair.client.open_path(SECOND_LOCAL, SERVER_ADDR)
        second = pair.client.open_path(THIRD_LOCAL, SERVER_ADDR)
        pair.advance(3.0)
        validated = {e.path_id for e in pair.client_events if isinstance(e, PathValidated)}
        abandoned = {e.path_id for e in pair.client_events if isinstance(e, PathAbandoned)}
        self.assertIn(first, validated)
        self.assertNotIn(second, abandoned)
        self.assertIn(second, [p[0] for p in pair.client.path_manager.pending])
        self.assertNotIn(second, pair.server.paths)


class ResetRateLimitTests(SynchronousTestCase):
    """Stateless resets are rate-limited per source network as well as for the whole server."""

    def test_junk_from_one_source_does_not_starve_another_sources_reset(self) -> None:
        """
        A restarted server; an off-path attacker sends a burst of 43-byte short datagrams to
        random CIDs from its own address, at the moment the real client's next packet arrives.
        The client must still get its reset (it is the feature's purpose: end within one RTT).
        With one global bucket (burst 20) the attacker's 20 junk datagrams use it up, and keeping
        it empty costs the attacker 100 datagrams (4.3 kB) a second.
        """
        pair = MemoryPair(server=server_config(static_secret=SECRET)).handshake()
        pair.dispatcher = ServerDispatcher(
            server_config(static_secret=SECRET), entropy=SeededEntropy(99)
        )
        junk = SeededEntropy(5)
        for _ in range(20):
            datagram = b"\x40" + junk.random_bytes(42)
            pair.dispatcher.receive_datagram(datagram, SERVER_ADDR, ATTACKER, now=pair.now)
        pair.dispatcher.take_replies()
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"hello")
        pair.pump()
        self.assertEqual([e.error_code for e in client_ends(pair)][:1], [ErrorCode.STATELESS_RESET])


class UnseenPathRetirementTests(SynchronousTestCase):
    """A path the client abandons before the server ever heard on it."""

    def blackhole(self, pair: MemoryPair, address: tuple) -> None:
        """Lose every datagram the client sends from ``address`` (a dead interface)."""
        send = pair.client.datagrams_to_send

        def filtered(*, now):
            return [d for d in send(now=now) if d[1] != address]

        pair.client.datagrams_to_send = filtered

    def test_paths_that_never_reached_the_server_do_not_use_up_cids(self) -> None:
        """
        Three paths from dead interfaces fail and are abandoned by the client; the server never
        created them, so it never retires the client's CIDs for them, and the client never
        issues replacements.  A fourth path from a working interface must still validate, and
        the server must not still hold the client's CIDs for the dead paths.
        """
        pair = MemoryPair().handshake()
        dead = [(f"192.0.2.{n}", 7000 + n) for n in (91, 92, 93)]
        for address in dead:
            self.blackhole(pair, address)
        for address in dead:
            pair.client.open_path(address, SERVER_ADDR)
            pair.advance(10.0)
        abandoned = {e.path_id for e in pair.client_events if isinstance(e, PathAbandoned)}
        self.assertEqual(abandoned, {1, 2, 3})
        good = pair.client.open_path(SECOND_LOCAL, SERVER_ADDR)
        pair.advance(10.0)
        validated = {e.path_id for e in pair.client_events if isinstance(e, PathValidated)}
        self.assertIn(good, validated)
        self.assertEqual(set(pair.server.cids.peer) & {1, 2, 3}, set())


def colliding(first: bytes, fresh):
    """A CID source that draws ``first`` once, then whatever ``fresh`` draws."""
    draws = iter([first])
    return lambda: next(draws, None) or fresh()


class CidCollisionTests(SynchronousTestCase):
    """A server connection's CIDs beyond path 0 are drawn in core/cids.py, checked only against
    that connection's own CIDs (``_fresh_cid`` checks the path-0 CID against the dispatcher's
    whole table).  With a QUIC-LB server ID and a worker route byte, only 3 bytes of an 8-byte CID
    are random, so collisions between connections are a matter of a few thousand CIDs."""

    def test_a_new_cid_never_takes_over_another_connections_route(self) -> None:
        """
        A second connection that draws, for its path 1, a CID the first connection already
        routes by must not steal that route: the dispatcher still routes it to the first.
        """
        pair = MemoryPair().handshake()
        victim_cid = pair.server.cids.local_by_path[1]
        address = ("192.0.2.5", 4000)
        other = Connection.client(
            client_config(), local_addr=address, remote_addr=SERVER_ADDR,
            entropy=SeededEntropy(50), now=pair.now,
        )
        patched = False
        for _ in range(50):
            for data, local, remote in other.datagrams_to_send(now=pair.now):
                pair.dispatcher.receive_datagram(data, remote, local, now=pair.now)
            if not patched and len(pair._servers) == 2:
                second = pair._servers[1]
                second.cids._new_cid = colliding(victim_cid, second.cids._new_cid)
                patched = True
            for data, local, remote in pair.dispatcher.datagrams_to_send(now=pair.now):
                if remote == address:
                    other.receive_datagram(data, remote, local, now=pair.now)
        self.assertTrue(patched and other.handshake_complete)
        self.assertIs(pair.dispatcher.connections[victim_cid], pair.server)
