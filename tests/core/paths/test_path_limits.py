"""
The peer's limits on paths, path validation that never completes, and challenge floods.

In memory (:class:`~kwik_twisted.testing.pair.MemoryPair`): the peer's ``max_paths`` and
``max_datagram_size`` transport parameters bind the sender; a path whose challenge goes unanswered
is given up after :data:`~kwik_twisted.core.paths.path.MAX_CHALLENGE_ATTEMPTS` tries instead of
being challenged for ever; a flood of PATH_CHALLENGEs gets at most one PATH_RESPONSE per packet.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.paths.path import MAX_CHALLENGE_ATTEMPTS, PathPhase
from kwik_twisted.errors import ErrorCode
from kwik_twisted.events import ConnectionTerminated, PathAbandoned, PathFailed, PathRecovered
from kwik_twisted.testing.pair import (
    MemoryPair,
    client_config,
    forge,
    server_config,
)
from kwik_twisted.wire import PathAbandonFrame, PathChallengeFrame, TransportParameter

SECOND_LOCAL = ("192.0.2.77", 5555)
THIRD_LOCAL = ("192.0.2.78", 5556)


def of_type(events, cls) -> list:
    """The events of one class."""
    return [e for e in events if isinstance(e, cls)]


def handshaken(client=None, server=None) -> MemoryPair:
    """A pair that finished its handshake."""
    return MemoryPair(client or client_config(), server or server_config()).handshake()


class PeerMaxPathsTests(SynchronousTestCase):
    """A client keeps within the server's ``max_paths``."""

    def test_open_path_beyond_the_servers_limit_is_refused_locally(self) -> None:
        """With the server's max_paths at 2, the client's second extra path raises ValueError."""
        pair = handshaken(client_config(max_paths=8), server_config(max_paths=2))
        self.assertEqual(pair.client.peer_max_paths, 2)
        pair.client.open_path(SECOND_LOCAL, pair.client.paths[0].remote_addr)
        with self.assertRaises(ValueError):
            pair.client.open_path(THIRD_LOCAL, pair.client.paths[0].remote_addr)

    def test_paths_opened_before_the_handshake_beyond_the_limit_are_abandoned(self) -> None:
        """Pending paths past the server's limit end with PathAbandoned; the rest validate."""
        pair = MemoryPair(client_config(max_paths=8), server_config(max_paths=2))
        remote = pair.client.paths[0].remote_addr
        first = pair.client.open_path(SECOND_LOCAL, remote)
        second = pair.client.open_path(THIRD_LOCAL, remote)
        pair.handshake()
        pair.advance(1.0)
        abandoned = [e.path_id for e in of_type(pair.client_events, PathAbandoned)]
        self.assertEqual(abandoned, [second])
        self.assertIs(pair.client.paths[first].phase, PathPhase.ACTIVE)
        self.assertEqual(sorted(pair.server.paths), [0, first])
        self.assertEqual(pair.server.stats["paths_refused"], 0)

    def test_a_path_the_server_refuses_is_abandoned_after_bounded_challenges(self) -> None:
        """
        The server refuses a path beyond its own limit (the client thought the limit higher): the
        client challenges at most MAX_CHALLENGE_ATTEMPTS times, then abandons the path.
        """
        pair = handshaken(client_config(max_paths=8), server_config(max_paths=1))
        pair.client.peer_max_paths = 8  # as a client that ignored the parameter would
        path_id = pair.client.open_path(SECOND_LOCAL, pair.client.paths[0].remote_addr)
        pair.advance(60.0)
        self.assertNotIn(path_id, pair.client.paths)
        self.assertEqual(of_type(pair.client_events, PathAbandoned)[-1].path_id, path_id)
        self.assertEqual(pair.client.stats["validations_failed"], 1)
        self.assertGreaterEqual(pair.server.stats["paths_refused"], 1)
        self.assertLessEqual(pair.server.stats["paths_refused"], MAX_CHALLENGE_ATTEMPTS + 2)
        self.assertEqual(sorted(pair.server.paths), [0])


class PeerDatagramSizeTests(SynchronousTestCase):
    """A sender keeps within the receiver's ``max_datagram_size``."""

    def test_datagrams_shrink_to_the_peers_limit(self) -> None:
        """A server accepting 1200 bytes never gets a bigger datagram, even from a 1350 client
        (with path MTU discovery on, what a side accepts is its ``max_udp_payload``)."""
        pair = handshaken(
            client_config(max_datagram_size=1350),
            server_config(max_datagram_size=1200, max_udp_payload=1200),
        )
        self.assertEqual(pair.client.max_datagram_size, 1200)
        stream = pair.client.open_stream()
        pair.client.send_stream_data(stream, b"x" * 100_000, end_stream=True)
        sizes = [len(d) for d, _, _ in pair.client.datagrams_to_send(now=pair.now)]
        self.assertTrue(sizes)
        self.assertLessEqual(max(sizes), 1200)
        self.assertGreater(max(sizes), 1150)  # still full packets, just smaller ones


