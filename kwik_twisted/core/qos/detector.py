"""
Live congestion detection and prediction, one :class:`CongestionDetector` per path.

Theory of operation.  The sender feeds each path's detector from its ACK and loss handling
(:meth:`CongestionDetector.on_ack`, :meth:`~CongestionDetector.on_loss`) and tells it when the
path failed or came back (:meth:`~CongestionDetector.on_reset`).  Three small detectors read those
events; each grades what it sees as a :class:`CongestionLevel`, and the path's level is the worst
of the three.  Every figure is a scalar: a detector's memory is O(1) whatever the traffic, and
:meth:`~CongestionDetector.on_ack` (on the per-packet path) is O(1) with no container allocated.

**Delay** (:class:`DelayDetector`, type ``delay``).  A queueing-delay sample is
``max(0, latest_rtt - min_rtt)``.  The estimate ``q`` is a time-based EWMA of the samples::

    tau  = max(DELAY_TAU_FLOOR, DELAY_TAU_RTTS * min_rtt)       # 0.5 min RTT, at least 1 ms
    gain = dt / (dt + tau)                                     # dt: time since the last sample
    q   += gain * (sample - q)

so it follows a step with time constant ``tau`` (about half an RTT) however often ACKs come, and
lags a ramp by ``tau * slope``.  A level's threshold is ``clamp(share * min_rtt, floor, cap)``:

    ==========  =====  ======  ======
    level       share  floor   cap
    ==========  =====  ======  ======
    LIGHT       0.25   2 ms    50 ms
    MODERATE    1.0    5 ms    100 ms
    SEVERE      3.0    15 ms   300 ms
    ==========  =====  ======  ======

(:data:`DELAY_THRESHOLDS`).  A raw ``latest_rtt`` reads the peer's ACK delay as queueing (up to
``max_ack_delay``, 25 ms, on sparse traffic), so the caller should pass the sample corrected for
it the way RFC 9002 §5.3 corrects ``smoothed_rtt`` (subtracted when that stays >= ``min_rtt``).

**Loss** (:class:`LossDetector`, type ``loss``).  ``loss_rate`` is a per-packet EWMA of "this
packet was lost" with gain :data:`LOSS_GAIN` (1/64, as in path metrics), over acknowledged and lost
packets.  ``baseline_loss_rate`` is the same indicator averaged much more slowly: a running mean
over the first :data:`BASELINE_WARMUP` packets, then an EWMA with gain :data:`BASELINE_GAIN`
(1/1024).  The baseline learns only while neither the delay nor the queue detector reads
MODERATE or worse: loss that comes with a growing queue is congestion and is not learnt, loss
without one is the path's nature (radio, policers) and is.  With ``b`` the baseline, the loss
level is LIGHT above ``1.5 b + 0.5 %``, MODERATE above ``2.5 b + 3 %`` and SEVERE above
``4 b + 6 %`` (:data:`LOSS_THRESHOLDS`).  From a clean path one or two losses read LIGHT (1/64 =
1.6 % each), three in a row (or within a dozen packets) MODERATE.  Steady 5 % random loss reads
nothing once learnt (the warm-up learns it within a couple of hundred packets): its
``loss_rate`` (5 % +- 2 %) stays far below ``2.5 * 5 % + 3 %``; it still shows in ``loss_rate``.
Steady 0.5-1 % random loss, whose bursts are relatively larger, reads MODERATE about once per
50 000 packets.

**Queue** (:class:`QueueDetector`, type ``queue``), a standing queue building.  ACK samples are
grouped into windows of :data:`QUEUE_WINDOW_RTTS` smoothed RTTs (at least
:data:`QUEUE_WINDOW_FLOOR`); each window keeps the mean delivery rate and mean bytes in flight of
its ACKs.  A window *builds a queue* when, against the previous window, the delivery rate is flat
(within :data:`QUEUE_RATE_FLATNESS`, 10 %) while bytes in flight grew by more than
:data:`QUEUE_INFLIGHT_GROWTH` (10 %): more data in the network, no more delivered.
:data:`QUEUE_MODERATE_WINDOWS` (2) consecutive such windows read MODERATE,
:data:`QUEUE_SEVERE_WINDOWS` (4) SEVERE; any other window clears the streak.  A window holding an
application-limited ACK, or without a rate yet, does not count and breaks the streak; so does an
ACK gap longer than a window.  Slow start grows both figures, so it never reads as a queue.

**Hysteresis.**  A level rises as soon as its figure crosses a threshold, and falls only once the
figure is below :data:`EXIT_RATIO` (0.8) times the threshold of the level it holds, so a figure
near a threshold does not flap the level per ACK.

**Episode.**  ``since`` is set when the level first reaches MODERATE (``congested``); it is
cleared once the level has stayed NONE for one smoothed RTT (LIGHT keeps the episode open).  It
is re-evaluated on every ACK and loss.  ``types`` lists the detectors at LIGHT or above.

**Congestion figure** in 0..1, three signals taken as independent::

    congestion = 1 - (1 - x_delay) * (1 - x_loss) * (1 - x_queue)
    x_delay = q / (min_rtt + q)                            # the queueing share of the RTT
    x_loss  = min(1, max(0, loss_rate - baseline) / LOSS_SATURATION)   # saturates at +10 %
    x_queue = QUEUE_SHARE (0.5) while the queue detector reads MODERATE or worse, else 0

**Prediction** (:class:`TrendPredictor`): Holt's linear smoothing of ``q``, sampled at most once
per :data:`PREDICT_INTERVAL_RTTS` (a quarter) of the min RTT (at least
:data:`PREDICT_INTERVAL_FLOOR`), so its cost per ACK is bounded.  For a sample ``y`` taken ``dt``
after the previous one::

    forecast = level + trend * dt
    level'   = alpha * y + (1 - alpha) * forecast
    trend'   = beta * (level' - level) / dt + (1 - beta) * trend       # per second

(the second sample sets ``trend = slope`` exactly, so a linear ramp is tracked without error).
:meth:`CongestionDetector.predicted_queueing_delay` is ``max(0, level + trend * (t - last))`` and
:meth:`~CongestionDetector.time_to_cross` solves that line for a queueing budget.  Because ``q``
lags a ramp by ``tau * slope``, forecasts are that much low on a steady ramp.

**Reports.**  :meth:`CongestionDetector.report` freezes a path into a
:class:`~kwik_twisted.core.qos.reports.PathCongestionReport`; the report types, the two enums and
:func:`~kwik_twisted.core.qos.reports.global_report` live in :mod:`kwik_twisted.core.qos.reports`
(re-exported here).
"""

