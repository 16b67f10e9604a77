"""
What a packet's fate means for its frames: one table from record kind to "acknowledged" and "lost".

Theory of operation (RFC 9000 §13.3: frames are re-sent, packets never are).  Every frame that must
be delivered reliably leaves a *record* in its packet's
:class:`~kwik_twisted.core.recovery.loss.SentPacket`: a
:class:`~kwik_twisted.core.streams.manager.StreamRecord` for stream data, an
:class:`~kwik_twisted.core.sending.AckRecord` or
:class:`~kwik_twisted.core.sending.HandshakeRecord`, or the control frame itself.  When the packet
is acknowledged or declared lost (or its path fails or is abandoned), :class:`RecordRouter` hands
each record to the part that sent it, through one table, :meth:`RecordRouter._table`, with a row
per record kind: what to do when it is acknowledged and what to re-send when it is lost (quinn's
``Retransmits`` is the model: the one answer to "what must be sent again").  Control frames of the
stream manager (flow control, resets) are its own business: the table's default row sends them back
to it.  An unreliable datagram (a DATAGRAM frame, :mod:`~kwik_twisted.core.datagrams`) has a row
that only counts its fate: it is never sent again.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable

from ..wire import (
    AddAddressFrame,
    DatagramFrame,
    HandshakeDoneFrame,
    NewConnectionIdFrame,
    PathAbandonFrame,
    PathStatusFrame,
    RetireConnectionIdFrame,
    TransportParametersFrame,
)
from .recovery.loss import SentPacket
from .sending import AckRecord, HandshakeRecord
from .streams.manager import StreamManager, StreamRecord
from .streams.sendbuffer import SendBuffer

Handler = Callable[[object], None]


class RecordRouter:
    """
    Routes the records of acknowledged and lost packets (see the module docstring).

    :param streams: the stream manager (stream data, stream-control frames).
    :param crypto_send: the handshake send buffer.
    :param control: the connection's control-frame queue, where lost frames go again.
    :param ack_tracker: the :class:`~kwik_twisted.core.paths.path.AckTracker` of a path ID, or
        ``None`` for a path that is gone.
    :param status_sequence: the sequence number of our latest PATH_STATUS (an older one lost is
        not worth re-sending).
    :param stats: the connection's counters.
    """

    def __init__(
        self,
        *,
        streams: StreamManager,
        crypto_send: SendBuffer,
        control: deque,
        ack_tracker: Callable[[int], object],
        status_sequence: Callable[[], int],
        stats: Counter,
    ) -> None:
        self.streams = streams
        self.crypto_send = crypto_send
        self.control = control
        self.ack_tracker = ack_tracker
        self.status_sequence = status_sequence
        self.stats = stats
        self._rows = self._table()

    def _table(self) -> dict[type, tuple[Handler, Handler]]:
        """``record kind -> (on acknowledged, on lost)``; other kinds: the stream manager's."""
        resend = self.control.append
        ignore = _ignore
        return {
            StreamRecord: (self.streams.on_record_acked, self._stream_lost),
            AckRecord: (self._ack_acked, ignore),
            HandshakeRecord: (self._handshake_acked, self._handshake_lost),
            TransportParametersFrame: (ignore, resend),
            HandshakeDoneFrame: (ignore, resend),
            AddAddressFrame: (ignore, resend),
            PathAbandonFrame: (ignore, resend),
            # A CID issued or retired again after a loss; one that went stale meanwhile (its
            # path retired) is ignored by the peer, which knows the path is gone (core/cids.py).
            NewConnectionIdFrame: (ignore, resend),
            RetireConnectionIdFrame: (ignore, resend),
            PathStatusFrame: (ignore, self._status_lost),
            DatagramFrame: (self._datagram_acked, self._datagram_lost),
        }

    def _row(self, record: object) -> tuple[Handler, Handler]:
        row = self._rows.get(type(record))
        if row is None:
            return self.streams.on_control_acked, self.streams.on_control_lost
        return row

    # -- the rows ------------------------------------------------------------------------

    def _stream_lost(self, record: StreamRecord) -> None:
        self.streams.on_record_lost(record)
        self.stats["stream_frames_retransmitted"] += 1

    def _ack_acked(self, record: AckRecord) -> None:
        tracker = self.ack_tracker(record.path_id)
        if tracker is not None:
            tracker.on_ack_acked(record.largest)

    def _handshake_acked(self, record: HandshakeRecord) -> None:
        self.crypto_send.on_acked(record.offset, record.length, False)

    def _handshake_lost(self, record: HandshakeRecord) -> None:
        self.crypto_send.on_lost(record.offset, record.length, False)

    def _status_lost(self, frame: PathStatusFrame) -> None:
        if frame.sequence == self.status_sequence():  # still the latest word
            self.control.append(frame)

    def _datagram_acked(self, frame: DatagramFrame) -> None:
        self.stats["datagrams_acked"] += 1

    def _datagram_lost(self, frame: DatagramFrame) -> None:
        self.stats["datagrams_lost"] += 1  # never re-sent (RFC 9221)

    # -- the entry points ------------------------------------------------------------------

    def on_acked(self, records: list) -> None:
        """The packet carrying ``records`` was acknowledged."""
        for record in records:
            self._row(record)[0](record)

    def on_lost(self, records: list) -> None:
        """The packet carrying ``records`` was lost (or its path failed): re-send what matters."""
        for record in records:
            self._row(record)[1](record)

    def requeue(self, packets: list[SentPacket]) -> None:
        """Send the frames of ``packets`` again (lost, or their path failed or was abandoned)."""
        for packet in packets:
            self.on_lost(packet.frames)

    def on_acked_packets(self, packets: list[SentPacket]) -> int:
        """
        Settle newly acknowledged ``packets`` (ascending); return their total size.

        Fast path, for the bulk case: a packet carrying nothing but one STREAM record that
        continues the previous such packet's range on the same stream (``offset`` equal to the
        run's end) joins a run, and each run is settled by one ``on_record_acked`` call on the
        joined range.  Equivalent to :meth:`on_acked` record by record (a property test checks
        it): ``SendBuffer.on_acked`` of ``[a, c)`` leaves the same state as ``[a, b)`` then
        ``[b, c)`` (acknowledged bytes are a union, FIN is a sticky flag), the stream's checks
        (all acked, writable again) look at that state and fire at most once, and any other
        record ends the run first, so events keep their order.
        """
        settle = self.streams.on_record_acked
        total = 0
        run: StreamRecord | None = None
        run_end = 0
        run_fin = False
        for packet in packets:
            total += packet.size
            records = packet.frames
            if len(records) == 1 and type(records[0]) is StreamRecord:
                record = records[0]
                if run is not None and record.stream is run.stream and record.offset == run_end:
                    run_end += record.length
                    run_fin = run_fin or record.fin
                    continue
                if run is not None:
                    settle(StreamRecord(run.stream, run.offset, run_end - run.offset, run_fin))
                run, run_end, run_fin = record, record.offset + record.length, record.fin
                continue
            if run is not None:
                settle(StreamRecord(run.stream, run.offset, run_end - run.offset, run_fin))
                run = None
            self.on_acked(records)
        if run is not None:
            settle(StreamRecord(run.stream, run.offset, run_end - run.offset, run_fin))
        return total


def _ignore(record: object) -> None:
    """Nothing to do for this record."""
