"""
Properties of an established connection under arbitrary input (Hypothesis).

* Any list of valid frames, authenticated with the peer's keys, is either processed or ends the
  connection with a wire error code; nothing else escapes, and the connection's owner-facing calls
  keep working afterwards.
* Any bytes at all handed to ``receive_datagram`` are dropped or ignored: they never raise and never
  close the connection (unauthenticated input cannot be attributed to the peer).

The default run is derandomized (the same examples every time, so CI never goes red on a new random
draw); the ``fuzz``-marked variants run ``KWIK_FUZZ_EXAMPLES`` random examples (``make fuzz``).
"""

from __future__ import annotations

import os
from unittest import SkipTest

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_outcome
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.connection import State
from kwik_twisted.errors import ErrorCode
from kwik_twisted.events import ConnectionTerminated, Event
from kwik_twisted.testing.pair import CLIENT_ADDR, SERVER_ADDR, forge
from kwik_twisted.wire import ConnectionCloseFrame, PacketType
from tests.wire.strategies import frame_lists, raw_datagram

from .test_connection import drain, established, settle

#: Codes a victim may close with when a peer misbehaves (IDLE_TIMEOUT is never sent, and
#: INTERNAL_ERROR would mean the victim itself hit a bug).
WIRE_CODES = frozenset(int(c) for c in ErrorCode) - {
    ErrorCode.IDLE_TIMEOUT, ErrorCode.INTERNAL_ERROR,
}

_COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
PROPERTY = settings(max_examples=40, derandomize=True, **_COMMON)


def fuzz(check, **strategies) -> None:
    """Run ``check`` on KWIK_FUZZ_EXAMPLES random examples; skip unless that is set."""
    examples = os.environ.get("KWIK_FUZZ_EXAMPLES")
    if not examples:
        raise SkipTest("fuzzing runs only with KWIK_FUZZ_EXAMPLES set (make fuzz)")
    settings(max_examples=int(examples), **_COMMON)(given(**strategies)(check))()


def acceptable_code(code: int) -> bool:
    """A transport error code of protocol.rst, or a HANDSHAKE_FAILED code."""
    return code in WIRE_CODES or 0x100 <= code <= 0x1FF


class ForgedFramesProperties(SynchronousTestCase):
    """Authenticated frame lists of any shape."""

    def check_victim(self, pair, victim, attacker_is_client: bool, frames: list) -> None:
        """Deliver ``frames`` from the attacker to ``victim`` and check the outcome."""
        datagram = forge(pair.client if attacker_is_client else pair.server, frames)
        if attacker_is_client:
            pair.deliver_to_server(datagram)
            events = pair.server_events
        else:
            pair.deliver_to_client(datagram)
            events = pair.client_events
        ends = [e for e in events if isinstance(e, ConnectionTerminated)]
        self.assertLessEqual(len(ends), 1)
        closed_by_frame = any(isinstance(f, ConnectionCloseFrame) for f in frames)
        note_outcome("processed" if not ends else f"closed with 0x{ends[0].error_code:x}")
        if ends:
            end = ends[0]
            if end.by_peer:
                self.assertTrue(closed_by_frame, end)
            else:
                self.assertTrue(acceptable_code(end.error_code), end)
                self.assertIn(victim.state, (State.CLOSING, State.CLOSED))
        else:
            self.assertIs(victim.state, State.ESTABLISHED)
        # The owner-facing calls keep working, whatever happened.
        deadline = victim.next_deadline()
        self.assertTrue(deadline is None or isinstance(deadline, float))
        self.assertIsInstance(victim.datagrams_to_send(now=pair.now), list)
        event = victim.next_event()
        self.assertTrue(event is None or isinstance(event, Event))
        if deadline is not None:
            victim.handle_deadline(now=max(pair.now, deadline))
        settle(pair, 1.0)
        drain(victim)

    @PROPERTY
    @given(frames=frame_lists())
    def test_forged_frames_to_the_server_end_cleanly(self, frames):
        """Frames from a hostile client are processed or close the server with a wire code."""
        self.forged_to_server(frames)

    def forged_to_server(self, frames) -> None:
        """Deliver ``frames`` from a hostile client to an established server."""
        pair = established()
        self.check_victim(pair, pair.server, True, frames)

    def forged_to_client(self, frames) -> None:
        """Deliver ``frames`` from a hostile server to an established client."""
        pair = established()
        self.check_victim(pair, pair.client, False, frames)

    @pytest.mark.fuzz
    def test_fuzz_forged_frames_to_the_server(self):
        """The server property on KWIK_FUZZ_EXAMPLES random frame lists."""
        fuzz(self.forged_to_server, frames=frame_lists())

    @pytest.mark.fuzz
    def test_fuzz_forged_frames_to_the_client(self):
        """The client property on KWIK_FUZZ_EXAMPLES random frame lists."""
        fuzz(self.forged_to_client, frames=frame_lists())

    @pytest.mark.fuzz
    def test_fuzz_several_forged_packets_in_a_row(self):
        """The packet-sequence property on KWIK_FUZZ_EXAMPLES random batches."""
        batches = st.lists(frame_lists(max_size=3), min_size=2, max_size=4)
        fuzz(self.forged_sequence, batches=batches)

    @PROPERTY
    @given(frames=frame_lists())
    def test_forged_frames_to_the_client_end_cleanly(self, frames):
        """Frames from a hostile server are processed or close the client with a wire code."""
        self.forged_to_client(frames)

    @PROPERTY
    @given(batches=st.lists(frame_lists(max_size=3), min_size=2, max_size=4))
    def test_several_forged_packets_in_a_row(self, batches):
        """A sequence of forged packets never makes an exception escape or close twice."""
        self.forged_sequence(batches)

    def forged_sequence(self, batches) -> None:
        """Deliver several forged packets in a row to an established server."""
        pair = established()
        server = pair.server
        for frames in batches:
            if server.state is not State.ESTABLISHED:
                break
            pair.deliver_to_server(forge(pair.client, frames))
        ends = [e for e in pair.server_events if isinstance(e, ConnectionTerminated)]
        self.assertLessEqual(len(ends), 1)
        for end in ends:
            self.assertTrue(end.by_peer or acceptable_code(end.error_code), end)
        settle(pair, 1.0)


