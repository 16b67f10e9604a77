"""
Packet assembly: which frames go into the next datagram on a path, under which keys.

Theory of operation.  :func:`build_packet` fills one datagram for one path, in this order: the
path's own ACK if one is due (each path is acknowledged on itself), PATH_RESPONSE / PATH_CHALLENGE,
control frames (ours, then the stream manager's flow-control frames; on usable paths only),
handshake data, stream data by priority, a PING if the packet must elicit an ACK (a probe) and has
nothing else, and then a not-yet-due ACK of the path riding along on an ack-eliciting packet.
Client packets under initial keys are padded to 1200 bytes (protocol.rst, "Handshake"). Every frame
that must be delivered reliably leaves a *record* in the packet's
:class:`~kwik_twisted.core.recovery.loss.SentPacket`, which the connection settles when the packet
is acknowledged or declared lost (RFC 9000 §13.3: frames are re-sent, packets never are).

The caller decides whether the congestion window, the pacer and the amplification budget allow a
packet; this module only decides what is in it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from ..wire import (
    CID_LENGTH,
    MAX_FRAME_COUNT,
    TAG_LENGTH,
    ControlFrame,
    Epoch,
    HandshakeFrame,
    Header,
    PaddingFrame,
    PingFrame,
    classify,
    encode_packet,
    varint_size,
)
from ..wire.frames import push_control_frame, push_stream_frame
from ..wire.packets import encode_application_packet
from .recovery.loss import SentPacket

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection
    from .paths.path import Path

#: Smallest UDP payload of a client's initial-key datagram.
MIN_INITIAL_DATAGRAM = 1200
#: Most frames in one packet (the spec's limit: Frame Count stays a one-byte varint).
MAX_FRAMES = MAX_FRAME_COUNT
#: Worst-case bytes of a STREAM frame header without extensions.
STREAM_HEADER_MAX = 8 + 8 + 1 + 2 + 4 + 1 + 1
#: Bytes of a control frame header with a body under 64 bytes.
CONTROL_HEADER = 17
# Plain ints for the per-packet path (an IntEnum member lookup costs about 80 ns in CPython 3.11).
_INITIAL, _APPLICATION = int(Epoch.INITIAL), int(Epoch.APPLICATION)


class AckRecord:
    """An ACK we sent for ``path_id`` up to ``largest``; once acked, older ranges can go."""

    __slots__ = ("path_id", "largest")

    def __init__(self, path_id: int, largest: int) -> None:
        self.path_id = path_id
        self.largest = largest


class HandshakeRecord:
    """Handshake bytes ``[offset, offset + length)`` sent in a packet."""

    __slots__ = ("offset", "length")

    def __init__(self, offset: int, length: int) -> None:
        self.offset = offset
        self.length = length


@functools.lru_cache(maxsize=256)
def header_overhead(path_id: int, long: bool) -> int:
    """Bytes of envelope and path-packet header (with a 2-byte Total Length) plus the AEAD tag."""
    envelope = 2 + CID_LENGTH + (CID_LENGTH if long else 0) + varint_size(path_id)
    return envelope + 8 + 1 + 1 + 2 + 4 + 1 + TAG_LENGTH


class PacketBuilder:
    """Collects frames for one packet within a byte budget."""

    __slots__ = ("buf", "frames", "records", "budget", "epoch", "ack_eliciting", "compressed")

    def __init__(self, budget: int, epoch: int) -> None:
        self.buf = bytearray()
        self.frames: list = []
        self.records: list = []
        self.budget = budget
        self.epoch = epoch
        self.ack_eliciting = False
        self.compressed = False

    @property
    def room(self) -> int:
        """Plaintext bytes still free."""
        return self.budget - len(self.buf)

    @property
    def full(self) -> bool:
        """Whether no further frame fits."""
        return len(self.frames) >= MAX_FRAMES or self.room < CONTROL_HEADER + 1

    def add_control(self, frame: ControlFrame, record: object = None) -> bool:
        """Append ``frame`` if it fits; return whether it did."""
        if len(self.frames) >= MAX_FRAMES:
            return False
        mark = len(self.buf)
        push_control_frame(self.buf, frame, self.epoch)
        if len(self.buf) > self.budget:
            del self.buf[mark:]
            return False
        self.frames.append(frame)
        if frame.ack_eliciting:
            self.ack_eliciting = True
        if record is not None:
            self.records.append(record)
        return True

    def add_stream(self, frame, record) -> None:
        """Append a STREAM frame sized by the caller to fit."""
        if push_stream_frame(self.buf, frame, self.epoch):
            self.compressed = True
        self.frames.append(frame)
        self.records.append(record)
        self.ack_eliciting = True


def build_packet(
    conn: Connection, path: Path, *, now: float, epoch: int, allow_data: bool, probe: bool
) -> tuple[bytes, SentPacket] | None:
    """
    Assemble, seal and record one datagram for ``path``, or return ``None`` if nothing is worth
    sending.
    """
    if (
        allow_data
        and not probe
        and epoch == _APPLICATION
        and path.address_validated
        and conn.only_stream_data(path)
    ):
        return _build_data_packet(conn, path, now)
    long = epoch == _INITIAL
    budget = conn.max_datagram_size - header_overhead(path.id, long)
    room = None if path.address_validated else path.amplification_room()
    if room is not None:
        budget = min(budget, room - header_overhead(path.id, long))
        if budget < CONTROL_HEADER + 8:
            return None
    builder = PacketBuilder(budget, epoch)
    _add_acks(conn, builder, path, now, due_only=True)
    conn.add_control_frames(builder, path, now=now)
    _add_handshake(conn, builder, epoch)
    if allow_data and epoch == _APPLICATION and conn.streams.has_data:
        _add_stream_data(conn, builder)
    if probe and not builder.ack_eliciting:
        builder.add_control(PingFrame())
    if builder.ack_eliciting:
        _add_acks(conn, builder, path, now, due_only=False)  # piggyback an ACK not yet due
    if not builder.frames:
        return None
    if not builder.ack_eliciting and not conn.ack_only_allowed(builder):
        return None
    if long and conn.is_client:
        _pad(builder, path.id)
    return _seal(conn, path, builder, now, long)


def _build_data_packet(conn: Connection, path: Path, now: float) -> tuple[bytes, SentPacket] | None:
    """
    The bulk packet: stream data and nothing else, under application keys.

    :func:`build_packet` takes this path when nothing but stream data could go in (no ACK
    pending, no path validation, control or handshake frames waiting, no probe, no amplification
    limit); each of the general path's other steps would then add nothing, so the packet is the
    same.
    """
    builder = PacketBuilder(conn.max_datagram_size - header_overhead(path.id, False), _APPLICATION)
    _add_stream_data(conn, builder)
    if not builder.frames:
        return None
    return _seal(conn, path, builder, now, False)


def _add_acks(
    conn: Connection, builder: PacketBuilder, path: Path, now: float, *, due_only: bool
) -> None:
    """
    The ACK for ``path`` if one is due (or, with ``due_only`` false, pending).

    Each path is acknowledged on itself: an ACK sent on another path would die with that path, and
    the sender would then take a working path for a dead one.
    """
    tracker = path.ack
    deadline = tracker.ack_deadline
    if deadline is None or (due_only and not tracker.immediate and deadline > now):
        return
    frame = tracker.build_ack(path.id, now=now)
    if frame is not None and builder.add_control(frame, AckRecord(path.id, frame.largest)):
        tracker.on_ack_sent()


def _add_handshake(conn: Connection, builder: PacketBuilder, epoch: int) -> None:
    send = conn.crypto_send
    if not send.pending or conn.handshake_epoch() != epoch:
        return
    while send.pending and builder.room > CONTROL_HEADER + 16:
        piece = send.next_frame(builder.room - CONTROL_HEADER - 1)
        if piece is None:
            return
        offset, data, _fin, _retransmit = piece
        if not builder.add_control(
            HandshakeFrame(offset, bytes(data)), HandshakeRecord(offset, len(data))
        ):
            send.on_lost(offset, len(data), False)
            return


def _add_stream_data(conn: Connection, builder: PacketBuilder) -> None:
    streams = conn.streams
    buf = builder.buf
    frames = builder.frames
    while len(frames) < MAX_FRAMES:
        space = builder.budget - len(buf) - STREAM_HEADER_MAX - 16  # 16: room for a QOS extension
        if space < 1:
            return
        out = streams.next_stream_frame(space)
        if out is None:
            return
        frame, record = out
        builder.add_stream(frame, record)


def _pad(builder: PacketBuilder, path_id: int) -> None:
    """Pad a client initial packet so the datagram is at least 1200 bytes."""
    missing = MIN_INITIAL_DATAGRAM - header_overhead(path_id, True) - len(builder.buf)
    if missing <= 0:
        return
    # A PADDING frame with a body of L bytes takes 16 + varint_size(L) + L bytes.
    length = max(0, missing - 17)
    if length >= 64:
        length = max(64, missing - 18)
    builder.budget = max(builder.budget, len(builder.buf) + 18 + length)
    builder.add_control(PaddingFrame(length))


def _seal(
    conn: Connection, path: Path, builder: PacketBuilder, now: float, long: bool
) -> tuple[bytes, SentPacket]:
    recovery = path.recovery
    seq = recovery.next_sequence_number
    frames = builder.frames
    if not long:
        datagram = encode_application_packet(
            path.dcid or conn.peer_cid,
            path.id,
            seq,
            classify(frames),
            len(frames),
            1 if builder.compressed else 0,
            builder.buf,
            conn.send_keys(_APPLICATION).seal,
        )
        eliciting = builder.ack_eliciting
        return datagram, SentPacket(seq, now, len(datagram), eliciting, eliciting, builder.records)
    header = Header(
        path.dcid or conn.peer_cid,
        path.id,
        seq,
        classify(frames),
        len(frames),
        1 if builder.compressed else 0,
        Epoch.INITIAL if long else Epoch.APPLICATION,
        conn.local_cid if long else None,
    )
    keys = conn.send_keys(Epoch.INITIAL if long else Epoch.APPLICATION)
    datagram = encode_packet(header, bytes(builder.buf), keys.seal)
    eliciting = builder.ack_eliciting
    sent = SentPacket(seq, now, len(datagram), eliciting, eliciting, builder.records)
    return datagram, sent
