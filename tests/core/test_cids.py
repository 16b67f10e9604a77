"""
Connection IDs per path (protocol.rst, "Connection IDs and routing", "Privacy"): what an observer
of two paths sees, the issuance bound, retirement, and the dispatcher's routing table.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.lifecycle import State
from kwik_twisted.errors import ErrorCode
from kwik_twisted.events import ConnectionTerminated, PathAbandoned
from kwik_twisted.testing.pair import CLIENT_ADDR, SERVER_ADDR, MemoryPair, forge
from kwik_twisted.wire import NewConnectionIdFrame, RetireConnectionIdFrame, peek_dcid

SECOND_LOCAL = ("192.0.2.77", 5555)


class Tap:
    """Records every datagram a MemoryPair moves, with its addresses (an on-path observer)."""

    def __init__(self, pair: MemoryPair) -> None:
        self.seen: list[tuple[bytes, tuple, tuple]] = []
        client, dispatcher = pair.client, pair.dispatcher
        client_send, server_send = client.datagrams_to_send, dispatcher.datagrams_to_send

        def from_client(*, now):
            out = client_send(now=now)
            self.seen.extend(out)
            return out

        def from_server(*, now):
            out = server_send(now=now)
            self.seen.extend(out)
            return out

        client.datagrams_to_send = from_client
        dispatcher.datagrams_to_send = from_server

    def on(self, address: tuple) -> list[bytes]:
        """The datagrams sent from or to ``address`` (one path, both directions)."""
        return [d for d, local, remote in self.seen if address in (local, remote)]


def two_paths(**kw) -> tuple[MemoryPair, Tap, int]:
    """An established pair with a validated second path from SECOND_LOCAL, under a tap."""
    pair = MemoryPair(**kw)
    tap = Tap(pair)
    pair.handshake()
    path_id = pair.client.open_path(SECOND_LOCAL, SERVER_ADDR)
    sid = pair.client.open_stream()
    pair.client.send_stream_data(sid, b"x" * 200_000, end_stream=True)
    pair.advance(1.0)
    return pair, tap, path_id


class UnlinkablePathTests(SynchronousTestCase):
    """An observer of two paths of one connection sees no header field they share."""

    def test_paths_share_no_connection_id(self) -> None:
        """Every datagram of the second path, both directions, carries other destination CIDs
        than every datagram of the first; the second path has no long envelope; both paths
        carried traffic both ways."""
        pair, tap, path_id = two_paths()
        self.assertIn(path_id, pair.client.paths)
        first = tap.on(CLIENT_ADDR)
        second = tap.on(SECOND_LOCAL)
        self.assertGreater(len(second), 20)
        self.assertTrue(all(d[0] & 0x80 == 0 for d in second))
        cids_first = {peek_dcid(d) for d in first}
        cids_second = {peek_dcid(d) for d in second}
        self.assertEqual(cids_first & cids_second, set())
        self.assertEqual(len(cids_second), 2)  # one CID each way
        # Nothing else in a short envelope names the connection: byte 0 is 0x40 or 0x44 for
        # every connection, and the path ID is not on the wire.
        self.assertTrue(all(d[0] in (0x40, 0x44) for d in second))

    def test_transfer_over_two_paths_is_exact(self) -> None:
        """Data sent over both paths arrives exactly (the receiver finds each packet's path
        from its CID, for the nonce)."""
        pair, _, path_id = two_paths()
        got = b"".join(
            e.data for e in pair.server_events if type(e).__name__ == "StreamDataReceived"
        )
        self.assertEqual(got, b"x" * 200_000)
        self.assertGreater(pair.server.paths[path_id].packets_received, 10)


class IssuanceTests(SynchronousTestCase):
    """CIDs are issued up to the peer's active_connection_id_limit and replaced on retirement."""

    def test_each_side_issues_up_to_the_peers_limit(self) -> None:
        """With the default limit 4 each side holds 3 CIDs of the peer's beyond path 0's, and
        the server routes by exactly its 4 CIDs plus the client's original DCID."""
        pair = MemoryPair().handshake()
        self.assertEqual(sorted(pair.client.cids.peer), [1, 2, 3])
        self.assertEqual(sorted(pair.server.cids.peer), [1, 2, 3])
        routed = [cid for cid, c in pair.dispatcher.connections.items() if c is pair.server]
        self.assertEqual(len(routed), 5)

    def test_a_lower_limit_is_respected(self) -> None:
        """A client announcing active_connection_id_limit=2 gets one CID beyond path 0."""
        from kwik_twisted.testing.pair import client_config

        pair = MemoryPair(client_config(active_connection_id_limit=2)).handshake()
        self.assertEqual(sorted(pair.client.cids.peer), [1])

    def test_abandoned_path_retires_its_cids_and_new_ones_come(self) -> None:
        """Abandoning path 1 retires both sides' CIDs for it (the dispatcher stops routing the
        server's) and each side issues one for path 4; a third path opens on path 2."""
        pair, _, path_id = two_paths()
        server_cid = pair.server.cids.local_by_path[path_id]
        pair.client.abandon_path(path_id)
        pair.advance(0.5)
        self.assertNotIn(server_cid, pair.dispatcher.connections)
        self.assertEqual(sorted(pair.client.cids.peer), [2, 3, 4])
        self.assertEqual(sorted(pair.server.cids.peer), [2, 3, 4])
        third = pair.client.open_path(("192.0.2.78", 5556), SERVER_ADDR)
        pair.advance(0.5)
        self.assertEqual(third, 2)
        self.assertIn(third, pair.server.paths)

    def test_closed_connection_is_no_longer_routed(self) -> None:
        """Once a connection is gone, none of its CIDs routes any more."""
        pair = MemoryPair().handshake()
        pair.client.close()
        pair.advance(5.0)
        self.assertEqual(pair.dispatcher.connections, {})
        self.assertEqual(pair.dispatcher.live, {})