from __future__ import annotations

from ...errors import ConfigurationError
from .reports import (
    CongestionLevel,
    CongestionReport,
    CongestionType,
    PathCongestionReport,
    global_report,
)

#: The levels by value (indexing this allocates nothing).
_LEVELS = (
    CongestionLevel.NONE,
    CongestionLevel.LIGHT,
    CongestionLevel.MODERATE,
    CongestionLevel.SEVERE,
)

#: A level falls only once its figure is below this share of the level's threshold.
EXIT_RATIO = 0.8

#: Time constant of the queueing-delay EWMA, in min RTTs, and its floor in seconds.
DELAY_TAU_RTTS = 0.5
DELAY_TAU_FLOOR = 0.001
#: (share of min RTT, floor, cap) of the queueing delay for LIGHT, MODERATE and SEVERE.
DELAY_THRESHOLDS = ((0.25, 0.002, 0.050), (1.0, 0.005, 0.100), (3.0, 0.015, 0.300))

#: Gain of the per-packet loss EWMA (``loss_rate``).
LOSS_GAIN = 1 / 64
#: Gain of the baseline loss EWMA, and the packets averaged plainly before it applies.
BASELINE_GAIN = 1 / 1024
BASELINE_WARMUP = 1024
#: (factor of the baseline, margin) of the loss rate for LIGHT, MODERATE and SEVERE.
LOSS_THRESHOLDS = ((1.5, 0.005), (2.5, 0.03), (4.0, 0.06))
#: The loss excess over the baseline that saturates the loss share of ``congestion``.
LOSS_SATURATION = 0.10
#: Bytes per packet assumed when an ACK gives bytes only.
ASSUMED_PACKET_SIZE = 1200

