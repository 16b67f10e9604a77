"""
Packet assembly: which frames go into the next datagram on a path, under which keys.

Theory of operation.  :func:`build_packet` fills one datagram for one path by walking one list
of frame sources, :data:`SOURCES`, in this order: the path's own ACK if one is due (each path is
acknowledged on itself), PATH_RESPONSE / PATH_CHALLENGE, control frames (ours, then the stream
manager's flow-control frames; on usable paths only), handshake data, unreliable datagrams (on
usable paths with room in the congestion window, :mod:`~kwik_twisted.core.datagrams`), stream data
by priority.
Then a PING if the packet must elicit an ACK (a probe) and has nothing else, and a not-yet-due ACK
of the path riding along on an ack-eliciting packet.  Client packets under initial keys are padded
to :data:`~kwik_twisted.config.MIN_DATAGRAM_SIZE` bytes (protocol.rst, "Handshake"). Every frame
that must be delivered reliably leaves a *record* in the packet's
:class:`~kwik_twisted.core.recovery.loss.SentPacket`, which the connection settles when the packet
is acknowledged or declared lost (RFC 9000 §13.3: frames are re-sent, packets never are).

The bulk packet, stream data and nothing else, skips the walk when no source but stream data has
work (:func:`only_stream_data`, read from the same list, so a new source cannot be forgotten
there); so does the small packet, the path's ACK and stream data (an echo's reply), when only the
ACK has work beside the data (:func:`_build_ack_data_packet`, same frames in the same order as
the walk).  :func:`wants_packet` (whether anything but stream data is worth a packet) is read from
the list too.

The caller decides whether the congestion window, the pacer and the amplification budget allow a
packet; this module only decides what is in it.  It sees the connection through a
:class:`PacketContext`: the frame sources, the keys and the counters, nothing else.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from ..config import MIN_DATAGRAM_SIZE
from ..errors import ErrorCode
from ..wire import (
    MAX_FRAME_COUNT,
    TAG_LENGTH,
    AckFrame,
    ConnectionCloseFrame,
    ControlFrame,
    Epoch,
    HandshakeFrame,
    Header,
    PaddingFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PingFrame,
    StreamFrame,
    classify,
    encode_packet,
)
from ..wire.frames import push_control_frame, push_stream_frame
from ..wire.packets import PATH_HEADER, encode_application_packet, envelope_size
from .recovery.loss import SentPacket
from .streams.sendqueue import StreamRecord

if TYPE_CHECKING:  # pragma: no cover
    from .keys import KeySchedule
    from .paths.path import Path
    from .streams.manager import StreamManager
    from .streams.sendbuffer import SendBuffer

#: Smallest UDP payload of a client's initial-key datagram (an alias of the one constant).
MIN_INITIAL_DATAGRAM = MIN_DATAGRAM_SIZE
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


class PacketContext:
    """
    What the packet assembler needs of a connection, and nothing more.

    :ivar is_client: client packets under initial keys are padded.
    :ivar local_cid: our CID (the source CID of initial-key packets).
    :ivar peer_cid: the peer's CID (the destination of every packet without a path CID).
    :ivar max_datagram_size: the largest datagram we send (ours and the peer's limit).
    :ivar keys: the :class:`~kwik_twisted.core.keys.KeySchedule` (sealing keys, handshake epoch).
    :ivar crypto_send: the handshake bytes to send.
    :ivar control: the connection's reliable control frames waiting to be sent.
    :ivar streams: the stream manager (stream data and its control frames).
    :ivar datagrams: the :class:`~kwik_twisted.core.datagrams.DatagramChannel`, or ``None``.
    :ivar stats: the connection's counters.
    :ivar sealed_frames: the frames of the packet sealed last (what a qlog trace shows).
    :ivar retry_token: the token of a Retry, carried by every later Initial (client).
    """

    __slots__ = (
        "is_client",
        "local_cid",
        "peer_cid",
        "max_datagram_size",
        "keys",
        "crypto_send",
        "control",
        "streams",
        "stats",
        "sealed_frames",
        "datagrams",
        "retry_token",
    )

    def __init__(
        self,
        *,
        is_client: bool,
        local_cid: bytes,
        peer_cid: bytes,
        max_datagram_size: int,
        keys: KeySchedule,
        crypto_send: SendBuffer,
        control: deque,
        streams: StreamManager,
        stats: Counter,
        datagrams=None,  # a DatagramChannel (core/datagrams.py imports this module)
    ) -> None:
        self.is_client = is_client
        self.local_cid = local_cid
        self.peer_cid = peer_cid
        self.max_datagram_size = max_datagram_size
        self.keys = keys
        self.crypto_send = crypto_send
        self.control = control
        self.streams = streams
        self.stats = stats
        self.sealed_frames: list = []
        self.datagrams = datagrams
        #: The address-validation token our Initials carry (client, after a Retry).
        self.retry_token = b""


class HandshakeRecord:
    """Handshake bytes ``[offset, offset + length)`` sent in a packet."""

    __slots__ = ("offset", "length")

    def __init__(self, offset: int, length: int) -> None:
        self.offset = offset
        self.length = length


def header_overhead(long: bool, token_length: int = 0) -> int:
    """Bytes of envelope and path-packet header (with a 2-byte Total Length) plus the AEAD tag;
    a long envelope carries a token of ``token_length`` bytes."""
    return envelope_size(long, token_length) + PATH_HEADER + TAG_LENGTH


#: :func:`header_overhead` of every application packet.
SHORT_OVERHEAD = header_overhead(False)


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


class FrameSource(NamedTuple):
    """
    One source of frames for :func:`build_packet`.

    :ivar has_work: whether it would add a frame to a packet on the path now (the bulk guard).
    :ivar wants_packet: whether what it has is worth a packet of its own now.
    :ivar add: adds its frames to the builder: ``add(ctx, builder, path, now, allow_data)``.
    """

    name: str
    has_work: Callable[[PacketContext, Path], bool]
    wants_packet: Callable[[PacketContext, Path, float], bool]
    add: Callable[[PacketContext, PacketBuilder, Path, float, bool], None]


def build_packet(
    ctx: PacketContext, path: Path, *, now: float, epoch: int, allow_data: bool, probe: bool
) -> tuple[bytes, SentPacket] | None:
    """
    Assemble, seal and record one datagram for ``path``, or return ``None`` if nothing is worth
    sending.
    """
    if allow_data and not probe and epoch == _APPLICATION and path.address_validated:
        for has_work in _NON_ACK_WORK:
            if has_work(ctx, path):
                break
        else:
            if path.ack.ack_deadline is None:
                return _build_data_packet(ctx, path, now)
            return _build_ack_data_packet(ctx, path, now)
    return build_general_packet(ctx, path, now=now, epoch=epoch, allow_data=allow_data, probe=probe)


def build_general_packet(
    ctx: PacketContext, path: Path, *, now: float, epoch: int, allow_data: bool, probe: bool
) -> tuple[bytes, SentPacket] | None:
    """:func:`build_packet` without the bulk shortcut: every source in :data:`SOURCES` is asked."""
    long = epoch == _INITIAL
    size = path.max_datagram_size or ctx.max_datagram_size  # path MTU discovery's, once running
    budget = size - header_overhead(long, len(ctx.retry_token))
    room = None if path.address_validated else path.amplification_room()
    if room is not None:
        budget = min(budget, room - header_overhead(long, len(ctx.retry_token)))
        if budget < CONTROL_HEADER + 8:
            return None
    builder = PacketBuilder(budget, epoch)
    for source in SOURCES:
        source.add(ctx, builder, path, now, allow_data)
    if probe and not builder.ack_eliciting:
        builder.add_control(PingFrame())
    if builder.ack_eliciting:
        _add_acks(ctx, builder, path, now, due_only=False)  # piggyback an ACK not yet due
    if not builder.frames:
        return None
    if not builder.ack_eliciting and not _has_ack(builder):
        return None  # only PADDING: an ACK-only packet is worth sending only if an ACK was due
    if long and ctx.is_client:
        _pad(builder, len(ctx.retry_token))
    return seal(ctx, path, builder, now, long)


def only_stream_data(ctx: PacketContext, path: Path) -> bool:
    """Whether no frame source but stream data has work for ``path`` (the bulk path's guard)."""
    return not any(has_work(ctx, path) for has_work in _OTHER_WORK)


def wants_packet(ctx: PacketContext, path: Path, now: float) -> bool:
    """Whether anything but stream data is worth a packet on ``path`` now: ACKs, validation,
    control, handshake data."""
    for wants in _OTHER_WANTS:  # a loop, not any(genexpr): asked after every burst
        if wants(ctx, path, now):
            return True
    return False


def _has_ack(builder: PacketBuilder) -> bool:
    return any(isinstance(f, AckFrame) for f in builder.frames)


def _build_data_packet(
    ctx: PacketContext, path: Path, now: float
) -> tuple[bytes, SentPacket] | None:
    """
    The bulk packet: stream data and nothing else, under application keys.

    :func:`build_packet` takes this path when no other frame source has work (and there is no
    probe and no amplification limit); each of the general path's other steps would then add
    nothing, so the packet is the same (a property test checks it).
    """
    builder = PacketBuilder(
        (path.max_datagram_size or ctx.max_datagram_size) - SHORT_OVERHEAD, _APPLICATION
    )
    _add_stream_data(ctx, builder, path.id)
    if not builder.frames:
        return None
    return seal(ctx, path, builder, now, False)


def _build_ack_data_packet(
    ctx: PacketContext, path: Path, now: float
) -> tuple[bytes, SentPacket] | None:
    """
    The small packet: the path's ACK and stream data, nothing else, under application keys.

    :func:`build_packet` takes this path when an ACK is pending and no source but the ACK and
    stream data has work (no probe, no amplification limit): the general path's other sources
    would add nothing, so the steps left are its own, in its order (a due ACK first, stream data,
    then a not-yet-due ACK riding along); a property test checks the packets are the same.
    """
    builder = PacketBuilder(
        (path.max_datagram_size or ctx.max_datagram_size) - SHORT_OVERHEAD, _APPLICATION
    )
    _add_acks(ctx, builder, path, now, due_only=True)
    if ctx.streams.has_data:
        _add_stream_data(ctx, builder, path.id)
    if builder.ack_eliciting:
        _add_acks(ctx, builder, path, now, due_only=False)  # piggyback an ACK not yet due
    elif not builder.frames:
        return None  # the ACK is not due and there was no data after all
    return seal(ctx, path, builder, now, False)


# -- the frame sources, in packet order ------------------------------------------------------


def _ack_has_work(ctx: PacketContext, path: Path) -> bool:
    return path.ack.ack_deadline is not None


def _ack_wants_packet(ctx: PacketContext, path: Path, now: float) -> bool:
    ack = path.ack
    return ack.ack_deadline is not None and (ack.immediate or ack.ack_deadline <= now)


def _add_due_acks(
    ctx: PacketContext, builder: PacketBuilder, path: Path, now: float, allow_data: bool
) -> None:
    _add_acks(ctx, builder, path, now, due_only=True)


def _add_acks(
    ctx: PacketContext, builder: PacketBuilder, path: Path, now: float, *, due_only: bool
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


def _validation_has_work(ctx: PacketContext, path: Path) -> bool:
    return path.validation.has_frames


def _validation_wants_packet(ctx: PacketContext, path: Path, now: float) -> bool:
    return path.validation.has_frames


def _add_validation(
    ctx: PacketContext, builder: PacketBuilder, path: Path, now: float, allow_data: bool
) -> None:
    """The PATH_RESPONSE we owe on ``path``, then our PATH_CHALLENGE if it is due."""
    if builder.epoch != _APPLICATION:
        return
    validation = path.validation
    responses = validation.responses
    if responses and builder.add_control(PathResponseFrame(responses[0])):
        responses.popleft()
        ctx.stats["path_responses_sent"] += 1
    if validation.challenge_due and builder.add_control(PathChallengeFrame(validation.challenge)):
        validation.on_challenge_sent(now)


def _control_has_work(ctx: PacketContext, path: Path) -> bool:
    return bool(ctx.control)


def _control_wants_packet(ctx: PacketContext, path: Path, now: float) -> bool:
    return path.usable and bool(ctx.control)


def _add_control(
    ctx: PacketContext, builder: PacketBuilder, path: Path, now: float, allow_data: bool
) -> None:
    """Our control frames, on a usable path only (another would swallow frames we need)."""
    if builder.epoch != _APPLICATION or not path.usable:
        return
    control = ctx.control
    while control and not builder.full:
        frame = control[0]
        if not builder.add_control(frame, frame):
            break
        control.popleft()


def _stream_control_has_work(ctx: PacketContext, path: Path) -> bool:
    return ctx.streams.has_control


def _stream_control_wants_packet(ctx: PacketContext, path: Path, now: float) -> bool:
    return path.usable and ctx.streams.has_control


def _add_stream_control(
    ctx: PacketContext, builder: PacketBuilder, path: Path, now: float, allow_data: bool
) -> None:
    """The stream manager's flow-control and reset frames, on a usable path only."""
    if builder.epoch != _APPLICATION or not path.usable:
        return
    streams = ctx.streams
    for frame in streams.pending_control():
        if builder.full or not builder.add_control(frame, frame):
            streams.control.append(frame)


def _handshake_has_work(ctx: PacketContext, path: Path) -> bool:
    return ctx.crypto_send.pending


def _handshake_wants_packet(ctx: PacketContext, path: Path, now: float) -> bool:
    return ctx.crypto_send.pending and path.id == 0


def _add_handshake(
    ctx: PacketContext, builder: PacketBuilder, path: Path, now: float, allow_data: bool
) -> None:
    """Handshake bytes, if they travel under this packet's keys."""
    send = ctx.crypto_send
    if not send.pending or ctx.keys.handshake_epoch() != builder.epoch:
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


def _datagrams_has_work(ctx: PacketContext, path: Path) -> bool:
    datagrams = ctx.datagrams
    return datagrams is not None and datagrams.has_work


def _datagrams_may_go(path: Path) -> bool:
    """Datagrams go on usable paths while the congestion window has room (they count in it)."""
    recovery = path.recovery
    return path.usable and recovery.bytes_in_flight < recovery.controller.cwnd


def _datagrams_wants_packet(ctx: PacketContext, path: Path, now: float) -> bool:
    return _datagrams_has_work(ctx, path) and _datagrams_may_go(path)


def _add_datagrams(
    ctx: PacketContext, builder: PacketBuilder, path: Path, now: float, allow_data: bool
) -> None:
    """Queued datagrams, oldest first, while they fit (never re-sent: the frame is its record
    only so that its fate is counted)."""
    if builder.epoch != _APPLICATION or not _datagrams_wants_packet(ctx, path, now):
        return
    datagrams = ctx.datagrams
    while len(builder.frames) < MAX_FRAMES:
        frame = datagrams.next_frame(builder.room)
        if frame is None:
            return
        builder.add_control(frame, frame)


def _stream_data_has_work(ctx: PacketContext, path: Path) -> bool:
    return ctx.streams.has_data


def _stream_data_wants_packet(ctx: PacketContext, path: Path, now: float) -> bool:
    return False  # the sender's window, pacer and scheduler decide when data goes


def _add_stream_data_source(
    ctx: PacketContext, builder: PacketBuilder, path: Path, now: float, allow_data: bool
) -> None:
    if allow_data and builder.epoch == _APPLICATION and ctx.streams.has_data:
        _add_stream_data(ctx, builder, path.id)


def _add_stream_data(ctx: PacketContext, builder: PacketBuilder, path_id: int) -> None:
    """Stream frames while they fit, from the streams this path may carry."""
    streams = ctx.streams
    buf = builder.buf
    frames = builder.frames
    while len(frames) < MAX_FRAMES:
        space = builder.budget - len(buf) - STREAM_HEADER_MAX - 16  # 16: room for a QOS extension
        if space < 1:
            return
        out = streams.next_stream_frame(space, path_id)
        if out is None:
            return
        frame, record = out
        builder.add_stream(frame, record)


STREAM_DATA = FrameSource(
    "stream data", _stream_data_has_work, _stream_data_wants_packet, _add_stream_data_source
)
#: Every frame source, in the order :func:`build_packet` fills a packet.
SOURCES: tuple[FrameSource, ...] = (
    FrameSource("acks", _ack_has_work, _ack_wants_packet, _add_due_acks),
    FrameSource("path validation", _validation_has_work, _validation_wants_packet, _add_validation),
    FrameSource("control", _control_has_work, _control_wants_packet, _add_control),
    FrameSource(
        "stream control",
        _stream_control_has_work,
        _stream_control_wants_packet,
        _add_stream_control,
    ),
    FrameSource("handshake", _handshake_has_work, _handshake_wants_packet, _add_handshake),
    FrameSource("datagrams", _datagrams_has_work, _datagrams_wants_packet, _add_datagrams),
    STREAM_DATA,
)
_OTHER_SOURCES = tuple(source for source in SOURCES if source is not STREAM_DATA)
_OTHER_WORK = tuple(source.has_work for source in _OTHER_SOURCES)
_OTHER_WANTS = tuple(source.wants_packet for source in _OTHER_SOURCES)
#: The bulk and small packets' guard: every source but the ACK and stream data (SOURCES[0]).
_NON_ACK_WORK = _OTHER_WORK[1:]


# -- finishing and sealing ----------------------------------------------------------------------


def _pad(builder: PacketBuilder, token_length: int) -> None:
    """Pad a client initial packet so the datagram is at least 1200 bytes."""
    missing = MIN_DATAGRAM_SIZE - header_overhead(True, token_length) - len(builder.buf)
    if missing <= 0:
        return
    # A PADDING frame with a body of L bytes takes 16 + varint_size(L) + L bytes.
    length = max(0, missing - 17)
    if length >= 64:
        length = max(64, missing - 18)
    builder.budget = max(builder.budget, len(builder.buf) + 18 + length)
    builder.add_control(PaddingFrame(length))


def build_copy_packet(
    ctx: PacketContext, path: Path, records: list, *, now: float
) -> tuple[bytes, SentPacket] | None:
    """
    A packet on ``path`` carrying again the stream ranges of ``records`` (the stream records of a
    packet just sent on another path): redundant scheduling and the QoS enforcer's selective
    redundancy.  The copy is an ordinary retransmission, settled by whichever acknowledgement comes
    first.  The parts already acknowledged, and the ranges of reset streams, are left out; ``None``
    when nothing is left.
    """
    builder = PacketBuilder(
        (path.max_datagram_size or ctx.max_datagram_size) - SHORT_OVERHEAD, _APPLICATION
    )
    for record in records:
        stream = record.stream
        send = stream.send
        if send.is_reset or (record.length == 0 and not record.fin):
            continue
        start = max(record.offset, send.acked_offset)
        end = record.offset + record.length
        if start > end or (start == end and not record.fin):
            continue
        data = send.peek(start, end)
        if builder.room < len(data) + STREAM_HEADER_MAX or len(builder.frames) >= MAX_FRAMES:
            break
        frame = StreamFrame(
            stream.id, start, data, record.fin, stream.priority, stream.ordered, True,
            stream.compress,
        )
        builder.add_stream(frame, StreamRecord(stream, start, end - start, record.fin))
    if not builder.frames:
        return None
    return seal(ctx, path, builder, now, False)


def build_close_packet(
    ctx: PacketContext, path: Path, frame: ConnectionCloseFrame, *, now: float
) -> tuple[bytes, SentPacket]:
    """
    A packet with ``frame`` alone, under the newest keys we have.

    An application close is not told under initial keys (anyone could read it): it becomes a
    transport APPLICATION_ERROR without a reason.
    """
    long = not ctx.keys.complete
    epoch = _INITIAL if long else _APPLICATION
    if long and frame.application:
        frame = ConnectionCloseFrame(ErrorCode.APPLICATION_ERROR, "", application=False)
    overhead = header_overhead(long, len(ctx.retry_token))
    builder = PacketBuilder(ctx.max_datagram_size - overhead, epoch)
    builder.add_control(frame)
    return seal(ctx, path, builder, now, long)


def seal(
    ctx: PacketContext, path: Path, builder: PacketBuilder, now: float, long: bool
) -> tuple[bytes, SentPacket]:
    """Encrypt the builder's frames into a datagram and the record of the packet sent."""
    recovery = path.recovery
    seq = recovery.next_sequence_number
    ctx.sealed_frames = frames = builder.frames
    eliciting = builder.ack_eliciting
    if not long:
        keys, phase = ctx.keys.app_sealing(now)  # counts toward the key update interval
        datagram = encode_application_packet(
            path.dcid or ctx.peer_cid,
            path.id,
            seq,
            classify(frames),
            len(frames),
            1 if builder.compressed else 0,
            builder.buf,
            keys.seal,
            phase,
        )
        return datagram, SentPacket(seq, now, len(datagram), eliciting, eliciting, builder.records)
    header = Header(
        path.dcid or ctx.peer_cid,
        path.id,
        seq,
        classify(frames),
        len(frames),
        1 if builder.compressed else 0,
        Epoch.INITIAL,
        ctx.local_cid,
        token=ctx.retry_token,
    )
    datagram = encode_packet(header, bytes(builder.buf), ctx.keys.send_keys(_INITIAL).seal)
    return datagram, SentPacket(seq, now, len(datagram), eliciting, eliciting, builder.records)