class HostileIssuanceTests(SynchronousTestCase):
    """What a peer's NEW_CONNECTION_ID and RETIRE_CONNECTION_ID may not do."""

    def close_code(self, pair: MemoryPair, frames) -> int:
        """Deliver ``frames`` sealed by the server; return the client's close code."""
        pair.deliver_to_client(forge(pair.server, frames, now=pair.now))
        ends = [e for e in pair.client_events if isinstance(e, ConnectionTerminated)]
        self.assertEqual(len(ends), 1)
        return ends[0].error_code

    def test_more_cids_than_the_limit_is_a_connection_id_limit_error(self) -> None:
        """A fourth CID beyond path 0 (limit 4) closes with CONNECTION_ID_LIMIT_ERROR; the
        client stored at most its limit."""
        pair = MemoryPair().handshake()
        frame = NewConnectionIdFrame(9, b"\x01" * 8, b"\x02" * 16)
        self.assertEqual(self.close_code(pair, [frame]), ErrorCode.CONNECTION_ID_LIMIT_ERROR)
        self.assertLessEqual(len(pair.client.cids.peer) + 1, 4)

    def test_a_second_cid_for_a_path_is_a_violation(self) -> None:
        """Another CID for a path that has one is a PROTOCOL_VIOLATION; the same one again
        (a retransmission) is not."""
        pair = MemoryPair().handshake()
        known = pair.client.cids.peer[1]
        token = pair.client.cids.peer_tokens[1]
        pair.deliver_to_client(forge(pair.server, [NewConnectionIdFrame(1, known, token)]))
        self.assertNotIn(pair.client.state, (State.CLOSING, State.DRAINING, State.CLOSED))
        frame = NewConnectionIdFrame(1, b"\x07" * 8, token)
        self.assertEqual(self.close_code(pair, [frame]), ErrorCode.PROTOCOL_VIOLATION)

    def test_path_zero_cid_must_be_the_handshakes(self) -> None:
        """NEW_CONNECTION_ID for path 0 naming another CID than the handshake's is refused."""
        pair = MemoryPair().handshake()
        frame = NewConnectionIdFrame(0, b"\x07" * 8, b"\x00" * 16)
        self.assertEqual(self.close_code(pair, [frame]), ErrorCode.PROTOCOL_VIOLATION)

    def test_retiring_a_cid_never_issued_is_a_violation(self) -> None:
        """RETIRE_CONNECTION_ID for a path ID we never issued a CID for is refused; issuance
        stays bounded however often a peer retires."""
        pair = MemoryPair().handshake()
        self.assertEqual(
            self.close_code(pair, [RetireConnectionIdFrame(1000)]), ErrorCode.PROTOCOL_VIOLATION
        )

    def test_retire_churn_stays_bounded(self) -> None:
        """A peer retiring CIDs as fast as they come gets new ones, but never more than its
        limit outstanding, and the dispatcher routes at most limit + 1 CIDs."""
        pair = MemoryPair().handshake()
        server = pair.server
        for _ in range(50):
            path_id = max(server.cids.local_by_path)
            pair.deliver_to_server(forge(pair.client, [RetireConnectionIdFrame(path_id)]))
            pair.pump()
        self.assertLessEqual(len(server.cids.local_by_path), 4)
        routed = [cid for cid, c in pair.dispatcher.connections.items() if c is server]
        self.assertLessEqual(len(routed), 5)
        self.assertFalse(any(isinstance(e, PathAbandoned) for e in pair.server_events))