class GarbageProperties(SynchronousTestCase):
    """Unauthenticated bytes of any shape."""

    def assertUnharmed(self, pair, conn, feed) -> None:
        """``feed`` hands garbage to ``conn``; it must not raise, close or emit anything."""
        before = len(pair.server_events), len(pair.client_events)
        feed()
        self.assertIs(conn.state, State.ESTABLISHED)
        self.assertEqual((len(pair.server_events), len(pair.client_events)), before)
        self.assertIsNone(conn.next_event())
        conn.next_deadline()
        conn.datagrams_to_send(now=pair.now)

    @PROPERTY
    @given(data=st.binary(max_size=1500))
    def test_random_bytes_never_raise_or_close(self, data):
        """Random bytes given straight to an established connection are dropped."""
        pair = established()
        server = pair.server
        self.assertUnharmed(
            pair, server,
            lambda: server.receive_datagram(data, SERVER_ADDR, CLIENT_ADDR, now=pair.now),
        )

    @PROPERTY
    @given(rest=st.binary(max_size=1500), flags=st.integers(0, 255))
    def test_random_bytes_behind_a_valid_envelope_never_raise_or_close(self, rest, flags):
        """Bytes after a real short envelope (any first byte, the connection's CID) get deeper,
        still dropped."""
        pair = established()
        server = pair.server
        data = bytes((flags,)) + server.local_cid + rest
        self.assertUnharmed(
            pair, server,
            lambda: server.receive_datagram(data, SERVER_ADDR, CLIENT_ADDR, now=pair.now),
        )

    @PROPERTY
    @given(
        payload=st.binary(min_size=17, max_size=1400),
        seq=st.integers(0, (1 << 64) - 1),
        frame_count=st.integers(1, 70),
        packet_type=st.sampled_from(PacketType),
    )
    def test_well_formed_header_with_forged_ciphertext_never_closes(
        self, payload, seq, frame_count, packet_type
    ):
        """A header that parses and checksums correctly, with a forged ciphertext, is dropped."""
        pair = established()
        client = pair.client
        data = raw_datagram(
            payload=payload, dcid=client.local_cid, seq=seq, frame_count=frame_count,
            packet_type=packet_type,
        )
        self.assertUnharmed(
            pair, client,
            lambda: client.receive_datagram(data, CLIENT_ADDR, SERVER_ADDR, now=pair.now),
        )