class ChallengeFloodTests(SynchronousTestCase):
    """PATH_CHALLENGE floods are answered sparingly."""

    def test_many_challenges_in_one_packet_get_one_response(self) -> None:
        """Fifty challenges in one packet: one PATH_RESPONSE goes back."""
        pair = handshaken()
        challenges = [PathChallengeFrame(bytes([i]) * 8) for i in range(50)]
        pair.deliver_to_server(forge(pair.client, challenges, now=pair.now))
        pair.pump()
        self.assertEqual(pair.server.stats["path_responses_sent"], 1)

    def test_a_flood_of_challenge_packets_is_answered_at_most_once_per_packet(self) -> None:
        """Twenty packets of two challenges each: between one and twenty responses go back."""
        pair = handshaken()
        for i in range(20):
            frames = [PathChallengeFrame(bytes([i, 0]) * 4), PathChallengeFrame(bytes([i, 1]) * 4)]
            pair.deliver_to_server(forge(pair.client, frames, now=pair.now))
        pair.pump()
        sent = pair.server.stats["path_responses_sent"]
        self.assertGreaterEqual(sent, 1)
        self.assertLessEqual(sent, 20)


class LastPathTests(SynchronousTestCase):
    """A connection always keeps one path (found by the forged-frames property)."""

    def test_peer_abandoning_the_only_path_is_a_protocol_violation(self) -> None:
        """PATH_ABANDON for path 0, the only path: the server closes with PROTOCOL_VIOLATION."""
        pair = handshaken()
        pair.deliver_to_server(forge(pair.client, [PathAbandonFrame(0, 0)], now=pair.now))
        pair.pump()
        closes = of_type(pair.server_events, ConnectionTerminated)
        self.assertEqual([c.error_code for c in closes], [ErrorCode.PROTOCOL_VIOLATION])
        self.assertEqual([c.frame_type for c in closes], [0x11])
        self.assertIn(0, pair.server.paths)

    def test_abandoning_the_last_path_locally_is_refused(self) -> None:
        """abandon_path on the only path raises ValueError and the path stays."""
        pair = handshaken()
        with self.assertRaises(ValueError):
            pair.client.abandon_path(0)
        self.assertIn(0, pair.client.paths)

    def test_abandoning_path_zero_keeps_the_connection_on_the_other_path(self) -> None:
        """With a second path, the peer abandoning path 0 moves everything to path 1."""
        pair = handshaken()
        path_id = pair.client.open_path(SECOND_LOCAL, pair.client.paths[0].remote_addr)
        pair.advance(1.0)
        pair.client.abandon_path(0)
        pair.advance(1.0)
        self.assertEqual(sorted(pair.server.paths), [path_id])
        self.assertEqual(sorted(pair.client.paths), [path_id])
        self.assertFalse(of_type(pair.server_events, ConnectionTerminated))
        with self.assertRaises(ValueError):
            pair.client.abandon_path(path_id)


class CoupledFailoverTests(SynchronousTestCase):
    """A failed path leaves its coupled congestion group and rejoins when it recovers."""

    def test_failed_path_leaves_the_lia_group_and_rejoins_on_recovery(self) -> None:
        """LIA: the group has two members, one while path 0 is failed, two again after."""
        options = {"congestion_control": "lia"}
        pair = handshaken(client_config(**options), server_config(**options))
        path_id = pair.client.open_path(SECOND_LOCAL, pair.client.paths[0].remote_addr)
        pair.advance(1.0)
        group = pair.client.paths[path_id].recovery.controller.group
        self.assertEqual(len(group.members), 2)
        pair.client.path_manager.fail(pair.client.paths[0], now=pair.now)
        pair.pump()
        self.assertTrue(of_type(pair.client_events, PathFailed))
        self.assertEqual(group.members, [pair.client.paths[path_id].recovery.controller])
        pair.advance(5.0)  # the failed path is probed, answers, and recovers
        self.assertTrue(of_type(pair.client_events, PathRecovered))
        self.assertIs(pair.client.paths[0].phase, PathPhase.ACTIVE)
        self.assertEqual(len(group.members), 2)
        self.assertIn(pair.client.paths[0].recovery.controller, group.members)


class ParameterRangeTests(SynchronousTestCase):
    """Out-of-range path parameters are a TRANSPORT_PARAMETER_ERROR."""

    def check(self, parameter: int, value: int) -> None:
        """A client announcing ``parameter = value`` is closed with the error code."""
        pair = MemoryPair(client_config(), server_config())
        handshake = pair.client.handshake  # a peer that lies about its limits
        honest = handshake.local_parameters
        handshake.local_parameters = lambda: {**honest(), parameter: value}
        pair.advance(1.0)
        closes = of_type(pair.server_events, ConnectionTerminated)
        self.assertEqual([c.error_code for c in closes], [ErrorCode.TRANSPORT_PARAMETER_ERROR])

    def test_max_datagram_size_below_1200_is_refused(self) -> None:
        """max_datagram_size 1199: TRANSPORT_PARAMETER_ERROR."""
        self.check(TransportParameter.MAX_DATAGRAM_SIZE, 1199)

    def test_max_paths_of_zero_is_refused(self) -> None:
        """max_paths 0: TRANSPORT_PARAMETER_ERROR."""
        self.check(TransportParameter.MAX_PATHS, 0)