class EarlyPathTests(SynchronousTestCase):
    """A new path's first packet may overtake the NEW_CONNECTION_ID the server needs for it."""

    def test_a_path_whose_cid_is_late_is_answered_once_it_arrives(self) -> None:
        """The server gets the client's packet on path 1 before the client's CID for path 1
        (the NEW_CONNECTION_ID frames are held back): it keeps the path, sends nothing on it
        (it has no address for it), and answers as soon as the CID arrives; the path
        validates and is never abandoned."""
        pair = MemoryPair().handshake()
        server = pair.server
        client_cid = server.cids.peer.pop(1)  # as if the client's NEW_CONNECTION_ID were late
        path_id = pair.client.open_path(SECOND_LOCAL, SERVER_ADDR)
        pair.pump()
        self.assertIn(path_id, server.paths)
        self.assertIsNone(server.paths[path_id].dcid)
        sent_before = server.paths[path_id].packets_sent
        self.assertEqual(sent_before, 0)
        token = server.cids.peer_tokens[1]
        pair.deliver_to_server(forge(pair.client, [NewConnectionIdFrame(1, client_cid, token)]))
        pair.advance(1.0)
        self.assertEqual(server.paths[path_id].dcid, client_cid)
        validated = [e for e in pair.client_events if type(e).__name__ == "PathValidated"]
        self.assertEqual([e.path_id for e in validated], [path_id])
        self.assertFalse(any(isinstance(e, PathAbandoned) for e in pair.client_events))


class LossTests(SynchronousTestCase):
    """NEW_CONNECTION_ID and RETIRE_CONNECTION_ID are reliable."""

    def test_lost_cid_frames_are_sent_again(self) -> None:
        """Every datagram of the server's first application flight is lost (its
        NEW_CONNECTION_ID frames with it): they are sent again, the client ends up with the
        server's CIDs and a second path validates."""
        pair = MemoryPair()
        dropped = []
        send = pair.dispatcher.datagrams_to_send

        def lossy(*, now):
            out = send(now=now)
            if pair._servers and pair._servers[0].handshake_complete and len(dropped) < 6:
                keep = []
                for item in out:
                    (dropped if item[0][0] in (0x40, 0x44) and len(dropped) < 6 else keep).append(
                        item)
                return keep
            return out

        pair.dispatcher.datagrams_to_send = lossy
        pair.advance(3.0)
        self.assertTrue(dropped)
        self.assertEqual(sorted(pair.client.cids.peer), [1, 2, 3])
        path_id = pair.client.open_path(SECOND_LOCAL, SERVER_ADDR)
        pair.advance(2.0)
        validated = [e.path_id for e in pair.client_events if type(e).__name__ == "PathValidated"]
        self.assertEqual(validated, [path_id])
