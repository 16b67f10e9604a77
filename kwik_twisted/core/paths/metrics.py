"""
Path metrics: what schedulers and the QoS layer know about a path.

Theory of operation.  The RTT figures come straight from the path's RFC 9002 §5 estimator
(``smoothed_rtt``, ``min_rtt``, ``latest_rtt``, ``rttvar``) and its ``jitter``.  A
:class:`PathMetricsTracker`, one per path, adds what recovery does not keep:

* **Bottleneck bandwidth** (``bandwidth``), BBR's delivery-rate estimation
  (draft-cheng-iccrg-delivery-rate-estimation) and BtlBw filter.  The tracker counts the bytes
  ``delivered`` (acknowledged) on the path and when (``delivered_time``); the sender stamps every
  packet it sends (:meth:`PathMetricsTracker.on_sent`) with those two figures, the start of the
  current send interval (``first_sent_time``: the send time of the packet that gave the last
  sample, or now if nothing is in flight) and whether it was sent application-limited.  On an
  ACK, the most recently sent packet ``P`` it acknowledges gives one sample::

      send_elapsed = P.sent_time - P.first_sent_time
      ack_elapsed  = now - P.delivered_time
      rate         = (delivered - P.delivered) / max(send_elapsed, ack_elapsed)

  Taking the larger interval discounts ACK compression (ACKs arriving faster than the data was
  sent) and send bursts; a sample over less than ``min_rtt`` is discarded (too short to be
  reliable).  The estimate is the windowed maximum of the samples over :data:`BW_WINDOW_RTTS`
  smoothed RTTs (:class:`WindowedMax`, Kathleen Nichols' three-sample filter as in Linux's
  ``win_minmax``), and **a sample marked application-limited enters the filter only when it
  exceeds the estimate** (BBR's rule): a path that is not given enough data to fill its window
  delivers what it was given, which says nothing about what it could carry.  Without samples the
  filter holds its value (an idle or app-limited path keeps its last measured capacity).

  *Application-limited* follows the draft's "bubble": while the path's congestion controller
  carries the sender's mark (``controller.app_limited``: the send loop ran out of data with room
  in the window), each packet sent moves ``app_limited_until`` to ``delivered + bytes in flight +
  the packet``; packets sent while ``delivered`` has not passed that mark are app-limited.  This
  is what made WRR's weights drift (issue 15): WRR sets each path's weight from its share of the
  summed bandwidth estimates, and a path that is not filled delivers what it is given, its
  weight's share of the data, so an estimator fed by those samples makes the weights a neutral
  equilibrium that noise walks away from (5-39% on loopback), and pulls them towards whatever
  the application happened to offer in a transfer's tail, a flow-control stall or between the
  pieces of a writer that pauses.  On two relay paths of 8 and
  4 Mbit/s (tests/scenarios/test_relay_wrr.py) with a writer handing over 256 KiB every 300 ms,
  the old sliding-mean estimate left path 0's weight share 32-35% off the capacity share 2/3;
  with the rule it ends 1-2% off.  The send loop sets the mark on every usable path with window
  room when the data runs out.  A path left with room while data waits is not marked: one the
  scheduler deliberately holds back (ECF waiting for the fast path) shows lower samples, but the
  windowed max keeps the capacity it showed within the last 10 RTTs; a sender short of CPU (the
  loopback case) leaves every path below its capacity for good, and that drift remains.
  Capacity a path never gets the data to show cannot be measured (a writer slower than every
  path leaves every estimate at what it was
  given); BBR probes for it with a pacing gain, which a window-based sender does not have.
* **Predicted bandwidth** (:meth:`PathMetricsTracker.predicted_bandwidth`): Holt's linear
  smoothing (:class:`~kwik_twisted.core.qos.detector.TrendPredictor`) of the per-round maximum of
  the samples the filter accepts, fed at most once per :data:`TREND_INTERVAL_RTTS` smoothed RTT;
  the forecast ``horizon`` seconds ahead is clamped to ``[0, bandwidth]`` (a trend may predict a
  fall before the 10-RTT filter forgets the old maximum, never a rise above what was measured),
  and is just ``bandwidth`` when the trend is older than the filter's window.
* **Goodput** (``delivery``, :class:`DeliveryRateEstimator`): a sliding-window mean, the bytes
  acknowledged by the ACKs of the last :data:`WINDOW_RTTS` smoothed RTTs divided by the time those
  ACKs span: what the path carried lately, application-limited or not (the QoS enforcer's
  "recent rate"); not a capacity estimate.
* **Loss rate**: a per-packet EWMA with gain :data:`LOSS_GAIN` of the indicator "this packet was
  lost", over acknowledged and lost packets (about the last 1/gain packets).
* **Reliability** (:class:`PathTracker`): the share of the time since the path was created that it
  was usable; the connection reports phase changes.
* **Congestion** in 0..1: the path's
  :class:`~kwik_twisted.core.qos.detector.CongestionDetector` figure when the QoS enforcer gave it
  one (``detector``, fed by :meth:`PathMetricsTracker.on_ack` and ``on_loss``); otherwise
  ``1 - (1 - q) * (1 - l)`` with the queueing share ``q = (srtt - min_rtt) / srtt`` and
  ``l = min(1, loss_rate / LOSS_SATURATION)``: either signal alone can saturate it.
  :meth:`PathMetricsTracker.rtt_drift` is the detector's forecast change of the queueing delay
  over a horizon (0 without a detector): the predicted RTT is ``srtt + drift``.
* **Cost**: a number the user sets (a metered link is dearer), 0 by default.

Cost per packet: :meth:`~PathMetricsTracker.on_sent` writes four attributes of the packet; per
ACK, one sample, one filter update (O(1)), the goodput window (amortised O(1)) and the detector.

:meth:`PathMetricsTracker.snapshot` freezes all of it into a :class:`PathMetrics` (the seed's
struct; its GeographicScore has no source in a transport and is left out), with the path's state
(:func:`path_state`) and its cumulative counters (packets and bytes sent, received, lost and
retransmitted, kept on the :class:`~kwik_twisted.core.paths.path.Path`), so a failed path shows
``state="failed"`` beside the last figures measured before it failed.  The hot-path readers
(schedulers) use the tracker's live ``bandwidth``, ``loss_rate``, ``congestion`` and ``cost``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..qos.detector import TrendPredictor

#: The goodput window, in smoothed RTTs.
WINDOW_RTTS = 4.0
#: Bounds of the goodput window in seconds (without an RTT, and for very long RTTs).
MIN_WINDOW = 0.010
MAX_WINDOW = 2.0
#: ACK events the goodput window holds at most (the memory bound).
MAX_ACK_EVENTS = 128
#: Gain of the per-packet loss EWMA.
LOSS_GAIN = 1 / 64
#: The loss rate that counts as full congestion.
LOSS_SATURATION = 0.10
#: The bottleneck-bandwidth filter's window, in smoothed RTTs (BBR: 10 round trips).
BW_WINDOW_RTTS = 10.0
#: Bounds of that window in seconds.
BW_MIN_WINDOW = 0.050
BW_MAX_WINDOW = 10.0
#: The bandwidth trend takes one sample (the round's maximum) per this many smoothed RTTs.
TREND_INTERVAL_RTTS = 1.0
#: Smoothing factors of the bandwidth trend (Holt: level, slope).
TREND_ALPHA = 0.5
TREND_BETA = 0.3


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
    :ivar datagram_size: the path's datagram size: what path MTU discovery confirmed, else the
        size its congestion controller counts in.
    :ivar last_activity: when the last packet arrived on the path (``None``: nothing yet), on
        the connection's clock.
    :ivar server_load: the load the server reported at the handshake, 0 (idle) .. 1 (full), or
        ``None`` (not reported, or we are the server); one value per connection, the same on
        every path.
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
    server_load: float | None = None

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
        # a list, not a deque: it holds at most MAX_ACK_EVENTS, so dropping the oldest is a
        # bounded move, and a short list is far smaller than a deque's 1 KiB block
        self.events: list[tuple[float, int]] = []
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
            del events[0]
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


class WindowedMax:
    """
    The maximum of the samples of the last ``window`` seconds, in O(1) time and memory: Kathleen
    Nichols' algorithm as in Linux's ``lib/win_minmax.c``, which keeps the best, second-best and
    third-best samples of successive sub-windows (a quarter and a half of the window) and promotes
    them as the best one ages out.

    :ivar value: the current maximum (0.0 before the first sample).
    """

    __slots__ = ("t0", "v0", "t1", "v1", "t2", "v2")

    def __init__(self) -> None:
        self.reset(0.0, now=float("-inf"))

    @property
    def value(self) -> float:
        """The windowed maximum."""
        return self.v0

    def reset(self, value: float, *, now: float) -> float:
        """Forget every sample but ``value`` taken at ``now``; return it."""
        self.t0 = self.t1 = self.t2 = now
        self.v0 = self.v1 = self.v2 = value
        return value

    def update(self, value: float, now: float, window: float) -> float:
        """Take ``value`` at ``now`` (times never decrease); return the maximum over ``window``."""
        if value >= self.v0 or now - self.t2 > window:
            self.t0 = self.t1 = self.t2 = now  # a new maximum, or nothing left in the window
            self.v0 = self.v1 = self.v2 = value
            return value
        if value >= self.v1:
            self.t1 = self.t2 = now
            self.v1 = self.v2 = value
        elif value >= self.v2:
            self.t2, self.v2 = now, value
        age = now - self.t0
        if age > window:  # the best sample aged out: promote the others
            self.t0, self.v0, self.t1, self.v1 = self.t1, self.v1, self.t2, self.v2
            self.t2, self.v2 = now, value
            if now - self.t0 > window:
                self.t0, self.v0, self.t1, self.v1 = self.t1, self.v1, self.t2, self.v2
        elif self.t1 == self.t0 and age > window / 4:
            self.t1 = self.t2 = now  # take a second-best from the second quarter
            self.v1 = self.v2 = value
        elif self.t2 == self.t1 and age > window / 2:
            self.t2, self.v2 = now, value  # and a third-best from the second half
        return self.v0

    def __repr__(self) -> str:
        return f"<WindowedMax {self.v0:.0f} ({self.v1:.0f}, {self.v2:.0f})>"


class RateStamped(Protocol):
    """What the delivery-rate sampler writes on a sent packet and reads back at its ACK (the
    fields of :class:`~kwik_twisted.core.recovery.loss.SentPacket`)."""

    sent_time: float
    size: int
    delivered: int
    delivered_time: float
    first_sent_time: float
    app_limited: bool


class PathMetricsTracker:
    """
    The metrics state of one path; the sender feeds it sends, ACKs and losses, the path manager
    phase changes.

    :ivar delivery: the goodput :class:`DeliveryRateEstimator`.
    :ivar availability: the :class:`PathTracker`.
    :ivar loss_rate: the per-packet loss EWMA, 0..1.
    :ivar cost: the user-set cost of the path.
    :ivar detector: the path's congestion detector (``None`` until the QoS enforcer assigns one);
        :meth:`on_ack` and :meth:`on_loss` feed it.
    :ivar delivered: bytes acknowledged on the path so far.
    :ivar delivered_time: when ``delivered`` last grew (or the path went idle and sent again).
    :ivar first_sent_time: the send time of the newest packet whose ACK gave a sample (the start
        of the current send interval).
    :ivar app_limited_until: the ``delivered`` figure that ends the application-limited bubble
        (0: not application-limited).
    :ivar filter: the :class:`WindowedMax` of the delivery-rate samples.
    :ivar rate_sample: the latest delivery-rate sample, bytes per second (0.0: none yet).
    :ivar sample_app_limited: whether that sample was application-limited.
    :ivar trend: the :class:`~kwik_twisted.core.qos.detector.TrendPredictor` of the bandwidth.
    :ivar smoothed_rtt: the path's smoothed RTT at the last ACK (``min_rtt``, ``latest_rtt``
        likewise; 0.0 before the first).
    """

    __slots__ = ("delivery", "availability", "loss_rate", "cost", "detector", "delivered",
                 "delivered_time", "first_sent_time", "app_limited_until", "filter",
                 "rate_sample", "sample_app_limited", "trend", "round_max", "next_trend",
                 "smoothed_rtt", "min_rtt", "latest_rtt")  # fmt: skip

    def __init__(self, *, now: float, usable: bool = False, cost: float = 0.0) -> None:
        self.delivery = DeliveryRateEstimator()
        self.availability = PathTracker(now=now, usable=usable)
        self.loss_rate = 0.0
        self.cost = float(cost)
        self.detector = None
        self.delivered = 0
        self.delivered_time = now
        self.first_sent_time = now
        self.app_limited_until = 0
        self.filter = WindowedMax()
        self.rate_sample = 0.0
        self.sample_app_limited = False
        self.trend = TrendPredictor(alpha=TREND_ALPHA, beta=TREND_BETA)
        self.round_max = 0.0
        self.next_trend = now
        self.smoothed_rtt = self.min_rtt = self.latest_rtt = 0.0

    # -- the read side ---------------------------------------------------------------------

    @property
    def bandwidth(self) -> float:
        """The bottleneck-bandwidth estimate, bytes per second (0.0 before the first sample)."""
        return self.filter.v0

    @property
    def goodput(self) -> float:
        """What the path delivered lately, bytes per second (the sliding mean)."""
        return self.delivery.bandwidth

    @property
    def congestion(self) -> float:
        """The 0..1 congestion figure: the detector's, else from the last ACK's RTTs and loss."""
        detector = self.detector
        if detector is not None:
            return detector.congestion
        return congestion_signal(self.smoothed_rtt, self.min_rtt, self.loss_rate)

    def reliability(self, *, now: float) -> float:
        """The share of the path's life it was usable (:meth:`PathTracker.reliability`)."""
        return self.availability.reliability(now=now)

    def predicted_bandwidth(self, horizon: float = 0.0, *, now: float | None = None) -> float:
        """
        The bandwidth forecast ``horizon`` seconds after ``now`` (default: after the trend's last
        sample), within ``[0, bandwidth]``; ``bandwidth`` itself while the trend has fewer than
        two samples or its last one is older than the filter's window.
        """
        estimate = self.filter.v0
        trend = self.trend
        last = trend.last
        if estimate <= 0.0 or trend.samples < 2 or last is None:
            return estimate
        if now is None:
            now = last
        elif now - last > self._window(BW_WINDOW_RTTS, BW_MIN_WINDOW, BW_MAX_WINDOW):
            return estimate
        forecast = trend.forecast(now + horizon)
        return estimate if forecast >= estimate else max(0.0, forecast)

    def rtt_drift(self, horizon: float, *, now: float) -> float:
        """How much the queueing delay is forecast to change in ``horizon`` seconds (the
        detector's prediction; 0.0 without a detector)."""
        detector = self.detector
        if detector is None:
            return 0.0
        return detector.predicted_queueing_delay(now=now, horizon=horizon) - detector.queueing_delay

    def _window(self, rtts: float, low: float, high: float) -> float:
        window = rtts * self.smoothed_rtt
        return low if window < low else high if window > high else window

    # -- the write side --------------------------------------------------------------------

    def on_sent(self, packet: RateStamped, bytes_in_flight: int, app_limited: bool) -> None:
        """
        Stamp ``packet`` (about to be sent, ``bytes_in_flight`` before it) for its rate sample;
        ``app_limited`` is the sender's mark (the congestion controller's ``app_limited``).
        """
        delivered = self.delivered
        if bytes_in_flight <= 0:  # nothing in flight: a new send interval starts now
            self.first_sent_time = self.delivered_time = packet.sent_time
        if app_limited:
            mark = delivered + bytes_in_flight + packet.size
            if mark > self.app_limited_until:
                self.app_limited_until = mark
        packet.delivered = delivered
        packet.delivered_time = self.delivered_time
        packet.first_sent_time = self.first_sent_time
        packet.app_limited = self.app_limited_until > 0

    def on_ack(
        self,
        acked_bytes: int,
        *,
        now: float,
        packets: int = 1,
        newest: RateStamped | None = None,
        rtt: RttSource | None = None,
        bytes_in_flight: int = 0,
        smoothed_rtt: float | None = None,
    ) -> None:
        """
        ``packets`` packets carrying ``acked_bytes`` bytes were newly acknowledged.

        :param newest: the most recently sent of them, stamped by :meth:`on_sent` (it gives the
            delivery-rate sample; ``None``: no sample).
        :param rtt: the path's RTT estimator, after this ACK's sample.
        :param bytes_in_flight: the path's bytes in flight after the ACK (for the detector).
        :param smoothed_rtt: the smoothed RTT, when ``rtt`` is not given.
        """
        if packets > 0:
            self.loss_rate *= (1.0 - LOSS_GAIN) ** packets
        if rtt is not None:
            smoothed_rtt = self.smoothed_rtt = rtt.smoothed_rtt
            self.min_rtt = rtt.min_rtt
            self.latest_rtt = getattr(rtt, "adjusted_rtt", rtt.latest_rtt)  # no ACK delay
        elif smoothed_rtt is not None:
            self.smoothed_rtt = smoothed_rtt
        self.delivery.on_ack(acked_bytes, now=now, smoothed_rtt=smoothed_rtt)
        delivered = self.delivered = self.delivered + acked_bytes
        self.delivered_time = now
        if self.app_limited_until and delivered > self.app_limited_until:
            self.app_limited_until = 0
        if newest is not None and newest.delivered >= 0:
            # the delivery-rate sample of the newest packet acknowledged (module docstring)
            sent_time = newest.sent_time
            send_elapsed = sent_time - newest.first_sent_time
            ack_elapsed = now - newest.delivered_time
            interval = send_elapsed if send_elapsed > ack_elapsed else ack_elapsed
            self.first_sent_time = sent_time
            if interval > 0.0 and interval >= self.min_rtt:  # shorter says nothing reliable
                self._take(newest, (delivered - newest.delivered) / interval, now)
        detector = self.detector
        if detector is not None:
            detector.on_ack(
                now=now,
                acked_bytes=acked_bytes,
                bytes_in_flight=bytes_in_flight,
                latest_rtt=self.latest_rtt,
                smoothed_rtt=self.smoothed_rtt,
                min_rtt=self.min_rtt,
                delivery_rate=self.rate_sample or self.filter.v0,
                app_limited=self.sample_app_limited,
                packets=packets,
            )

    def _take(self, newest: RateStamped, rate: float, now: float) -> None:
        """Take the sample ``rate`` of ``newest``: into the filter and the trend, unless it is
        application-limited and not above the estimate (BBR's rule)."""
        app_limited = newest.app_limited
        self.rate_sample = rate
        self.sample_app_limited = app_limited
        bw_filter = self.filter
        if app_limited and rate <= bw_filter.v0:
            return  # it says what the path was given, not what it can carry
        window = BW_WINDOW_RTTS * self.smoothed_rtt
        if window < BW_MIN_WINDOW:
            window = BW_MIN_WINDOW
        elif window > BW_MAX_WINDOW:
            window = BW_MAX_WINDOW
        bw_filter.update(rate, now, window)
        if rate > self.round_max:
            self.round_max = rate
        if now >= self.next_trend:
            self.trend.update(self.round_max, now=now)
            self.round_max = 0.0
            self.next_trend = now + TREND_INTERVAL_RTTS * self.smoothed_rtt

    def on_loss(self, packets: int = 1, *, now: float) -> None:
        """``packets`` packets were declared lost."""
        if packets > 0:
            self.loss_rate = 1.0 - (1.0 - self.loss_rate) * (1.0 - LOSS_GAIN) ** packets
            detector = self.detector
            if detector is not None:
                detector.on_loss(packets, now=now)

    def on_phase_change(self, usable: bool, *, now: float) -> None:
        """The path became usable or unusable (see :meth:`PathTracker.on_phase_change`)."""
        self.availability.on_phase_change(usable, now=now)

    def snapshot(self, path: MeasuredPath, *, now: float) -> PathMetrics:
        """Freeze the figures of ``path`` (which this tracker belongs to) at ``now``."""
        recovery = path.recovery
        rtt = recovery.rtt
        detector = self.detector
        if detector is not None:
            congestion = detector.congestion
        else:
            congestion = congestion_signal(rtt.smoothed_rtt, rtt.min_rtt, self.loss_rate)
        return PathMetrics(
            path_id=path.id,
            smoothed_rtt=rtt.smoothed_rtt,
            min_rtt=rtt.min_rtt,
            latest_rtt=rtt.latest_rtt,
            rttvar=rtt.rttvar,
            jitter=rtt.jitter,
            bandwidth=self.filter.v0,
            loss_rate=self.loss_rate,
            congestion=congestion,
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
            datagram_size=getattr(path, "max_datagram_size", 0)  # path MTU discovery's size
            or getattr(recovery.controller, "max_datagram_size", 0),
            last_activity=getattr(path, "last_activity", None),
        )

    def __repr__(self) -> str:
        return (
            f"<PathMetricsTracker bw={self.bandwidth:.0f} loss={self.loss_rate:.4f} "
            f"cost={self.cost}>"
        )