#: Queue-detector windows, in smoothed RTTs, and their floor in seconds.
QUEUE_WINDOW_RTTS = 1.0
QUEUE_WINDOW_FLOOR = 0.001
#: Largest relative change of the delivery rate that is still flat.
QUEUE_RATE_FLATNESS = 0.10
#: Smallest relative growth of bytes in flight that builds a queue.
QUEUE_INFLIGHT_GROWTH = 0.10
#: Consecutive queue-building windows for MODERATE and SEVERE.
QUEUE_MODERATE_WINDOWS = 2
QUEUE_SEVERE_WINDOWS = 4
#: The share of ``congestion`` the queue detector contributes while it reads congestion.
QUEUE_SHARE = 0.5

#: Predictor samples: at most one per this many min RTTs, and at most one per floor seconds.
PREDICT_INTERVAL_RTTS = 0.25
PREDICT_INTERVAL_FLOOR = 0.001
#: The report's default horizon, in smoothed RTTs.
DEFAULT_HORIZON_RTTS = 1.0

_TYPE_BITS = ((1, CongestionType.DELAY), (2, CongestionType.LOSS), (4, CongestionType.QUEUE))
#: Every set of types, by bit mask (delay 1, loss 2, queue 4): reading ``types`` allocates nothing.
_TYPE_SETS = tuple(
    frozenset(kind for bit, kind in _TYPE_BITS if mask & bit) for mask in range(8)
)


def _grade(value: float, light: float, moderate: float, severe: float, current: int) -> int:
    """The level ``value`` reads against three thresholds, with :data:`EXIT_RATIO` hysteresis
    against the ``current`` level."""
    up = 3 if value > severe else 2 if value > moderate else 1 if value > light else 0
    if up >= current:
        return up
    value /= EXIT_RATIO  # the same as scaling the thresholds by EXIT_RATIO
    down = 3 if value > severe else 2 if value > moderate else 1 if value > light else 0
    return down if down < current else current


class TrendPredictor:
    """
    Holt's linear (double exponential) smoothing over irregularly timed samples.

    :ivar level: the smoothed value at the last sample's time.
    :ivar trend: the smoothed slope, per second.
    :ivar samples: how many samples were taken.
    :ivar last: the time of the last sample (``None`` before the first).
    """

    __slots__ = ("alpha", "beta", "level", "trend", "samples", "last")

    def __init__(self, *, alpha: float = 0.5, beta: float = 0.3) -> None:
        if not 0.0 < alpha <= 1.0 or not 0.0 <= beta <= 1.0:
            raise ConfigurationError(f"need 0 < alpha <= 1 and 0 <= beta <= 1: {alpha}, {beta}")
        self.alpha = alpha
        self.beta = beta
        self.reset()

    def reset(self) -> None:
        """Forget every sample."""
        self.level = 0.0
        self.trend = 0.0
        self.samples = 0
        self.last: float | None = None

    def update(self, value: float, *, now: float) -> None:
        """Take the sample ``value`` at ``now`` (a sample at the previous sample's time, or
        earlier, updates the level only)."""
        last = self.last
        if last is None:
            self.level = value
        else:
            dt = now - last
            if dt <= 0.0:
                self.level += self.alpha * (value - self.level)
                self.samples += 1
                return
            if self.samples == 1:
                self.trend = (value - self.level) / dt
                self.level = value
            else:
                previous = self.level
                forecast = previous + self.trend * dt
                self.level = forecast + self.alpha * (value - forecast)
                self.trend += self.beta * ((self.level - previous) / dt - self.trend)
        self.last = now
        self.samples += 1

    def forecast(self, at: float) -> float:
        """The value forecast for time ``at``: ``level + trend * (at - last)``."""
        last = self.last
        if last is None:
            return self.level
        return self.level + self.trend * (at - last)

    def time_to_cross(self, bound: float, *, now: float) -> float | None:
        """Seconds from ``now`` until the forecast reaches ``bound``: 0.0 if it is already there,
        ``None`` without samples or if the trend never gets there."""
        if self.samples == 0:
            return None
        value = self.forecast(now)
        if value >= bound:
            return 0.0
        if self.trend <= 0.0:
            return None
        return (bound - value) / self.trend

    def __repr__(self) -> str:
        return f"<TrendPredictor level={self.level:.6f} trend={self.trend:+.6f}/s n={self.samples}>"


