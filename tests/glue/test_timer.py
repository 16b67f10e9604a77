"""
The connection glue's one timer: it follows the core's deadline, and never fires in a busy loop.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.glue.connection import MIN_TIMER_DELAY, KwikConnection

from .fakes import FakeConnectionOwner


class StuckCore:
    """A core whose deadline stays at 1.0 however often it is handled (a bug the glue must
    survive), counting the calls."""

    def __init__(self) -> None:
        self.stats: Counter[str] = Counter()
        self.handled = 0
        self.is_closed = False
        self.has_events = False

    def next_deadline(self) -> float:
        return 1.0

    def handle_deadline(self, *, now: float) -> None:
        self.handled += 1
        if self.handled > 1000:
            raise AssertionError("the timer fires in a busy loop")

    def datagrams_to_send(self, *, now: float) -> list:
        return []

    def next_event(self):
        return None


class MovingCore(StuckCore):
    """A core whose deadline moves on by one second each time it is handled."""

    def next_deadline(self) -> float:
        return 1.0 + self.handled


class TimerTests(SynchronousTestCase):
    """How KwikConnection arms its timer from the core's deadline."""

    def test_a_deadline_that_does_not_move_on_waits_the_minimum_delay(self) -> None:
        """
        If the core still reports a deadline as due after handling it, the glue waits
        MIN_TIMER_DELAY instead of firing again at once, and counts the stall: 10 ms of reactor
        time give about ten timer runs, not an endless loop at one instant.
        """
        clock, core = Clock(), StuckCore()
        conn = KwikConnection(clock, core, FakeConnectionOwner())
        conn.service()
        clock.advance(1.0)
        self.assertEqual(core.handled, 1)
        for _ in range(10):
            clock.advance(MIN_TIMER_DELAY)
        self.assertEqual(core.handled, 11)
        self.assertEqual(core.stats["timer_stalls"], 11)
        clock.advance(0)
        self.assertEqual(core.handled, 11)

    def test_a_moving_deadline_is_followed_exactly(self) -> None:
        """A healthy core's deadlines are kept to the instant, with no stall counted."""
        clock, core = Clock(), MovingCore()
        conn = KwikConnection(clock, core, FakeConnectionOwner())
        conn.service()
        for expected in (1, 2, 3):
            clock.advance(1.0)
            self.assertEqual(core.handled, expected)
        self.assertEqual(core.stats["timer_stalls"], 0)
