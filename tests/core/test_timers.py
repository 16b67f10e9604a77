"""
The timer table (:mod:`kwik_twisted.core.timers`): one generator of ``(kind, path, deadline)``
behind both ``next_deadline`` and ``handle_deadline``.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.config import KEEP_ALIVE_AUTO
from kwik_twisted.core.timers import IdleTimer, TimerKind, timers
from kwik_twisted.testing.pair import client_config

from .test_connection import established


def armed(conn, now: float) -> dict:
    """The armed timers of ``conn`` as ``{(kind, path ID or None): deadline}``."""
    return {
        (kind, None if path is None else path.id): deadline
        for kind, path, deadline in timers(conn, now=now)
    }


class IdleTimerTests(SynchronousTestCase):
    """The idle and keep-alive formulas."""

    def test_idle_deadline_counts_from_the_last_arrival(self) -> None:
        """The idle deadline is the last arrival plus the timeout, whatever we sent."""
        idle = IdleTimer(30.0, None, lambda: True, now=100.0)
        idle.last_sent = 120.0
        self.assertEqual(idle.deadline(), 130.0)
        idle.last_received = 110.0
        self.assertEqual(idle.deadline(), 140.0)

    def test_no_keep_alive_when_disabled(self) -> None:
        """keep_alive None: never."""
        self.assertIsNone(IdleTimer(30.0, None, lambda: True, now=0.0).keep_alive_deadline())

    def test_automatic_keep_alive_only_with_an_open_stream(self) -> None:
        """The automatic keep-alive pings at a third of the timeout, only while streams exist."""
        streams = []
        idle = IdleTimer(30.0, KEEP_ALIVE_AUTO, lambda: bool(streams), now=0.0)
        self.assertIsNone(idle.keep_alive_deadline())
        streams.append(1)
        self.assertEqual(idle.keep_alive_deadline(), 10.0)

    def test_explicit_keep_alive_counts_from_the_latest_activity(self) -> None:
        """An explicit interval counts from the latest of sent, received and the last ping."""
        idle = IdleTimer(30.0, 5.0, lambda: False, now=0.0)
        idle.last_sent, idle.last_received, idle.pinged = 3.0, 1.0, 2.0
        self.assertEqual(idle.keep_alive_deadline(), 8.0)


class TableTests(SynchronousTestCase):
    """What the table holds in each phase of a connection."""

    def test_next_deadline_is_the_earliest_armed_timer(self) -> None:
        """next_deadline() is the minimum of the table, with idle always armed while live."""
        pair = established()
        table = armed(pair.client, pair.now)
        self.assertIn((TimerKind.IDLE, None), table)
        self.assertEqual(pair.client.next_deadline(), min(table.values()))

    def test_an_open_stream_arms_the_keep_alive(self) -> None:
        """With the default keep-alive, opening a stream adds KEEP_ALIVE at a third of the
        idle timeout."""
        pair = established()
        self.assertNotIn((TimerKind.KEEP_ALIVE, None), armed(pair.client, pair.now))
        pair.client.open_stream()
        table = armed(pair.client, pair.now)
        idle = pair.client.idle
        self.assertEqual(
            table[TimerKind.KEEP_ALIVE, None],
            max(idle.last_sent, idle.last_received, idle.pinged) + idle.timeout / 3,
        )

    def test_a_sent_challenge_arms_the_path_challenge_timer(self) -> None:
        """A new path's challenge, once sent, is timed per path."""
        pair = established()
        path_id = pair.client.open_path(("10.0.0.9", 4000), pair.client.paths[0].remote_addr)
        pair.client.datagrams_to_send(now=pair.now)  # the challenge goes out (and is lost)
        table = armed(pair.client, pair.now)
        self.assertIn((TimerKind.PATH_CHALLENGE, path_id), table)
        self.assertGreater(table[TimerKind.PATH_CHALLENGE, path_id], pair.now)

    def test_closing_leaves_only_the_close_timer(self) -> None:
        """While CLOSING only CLOSE is armed; once it fires, nothing is."""
        pair = established()
        pair.client.close()
        table = armed(pair.client, pair.now)
        self.assertEqual(list(table), [(TimerKind.CLOSE, None)])
        pair.client.handle_deadline(now=table[TimerKind.CLOSE, None])
        self.assertEqual(armed(pair.client, pair.now), {})
        self.assertIsNone(pair.client.next_deadline())

    def test_idle_timeout_fires_from_the_table(self) -> None:
        """Handling the idle deadline closes the connection and stops the walk."""
        pair = established(client_config(idle_timeout=5.0, keep_alive=None))
        client = pair.client
        client.handle_deadline(now=client.idle.deadline())
        self.assertTrue(client.is_closed)
        self.assertIsNone(client.next_deadline())

    def test_calling_early_runs_nothing(self) -> None:
        """handle_deadline before any deadline changes no deadline."""
        pair = established()
        before = armed(pair.client, pair.now)
        pair.client.handle_deadline(now=pair.now)
        self.assertEqual(armed(pair.client, pair.now), before)