class DelayDetector:
    """
    Queueing delay from RTT samples (see the module docstring).

    :ivar estimate: the smoothed queueing delay, seconds.
    :ivar level: its level, 0..3.
    :ivar min_rtt: the min RTT the thresholds were computed for.
    :ivar last: when the last sample was taken (``None``: none yet).
    """

    __slots__ = ("estimate", "level", "min_rtt", "tau", "light", "moderate", "severe", "last")

    def __init__(self) -> None:
        self.min_rtt = -1.0
        self.reset()
        self._thresholds(0.0)

    def reset(self) -> None:
        """Forget the estimate."""
        self.estimate = 0.0
        self.level = 0
        self.last: float | None = None

    def _thresholds(self, min_rtt: float) -> None:
        """Recompute the time constant and thresholds for ``min_rtt``."""
        self.min_rtt = min_rtt
        self.tau = max(DELAY_TAU_FLOOR, DELAY_TAU_RTTS * min_rtt)
        (ls, lf, lc), (ms, mf, mc), (ss, sf, sc) = DELAY_THRESHOLDS
        self.light = min(lc, max(lf, ls * min_rtt))
        self.moderate = min(mc, max(mf, ms * min_rtt))
        self.severe = min(sc, max(sf, ss * min_rtt))

    def on_sample(self, latest_rtt: float, min_rtt: float, *, now: float) -> None:
        """Take one RTT sample."""
        if min_rtt != self.min_rtt:
            self._thresholds(min_rtt)
        sample = latest_rtt - min_rtt
        if sample < 0.0:
            sample = 0.0
        last = self.last
        if last is None:
            self.estimate = sample
        elif now > last:
            dt = now - last
            self.estimate += dt / (dt + self.tau) * (sample - self.estimate)
        self.last = now
        self.level = _grade(self.estimate, self.light, self.moderate, self.severe, self.level)


class LossDetector:
    """
    The loss rate against its own slow baseline (see the module docstring).

    :ivar rate: the per-packet loss EWMA (gain :data:`LOSS_GAIN`).
    :ivar baseline: the slow baseline.
    :ivar learned: packets the baseline averaged, up to :data:`BASELINE_WARMUP`.
    :ivar level: the loss level, 0..3.
    """

    __slots__ = ("rate", "baseline", "learned", "level")

    def __init__(self) -> None:
        self.rate = 0.0
        self.baseline = 0.0
        self.learned = 0
        self.level = 0

    def reset(self) -> None:
        """Forget the current episode: the fast rate falls back to the baseline."""
        self.rate = self.baseline
        self.level = 0

    def on_packets(self, packets: int, *, lost: bool, learn: bool) -> None:
        """``packets`` packets were acknowledged (``lost`` false) or declared lost; the baseline
        learns them when ``learn``."""
        if packets <= 0:
            return
        keep = (1.0 - LOSS_GAIN) ** packets
        self.rate = 1.0 - (1.0 - self.rate) * keep if lost else self.rate * keep
        if learn:
            n = self.learned
            if n < BASELINE_WARMUP:
                total = n + packets
                self.baseline = (self.baseline * n + (packets if lost else 0)) / total
                self.learned = total if total < BASELINE_WARMUP else BASELINE_WARMUP
            else:
                keep = (1.0 - BASELINE_GAIN) ** packets
                self.baseline = 1.0 - (1.0 - self.baseline) * keep if lost else self.baseline * keep
        b = self.baseline
        (lf, lm), (mf, mm), (sf, sm) = LOSS_THRESHOLDS
        self.level = _grade(self.rate, lf * b + lm, mf * b + mm, sf * b + sm, self.level)

    @property
    def excess(self) -> float:
        """How far the loss rate exceeds the baseline (0 when below it)."""
        excess = self.rate - self.baseline
        return excess if excess > 0.0 else 0.0


