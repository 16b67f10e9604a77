"""
The connection lifecycle table (:mod:`kwik_twisted.core.lifecycle`): every state times every event.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.lifecycle import (
    ENDING,
    TRANSITIONS,
    Lifecycle,
    LifecycleError,
    LifecycleEvent,
    State,
)
from kwik_twisted.wire import ConnectionCloseFrame

PATHS = {
    State.HANDSHAKE: [],
    State.ESTABLISHED: [LifecycleEvent.ESTABLISH],
    State.CLOSING: [LifecycleEvent.CLOSE],
    State.DRAINING: [LifecycleEvent.PEER_CLOSE],
    State.CLOSED: [LifecycleEvent.IDLE_TIMEOUT],
}


def lifecycle_in(state: State) -> Lifecycle:
    """A lifecycle brought to ``state`` through the table."""
    lifecycle = Lifecycle()
    for event in PATHS[state]:
        lifecycle.process(event)
    return lifecycle


class TransitionTableTests(SynchronousTestCase):
    """The table is the specification: allowed pairs move, all others raise."""

    def test_every_state_times_every_event(self) -> None:
        """Each (state, event) pair either leads where the table says or raises LifecycleError,
        leaving the state unchanged."""
        for state in State:
            for event in LifecycleEvent:
                lifecycle = lifecycle_in(state)
                self.assertIs(lifecycle.state, state)
                expected = TRANSITIONS.get((state, event))
                if expected is None:
                    self.assertRaises(LifecycleError, lifecycle.process, event)
                    self.assertIs(lifecycle.state, state)
                else:
                    self.assertIs(lifecycle.process(event), expected)

    def test_closed_is_final(self) -> None:
        """Nothing leaves CLOSED."""
        self.assertFalse([pair for pair in TRANSITIONS if pair[0] is State.CLOSED])

    @settings(max_examples=60, derandomize=True, database=None)
    @given(st.lists(st.sampled_from(list(LifecycleEvent)), max_size=8))
    def test_is_ending_follows_the_state(self, events) -> None:
        """Whatever events are applied, ``is_ending`` is exactly "state in ENDING"."""
        lifecycle = Lifecycle()
        for event in events:
            try:
                lifecycle.process(event)
            except LifecycleError:
                pass
            self.assertEqual(lifecycle.is_ending, lifecycle.state in ENDING)


class EndingTests(SynchronousTestCase):
    """What the lifecycle keeps about the ending."""

    def test_close_owes_the_frame_once(self) -> None:
        """After close() the CONNECTION_CLOSE is owed once; a packet while CLOSING owes it again."""
        lifecycle = lifecycle_in(State.ESTABLISHED)
        frame = ConnectionCloseFrame(0, "bye")
        lifecycle.close(frame, deadline=5.0)
        self.assertEqual((lifecycle.state, lifecycle.close_deadline), (State.CLOSING, 5.0))
        self.assertIs(lifecycle.take_close(), frame)
        self.assertIsNone(lifecycle.take_close())
        lifecycle.on_packet()
        self.assertIs(lifecycle.take_close(), frame)

    def test_draining_owes_nothing(self) -> None:
        """The peer's close while CLOSING drains: nothing is owed, the deadline stays."""
        lifecycle = lifecycle_in(State.ESTABLISHED)
        lifecycle.close(ConnectionCloseFrame(0, "bye"), deadline=5.0)
        lifecycle.peer_closed(deadline=9.0)
        lifecycle.on_packet()
        self.assertEqual((lifecycle.state, lifecycle.close_deadline), (State.DRAINING, 5.0))
        self.assertIsNone(lifecycle.take_close())
        lifecycle.drained()
        self.assertIs(lifecycle.state, State.CLOSED)

    def test_peer_close_sets_the_drain_deadline(self) -> None:
        """A peer's close of a live connection drains until the deadline given."""
        lifecycle = lifecycle_in(State.HANDSHAKE)
        lifecycle.peer_closed(deadline=3.0)
        self.assertEqual((lifecycle.state, lifecycle.close_deadline), (State.DRAINING, 3.0))
        self.assertTrue(lifecycle.is_ending)
