"""
The QoS enforcer's bounds against a peer that asks a policy on every stream it opens, and its
bookkeeping when streams end (kwik_twisted/core/qos/enforcer.py), on an in-memory pair.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.qos.enforcer import EVAL_COST, EVAL_FLOOR
from kwik_twisted.testing.pair import MemoryPair
from kwik_twisted.wire import QosPolicy

POLICY = QosPolicy(max_latency_ms=40, loss_threshold_ppm=1000)


class EnforcerBoundsTests(SynchronousTestCase):
    """What many streams with policies cost, and what ending them leaves behind."""

    def test_the_evaluation_interval_grows_with_the_streams_asking(self) -> None:
        """With 200 streams asking a latency and loss policy, the enforcer re-evaluates at most
        every 200 x paths x EVAL_COST seconds (not every EVAL_FLOOR): its CPU share stays
        bounded whatever the peer opens."""
        pair = MemoryPair().handshake()
        client = pair.client
        for _ in range(200):
            sid = client.open_stream(qos=POLICY)
            client.send_stream_data(sid, b"x")
        pair.pump()
        enforcer = client.qos
        self.assertEqual(len(client.streams.qos_streams), 200)
        enforcer._next_eval = float("-inf")
        enforcer.before_send(now=pair.now)
        interval = enforcer._next_eval - pair.now
        self.assertGreaterEqual(interval, 200 * EVAL_COST - 1e-9)
        self.assertGreater(interval, EVAL_FLOOR)

    def test_a_route_is_lifted_when_the_policy_goes(self) -> None:
        """A stream the enforcer had routed keeps no route, pin or episode once its policy is
        withdrawn: the send queue carries it on any path again."""
        pair = MemoryPair().handshake()
        client = pair.client
        sid = client.open_stream(qos=POLICY)
        client.send_stream_data(sid, b"hello")
        pair.pump()
        stream = client.streams.streams[sid]
        client.qos._routes[stream] = frozenset({7})  # as if it had been routed on a gone path
        client.streams.send_queue.route(stream, frozenset({7}))
        client.update_stream(sid, qos=None)
        client.qos._next_eval = float("-inf")
        client.qos.before_send(now=pair.now)
        self.assertIsNone(stream.route)
        self.assertIsNone(stream.paths)
        self.assertNotIn(stream, client.streams.send_queue.pinned)
        self.assertNotIn(stream, client.qos._routes)
        self.assertEqual(client.qos._episodes, {})
