"""
The send loop and its outcomes: when and on which path packets go, and what their ACKs and losses
mean.

Theory of operation.  :mod:`~kwik_twisted.core.sending` decides what goes *in* a packet;
:class:`Sender` decides whether a packet goes at all, and where:

* **One path.**  :meth:`Sender.send` sends on the path while the congestion window and the pacer
  allow stream data, or while something else (an ACK due, validation, control or handshake
  frames, :func:`~kwik_twisted.core.sending.wants_packet`) or a probe is waiting, up to
  :data:`BURST_LIMIT` packets before the owner gets control back.
* **Several paths.**  First control, ACKs and probes on every path; then each packet of stream data
  goes where the configured scheduler says among the usable paths whose pacer allows it (backups
  only while no primary path is usable; a dearer path only when the cheaper ones cannot take the
  data, :func:`~kwik_twisted.core.paths.scheduler.affordable_paths`).  The ``redundant``
  scheduler's other paths, and for a stream the QoS enforcer duplicates another path of its
  route, get the packet's stream ranges again at once (:func:`~.sending.build_copy_packet`): the
  copies are ordinary retransmissions settled by whichever ACK comes first.
* **QoS** (:mod:`~kwik_twisted.core.qos.enforcer`).  Each send round starts with the enforcer's
  evaluation when it has something to enforce: routes (pins the send queue honours, as below),
  delay-aware caps on the paths' windows, selective redundancy.
* **Pinned streams** (the seed's PathAssignment).  While a stream is pinned, the send queue is
  told which paths are usable, and the scheduler chooses only among paths that can carry the
  waiting data: those of the highest priority level first
  (:meth:`~kwik_twisted.core.streams.sendqueue.SendQueue.path_choices`; a pinned stream backed by
  a backup path may use it), then, if none of them can send now, those of the lower levels.  The
  packet assembler then takes frames only from the streams the chosen path may carry.
* **Outcomes** (RFC 9002).  An ACK frame is handed to the path it names
  (:meth:`Sender.on_ack`): RTT, window, pacing and metrics are updated, and the records of the
  acknowledged and lost packets go to the
  :class:`~kwik_twisted.core.retransmit.RecordRouter`.  A loss-detection timer
  (:meth:`Sender.on_loss_timer`) declares packets lost or arms probes; a PTO during the handshake
  re-sends every handshake byte not yet acknowledged.
* Now and then (one in about :data:`SKIP_ONE_IN`) a sequence number is skipped: a peer that
  acknowledges it is lying (optimistic-ACK defence).
"""

from __future__ import annotations

from collections import Counter, deque

from ..errors import ProtocolViolation
from ..wire import AckFrame, ConnectionCloseFrame, Epoch, PaddingFrame, PingFrame
from .entropy import Entropy, random_below
from .keys import KeySchedule
from .paths.manager import PathManager
from .paths.path import Path, PathPhase
from .paths.scheduler import (
    FrameRequirements,
    Scheduler,
    affordable_paths,
    eligible_paths,
    has_room,
)
from .recovery.loss import LossRecovery, SentPacket
from .retransmit import RecordRouter
from .sending import (
    PacketBuilder,
    PacketContext,
    build_close_packet,
    build_copy_packet,
    build_packet,
    seal,
    wants_packet,
)
from .streams.manager import StreamRecord
from .timers import IdleTimer

#: One in this many packets skips a sequence number (optimistic-ACK defence).
SKIP_ONE_IN = 256
#: Packets sent in one go per path before the owner gets control back.
BURST_LIMIT = 64

_INITIAL, _APPLICATION = int(Epoch.INITIAL), int(Epoch.APPLICATION)


