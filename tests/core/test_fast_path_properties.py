"""
The connection core's fast/general pairs give the same result (Hypothesis).

* The bulk packet (:func:`kwik_twisted.core.sending.build_packet` when no frame source but stream
  data has work) is the packet :func:`~kwik_twisted.core.sending.build_general_packet` builds from
  the same state: same size, sequence number, records and what is left to send.
* The small packet (``build_packet`` when only the path's ACK and stream data have work: an echo's
  reply) is the general packet too, frame for frame, with the ACK due or not yet due.
* Settling acknowledged packets in runs
  (:meth:`kwik_twisted.core.retransmit.RecordRouter.on_acked_packets`) leaves both connections
  exactly where settling them record by record (:meth:`~RecordRouter.on_acked`) does: same events
  on both sides, same counters.

Both sides of each comparison are two pairs built from the same seed and driven identically.  The
default run is derandomized; the ``fuzz``-marked variants run ``KWIK_FUZZ_EXAMPLES`` random
examples (``make fuzz``).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.sending import (
    _NON_ACK_WORK,
    build_general_packet,
    build_packet,
    only_stream_data,
)
from kwik_twisted.events import StreamDataReceived
from kwik_twisted.wire import Epoch

from .test_connection import established, settle
from .test_connection_properties import PROPERTY, fuzz

#: A write: (stream index, bytes, end the stream).
writes = st.lists(
    st.tuples(st.integers(0, 2), st.integers(1, 5000), st.booleans()), min_size=1, max_size=6
)


def apply_writes(conn, plan) -> None:
    """Open three streams on ``conn`` and queue the planned writes (nothing after a FIN)."""
    streams = [conn.open_stream(priority=i % 2) for i in range(3)]
    ended = set()
    for index, size, fin in plan:
        if index in ended:
            continue
        conn.send_stream_data(streams[index], bytes([index]) * size, end_stream=fin)
        if fin:
            ended.add(index)


def packet_summary(built) -> tuple | None:
    """What must be equal of a built packet: size, sequence number, eliciting, records."""
    if built is None:
        return None
    datagram, packet = built
    records = [
        (r.stream.id, r.offset, r.length, r.fin) if hasattr(r, "stream") else type(r).__name__
        for r in packet.frames
    ]
    return len(datagram), packet.seq, packet.ack_eliciting, records


def settle_one_by_one(router):
    """A replacement for ``on_acked_packets`` that takes the general path, record by record."""

    def settle(packets):
        for packet in packets:
            router.on_acked(packet.frames)
        return sum(packet.size for packet in packets)

    return settle


class BulkPacketProperties(SynchronousTestCase):
    """The bulk packet is the general packet."""

    def bulk_equals_general(self, plan) -> None:
        """From equal states, build_packet and build_general_packet agree packet after packet."""
        fast, general = established(seed=7), established(seed=7)
        for pair in (fast, general):
            apply_writes(pair.client, plan)
        bulk_seen = False
        for _ in range(40):
            now = fast.now
            contexts = [pair.client.sender.ctx for pair in (fast, general)]
            paths = [pair.client.paths[0] for pair in (fast, general)]
            bulk_seen = bulk_seen or only_stream_data(contexts[0], paths[0])
            args = {"now": now, "epoch": int(Epoch.APPLICATION), "allow_data": True, "probe": False}
            a = build_packet(contexts[0], paths[0], **args)
            b = build_general_packet(contexts[1], paths[1], **args)
            self.assertEqual(packet_summary(a), packet_summary(b))
            if a is None:
                break
            paths[0].recovery.on_packet_sent(a[1])
            paths[1].recovery.on_packet_sent(b[1])
        self.assertTrue(bulk_seen)

    @PROPERTY
    @given(plan=writes)
    def test_bulk_packet_equals_general_packet(self, plan) -> None:
        """Derandomized examples of the bulk/general packet equivalence."""
        self.bulk_equals_general(plan)

    @pytest.mark.fuzz
    def test_fuzz_bulk_packet_equals_general_packet(self) -> None:
        """Random examples of the bulk/general packet equivalence."""
        fuzz(self.bulk_equals_general, plan=writes)


def deliver_server_messages(pair, count: int, size: int) -> None:
    """The server sends ``count`` messages of ``size`` bytes; the client takes them in but sends
    nothing back, so an ACK of them is pending on its path."""
    sid = pair.server.open_stream()
    for i in range(count):
        pair.server.send_stream_data(sid, bytes([i]) * size)
        for data, local, remote in pair.dispatcher.datagrams_to_send(now=pair.now):
            pair.client.receive_datagram(data, remote, local, now=pair.now)


class SmallPacketProperties(SynchronousTestCase):
    """The small packet (ACK + stream data) is the general packet."""

    def small_equals_general(self, incoming, plan, wait) -> None:
        """From equal states with an ACK pending, build_packet and build_general_packet seal the
        same packets (size, frames, records), packet after packet, whether the ACK is due
        (``wait``) or not."""
        fast, general = established(seed=5), established(seed=5)
        for pair in (fast, general):
            deliver_server_messages(pair, *incoming)
            apply_writes(pair.client, plan)
        small_seen = False
        now = fast.now + (0.1 if wait else 0.0)
        for _ in range(40):
            contexts = [pair.client.sender.ctx for pair in (fast, general)]
            paths = [pair.client.paths[0] for pair in (fast, general)]
            small_seen = small_seen or (
                paths[0].ack.ack_deadline is not None
                and not any(has_work(contexts[0], paths[0]) for has_work in _NON_ACK_WORK)
            )
            args = {"now": now, "epoch": int(Epoch.APPLICATION), "allow_data": True, "probe": False}
            a = build_packet(contexts[0], paths[0], **args)
            b = build_general_packet(contexts[1], paths[1], **args)
            self.assertEqual(packet_summary(a), packet_summary(b))
            if a is not None:  # the same frames (the pairs' keys differ: not the same bytes)
                self.assertEqual(contexts[0].sealed_frames, contexts[1].sealed_frames)
            self.assertEqual(paths[0].ack.ack_deadline, paths[1].ack.ack_deadline)
            if a is None:
                break
            paths[0].recovery.on_packet_sent(a[1])
            paths[1].recovery.on_packet_sent(b[1])
        self.assertTrue(small_seen)

    @PROPERTY
    @given(
        incoming=st.tuples(st.integers(1, 3), st.integers(1, 200)),
        plan=st.lists(
            st.tuples(st.integers(0, 2), st.integers(1, 3000), st.booleans()), max_size=4
        ),
        wait=st.booleans(),
    )
    def test_small_packet_equals_general_packet(self, incoming, plan, wait) -> None:
        """Derandomized examples of the small/general packet equivalence."""
        self.small_equals_general(incoming, plan, wait)

    @pytest.mark.fuzz
    def test_fuzz_small_packet_equals_general_packet(self) -> None:
        """Random examples of the small/general packet equivalence."""
        fuzz(
            self.small_equals_general,
            incoming=st.tuples(st.integers(1, 3), st.integers(1, 200)),
            plan=writes,
            wait=st.booleans(),
        )


class AckSettlementProperties(SynchronousTestCase):
    """Settling acknowledged packets in runs is settling them one by one."""

    def runs_equal_records(self, plan) -> None:
        """Two transfers, one settling in runs and one record by record, end the same."""
        fast, general = established(seed=3), established(seed=3)
        router = general.client.records
        router.on_acked_packets = settle_one_by_one(router)
        for pair in (fast, general):
            apply_writes(pair.client, plan)
            settle(pair, 2.0)
        self.assertEqual(fast.client_events, general.client_events)
        self.assertEqual(fast.server_events, general.server_events)
        self.assertEqual(fast.client.stats, general.client.stats)
        received = sum(len(e.data) for e in fast.server_events if isinstance(e, StreamDataReceived))
        self.assertGreater(received, 0)

    @PROPERTY
    @given(plan=writes)
    def test_settling_in_runs_equals_settling_records(self, plan) -> None:
        """Derandomized examples of the run/record settlement equivalence."""
        self.runs_equal_records(plan)

    @pytest.mark.fuzz
    def test_fuzz_settling_in_runs_equals_settling_records(self) -> None:
        """Random examples of the run/record settlement equivalence."""
        fuzz(self.runs_equal_records, plan=writes)
