"""
Path costs through the Twisted glue: the endpoint's ``costs``, checked when the endpoint is made and
set on the connection's paths as they open, and ``kwikConnection.setPathCost`` on a live loopback
connection, reaching the core's path (what the scheduler reads) and ``pathMetrics()``.  A cost is
local: the server's paths keep theirs.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.endpoints import KwikClientEndpoint
from kwik_twisted.errors import ConfigurationError
from kwik_twisted.events import PathValidated
from kwik_twisted.testing.pair import client_config

from .test_multipath_glue import LoopbackTestCase, Observer


class LiveCostTests(LoopbackTestCase):
    """Costs on a live connection over the loopback interface."""

    @defer.inlineCallbacks
    def test_endpoint_costs_reach_the_core_paths(self) -> Any:
        """``costs={1: 5.0}`` gives the extra path (from 127.0.0.2) cost 5 once it opened, in the
        core's path and in pathMetrics(); path 0 keeps cost 0; the server's path 1 has cost 0."""
        port = yield self.listen()
        endpoint = self.client(port, paths=["127.0.0.2"], costs={1: 5.0})
        proto = yield endpoint.connect(Factory.forProtocol(Observer))
        yield proto.waitFor(PathValidated, 1)
        conn = proto.transport.kwikConnection
        self.assertEqual(conn.core.paths[1].metrics.cost, 5.0)
        self.assertEqual({i: m.cost for i, m in conn.pathMetrics().items()}, {0: 0.0, 1: 5.0})
        proto.transport.write(b"hello")
        yield self.waitForSink()
        server_conn = self.sinks[0].transport.kwikConnection
        self.assertEqual({i: m.cost for i, m in server_conn.pathMetrics().items()},
                         {0: 0.0, 1: 0.0})
        proto.transport.loseConnection()

    @defer.inlineCallbacks
    def test_set_path_cost_on_a_live_connection(self) -> Any:
        """``setPathCost(0, 2.5)`` reaches the core's path 0 and pathMetrics(); an unknown path
        and a negative or infinite cost are ConfigurationErrors that change nothing."""
        port = yield self.listen()
        proto = yield self.client(port).connect(Factory.forProtocol(Observer))
        conn = proto.transport.kwikConnection
        conn.setPathCost(0, 2.5)
        self.assertEqual(conn.core.paths[0].metrics.cost, 2.5)
        self.assertEqual(conn.pathMetrics()[0].cost, 2.5)
        self.assertRaises(ConfigurationError, conn.setPathCost, 7, 1.0)
        self.assertRaises(ConfigurationError, conn.setPathCost, 0, -1.0)
        self.assertRaises(ConfigurationError, conn.setPathCost, 0, float("inf"))
        self.assertEqual(conn.pathMetrics()[0].cost, 2.5)
        proto.transport.write(b"still works")
        proto.transport.loseConnection()
        yield self.waitForSink()
        count, _, _ = yield self.sinks[0].done
        self.assertEqual(count, len(b"still works"))


class EndpointCostArgumentTests(SynchronousTestCase):
    """KwikClientEndpoint checks ``costs`` at once."""

    def endpoint(self, **kwargs: Any) -> KwikClientEndpoint:
        return KwikClientEndpoint(reactor, "127.0.0.1", 4433, config=client_config(), **kwargs)

    def test_costs_are_kept_as_sorted_pairs(self) -> None:
        """``{1: 5, 0: 0.5}`` becomes ((0, 0.5), (1, 5.0)); no costs is ()."""
        self.assertEqual(self.endpoint(paths=["127.0.0.2"], costs={1: 5, 0: 0.5})._costs,
                         ((0, 0.5), (1, 5.0)))
        self.assertEqual(self.endpoint()._costs, ())

    def test_bad_costs_are_refused(self) -> None:
        """A path index beyond the paths, a non-integer index, and a negative, infinite or
        non-numeric cost raise ConfigurationError."""
        for bad in ({2: 1.0}, {-1: 1.0}, {"1": 1.0}, {1: -1.0}, {1: float("inf")}, {1: "5"}):
            self.assertRaises(ConfigurationError, self.endpoint, paths=["127.0.0.2"], costs=bad)

    def test_endpoints_with_other_costs_do_not_share_a_connection(self) -> None:
        """The costs are part of the pool key: a pooled connection with other costs is not
        reused."""
        first = self.endpoint(paths=["127.0.0.2"], costs={1: 5.0})
        same = self.endpoint(paths=["127.0.0.2"], costs={1: 5.0})
        other = self.endpoint(paths=["127.0.0.2"], costs={1: 1.0})
        entry = first._entry()
        self.addCleanup(entry._teardown, "test over")
        self.assertIs(same._entry(), entry)
        other_entry = other._entry()
        self.addCleanup(other_entry._teardown, "test over")
        self.assertIsNot(other_entry, entry)