class QueueDetector:
    """
    A standing queue building: flat delivery rate, growing bytes in flight (see the module
    docstring).

    :ivar level: 0, or MODERATE/SEVERE after enough consecutive queue-building windows.
    :ivar streak: consecutive queue-building windows (capped at :data:`QUEUE_SEVERE_WINDOWS`).
    """

    __slots__ = ("level", "streak", "start", "end", "last", "count", "rate_sum", "inflight_sum",
                 "app_limited", "previous_rate", "previous_inflight")  # fmt: skip

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every window."""
        self.level = 0
        self.streak = 0
        self.start = self.end = self.last = 0.0
        self.count = 0
        self.rate_sum = 0.0
        self.inflight_sum = 0.0
        self.app_limited = False
        self.previous_rate = -1.0  # < 0: no previous window to compare with
        self.previous_inflight = 0.0

    def on_sample(
        self,
        *,
        now: float,
        bytes_in_flight: int,
        delivery_rate: float,
        smoothed_rtt: float,
        app_limited: bool,
    ) -> None:
        """Add one ACK's figures; close the window when it has lasted long enough."""
        if self.count and now >= self.end:
            if now - self.last > self.end - self.start:
                self.previous_rate = -1.0  # an ACK gap: nothing to compare across it
                self._break()
            else:
                self._close()
            self.count = 0
        if not self.count:
            window = QUEUE_WINDOW_RTTS * smoothed_rtt
            self.start = now
            self.end = now + (window if window > QUEUE_WINDOW_FLOOR else QUEUE_WINDOW_FLOOR)
            self.rate_sum = self.inflight_sum = 0.0
            self.app_limited = False
        self.count += 1
        self.last = now
        self.rate_sum += delivery_rate
        self.inflight_sum += bytes_in_flight
        if app_limited:
            self.app_limited = True

    def _break(self) -> None:
        """End the streak."""
        self.streak = 0
        self.level = 0

    def _close(self) -> None:
        """Judge the window that just ended against the previous one."""
        rate = self.rate_sum / self.count
        inflight = self.inflight_sum / self.count
        previous_rate = self.previous_rate
        if self.app_limited or rate <= 0.0:
            self.previous_rate = -1.0
            self._break()
            return
        self.previous_rate = rate
        previous_inflight = self.previous_inflight
        self.previous_inflight = inflight
        if previous_rate < 0.0:
            return
        flat = abs(rate - previous_rate) <= QUEUE_RATE_FLATNESS * previous_rate
        if not flat or inflight <= (1.0 + QUEUE_INFLIGHT_GROWTH) * previous_inflight:
            self._break()
            return
        if self.streak < QUEUE_SEVERE_WINDOWS:
            self.streak += 1
        streak = self.streak
        self.level = (
            3 if streak >= QUEUE_SEVERE_WINDOWS else 2 if streak >= QUEUE_MODERATE_WINDOWS else 0
        )


