"""
Congestion detection across paths: the seed's CongestionDetector, without machine learning.

Theory of operation.  :meth:`CongestionDetector.detect` takes one
:class:`~kwik_twisted.core.paths.metrics.PathMetrics` per path and derives three signals in 0..1:

* **delay** (RTT-based): queueing delay ``srtt - min_rtt`` relative to the base RTT, reaching 1 when
  the RTT has grown by ``rtt_inflation_limit * min_rtt`` (default: doubled).  Delay-based detection
  in the manner of TCP Vegas / LEDBAT (RFC 6817 §2), which sees a queue before it overflows;
* **loss**: the loss-rate EWMA relative to ``loss_saturation`` (10% by default);
* **queue**: bytes in flight beyond the bandwidth-delay product ``bandwidth * min_rtt``, relative to
  it (1 when twice the BDP is outstanding, that is, a BDP is sitting in buffers).

A path's ``level`` is the strongest signal, its ``kind`` the signal that gave it, and its ``state``
the level bucketed at :data:`LIGHT`, :data:`MODERATE` and :data:`SEVERE`.  The seed's "congestion
predictor" is a **least-squares linear fit** of the last ``history`` queueing-delay samples of each
path, extrapolated ``horizon_rtts`` smoothed RTTs ahead; ``predicted_level`` is the level with that
predicted delay.  The global ``level`` is the mean of the path levels weighted by bandwidth (plain
mean when no bandwidth is known): it says how much of the connection's capacity is congested.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum, IntEnum

from .metrics import LOSS_SATURATION, PathMetrics

#: Level thresholds of the states.
LIGHT = 0.2
MODERATE = 0.5
SEVERE = 0.8


class CongestionState(IntEnum):
    """How congested a path (or the connection) is."""

    NONE = 0
    LIGHT = 1
    MODERATE = 2
    SEVERE = 3


class CongestionKind(Enum):
    """Which signal dominates (the seed's CongestionType)."""

    NONE = "none"
    DELAY = "delay"
    LOSS = "loss"
    QUEUE = "queue"


def state_of(level: float) -> CongestionState:
    """The state a 0..1 level falls in."""
    if level >= SEVERE:
        return CongestionState.SEVERE
    if level >= MODERATE:
        return CongestionState.MODERATE
    if level >= LIGHT:
        return CongestionState.LIGHT
    return CongestionState.NONE


@dataclass(frozen=True, slots=True)
class PathCongestionReport:
    """
    The congestion analysis of one path.

    :ivar trend: the fitted growth of the queueing delay, in seconds per second.
    :ivar predicted_queueing_delay: the fitted delay one horizon ahead, seconds.
    """

    path_id: int
    delay_signal: float
    loss_signal: float
    queue_signal: float
    level: float
    state: CongestionState
    kind: CongestionKind
    queueing_delay: float
    trend: float
    predicted_queueing_delay: float
    predicted_level: float


@dataclass(frozen=True, slots=True)
class CongestionReport:
    """The congestion analysis of every path and of the connection as a whole."""

    time: float
    paths: tuple[PathCongestionReport, ...]
    level: float
    state: CongestionState
    predicted_level: float

    def for_path(self, path_id: int) -> PathCongestionReport | None:
        """The report of ``path_id``, or ``None``."""
        for report in self.paths:
            if report.path_id == path_id:
                return report
        return None

    @property
    def congested_paths(self) -> tuple[int, ...]:
        """The IDs of paths at MODERATE congestion or worse."""
        return tuple(r.path_id for r in self.paths if r.state >= CongestionState.MODERATE)


def _clamp(value: float) -> float:
    return 0.0 if value < 0.0 else 1.0 if value > 1.0 else value


def weighted_mean(values: list[float], weights: list[float]) -> float:
    """The mean of ``values`` weighted by ``weights`` (plain if they sum to 0; 0.0 if empty)."""
    if not values:
        return 0.0
    total = sum(weights)
    if total <= 0.0:
        return sum(values) / len(values)
    return sum(v * w for v, w in zip(values, weights)) / total


def linear_slope(samples: Iterable[tuple[float, float]]) -> float:
    """The least-squares slope of ``(x, y)`` samples (0.0 with fewer than two distinct x)."""
    points = list(samples)
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var_x = sum((x - mean_x) ** 2 for x, _ in points)
    if var_x <= 0.0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var_x


class CongestionDetector:
    """
    Delay-, loss- and queue-based congestion detection with a linear trend predictor.

    It keeps the last ``history`` queueing-delay samples of each path it was shown.
    """

    def __init__(
        self,
        *,
        history: int = 8,
        rtt_inflation_limit: float = 1.0,
        loss_saturation: float = LOSS_SATURATION,
        horizon_rtts: float = 1.0,
    ) -> None:
        self.history = max(2, history)
        self.rtt_inflation_limit = rtt_inflation_limit
        self.loss_saturation = loss_saturation
        self.horizon_rtts = horizon_rtts
        self._samples: dict[int, deque[tuple[float, float]]] = {}

    def detect(self, metrics: Iterable[PathMetrics], *, now: float) -> CongestionReport:
        """Analyse every path; paths not given (any more) are forgotten."""
        given = tuple(metrics)
        reports = tuple(self.analyze_path(m, now=now) for m in given)
        seen = {m.path_id for m in given}
        for path_id in [k for k in self._samples if k not in seen]:
            del self._samples[path_id]
        bandwidths = [m.bandwidth for m in given]
        level = weighted_mean([r.level for r in reports], bandwidths)
        predicted = weighted_mean([r.predicted_level for r in reports], bandwidths)
        return CongestionReport(now, reports, level, state_of(level), predicted)

    def analyze_path(self, metrics: PathMetrics, *, now: float) -> PathCongestionReport:
        """Record ``metrics``' queueing delay and analyse the path."""
        queueing = metrics.queueing_delay
        samples = self._samples.get(metrics.path_id)
        if samples is None:
            samples = self._samples[metrics.path_id] = deque(maxlen=self.history)
        samples.append((now, queueing))
        trend = linear_slope(samples) if len(samples) > 2 else 0.0
        horizon = self.horizon_rtts * metrics.smoothed_rtt
        predicted_delay = max(0.0, queueing + trend * horizon)
        delay = self._delay_signal(queueing, metrics.min_rtt)
        loss = _clamp(metrics.loss_rate / self.loss_saturation)
        queue = self._queue_signal(metrics)
        level = max(delay, loss, queue)
        kind = CongestionKind.NONE
        if level >= LIGHT:
            kind = (
                CongestionKind.DELAY
                if level == delay
                else CongestionKind.LOSS if level == loss else CongestionKind.QUEUE
            )
        predicted = max(self._delay_signal(predicted_delay, metrics.min_rtt), loss, queue)
        return PathCongestionReport(
            metrics.path_id, delay, loss, queue, level, state_of(level), kind,
            queueing, trend, predicted_delay, predicted,
        )  # fmt: skip

    def forget(self, path_id: int) -> None:
        """Drop the history of ``path_id`` (for example, once the path is abandoned)."""
        self._samples.pop(path_id, None)

    def _delay_signal(self, queueing_delay: float, min_rtt: float) -> float:
        base = self.rtt_inflation_limit * min_rtt
        return _clamp(queueing_delay / base) if base > 0.0 else 0.0

    @staticmethod
    def _queue_signal(metrics: PathMetrics) -> float:
        bdp = metrics.bandwidth * metrics.min_rtt
        return _clamp((metrics.bytes_in_flight - bdp) / bdp) if bdp > 0.0 else 0.0
