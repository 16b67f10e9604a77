"""
Path metrics: what schedulers (and, later, the QoS layer) know about a path.

Theory of operation.  The RTT figures come straight from the path's RFC 9002 §5 estimator
(``smoothed_rtt``, ``min_rtt``, ``latest_rtt``, ``rttvar``) and its ``jitter``.  A
:class:`PathMetricsTracker`, one per path, adds what recovery does not keep:

* **Delivery rate** (:class:`DeliveryRateEstimator`): a *sliding-window mean*, the bytes
  acknowledged by the ACKs of the last :data:`WINDOW_RTTS` smoothed RTTs divided by the time those
  ACKs span.  Not a windowed max: without per-packet send timestamps a max filter over ACK arrivals
  is inflated by ACK compression (BBR corrects that with send times, which we do not have here).
  The estimate is held, not decayed, while no ACK arrives, so an idle path keeps its last known
  rate.  It measures capacity only while the sender fills the window (an application-limited path
  under-reports).
* **Loss rate**: a per-packet EWMA with gain :data:`LOSS_GAIN` of the indicator "this packet was
  lost", over acknowledged and lost packets (about the last 1/gain packets).
* **Reliability** (:class:`PathTracker`): the share of the time since the path was created that it
  was usable; the connection reports phase changes.
* **Congestion** in 0..1: ``1 - (1 - q) * (1 - l)`` with the queueing share ``q = (srtt - min_rtt) /
  srtt`` and ``l = min(1, loss_rate / LOSS_SATURATION)``: either signal alone can saturate it.
* **Cost**: a number the user sets (a metered link is dearer), 0 by default.

:meth:`PathMetricsTracker.snapshot` freezes all of it into a :class:`PathMetrics` (the seed's
struct; its ServerLoad and GeographicScore have no source in a transport and are left out), with
the path's state (:func:`path_state`) and its cumulative counters (packets and bytes sent,
received, lost and retransmitted, kept on the :class:`~kwik_twisted.core.paths.path.Path`), so a
failed path shows ``state="failed"`` beside the last figures measured before it failed.  The
hot-path readers (schedulers) use the tracker's live ``bandwidth``, ``loss_rate`` and ``cost``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

#: The delivery-rate window, in smoothed RTTs.
WINDOW_RTTS = 4.0
#: Bounds of the delivery-rate window in seconds (without an RTT, and for very long RTTs).
MIN_WINDOW = 0.010
MAX_WINDOW = 2.0
#: ACK events the delivery-rate window holds at most (the memory bound).
MAX_ACK_EVENTS = 128
#: Gain of the per-packet loss EWMA.
LOSS_GAIN = 1 / 64
#: The loss rate that counts as full congestion.
LOSS_SATURATION = 0.10


class RttSource(Protocol):
    """What the metrics read from a path's RTT estimator."""

    smoothed_rtt: float
    min_rtt: float
    latest_rtt: float
    rttvar: float
    jitter: float


class WindowSource(Protocol):
    """What the metrics read from a congestion controller."""

    @property
    def cwnd(self) -> int: ...


class RecoverySource(Protocol):
    """What the metrics read from a path's loss recovery."""

    @property
    def rtt(self) -> RttSource: ...

    @property
    def controller(self) -> WindowSource: ...

    @property
    def bytes_in_flight(self) -> int: ...


class MeasuredPath(Protocol):
    """What :meth:`PathMetricsTracker.snapshot` reads from a path (the counters are optional:
    a path without them reports 0)."""

    @property
    def id(self) -> int: ...

    @property
    def recovery(self) -> RecoverySource: ...