class CongestionDetector:
    """
    The congestion state of one path: three detectors, a predictor, an episode.

    The sender calls :meth:`on_ack` for every ACK that newly acknowledges packets on the path,
    :meth:`on_loss` when packets are declared lost, :meth:`on_reset` when the path failed or
    recovered.  The read side (:attr:`level`, :attr:`types`, :attr:`congestion`...) costs O(1).

    :ivar path_id: the path's ID.
    :ivar delay: the :class:`DelayDetector`.
    :ivar loss: the :class:`LossDetector`.
    :ivar queue: the :class:`QueueDetector`.
    :ivar predictor: the :class:`TrendPredictor` of the queueing delay.
    :ivar smoothed_rtt: the path's smoothed RTT at the last ACK (``min_rtt`` likewise).
    :ivar delivery_rate: the delivery rate at the last ACK, bytes per second.
    :ivar bytes_in_flight: the bytes in flight at the last ACK.
    """

    __slots__ = ("path_id", "delay", "loss", "queue", "predictor", "next_prediction",
                 "smoothed_rtt", "min_rtt", "delivery_rate", "bytes_in_flight", "_level", "_since",
                 "_calm")  # fmt: skip

    def __init__(self, path_id: int, *, now: float) -> None:
        self.path_id = path_id
        self.delay = DelayDetector()
        self.loss = LossDetector()
        self.queue = QueueDetector()
        self.predictor = TrendPredictor()
        self.smoothed_rtt = 0.0
        self.min_rtt = 0.0
        self.delivery_rate = 0.0
        self.bytes_in_flight = 0
        self.on_reset(now=now)

    # -- the write side ------------------------------------------------------------------------

    def on_ack(
        self,
        *,
        now: float,
        acked_bytes: int,
        bytes_in_flight: int,
        latest_rtt: float,
        smoothed_rtt: float,
        min_rtt: float,
        delivery_rate: float,
        app_limited: bool = False,
        packets: int | None = None,
    ) -> None:
        """
        An ACK newly acknowledged ``acked_bytes`` bytes on the path at ``now``.

        :param bytes_in_flight: the path's bytes in flight after the ACK.
        :param latest_rtt: the latest RTT sample, best corrected for the peer's ACK delay (0 or
            less: none yet; the delay detector then skips this ACK); ``smoothed_rtt`` and
            ``min_rtt`` as the path's estimator has them.
        :param delivery_rate: the path's delivery-rate estimate, bytes per second.
        :param app_limited: whether the acknowledged data was sent while application-limited.
        :param packets: how many packets the ACK acknowledged (by default ``acked_bytes`` over
            :data:`ASSUMED_PACKET_SIZE`, rounded up).
        """
        self.smoothed_rtt = smoothed_rtt
        self.min_rtt = min_rtt
        self.delivery_rate = delivery_rate
        self.bytes_in_flight = bytes_in_flight
        delay = self.delay
        if latest_rtt > 0.0:
            delay.on_sample(latest_rtt, min_rtt, now=now)
            if now >= self.next_prediction:
                self.predictor.update(delay.estimate, now=now)
                interval = PREDICT_INTERVAL_RTTS * min_rtt
                self.next_prediction = now + (
                    interval if interval > PREDICT_INTERVAL_FLOOR else PREDICT_INTERVAL_FLOOR
                )
        queue = self.queue
        queue.on_sample(
            now=now,
            bytes_in_flight=bytes_in_flight,
            delivery_rate=delivery_rate,
            smoothed_rtt=smoothed_rtt,
            app_limited=app_limited,
        )
        if packets is None:
            packets = -(-acked_bytes // ASSUMED_PACKET_SIZE)
        self.loss.on_packets(packets, lost=False, learn=delay.level < 2 and queue.level < 2)
        self._refresh(now)

    def on_loss(self, packets: int, *, now: float) -> None:
        """``packets`` packets sent on the path were declared lost at ``now``."""
        learn = self.delay.level < 2 and self.queue.level < 2
        self.loss.on_packets(packets, lost=True, learn=learn)
        self._refresh(now)

    def on_reset(self, *, now: float) -> None:
        """The path failed or recovered: forget the episode, the queueing estimate, its trend and
        the queue windows (the learnt loss baseline stays: it is the path's nature)."""
        self.delay.reset()
        self.loss.reset()
        self.queue.reset()
        self.predictor.reset()
        self.next_prediction = now
        self._level = 0
        self._since: float | None = None
        self._calm: float | None = None

    def _refresh(self, now: float) -> None:
        """Recompute the level and the episode."""
        delay = self.delay.level
        loss = self.loss.level
        queue = self.queue.level
        level = delay if delay > loss else loss
        if queue > level:
            level = queue
        self._level = level
        if level >= 2:
            if self._since is None:
                self._since = now
            self._calm = None
        elif self._since is not None:
            if level:
                self._calm = None
            elif self._calm is None:
                self._calm = now
            elif now - self._calm >= self.smoothed_rtt:
                self._since = self._calm = None

    # -- the read side -------------------------------------------------------------------------

    @property
    def level(self) -> CongestionLevel:
        """The path's congestion level: the worst of the three detectors'."""
        return _LEVELS[self._level]

    @property
    def types(self) -> frozenset[CongestionType]:
        """The detectors that read LIGHT or worse."""
        mask = (
            (1 if self.delay.level else 0)
            | (2 if self.loss.level else 0)
            | (4 if self.queue.level else 0)
        )
        return _TYPE_SETS[mask]

    @property
    def congested(self) -> bool:
        """Whether the level is MODERATE or worse."""
        return self._level >= 2

    @property
    def queueing_delay(self) -> float:
        """The current queueing-delay estimate, seconds."""
        return self.delay.estimate

    @property
    def congestion(self) -> float:
        """The 0..1 congestion figure (see the module docstring)."""
        q = self.delay.estimate
        rtt = self.min_rtt + q
        x_delay = q / rtt if rtt > 0.0 else 0.0
        x_loss = self.loss.excess / LOSS_SATURATION
        if x_loss > 1.0:
            x_loss = 1.0
        x_queue = QUEUE_SHARE if self.queue.level >= 2 else 0.0
        return 1.0 - (1.0 - x_delay) * (1.0 - x_loss) * (1.0 - x_queue)

    @property
    def since(self) -> float | None:
        """When the current congestion episode began (``None``: no episode)."""
        return self._since

    def predicted_queueing_delay(self, *, now: float, horizon: float) -> float:
        """The queueing delay forecast for ``now + horizon`` (at least 0; the current estimate
        before the predictor has a sample)."""
        predictor = self.predictor
        if predictor.samples == 0:
            return self.delay.estimate
        value = predictor.forecast(now + horizon)
        return value if value > 0.0 else 0.0

    def time_to_cross(self, queue_budget: float, *, now: float) -> float | None:
        """Seconds from ``now`` until the queueing delay is forecast to exceed ``queue_budget``:
        0.0 if it already does, ``None`` if it is not heading there."""
        if self.delay.estimate >= queue_budget:
            return 0.0
        return self.predictor.time_to_cross(queue_budget, now=now)

    def report(self, *, now: float, horizon: float | None = None) -> PathCongestionReport:
        """Freeze the path's state; ``horizon`` (seconds) defaults to
        :data:`DEFAULT_HORIZON_RTTS` smoothed RTTs."""
        if horizon is None:
            horizon = DEFAULT_HORIZON_RTTS * self.smoothed_rtt
        return PathCongestionReport(
            path_id=self.path_id,
            level=self.level,
            types=tuple(sorted(kind.value for kind in self.types)),
            queueing_delay=self.delay.estimate,
            predicted_queueing_delay=self.predicted_queueing_delay(now=now, horizon=horizon),
            horizon=horizon,
            loss_rate=self.loss.rate,
            baseline_loss_rate=self.loss.baseline,
            delivery_rate=self.delivery_rate,
            bytes_in_flight=self.bytes_in_flight,
            congestion=self.congestion,
            since=self._since,
        )

    def __repr__(self) -> str:
        return (
            f"<CongestionDetector path={self.path_id} {self.level.name} "
            f"q={self.delay.estimate * 1e3:.1f}ms loss={self.loss.rate:.4f}"
            f"/{self.loss.baseline:.4f} queue={self.queue.streak} since={self._since}>"
        )


__all__ = [
    "CongestionDetector",
    "CongestionLevel",
    "CongestionReport",
    "CongestionType",
    "DelayDetector",
    "LossDetector",
    "PathCongestionReport",
    "QueueDetector",
    "TrendPredictor",
    "global_report",
]
