"""
qlog tracing hooks: the core's side of ``qlog=DIR``.

The core never writes a file.  A connection built with a ``tracer`` (anything with
``tracer.event(time, name, data)``; :mod:`kwik_twisted.glue.qlog` writes JSON-SEQ files) gets a
:class:`Trace` that turns what happens into qlog events: ``time`` is the connection's ``now``
(seconds, its own epoch; the writer makes it relative milliseconds), ``name`` a qlog event name
(``quic:packet_sent``, ``kwik:path_failed``, ...), ``data`` a dict of JSON values following the qlog
QUIC event definitions where an event fits.  Every packet and recovery event carries ``path_id``.
Without a tracer the core holds ``None`` and each hook is one ``is not None`` test.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from ..events import (
    ConnectionTerminated,
    Event,
    HandshakeCompleted,
    PathAbandoned,
    PathAdded,
    PathFailed,
    PathRecovered,
    PathValidated,
    QoSViolated,
)
from ..wire import ControlType, Epoch, StreamFrame, TransportParameter, TransportParametersFrame

__all__ = [
    "SCHEDULER_SAMPLE",
    "LOSS_TRIGGERS",
    "Trace",
    "TracedEvents",
    "Tracer",
    "frame_summary",
    "tracing",
]

#: The loss triggers of ``quic:packet_lost`` (qlog QUIC events); a PTO declares nothing lost here
#: (it sends probes: ``quic:loss_timer_updated`` with ``event_type`` ``expired``).
LOSS_TRIGGERS = ("reordering_threshold", "time_threshold")

_PATH_EVENTS = {
    PathAdded: "kwik:path_added",
    PathValidated: "kwik:path_validated",
    PathFailed: "kwik:path_failed",
    PathRecovered: "kwik:path_recovered",
    PathAbandoned: "kwik:path_abandoned",
}
_PARAMETER_NAMES = {
    TransportParameter.MAX_IDLE_TIMEOUT_MS: "max_idle_timeout",
    TransportParameter.INITIAL_MAX_DATA: "initial_max_data",
    TransportParameter.INITIAL_MAX_STREAM_DATA: "initial_max_stream_data",
    TransportParameter.INITIAL_MAX_STREAMS: "initial_max_streams_bidi",
    TransportParameter.MAX_ACK_DELAY_MS: "max_ack_delay",
    TransportParameter.ACTIVE_CONNECTION_ID_LIMIT: "active_connection_id_limit",
    TransportParameter.MAX_PATHS: "max_paths",
    TransportParameter.MAX_DATAGRAM_SIZE: "max_udp_payload_size",
    TransportParameter.SERVER_LOAD: "server_load",
    TransportParameter.MAX_DATAGRAM_FRAME_SIZE: "max_datagram_frame_size",
}
_FRAME_NAMES = {int(t): t.name.lower() for t in ControlType}
_FRAME_NAMES[int(ControlType.HANDSHAKE)] = "crypto"
_INITIAL = int(Epoch.INITIAL)
#: Seconds between two sampled ``kwik:scheduler_decision`` events.
SCHEDULER_SAMPLE = 0.1
_PACKET_THRESHOLD = 3  # RFC 9002's kPacketThreshold, as in recovery.loss


class Tracer(Protocol):
    """What the core needs of a tracer."""

    def event(self, time: float, name: str, data: dict) -> None:
        """Record one event at ``time`` (the connection's clock, seconds)."""


def frame_summary(frame) -> dict:
    """A qlog ``QuicFrame`` for ``frame``: its type and key fields."""
    if type(frame) is StreamFrame:
        return {
            "frame_type": "stream",
            "stream_id": frame.stream_id,
            "offset": frame.offset,
            "length": len(frame.data),
            "fin": frame.fin,
        }
    kind = _FRAME_NAMES.get(int(frame.type), "unknown")
    out = {"frame_type": kind}
    if kind == "ack":
        out["path_id"] = frame.path_id
        out["ack_delay"] = frame.ack_delay / 1000.0
        out["acked_ranges"] = [[low, high] for high, low in _ordered(frame.ranges)]
    elif kind == "connection_close":
        out["error_code"] = frame.error_code
        out["reason"] = frame.reason
    elif kind in ("max_data", "max_stream_data", "reset_stream", "stop_sending", "padding"):
        for name in ("stream_id", "maximum", "error_code", "length"):
            value = getattr(frame, name, None)
            if isinstance(value, int):
                out[name] = value
    return out


def _ordered(ranges):
    for first, last in ranges:
        yield (last, first) if last >= first else (first, last)


def _parameters(params: dict[int, int]) -> dict:
    return {_PARAMETER_NAMES.get(key, f"unknown_0x{key:x}"): value for key, value in params.items()}


class Trace:
    """The tracing collaborator of one connection (see the module docstring)."""

    def __init__(self, tracer: Tracer, *, is_client: bool, odcid: bytes, now: float) -> None:
        self.tracer = tracer
        self.is_client = is_client
        self._metrics: dict[int, tuple] = {}
        self._congestion: dict[int, str] = {}
        self._scheduled: dict[int, int] = {}
        self._scheduled_at = float("-inf")
        self._peer_parameters = False
        tracer.event(now, "quic:connection_started", {"odcid": odcid.hex(), "is_client": is_client})

    # -- connection ------------------------------------------------------------------

    def on_event(self, event: Event, now: float, handshake=None) -> None:
        """An event the connection emits: path changes, the end, the handshake's completion."""
        kind = type(event)
        name = _PATH_EVENTS.get(kind)
        if name is not None:
            self.tracer.event(
                now,
                name,
                {
                    "path_id": event.path_id,
                    "local_addr": _address(event.local_addr),
                    "remote_addr": _address(event.remote_addr),
                },
            )
        elif kind is ConnectionTerminated:
            self.tracer.event(
                now,
                "quic:connection_closed",
                {
                    "owner": "remote" if event.by_peer else "local",
                    "application_code" if event.application else "connection_code": (
                        event.error_code
                    ),
                    "reason": event.reason,
                    "trigger": _close_trigger(event),
                },
            )
        elif kind is HandshakeCompleted and handshake is not None:
            self.parameters_set(handshake, now)
        elif kind is QoSViolated:
            self.tracer.event(
                now,
                "kwik:qos_violated",
                {
                    "stream_id": event.stream_id,
                    "metric": event.metric,
                    "measured": event.measured,
                    "bound": event.bound,
                },
            )

    def congestion_report(self, report, now: float) -> None:
        """``kwik:congestion_report``: a path's congestion level changed (the seed's
        CongestionReport, per path and global, with the prediction)."""
        self.tracer.event(now, "kwik:congestion_report", report.as_dict())

    def path_mtu_updated(self, path_id: int, old: int, new: int, reason: str, now: float) -> None:
        """``kwik:path_mtu_updated``: path MTU discovery changed a path's datagram size (``old``
        0: the search started); ``reason`` is ``start``, ``probe_acked``, ``black_hole``,
        ``black_hole_pto`` or ``too_big`` (core/paths/pmtud.py)."""
        self.tracer.event(
            now,
            "kwik:path_mtu_updated",
            {"path_id": path_id, "old": old, "new": new, "reason": reason},
        )

    def parameters_set(self, handshake, now: float) -> None:
        """``quic:parameters_set`` for our transport parameters (the peer's are traced as their
        TRANSPORT_PARAMETERS frame arrives)."""
        local = handshake.local_parameters()
        self.tracer.event(now, "quic:parameters_set", {"owner": "local", **_parameters(local)})

    def key_updated(self, is_client: bool, generation: int, local: bool, now: float) -> None:
        """``quic:key_updated`` (qlog QUIC schema): both directions' application keys moved to
        ``generation``, started by us (``local_update``) or by the peer (``remote_update``)."""
        trigger = "local_update" if local else "remote_update"
        for key_type in ("client_1rtt_secret", "server_1rtt_secret"):
            self.tracer.event(now, "quic:key_updated", {
                "key_type": key_type, "key_phase": generation, "trigger": trigger,
            })

    def path_backup(self, path_id: int, backup: bool, now: float) -> None:
        """``kwik:path_backup``: a path was marked a backup, or not."""
        self.tracer.event(now, "kwik:path_backup", {"path_id": path_id, "backup": backup})

    # -- packets ---------------------------------------------------------------------

    def packet_sent(self, path_id: int, epoch: int, packet, frames, now: float) -> None:
        """``quic:packet_sent`` for a packet just sealed."""
        self.tracer.event(
            now,
            "quic:packet_sent",
            {
                "header": {
                    "packet_type": "initial" if epoch == _INITIAL else "1RTT",
                    "packet_number": packet.seq,
                    "path_id": path_id,
                },
                "raw": {"length": packet.size},
                "frames": [frame_summary(f) for f in frames],
                "path_id": path_id,
            },
        )
        self._qos_requests(frames, "local", now)

    def packet_received(self, header, size: int, frames, now: float) -> None:
        """``quic:packet_received`` for an authenticated packet (and ``quic:parameters_set`` for
        the peer's first TRANSPORT_PARAMETERS frame)."""
        self.tracer.event(
            now,
            "quic:packet_received",
            {
                "header": {
                    "packet_type": "initial" if header.epoch == _INITIAL else "1RTT",
                    "packet_number": header.seq,
                    "path_id": header.path_id,
                },
                "raw": {"length": size},
                "frames": [frame_summary(f) for f in frames],
                "path_id": header.path_id,
            },
        )
        self._qos_requests(frames, "remote", now)
        if not self._peer_parameters:
            for frame in frames:
                if type(frame) is TransportParametersFrame:
                    self._peer_parameters = True
                    data = {"owner": "remote", **_parameters(frame.parameters)}
                    self.tracer.event(now, "quic:parameters_set", data)

    def _qos_requests(self, frames, owner: str, now: float) -> None:
        """``kwik:qos_requested`` for each STREAM frame carrying the QOS extension: a stream's
        policy as its opener (``owner``) asked for it, in the wire's units (0: no requirement)."""
        for frame in frames:
            if type(frame) is StreamFrame and frame.qos is not None:
                qos = frame.qos
                self.tracer.event(
                    now,
                    "kwik:qos_requested",
                    {
                        "owner": owner,
                        "stream_id": frame.stream_id,
                        "min_bandwidth_kbps": qos.min_bandwidth_kbps,
                        "max_latency_ms": qos.max_latency_ms,
                        "max_jitter_ms": qos.max_jitter_ms,
                        "loss_threshold_ppm": qos.loss_threshold_ppm,
                    },
                )

    def scheduled(self, path_id: int, candidates: int, now: float) -> None:
        """``kwik:scheduler_decision``, sampled: the first choice, then at most one event per
        :data:`SCHEDULER_SAMPLE` seconds, with the latest choice and how many packets of stream
        data each path got since the last event (``packets``, by path ID)."""
        counts = self._scheduled
        counts[path_id] = counts.get(path_id, 0) + 1
        if now - self._scheduled_at >= SCHEDULER_SAMPLE:
            self._scheduled_at = now
            self._scheduled = {}
            self.tracer.event(
                now,
                "kwik:scheduler_decision",
                {
                    "path_id": path_id,
                    "candidates": candidates,
                    "packets": {str(k): v for k, v in sorted(counts.items())},
                },
            )

    # -- recovery --------------------------------------------------------------------

    def acked(self, path, packets, now: float) -> None:
        """``quic:packets_acked`` for packets newly acknowledged on ``path``."""
        if packets:
            self.tracer.event(
                now,
                "quic:packets_acked",
                {"path_id": path.id, "packet_numbers": [p.seq for p in packets]},
            )

    def lost(self, path, packets, now: float) -> None:
        """``quic:packet_lost`` for each packet declared lost on ``path``, with its trigger."""
        largest = path.recovery.largest_acked
        for packet in packets:
            if largest - packet.seq >= _PACKET_THRESHOLD:
                trigger = "reordering_threshold"
            else:
                trigger = "time_threshold"
            self.tracer.event(
                now,
                "quic:packet_lost",
                {
                    "header": {"packet_number": packet.seq, "path_id": path.id},
                    "path_id": path.id,
                    "trigger": trigger,
                },
            )

    def pto_expired(self, path, now: float) -> None:
        """``quic:loss_timer_updated``: the path's probe timeout expired (probes go out)."""
        self.tracer.event(
            now,
            "quic:loss_timer_updated",
            {"path_id": path.id, "timer_type": "pto", "event_type": "expired"},
        )

    def recovery(self, path, now: float, *, lost: bool = False) -> None:
        """``quic:recovery_metrics_updated`` with the fields that changed since the last one,
        and ``quic:congestion_state_updated`` when the controller's state changes (``recovery``
        right after a loss, until the next ACK without one)."""
        recovery = path.recovery
        rtt = recovery.rtt
        controller = recovery.controller
        values = (
            rtt.smoothed_rtt * 1000.0,
            rtt.min_rtt * 1000.0,
            rtt.latest_rtt * 1000.0,
            rtt.rttvar * 1000.0,
            controller.cwnd,
            recovery.bytes_in_flight,
            path.pacer.rate,
        )
        last = self._metrics.get(path.id)
        if values != last:
            self._metrics[path.id] = values
            data = {"path_id": path.id}
            for index, name in enumerate(_METRIC_NAMES):
                value = values[index]
                if (last is None or last[index] != value) and value != float("inf"):
                    data[name] = round(value, 3) if isinstance(value, float) else value
            self.tracer.event(now, "quic:recovery_metrics_updated", data)
        state = (
            "recovery"
            if lost
            else "slow_start"
            if controller.in_slow_start
            else "congestion_avoidance"
        )
        previous = self._congestion.get(path.id)
        if state != previous:
            self._congestion[path.id] = state
            data = {"path_id": path.id, "new": state}
            if previous is not None:
                data["old"] = previous
            self.tracer.event(now, "quic:congestion_state_updated", data)


_METRIC_NAMES = (
    "smoothed_rtt",
    "min_rtt",
    "latest_rtt",
    "rtt_variance",
    "congestion_window",
    "bytes_in_flight",
    "pacing_rate",
)


def _close_trigger(event: ConnectionTerminated) -> str:
    if event.reason == "idle timeout":
        return "idle_timeout"
    if event.by_peer:
        return "error" if event.error_code and not event.application else "clean"
    if event.application:
        return "application"
    return "error" if event.error_code else "clean"


def _address(addr) -> dict:
    if not addr:
        return {}
    return {"ip": str(addr[0]), "port": int(addr[1]) if len(addr) > 1 else 0}


class TracedEvents(deque):
    """The connection's event queue when it is traced: each event is traced as it is queued."""

    def __init__(self, trace: Trace, clock, handshake=None) -> None:
        super().__init__()
        self.trace = trace
        self.clock = clock  # a callable returning the connection's ``now``
        self.handshake = handshake

    def append(self, event: Event) -> None:
        """Queue ``event`` and trace it."""
        super().append(event)
        self.trace.on_event(event, self.clock(), self.handshake)


def tracing(tracer, is_client: bool, odcid: bytes, now: float, clock) -> tuple:
    """A connection's ``(trace, event queue)``: ``(None, deque())`` without a tracer."""
    if tracer is None:
        return None, deque()
    trace = Trace(tracer, is_client=is_client, odcid=odcid, now=now)
    return trace, TracedEvents(trace, clock)