@dataclass(frozen=True, slots=True)
class PathMetrics:
    """
    A snapshot of one path's figures (times in seconds, rates in bytes per second).

    :ivar loss_rate: the EWMA share of packets lost, 0..1.
    :ivar congestion: 0 (none) .. 1 (saturated), see the module docstring.
    :ivar reliability: the share of the path's lifetime it was usable, 0..1.
    :ivar cost: the user-set cost of the path.
    :ivar state: ``"validating"``, ``"active"``, ``"backup"`` (active, but either side made it a
        backup), ``"failed"`` (its figures are the last ones measured before it failed) or
        ``"abandoned"``.
    :ivar packets_sent: packets sent on the path (``bytes_sent``: their datagram bytes).
    :ivar packets_received: authenticated packets received on it (``bytes_received``).
    :ivar packets_lost: packets sent on it and declared lost (``bytes_lost``).
    :ivar packets_retransmitted: of those, the ones whose frames were queued to be sent again
        (lost packets carrying more than ACKs; ``bytes_retransmitted``).
    :ivar datagram_size: the datagram size the path's congestion controller counts in.
    :ivar last_activity: when the last packet arrived on the path (``None``: nothing yet), on
        the connection's clock.
    """

    path_id: int
    smoothed_rtt: float
    min_rtt: float
    latest_rtt: float
    rttvar: float
    jitter: float
    bandwidth: float
    loss_rate: float
    congestion: float
    reliability: float
    cost: float
    cwnd: int
    bytes_in_flight: int
    state: str = "active"
    packets_sent: int = 0
    packets_received: int = 0
    packets_lost: int = 0
    packets_retransmitted: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    bytes_lost: int = 0
    bytes_retransmitted: int = 0
    datagram_size: int = 0
    last_activity: float | None = None

    @property
    def latency(self) -> float:
        """The seed's ``Latency``: the smoothed RTT."""
        return self.smoothed_rtt

    @property
    def queueing_delay(self) -> float:
        """How far the smoothed RTT exceeds the minimum RTT."""
        return max(0.0, self.smoothed_rtt - self.min_rtt)


def congestion_signal(smoothed_rtt: float, min_rtt: float, loss_rate: float) -> float:
    """The 0..1 congestion figure: queueing share and loss, combined as independent signals."""
    queueing = (smoothed_rtt - min_rtt) / smoothed_rtt if smoothed_rtt > 0.0 else 0.0
    queueing = min(1.0, max(0.0, queueing))
    loss = min(1.0, max(0.0, loss_rate / LOSS_SATURATION))
    return 1.0 - (1.0 - queueing) * (1.0 - loss)


def path_state(path: object) -> str:
    """The state name of ``path``: its phase's value, ``"backup"`` for an active backup path
    (``"active"`` for a path without a phase)."""
    phase = getattr(path, "phase", None)
    state = "active" if phase is None else phase.value
    if state == "active" and getattr(path, "is_backup", False):
        return "backup"
    return state


class DeliveryRateEstimator:
    """
    Bytes acknowledged per second over a sliding window of recent ACKs.

    :ivar bandwidth: the latest estimate in bytes per second (0.0 until two ACKs span some time).
    """

    __slots__ = ("events", "window_bytes", "bandwidth")

    def __init__(self) -> None:
        self.events: deque[tuple[float, int]] = deque()
        self.window_bytes = 0  # bytes of every event in ``events`` except the oldest
        self.bandwidth = 0.0

    def on_ack(self, acked_bytes: int, *, now: float, smoothed_rtt: float | None = None) -> None:
        """
        Record an ACK that newly acknowledged ``acked_bytes``.

        :param smoothed_rtt: the path's smoothed RTT, which sizes the window
            (:data:`WINDOW_RTTS` of them, within :data:`MIN_WINDOW`..:data:`MAX_WINDOW`).
        """
        if acked_bytes <= 0:
            return
        window = MIN_WINDOW if smoothed_rtt is None else WINDOW_RTTS * smoothed_rtt
        window = min(MAX_WINDOW, max(MIN_WINDOW, window))
        events = self.events
        if events and now - events[-1][0] >= window:
            events.clear()  # after an idle gap the rate restarts from this ACK (the estimate holds)
            self.window_bytes = 0
        if events:
            self.window_bytes += acked_bytes
        events.append((now, acked_bytes))
        while len(events) > MAX_ACK_EVENTS or (len(events) > 2 and now - events[1][0] >= window):
            events.popleft()
            self.window_bytes -= events[0][1]
        span = now - events[0][0]
        if span > 0.0 and len(events) > 1:
            self.bandwidth = self.window_bytes / span

    def __repr__(self) -> str:
        return f"<DeliveryRateEstimator {self.bandwidth:.0f} B/s over {len(self.events)} acks>"


