"""
Tests for :mod:`kwik_twisted.core.streams.state`.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.streams.state import (
    RECV_TRANSITIONS,
    SEND_TRANSITIONS,
    RecvState,
    RecvStateMachine,
    SendState,
    SendStateMachine,
    StreamEvent,
)
from kwik_twisted.errors import ErrorCode, StreamStateError

E = StreamEvent


def run(machine: SendStateMachine | RecvStateMachine, *events: StreamEvent) -> object:
    """Process ``events`` in order and return the final state."""
    for event in events:
        machine.process(event)
    return machine.state


class SendStateMachineTests(SynchronousTestCase):
    """The sending part of a stream (RFC 9000 §3.1)."""

    def test_normal_life(self) -> None:
        """Ready -> Send -> Data Sent -> Data Recvd, then terminal."""
        machine = SendStateMachine()
        self.assertEqual(machine.state, SendState.READY)
        self.assertEqual(machine.process(E.SEND_DATA), SendState.SEND)
        self.assertEqual(machine.process(E.SEND_FIN), SendState.DATA_SENT)
        self.assertTrue(machine.can_send_data)
        self.assertEqual(machine.process(E.ALL_ACKED), SendState.DATA_RECVD)
        self.assertTrue(machine.terminal)
        self.assertFalse(machine.can_send_data)

    def test_reset_life(self) -> None:
        """A reset stream goes through Reset Sent to Reset Recvd."""
        machine = SendStateMachine()
        state = run(machine, E.SEND_DATA, E.RECV_STOP_SENDING, E.SEND_RESET)
        self.assertEqual(state, SendState.RESET_SENT)
        self.assertTrue(machine.is_reset)
        self.assertFalse(machine.terminal)
        self.assertEqual(machine.process(E.RESET_ACKED), SendState.RESET_RECVD)
        self.assertTrue(machine.terminal)

    def test_data_after_fin_is_an_error(self) -> None:
        """Data Recvd refuses SEND_DATA with StreamStateError and keeps its state."""
        machine = SendStateMachine()
        run(machine, E.SEND_FIN, E.ALL_ACKED)
        with self.assertRaises(StreamStateError) as caught:
            machine.process(E.SEND_DATA)
        self.assertEqual(caught.exception.code, ErrorCode.STREAM_STATE_ERROR)
        self.assertEqual(machine.state, SendState.DATA_RECVD)

    def test_receive_events_are_refused(self) -> None:
        """Events of the receiving part are not valid for the sending part."""
        self.assertRaises(StreamStateError, SendStateMachine().process, E.RECV_DATA)

    def test_every_pair_is_allowed_or_refused(self) -> None:
        """Every (state, event) pair follows the table or raises StreamStateError."""
        for state in SendState:
            for event in StreamEvent:
                machine = SendStateMachine()
                machine.state = state
                expected = SEND_TRANSITIONS.get((state, event))
                if expected is None:
                    self.assertRaises(StreamStateError, machine.process, event)
                    self.assertEqual(machine.state, state)
                else:
                    self.assertEqual(machine.process(event), expected)

    def test_terminal_states_have_no_exit(self) -> None:
        """No transition leaves a terminal state of the sending part."""
        for (state, _), target in SEND_TRANSITIONS.items():
            if state in (SendState.DATA_RECVD, SendState.RESET_RECVD):
                self.assertEqual(target, state)

    @given(st.lists(st.sampled_from(list(StreamEvent)), max_size=30))
    @settings(max_examples=200, deadline=None)
    def test_event_sequences_follow_the_table(self, events: list[StreamEvent]) -> None:
        """Any event sequence moves through the table or raises, never anything else."""
        machine = SendStateMachine()
        for event in events:
            before = machine.state
            expected = SEND_TRANSITIONS.get((before, event))
            try:
                after = machine.process(event)
            except StreamStateError:
                self.assertIsNone(expected)
                self.assertEqual(machine.state, before)
            else:
                self.assertEqual(after, expected)


class RecvStateMachineTests(SynchronousTestCase):
    """The receiving part of a stream (RFC 9000 §3.2)."""

    def test_normal_life(self) -> None:
        """Recv -> Size Known -> Data Recvd -> Data Read."""
        machine = RecvStateMachine()
        self.assertFalse(machine.size_known)
        state = run(machine, E.RECV_DATA, E.RECV_FIN)
        self.assertEqual(state, RecvState.SIZE_KNOWN)
        self.assertTrue(machine.size_known)
        self.assertEqual(machine.process(E.ALL_RECEIVED), RecvState.DATA_RECVD)
        self.assertEqual(machine.process(E.APP_READ_ALL), RecvState.DATA_READ)
        self.assertTrue(machine.terminal)

    def test_late_frames_after_read_are_tolerated(self) -> None:
        """Retransmitted STREAM frames and a RESET after Data Read are ignored."""
        machine = RecvStateMachine()
        run(machine, E.RECV_FIN, E.ALL_RECEIVED, E.APP_READ_ALL)
        state = run(machine, E.RECV_DATA, E.RECV_FIN, E.RECV_RESET)
        self.assertEqual(state, RecvState.DATA_READ)

    def test_reset_life(self) -> None:
        """A reset received in Recv goes to Reset Recvd, then Reset Read."""
        machine = RecvStateMachine()
        self.assertEqual(machine.process(E.RECV_RESET), RecvState.RESET_RECVD)
        self.assertTrue(machine.is_reset)
        self.assertEqual(machine.process(E.APP_READ_RESET), RecvState.RESET_READ)
        self.assertTrue(machine.terminal)

    def test_reading_all_before_all_received_is_an_error(self) -> None:
        """APP_READ_ALL before the final size is known raises StreamStateError."""
        self.assertRaises(StreamStateError, RecvStateMachine().process, E.APP_READ_ALL)

    def test_stop_sending_only_before_all_data(self) -> None:
        """STOP_SENDING may be sent in Recv and Size Known only."""
        machine = RecvStateMachine()
        machine.process(E.SEND_STOP_SENDING)
        run(machine, E.RECV_FIN, E.SEND_STOP_SENDING, E.ALL_RECEIVED)
        self.assertRaises(StreamStateError, machine.process, E.SEND_STOP_SENDING)

    def test_every_pair_is_allowed_or_refused(self) -> None:
        """Every (state, event) pair follows the table or raises StreamStateError."""
        for state in RecvState:
            for event in StreamEvent:
                machine = RecvStateMachine()
                machine.state = state
                expected = RECV_TRANSITIONS.get((state, event))
                if expected is None:
                    self.assertRaises(StreamStateError, machine.process, event)
                    self.assertEqual(machine.state, state)
                else:
                    self.assertEqual(machine.process(event), expected)

    def test_terminal_states_have_no_exit(self) -> None:
        """No transition leaves a terminal state of the receiving part."""
        for (state, _), target in RECV_TRANSITIONS.items():
            if state in (RecvState.DATA_READ, RecvState.RESET_READ):
                self.assertEqual(target, state)

    @given(st.lists(st.sampled_from(list(StreamEvent)), max_size=30))
    @settings(max_examples=200, deadline=None)
    def test_event_sequences_follow_the_table(self, events: list[StreamEvent]) -> None:
        """Any event sequence moves through the table or raises, never anything else."""
        machine = RecvStateMachine()
        for event in events:
            before = machine.state
            expected = RECV_TRANSITIONS.get((before, event))
            try:
                after = machine.process(event)
            except StreamStateError:
                self.assertIsNone(expected)
                self.assertEqual(machine.state, before)
            else:
                self.assertEqual(after, expected)
