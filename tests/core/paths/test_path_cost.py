"""
The user's cost of a path (:meth:`~kwik_twisted.core.paths.manager.PathManager.set_cost`), in
memory (:class:`~kwik_twisted.testing.pair.MemoryPair`): it lands on the path's metrics, where the
scheduler reads it, and in its :class:`~kwik_twisted.core.paths.metrics.PathMetrics`; a bad cost is
a ConfigurationError and changes nothing; a cost given for a pending path applies when the path
starts; the peer is not told.
"""

from __future__ import annotations

import math

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.paths.manager import check_cost
from kwik_twisted.errors import ConfigurationError
from kwik_twisted.events import PathAbandoned
from kwik_twisted.testing.pair import MemoryPair, client_config, server_config

SECOND_LOCAL = ("192.0.2.77", 5555)
THIRD_LOCAL = ("192.0.2.78", 5556)


class CheckCostTests(SynchronousTestCase):
    """:func:`check_cost`: a finite number >= 0, as a float."""

    def test_finite_non_negative_numbers_are_costs(self) -> None:
        """0, an int and a float are accepted and returned as floats."""
        self.assertEqual([check_cost(c) for c in (0, 3, 2.5)], [0.0, 3.0, 2.5])
        self.assertIs(type(check_cost(3)), float)

    def test_anything_else_is_a_configuration_error(self) -> None:
        """Negative, infinite and NaN numbers, strings, None and booleans are refused."""
        for bad in (-1, -0.001, math.inf, math.nan, "5", None, True):
            with self.assertRaises(ConfigurationError, msg=repr(bad)):
                check_cost(bad)


class SetCostTests(SynchronousTestCase):
    """PathManager.set_cost on a live connection."""

    def setUp(self) -> None:
        self.pair = MemoryPair(client_config(), server_config()).handshake()
        self.manager = self.pair.client.path_manager

    def test_cost_lands_on_the_path_metrics_and_its_snapshot(self) -> None:
        """set_cost(0, 4.5) sets the live tracker's cost (what schedulers read) and the
        PathMetrics snapshot's; the default is 0."""
        self.assertEqual(self.pair.client.path_metrics()[0].cost, 0.0)
        self.manager.set_cost(0, 4.5)
        self.assertEqual(self.pair.client.paths[0].metrics.cost, 4.5)
        self.assertEqual(self.pair.client.path_metrics()[0].cost, 4.5)
        self.manager.set_cost(0, 0)
        self.assertEqual(self.pair.client.path_metrics()[0].cost, 0.0)

    def test_a_bad_cost_changes_nothing(self) -> None:
        """A negative cost raises ConfigurationError and the path keeps its cost."""
        self.manager.set_cost(0, 2.0)
        self.assertRaises(ConfigurationError, self.manager.set_cost, 0, -1)
        self.assertRaises(ConfigurationError, self.manager.set_cost, 0, math.nan)
        self.assertEqual(self.pair.client.paths[0].metrics.cost, 2.0)

    def test_an_unknown_path_is_a_value_error(self) -> None:
        """A path ID that is not a path of the connection raises ValueError."""
        with self.assertRaises(ValueError):
            self.manager.set_cost(9, 1.0)

    def test_the_peer_is_not_told(self) -> None:
        """A cost is local: nothing is queued for the peer, and the server's path keeps cost 0
        after the two sides exchanged packets."""
        queued = len(self.manager.control)
        self.manager.set_cost(0, 7.0)
        self.assertEqual(len(self.manager.control), queued)
        self.pair.client.send_stream_data(self.pair.client.open_stream(), b"x" * 5000)
        self.pair.advance(0.5)
        self.assertEqual(self.pair.server.path_metrics()[0].cost, 0.0)
        self.assertEqual(self.pair.client.path_metrics()[0].cost, 7.0)


class PendingPathCostTests(SynchronousTestCase):
    """A cost given before the handshake let a path start."""

    def test_a_pending_paths_cost_applies_when_it_starts(self) -> None:
        """A path opened before the handshake gets its cost when the server's parameters
        start it; nothing is kept pending afterwards."""
        pair = MemoryPair(client_config(), server_config())
        remote = pair.client.paths[0].remote_addr
        path_id = pair.client.open_path(SECOND_LOCAL, remote)
        pair.client.path_manager.set_cost(path_id, 3.0)
        self.assertNotIn(path_id, pair.client.paths)
        pair.handshake()
        pair.advance(0.5)
        self.assertEqual(pair.client.path_metrics()[path_id].cost, 3.0)
        self.assertEqual(pair.client.path_manager.pending_cost, {})

    def test_a_refused_pending_path_leaves_no_cost_behind(self) -> None:
        """A pending path dropped because the server allows fewer paths takes its cost with it
        (the pending costs stay bounded by the pending paths)."""
        pair = MemoryPair(client_config(max_paths=8), server_config(max_paths=2))
        remote = pair.client.paths[0].remote_addr
        pair.client.open_path(SECOND_LOCAL, remote)
        dropped = pair.client.open_path(THIRD_LOCAL, remote)
        pair.client.path_manager.set_cost(dropped, 9.0)
        pair.handshake()
        abandoned = [e.path_id for e in pair.client_events if isinstance(e, PathAbandoned)]
        self.assertEqual(abandoned, [dropped])
        self.assertEqual(pair.client.path_manager.pending_cost, {})