class Sender:
    """
    Sends packets on a connection's paths and settles what becomes of them.

    :param ctx: what the packet assembler reads (frame sources, keys, counters).
    :param paths: the path manager (the paths, failure and recovery).
    :param scheduler: the policy choosing the path of each packet of stream data.
    :param records: where the records of acknowledged and lost packets go.
    :param idle: told when we last sent.
    """

    def __init__(
        self,
        *,
        ctx: PacketContext,
        paths: PathManager,
        scheduler: Scheduler,
        records: RecordRouter,
        idle: IdleTimer,
        entropy: Entropy,
        stats: Counter,
    ) -> None:
        self.ctx = ctx
        self.keys: KeySchedule = ctx.keys
        self.streams = ctx.streams
        self.send_queue = ctx.streams.send_queue
        self.paths = paths
        self.scheduler = scheduler
        self.records = records
        self.idle = idle
        self.entropy = entropy
        self.stats = stats
        self._skip_countdown = 1 + random_below(entropy, 2 * SKIP_ONE_IN)
        self._requirements = FrameRequirements()
        self._copies: dict[int, deque] = {}  # path ID -> copies waiting for window room
        self.qos = None  # the connection's QoSEnforcer (core/qos/enforcer.py)
        self.trace = None  # a core.trace.Trace when the connection is traced (qlog)

    # -- sending ---------------------------------------------------------------------------

    def send(self, *, now: float) -> list[tuple[bytes, tuple, tuple]]:
        """Return ``(datagram, local_addr, remote_addr)`` triples to send now."""
        self.send_queue.now = now
        out: list[tuple[bytes, tuple, tuple]] = []
        paths = self.paths.paths
        qos = self.qos
        if qos is not None:
            if len(qos.detectors) != len(paths):
                qos.sync(now=now)
            if qos.active:
                qos.before_send(now=now)
        if self.send_queue.pinned:
            self.send_queue.usable = frozenset(p.id for p in paths.values() if p.usable)
        if len(paths) == 1:
            for path in paths.values():
                self._send_on_path(path, out, now)
            return out
        live = list(paths.values())
        if any(p.dcid is None and p.id for p in live):  # no CID of the peer's yet: no address
            live = [p for p in live if p.dcid is not None or not p.id]
        self._send_multipath(live, out, now)
        return out

    def send_close(
        self, frame: ConnectionCloseFrame, *, now: float
    ) -> list[tuple[bytes, tuple, tuple]]:
        """The datagram carrying ``frame``, on a usable path if there is one."""
        paths = self.paths.paths
        usable = [p for p in paths.values() if p.usable]
        path = usable[0] if usable else (paths.get(0) or next(iter(paths.values())))
        datagram, packet = build_close_packet(self.ctx, path, frame, now=now)
        path.recovery.on_packet_sent(packet)
        if self.trace is not None:
            self.trace.packet_sent(
                path.id,
                _APPLICATION if self.keys.complete else _INITIAL,
                packet,
                self.ctx.sealed_frames,
                now,
            )
        return [(datagram, path.local_addr, path.remote_addr)]

    def _send_on_path(self, path: Path, out: list, now: float, *, data: bool = True) -> None:
        """Send what ``path`` may send now; stream data only if ``data``."""
        recovery = path.recovery
        controller = recovery.controller
        pacer = path.pacer
        streams = self.streams
        usable = data and path.usable
        if path.mtu.due <= now:  # path MTU discovery wants a probe (or to start)
            self._probe_mtu(path, out, now)
        sent = 0
        while sent < BURST_LIMIT:
            probe = path.probes_pending > 0
            cwnd_ok = probe or recovery.bytes_in_flight < controller.cwnd
            pace_at = None if probe else pacer.next_send_time(now=now)
            paced_ok = pace_at is None or pace_at <= now
            has_data = streams.has_data
            path.pacing_deadline = pace_at if cwnd_ok and usable and has_data else None
            allow_data = cwnd_ok and paced_ok and usable
            if not probe and not (allow_data and has_data):
                if not wants_packet(self.ctx, path, now):
                    break
            if self._send_one(path, out, now, allow_data=allow_data, probe=probe) is None:
                break
            sent += 1
        if usable and not streams.has_data and recovery.bytes_in_flight < controller.cwnd:
            controller.on_app_limited(now=now)

    def _send_one(
        self, path: Path, out: list, now: float, *, allow_data: bool, probe: bool
    ) -> SentPacket | None:
        """Build, seal and record one packet on ``path``; return it (``None``: nothing to send)."""
        recovery = path.recovery
        keys = self.keys
        epoch = keys.packet_epoch(self.ctx.crypto_send.pending)
        if epoch == _INITIAL and path.id != 0:
            return None  # only the handshake path carries initial-key packets
        self._maybe_skip(recovery)
        built = build_packet(
            self.ctx, path, now=now, epoch=epoch, allow_data=allow_data, probe=probe
        )
        if built is None:
            return None
        datagram, packet = built
        if epoch == _APPLICATION and path.id == 0 and keys.first_app_seq is None:
            keys.on_sent(packet.seq)
        packet.is_probe = probe
        if probe:
            path.probes_pending -= 1
        path.metrics.on_sent(packet, recovery.bytes_in_flight, recovery.controller.app_limited)
        recovery.on_packet_sent(packet)
        if packet.in_flight:
            path.pacer.consume(packet.size, now)
        path.bytes_sent += packet.size
        path.packets_sent += 1
        self.idle.last_sent = now
        out.append((datagram, path.local_addr, path.remote_addr))
        self.scheduler.on_sent(path, packet.size, now=now)
        if self.trace is not None:
            self.trace.packet_sent(path.id, epoch, packet, self.ctx.sealed_frames, now)
        return packet

    def _probe_mtu(self, path: Path, out: list, now: float) -> None:
        """Start path MTU discovery on ``path`` once the handshake is confirmed and the path
        usable, and send the probe it wants if the congestion window has room (core/paths/
        pmtud.py); the probe is counted like any packet but its loss is the search's alone."""
        mtu = path.mtu
        recovery = path.recovery
        if not path.usable or not path.address_validated:
            return
        if not mtu.running:
            peer = self.paths.peer_max_udp_payload
            if not self.keys.confirmed or not peer:
                return
            self.paths.trace = self.trace
            mtu.start(self.ctx.max_datagram_size, peer, now=now)
        size = mtu.next_probe(now=now)
        if not size or recovery.bytes_in_flight >= recovery.controller.cwnd:
            return
        datagram, packet = _build_mtu_probe(self.ctx, path, size, now)
        mtu.on_probe_sent(packet)
        path.metrics.on_sent(packet, recovery.bytes_in_flight, recovery.controller.app_limited)
        recovery.on_packet_sent(packet)
        path.pacer.consume(packet.size, now)
        path.bytes_sent += packet.size
        path.packets_sent += 1
        self.idle.last_sent = now
        out.append((datagram, path.local_addr, path.remote_addr))
        if self.trace is not None:
            self.trace.packet_sent(path.id, _APPLICATION, packet, self.ctx.sealed_frames, now)

    def _send_multipath(self, live: list[Path], out: list, now: float) -> None:
        """Control, ACKs and probes on every path; then stream data wherever the scheduler says."""
        for path in live:
            self._send_on_path(path, out, now, data=False)
        streams = self.streams
        budget = BURST_LIMIT * len(live)
        if self._copies:
            self._flush_copies([p for p in live if p.usable], out, now)
        while streams.has_data and budget > 0:
            usable = [p for p in live if p.usable]
            if self._copies:  # a path's waiting copies go before any new data on it
                self._flush_copies(usable, out, now)
            if self.send_queue.pinned:
                targets = self._select_pinned(usable, now)
            else:
                targets = self._select_paths(_primaries(usable), now)
            if not targets:
                break
            if self.trace is not None:
                self.trace.scheduled(targets[0].id, len(usable), now)
            packet = self._send_one(targets[0], out, now, allow_data=True, probe=False)
            if packet is None:
                break
            budget -= 1
            for other in targets[1:]:
                if has_room(other):
                    self._duplicate(packet.frames, other, out, now)
                else:
                    self._queue_copy(packet.frames, other)
            if len(targets) == 1 and self.qos is not None and self.qos.redundant:
                self._copy_redundant(packet, targets[0], usable, out, now)
        for path in live:
            recovery = path.recovery
            if path.usable and not streams.has_data:
                if recovery.bytes_in_flight < recovery.controller.cwnd:
                    recovery.controller.on_app_limited(now=now)

    def _queue_copy(self, records: list, path: Path) -> None:
        """Keep a copy of ``records`` for ``path`` until its window has room (the ``redundant``
        scheduler), at most twice its window's worth of packets: a path much slower than the
        others drops its oldest copies (the data went on the faster path and is likely acked)."""
        queue = self._copies.setdefault(path.id, deque())
        queue.append(records)
        size = path.max_datagram_size or self.ctx.max_datagram_size
        limit = max(4, 2 * path.recovery.controller.cwnd // size)
        while len(queue) > limit:
            queue.popleft()
            self.stats["redundant_copies_dropped"] += 1

    def _flush_copies(self, usable: list[Path], out: list, now: float) -> None:
        """Send the copies waiting for each usable path while its window has room; forget those
        of paths no longer usable."""
        copies = self._copies
        for path in usable:
            queue = copies.get(path.id)
            while queue and has_room(path):
                self._duplicate(queue.popleft(), path, out, now)
        live = {p.id for p in usable}
        for path_id in [pid for pid, queue in copies.items() if not queue or pid not in live]:
            del copies[path_id]

    def _paced_ok(self, path: Path, now: float) -> bool:
        pace_at = path.pacer.next_send_time(now=now)
        path.pacing_deadline = pace_at
        return pace_at is None or pace_at <= now

    def _duplicate(self, records: list, path: Path, out: list, now: float) -> None:
        """Send the stream ranges of ``records`` (a packet's, just sent) again on ``path`` at
        once, only the streams ``path`` may carry (redundant scheduling)."""
        if not path.address_validated:
            return  # a copy must not spend the anti-amplification budget (RFC 9000 §8)
        records = [
            r for r in records if isinstance(r, StreamRecord) and allowed_on(r.stream, path.id)
        ]
        if not records:
            return
        built = build_copy_packet(self.ctx, path, records, now=now)
        if built is None:
            return
        datagram, packet = built
        recovery = path.recovery
        path.metrics.on_sent(packet, recovery.bytes_in_flight, recovery.controller.app_limited)
        recovery.on_packet_sent(packet)
        path.pacer.consume(packet.size, now)
        path.bytes_sent += packet.size
        path.packets_sent += 1
        out.append((datagram, path.local_addr, path.remote_addr))
        self.idle.last_sent = now
        self.stats["redundant_packets"] += 1
        self.stats["redundant_bytes"] += packet.size
        if self.trace is not None:
            self.trace.packet_sent(path.id, _APPLICATION, packet, self.ctx.sealed_frames, now)

    def _copy_redundant(
        self, packet: SentPacket, sent_on: Path, usable: list[Path], out: list, now: float
    ) -> None:
        """The QoS enforcer's selective redundancy: the ranges of ``packet`` that belong to a
        stream it duplicates go again on another path of that stream's route with window room."""
        redundant = self.qos.redundant
        records = [
            r for r in packet.frames if isinstance(r, StreamRecord) and r.stream in redundant
        ]
        if not records:
            return
        route = records[0].stream.paths
        for path in usable:
            if path is not sent_on and (route is None or path.id in route) and has_room(path):
                self._duplicate(records, path, out, now)
                return

    def _select_pinned(self, usable: list[Path], now: float) -> list[Path]:
        """:meth:`_select_paths` while a stream is pinned: among the paths that can carry the
        highest priority level's data, else a lower level's."""
        for allowed in self.send_queue.path_choices():
            if allowed is None:
                pool = _primaries(usable)
            else:
                pool = [p for p in usable if p.id in allowed]
            targets = self._select_paths(pool, now)
            if targets:
                return targets
        return []

    def _select_paths(self, usable: list[Path], now: float) -> list[Path]:
        """The paths for the next packet of stream data among ``usable`` whose pacer allows one
        now (the configured scheduler decides)."""
        streams = self.streams
        backlog = streams.backlog()
        usable = affordable_paths(usable, backlog, now)
        candidates = [p for p in usable if self._paced_ok(p, now)]
        if not candidates:
            return []
        req = self._requirements
        req.priority = streams.highest_pending_priority() or 0
        req.size = self.ctx.max_datagram_size
        req.backlog = backlog
        scheduler = self.scheduler
        targets = scheduler.select_all(candidates, req, now=now)
        if scheduler.duplicates and targets:
            # The copies go on every other eligible path, its pacer or not: they repeat a packet
            # paced on its primary; each path's window still bounds them (a copy waits for room).
            primary = targets[0]
            others = [p for p in eligible_paths(usable) if p is not primary]
            others.sort(key=lambda p: p.recovery.rtt.smoothed_rtt)
            targets = [primary, *others]
        return targets

    def _maybe_skip(self, recovery: LossRecovery) -> None:
        """Now and then skip a sequence number: a peer acknowledging it is lying."""
        self._skip_countdown -= 1
        if self._skip_countdown <= 0:
            recovery.skip_sequence_number()
            self._skip_countdown = 1 + random_below(self.entropy, 2 * SKIP_ONE_IN)

    # -- outcomes ------------------------------------------------------------------------

    def on_ack(self, frame: AckFrame, epoch: int, *, now: float) -> None:
        """
        An ACK frame arrived in a packet of ``epoch``: settle what it acknowledges.

        :raises ProtocolViolation: it names a path that never existed.
        """
        target = self.paths.paths.get(frame.path_id)
        if target is None:
            if self.paths.is_forgotten(frame.path_id):
                return  # a path abandoned and forgotten: its late ACKs mean nothing now
            raise ProtocolViolation(f"ACK for unknown path {frame.path_id}")
        ranges = frame.ranges
        if epoch == _INITIAL and self.keys.first_app_seq is not None:
            ranges = self.keys.clip_initial_ack(ranges)
            if not ranges:
                return
        recovery = target.recovery
        result = recovery.on_ack_received(ranges, frame.ack_delay / 1e6, now=now)
        if target.mtu.watching:  # a path MTU probe in flight, or large packets lost
            target.mtu.on_acked(result.newly_acked, now=now)
        newly_acked = result.newly_acked
        if newly_acked and target.phase is PathPhase.FAILED:  # an ACK brings a failed path back
            self.paths.on_acked(target, now=now)
        acked = self.records.on_acked_packets(newly_acked)  # settle: re-send nothing of these
        target.bytes_acked += acked
        trace = self.trace
        if trace is not None:
            trace.acked(target, result.newly_acked, now)
            trace.lost(target, result.lost, now)
        if acked:
            target.metrics.on_ack(
                acked,
                now=now,
                packets=len(newly_acked),
                newest=newly_acked[-1],
                rtt=recovery.rtt,
                bytes_in_flight=recovery.bytes_in_flight,
            )
            self.scheduler.on_acked(target, acked, now=now)
        if result.lost:
            self.on_packets_lost(target, result.lost, now=now)
        if recovery.rtt.has_sample:
            target.pacer.update(cwnd=recovery.controller.cwnd, srtt=recovery.rtt.smoothed_rtt)
            self.streams.rtt = recovery.rtt.smoothed_rtt
        if trace is not None:
            trace.recovery(target, now, lost=bool(result.lost))

    def on_packets_lost(self, path: Path, packets: list[SentPacket], *, now: float) -> None:
        """``packets`` sent on ``path`` were declared lost: count them and re-send their frames
        (a path MTU probe among them is the search's business alone)."""
        if path.mtu.running:
            packets = path.mtu.on_lost(packets, now=now)
            if not packets:
                return
        path.metrics.on_loss(len(packets), now=now)
        path.count_lost(packets)
        for packet in packets:
            self.stats["packets_lost"] += 1
            self.records.on_lost(packet.frames)

    def on_loss_timer(self, path: Path, *, now: float) -> None:
        """The path's loss-detection timer fired: declare losses, or arm probes (PTO)."""
        result = path.recovery.on_timeout(now=now)
        if self.trace is not None and result.lost:
            self.trace.lost(path, result.lost, now)
            self.trace.recovery(path, now, lost=True)
        if result.lost:
            self.on_packets_lost(path, result.lost, now=now)
        if result.probes:
            path.probes_pending = result.probes
            if path.mtu.running:  # repeated timeouts: the datagram size may be a black hole
                path.mtu.on_pto(path.recovery.pto_count, now=now)
            if self.trace is not None:
                self.trace.pto_expired(path, now)
            crypto = self.ctx.crypto_send
            if not self.keys.confirmed and crypto.sent_offset:
                crypto.on_lost(0, crypto.sent_offset, False)  # every handshake byte again
            self.paths.on_probe_timeout(path, now=now)


def _primaries(usable: list[Path]) -> list[Path]:
    """The usable paths that are not backups, or all of them if each is (backups wait while a
    primary works)."""
    if any(not p.is_backup for p in usable):
        return [p for p in usable if not p.is_backup]
    return usable


def allowed_on(stream, path_id: int) -> bool:
    """Whether ``stream``'s data may go on path ``path_id`` (it is not pinned to other paths)."""
    return stream.paths is None or path_id in stream.paths


def _build_mtu_probe(
    ctx: PacketContext, path: Path, size: int, now: float
) -> tuple[bytes, SentPacket]:
    """A path MTU probe: PING and PADDING sealed into a datagram of exactly ``size`` bytes.  The
    envelope's size is measured on a first sealing and the padding corrected (a varint length
    may shift it by a byte or two, hence the few rounds)."""
    overhead = 64
    for _ in range(4):
        builder = PacketBuilder(size, _APPLICATION)
        builder.add_control(PingFrame())
        padding = max(0, size - overhead - len(builder.buf) - 17)
        builder.add_control(PaddingFrame(padding - (0 if padding < 64 else 1)))
        datagram, packet = seal(ctx, path, builder, now, False)
        if len(datagram) == size:
            break
        overhead += len(datagram) - size
    return datagram, packet