class PathTracker:
    """
    How long a path has been usable: the source of :attr:`PathMetrics.reliability`.

    The connection calls :meth:`on_phase_change` whenever the path becomes usable or stops being so.
    """

    __slots__ = ("created", "usable", "since", "accumulated")

    def __init__(self, *, now: float, usable: bool = False) -> None:
        self.created = now
        self.usable = usable
        self.since = now
        self.accumulated = 0.0

    def on_phase_change(self, usable: bool, *, now: float) -> None:
        """The path became usable (``True``) or unusable (``False``) at ``now``."""
        if usable == self.usable:
            return
        if self.usable:
            self.accumulated += max(0.0, now - self.since)
        self.usable = usable
        self.since = now

    def usable_time(self, *, now: float) -> float:
        """Seconds the path has been usable since it was created."""
        if self.usable:
            return self.accumulated + max(0.0, now - self.since)
        return self.accumulated

    def reliability(self, *, now: float) -> float:
        """The share of the path's lifetime it was usable (1.0 for a path usable from birth)."""
        lifetime = now - self.created
        if lifetime <= 0.0:
            return 1.0 if self.usable else 0.0
        return min(1.0, self.usable_time(now=now) / lifetime)


class PathMetricsTracker:
    """
    The metrics state of one path; the connection feeds it ACKs, losses and phase changes.

    :ivar delivery: the :class:`DeliveryRateEstimator`.
    :ivar availability: the :class:`PathTracker`.
    :ivar loss_rate: the per-packet loss EWMA, 0..1.
    :ivar cost: the user-set cost of the path.
    """

    __slots__ = ("delivery", "availability", "loss_rate", "cost")

    def __init__(self, *, now: float, usable: bool = False, cost: float = 0.0) -> None:
        self.delivery = DeliveryRateEstimator()
        self.availability = PathTracker(now=now, usable=usable)
        self.loss_rate = 0.0
        self.cost = float(cost)

    @property
    def bandwidth(self) -> float:
        """The delivery-rate estimate, bytes per second."""
        return self.delivery.bandwidth

    def on_ack(
        self, acked_bytes: int, *, now: float, packets: int = 1, smoothed_rtt: float | None = None
    ) -> None:
        """``packets`` packets carrying ``acked_bytes`` bytes were newly acknowledged."""
        if packets > 0:
            self.loss_rate *= (1.0 - LOSS_GAIN) ** packets
        self.delivery.on_ack(acked_bytes, now=now, smoothed_rtt=smoothed_rtt)

    def on_loss(self, packets: int = 1, *, now: float) -> None:
        """``packets`` packets were declared lost."""
        if packets > 0:
            self.loss_rate = 1.0 - (1.0 - self.loss_rate) * (1.0 - LOSS_GAIN) ** packets

    def on_phase_change(self, usable: bool, *, now: float) -> None:
        """The path became usable or unusable (see :meth:`PathTracker.on_phase_change`)."""
        self.availability.on_phase_change(usable, now=now)

    def snapshot(self, path: MeasuredPath, *, now: float) -> PathMetrics:
        """Freeze the figures of ``path`` (which this tracker belongs to) at ``now``."""
        recovery = path.recovery
        rtt = recovery.rtt
        return PathMetrics(
            path_id=path.id,
            smoothed_rtt=rtt.smoothed_rtt,
            min_rtt=rtt.min_rtt,
            latest_rtt=rtt.latest_rtt,
            rttvar=rtt.rttvar,
            jitter=rtt.jitter,
            bandwidth=self.delivery.bandwidth,
            loss_rate=self.loss_rate,
            congestion=congestion_signal(rtt.smoothed_rtt, rtt.min_rtt, self.loss_rate),
            reliability=self.availability.reliability(now=now),
            cost=self.cost,
            cwnd=recovery.controller.cwnd,
            bytes_in_flight=recovery.bytes_in_flight,
            state=path_state(path),
            packets_sent=getattr(path, "packets_sent", 0),
            packets_received=getattr(path, "packets_received", 0),
            packets_lost=getattr(path, "packets_lost", 0),
            packets_retransmitted=getattr(path, "packets_retransmitted", 0),
            bytes_sent=getattr(path, "bytes_sent", 0),
            bytes_received=getattr(path, "bytes_received", 0),
            bytes_lost=getattr(path, "bytes_lost", 0),
            bytes_retransmitted=getattr(path, "bytes_retransmitted", 0),
            datagram_size=getattr(recovery.controller, "max_datagram_size", 0),
            last_activity=getattr(path, "last_activity", None),
        )

    def __repr__(self) -> str:
        return (
            f"<PathMetricsTracker bw={self.bandwidth:.0f} loss={self.loss_rate:.4f} "
            f"cost={self.cost}>"
        )
