"""
Path schedulers: on which path the next packet of stream data goes (pure policy).

Theory of operation.  :meth:`Scheduler.select` gets the connection's paths and the
:class:`FrameRequirements` of what is to be sent, and answers a path or ``None`` (send nothing now).
Every scheduler applies the same three rules around its own choice (:meth:`Scheduler.choose`):

1. **Backup paths** (either side's PATH_STATUS, multipath QUIC draft §3.3) are candidates only when
   no usable non-backup path exists; a primary that is merely window-limited still excludes them.
2. **Window room**: a path with ``bytes_in_flight >= cwnd`` is skipped.
3. **Earliest completion first** (Lim et al., "ECF: An MPTCP Path Scheduler to Manage Heterogeneous
   Paths", CoNEXT 2017; the rule of the authors' Linux MPTCP implementation, in bytes).  When
   the choice ``s`` is not the fastest (lowest smoothed RTT) candidate ``f`` and ``f`` has no
   window room, with ``k`` the bytes waiting to be sent, ``delta = max(rttvar_f, rttvar_s)``,
   ``beta = 0.25``, ``rtt_p`` a path's predicted RTT and ``rate_p`` its predicted rate
   (:func:`predicted_rtt`, :func:`predicted_rate`)::

       x_f = max(k, cwnd_f)                              # the window rule: at least a window
       if rtt_f + x_f / rate_f + pacing_wait_f < (1 + waiting * beta) * (rtt_s + delta):
           x_s = max(k, cwnd_s)
           if x_s / rate_s >= 2 * rtt_f + delta:
               waiting = True; wait for f                # s would finish later than f
           else: send on s                               # (waiting unchanged)
       else: waiting = False; send on s                  # f is saturated for long enough

   ``rtt_f + x_f / rate_f`` is the time for ``f`` to open its window (one RTT) and carry the
   backlog; ``rtt_s + delta`` is the time one window on ``s`` takes, with a variance margin.  With
   the window's rate ``cwnd / srtt`` for ``rate`` and ``srtt`` for ``rtt`` (a path without
   metrics) these are the paper's ``(1 + x_f / cwnd_f) * srtt_f`` and ``srtt_s * x_s / cwnd_s``;
   the predicted rate (the bottleneck-bandwidth estimate, bent by its trend) is what the path
   delivers rather than what its window would allow, and the predicted RTT adds the congestion
   detector's forecast change of the queueing delay one smoothed RTT ahead.  ``waiting`` is
   the paper's hysteresis: once the scheduler chose to wait, the slow path must look better by
   ``beta`` before it is used again, so decisions do not flap.  ``pacing_wait_f`` (our addition) is
   how long ``f``'s pacer still holds it.  Also ours: a fastest path whose probe timer has fired
   since its last acknowledgement (``pto_count > 0``) is never waited for: a path that just died
   keeps its low smoothed RTT and a full window, and waiting for it would stall the other paths
   until it is declared failed.  :func:`would_arrive_later` is the stateless test and
   :class:`CompletionTimeGate` carries ``waiting``.

Schedulers (registry names): ``lowest-rtt`` (default), ``wrr`` (adaptive smooth weighted
round-robin, the seed's AdaptiveLoadBalancer), ``redundant`` (every packet on every path)
and ``multi-criteria`` (the seed's EnhancedScheduler.SelectPath, with the weights its
:class:`~kwik_twisted.core.qos.model.PerformanceModel` learns).  Bandwidth (the bottleneck
estimate, which leaves application-limited samples out), its prediction, loss, congestion,
reliability and cost come from ``path.metrics`` (a
:class:`~kwik_twisted.core.paths.metrics.PathMetricsTracker`) when set; without it the bandwidth is
``cwnd / srtt``, loss, congestion and cost are 0 and reliability 1.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from ...errors import ConfigurationError
from ..qos.model import CriteriaWeights, Figures, PerformanceModel, criteria_terms, weighted
from ..qos.model import criteria_score as criteria_score  # re-exported: part of this API
from ..registry import Registry
from .metrics import RecoverySource

NORMAL = 0
HIGH = 1
CRITICAL = 2
#: The ECF hysteresis factor.
ECF_BETA = 0.25
#: The registry name of the default scheduler.
DEFAULT_SCHEDULER = "lowest-rtt"
_TINY_RTT = 1e-6
_TINY_RATE = 1.0  # bytes per second


class MetricsSource(Protocol):
    """What schedulers read from ``path.metrics``."""

    @property
    def bandwidth(self) -> float: ...

    @property
    def loss_rate(self) -> float: ...

    @property
    def cost(self) -> float: ...


class SchedulablePath(Protocol):
    """What schedulers read from a path."""

    @property
    def id(self) -> int: ...

    @property
    def usable(self) -> bool: ...

    @property
    def is_backup(self) -> bool: ...

    @property
    def recovery(self) -> RecoverySource: ...

    @property
    def metrics(self) -> MetricsSource | None: ...

    @property
    def pacing_deadline(self) -> float | None: ...


P = TypeVar("P", bound=SchedulablePath)


@dataclass(slots=True)
class FrameRequirements:
    """
    What the data to be sent asks of a path.

    :ivar priority: 0 normal, 1 high, 2 critical (the seed's levels; 0xFF, control, counts as
        critical).
    :ivar size: the bytes of this frame.
    :ivar backlog: all bytes waiting to be sent, this frame included (ECF's ``k``; 0 means just
        ``size``).

    A stream's latency, jitter and loss requirements are not here: a packet carries frames of
    several streams, so the QoS enforcer (:mod:`kwik_twisted.core.qos.enforcer`) applies them per
    stream, by routing each stream to the paths that can meet them, for every scheduler.
    """

    priority: int = NORMAL
    size: int = 0
    backlog: int = 0

    @property
    def critical(self) -> bool:
        """Whether this is critical (or control) data."""
        return self.priority >= CRITICAL


# ---------------------------------------------------------------------------
# Shared helpers.


def has_room(path: SchedulablePath) -> bool:
    """Whether the path's congestion window has room."""
    recovery = path.recovery
    return recovery.bytes_in_flight < recovery.controller.cwnd


def eligible_paths(paths: Sequence[P]) -> list[P]:
    """The usable non-backup paths, or the usable backup paths when there is no other."""
    primaries = [p for p in paths if p.usable and not p.is_backup]
    return primaries if primaries else [p for p in paths if p.usable]


def path_cost(path: SchedulablePath) -> float:
    """The user-set cost of the path (0 without metrics)."""
    metrics = path.metrics
    return 0.0 if metrics is None else metrics.cost


def affordable_paths(paths: Sequence[P], backlog: int, now: float | None = None) -> list[P]:
    """
    The paths that may carry stream data now, by cost (docs/qos.rst, "Cost"): the cheapest of
    ``paths``, and a dearer one only when every cheaper path is out of window room with more than
    a window of data waiting (the demand exceeds them) or is failing (:func:`looks_dead` at
    ``now``: the dearer path takes the load within one PTO of the failure).  Each dearer tier is
    judged against all cheaper ones.  Paths with equal costs (the common case: all 0) are all
    affordable.
    """
    if len(paths) < 2:
        return list(paths)
    costs = [path_cost(p) for p in paths]
    if min(costs) == max(costs):
        return list(paths)
    chosen: list[P] = []
    for tier in sorted(set(costs)):
        if chosen and not _cheaper_exhausted(chosen, backlog, now):
            break
        chosen.extend(p for p, cost in zip(paths, costs) if cost == tier)
    return chosen


def looks_dead(path: SchedulablePath, now: float | None) -> bool:
    """Whether ``path`` is failing: its probe timer fired, or its oldest outstanding packet has
    waited longer than one PTO (``srtt + 4 rttvar + max_ack_delay``) for its ACK."""
    recovery = path.recovery
    if in_probe_timeout(path):
        return True
    oldest = getattr(recovery, "oldest_unacked_time", None)
    if now is None or oldest is None:
        return False
    sent = oldest()
    if sent is None:
        return False
    return now - sent > recovery.rtt.pto_interval(getattr(recovery, "max_ack_delay", 0.0))


def _cheaper_exhausted(
    cheaper: Sequence[SchedulablePath], backlog: int, now: float | None
) -> bool:
    """Whether ``cheaper`` paths cannot take the data: each failing, or all full with more than
    their windows waiting."""
    working = [p for p in cheaper if not looks_dead(p, now)]
    if not working:
        return True
    if any(has_room(p) for p in working):
        return False
    return backlog > sum(p.recovery.controller.cwnd for p in working)


def in_probe_timeout(path: SchedulablePath) -> bool:
    """
    Whether the path's probe timer fired since its last acknowledgement: its window will not
    open on its own, so waiting for it (ECF) would stall the data (a dying path's stale RTT
    still looks fast).
    """
    return getattr(path.recovery, "pto_count", 0) > 0


def lowest_rtt(paths: Sequence[P]) -> P:
    """The path with the lowest smoothed RTT (the first one on a tie)."""
    return min(paths, key=_srtt)


def _srtt(path: SchedulablePath) -> float:
    return path.recovery.rtt.smoothed_rtt


def path_bandwidth(path: SchedulablePath) -> float:
    """The path's bottleneck-bandwidth estimate, else ``cwnd / srtt``, in bytes per second."""
    metrics = path.metrics
    if metrics is not None and metrics.bandwidth > 0.0:
        return metrics.bandwidth
    recovery = path.recovery
    return recovery.controller.cwnd / max(recovery.rtt.smoothed_rtt, _TINY_RTT)


def predicted_rate(path: SchedulablePath, horizon: float, *, now: float) -> float:
    """The rate ``path`` is predicted to carry over the next ``horizon`` seconds (its metrics'
    ``predicted_bandwidth``), else :func:`path_bandwidth`, in bytes per second."""
    metrics = path.metrics
    predict = getattr(metrics, "predicted_bandwidth", None)
    if predict is not None:
        rate = predict(horizon, now=now)
        if rate > 0.0:
            return rate
    return path_bandwidth(path)


def predicted_rtt(path: SchedulablePath, horizon: float, *, now: float) -> float:
    """The smoothed RTT plus the forecast change of the queueing delay over ``horizon`` (the
    metrics' ``rtt_drift``; none without a detector), at least the min RTT."""
    rtt = path.recovery.rtt
    drift = getattr(path.metrics, "rtt_drift", None)
    if drift is None:
        return rtt.smoothed_rtt
    return max(rtt.min_rtt, rtt.smoothed_rtt + drift(horizon, now=now))


def _fast_path_first(
    candidate: SchedulablePath, fastest: SchedulablePath, backlog: int, now: float, slack: float
) -> bool:
    f, s = fastest.recovery, candidate.recovery
    rtt_f = predicted_rtt(fastest, f.rtt.smoothed_rtt, now=now)
    x_f = max(backlog, f.controller.cwnd, 1)
    carry = rtt_f + x_f / max(predicted_rate(fastest, rtt_f, now=now), _TINY_RATE)
    deadline = fastest.pacing_deadline
    pacing_wait = deadline - now if deadline is not None and deadline > now else 0.0
    delta = max(f.rtt.rttvar, s.rtt.rttvar)
    rtt_s = predicted_rtt(candidate, s.rtt.smoothed_rtt, now=now)
    return carry + pacing_wait < slack * (rtt_s + delta)


def _slow_path_too_slow(
    candidate: SchedulablePath, fastest: SchedulablePath, backlog: int, now: float
) -> bool:
    f, s = fastest.recovery, candidate.recovery
    x_s = max(backlog, s.controller.cwnd, 1)
    delta = max(f.rtt.rttvar, s.rtt.rttvar)
    carry = x_s / max(predicted_rate(candidate, s.rtt.smoothed_rtt, now=now), _TINY_RATE)
    return carry >= 2.0 * predicted_rtt(fastest, f.rtt.smoothed_rtt, now=now) + delta


def would_arrive_later(
    candidate: SchedulablePath,
    fastest: SchedulablePath,
    size: int,
    *,
    now: float,
    waiting: bool = False,
    beta: float = ECF_BETA,
) -> bool:
    """
    ECF's test: whether ``size`` bytes sent on ``candidate`` would complete later than waiting for
    ``fastest`` (window-limited) to carry them.  ``waiting`` is the hysteresis state (module doc).
    """
    slack = 1.0 + beta if waiting else 1.0
    return _fast_path_first(candidate, fastest, size, now, slack) and _slow_path_too_slow(
        candidate, fastest, size, now
    )


class CompletionTimeGate:
    """
    The ECF rule with its hysteresis state.

    :ivar waiting: whether the last decision that changed it was to wait for the fast path.
    """

    __slots__ = ("beta", "waiting")

    def __init__(self, beta: float = ECF_BETA) -> None:
        self.beta = beta
        self.waiting = False

    def should_wait(
        self, candidate: SchedulablePath, fastest: SchedulablePath, size: int, *, now: float
    ) -> bool:
        """Whether to hold ``size`` bytes back for ``fastest`` rather than send on ``candidate``."""
        slack = 1.0 + self.beta if self.waiting else 1.0
        if not _fast_path_first(candidate, fastest, size, now, slack):
            self.waiting = False
            return False
        if _slow_path_too_slow(candidate, fastest, size, now):
            self.waiting = True
            return True
        return False


# ---------------------------------------------------------------------------
# The interface.


class Scheduler(ABC):
    """
    A path-selection policy for one connection.

    :cvar name: the registry name, set by :func:`register`.
    :ivar gate: the :class:`CompletionTimeGate`, or ``None`` when ECF is switched off.
    """

    name: ClassVar[str] = ""
    #: Whether every packet of stream data is copied onto the other paths (the sender then adds
    #: every other eligible path with window room, whatever its pacer says).
    duplicates: ClassVar[bool] = False

    __slots__ = ("gate",)

    def __init__(self, *, ecf: bool = True, beta: float = ECF_BETA) -> None:
        if not beta >= 0.0:
            raise ConfigurationError(f"ECF beta must be non-negative: {beta!r}")
        self.gate = CompletionTimeGate(beta) if ecf else None

    def select(
        self, paths: Sequence[P], requirements: FrameRequirements, *, now: float
    ) -> P | None:
        """The path for the next packet, or ``None`` to send nothing now."""
        candidates = eligible_paths(paths)
        ready = [p for p in candidates if has_room(p)]
        if not ready:
            return None
        choice = self.choose(ready, requirements, now=now)
        if choice is None or self.gate is None:
            return choice
        fastest = lowest_rtt(candidates)
        if fastest is choice or has_room(fastest) or in_probe_timeout(fastest):
            return choice
        backlog = max(requirements.size, requirements.backlog)
        return None if self.gate.should_wait(choice, fastest, backlog, now=now) else choice

    def select_all(
        self, paths: Sequence[P], requirements: FrameRequirements, *, now: float
    ) -> list[P]:
        """Every path the data goes on (several only for duplicating schedulers)."""
        choice = self.select(paths, requirements, now=now)
        return [] if choice is None else [choice]

    @abstractmethod
    def choose(self, ready: list[P], requirements: FrameRequirements, *, now: float) -> P | None:
        """The policy proper: pick among ``ready`` (eligible, with window room, never empty)."""

    def on_sent(self, path: SchedulablePath, size: int, *, now: float) -> None:
        """A packet of ``size`` bytes went out on ``path`` (a hook; no-op by default)."""
        return None

    def on_acked(self, path: SchedulablePath, acked_bytes: int, *, now: float) -> None:
        """``acked_bytes`` were acknowledged on ``path`` (a hook; no-op by default)."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ecf={self.gate is not None}>"


# ---------------------------------------------------------------------------
# The registry.

_REGISTRY: Registry = Registry("scheduler")
register = _REGISTRY.register
unregister = _REGISTRY.unregister
available_schedulers = _REGISTRY.names


def create(name: str = DEFAULT_SCHEDULER, **kw: Any) -> Scheduler:
    """
    Make the scheduler registered as ``name`` (case-insensitive).

    :raises ConfigurationError: if no scheduler has that name, or the options do not suit it.
    """
    cls = _REGISTRY.get(name)
    try:
        return cls(**kw)
    except TypeError as e:
        raise ConfigurationError(f"bad options for scheduler {name!r}: {e}") from e


# ---------------------------------------------------------------------------
# The schedulers.


@register("lowest-rtt")
class LowestRtt(Scheduler):
    """The eligible path with window room and the lowest smoothed RTT (MPTCP's default)."""

    __slots__ = ()

    def choose(self, ready: list[P], requirements: FrameRequirements, *, now: float) -> P | None:
        """The lowest-RTT ready path."""
        return lowest_rtt(ready)


@register("redundant")
class Redundant(LowestRtt):
    """
    Every packet of stream data on every path: the primary is the lowest-RTT ready path, and a
    copy of the packet's stream frames goes at once on each other eligible path with window room
    (the copies are settled by whichever acknowledgement comes first).  It buys the lowest delay
    and loss the paths offer together for the price of the sum of their capacities; streams that
    need it only for a QoS promise get selective redundancy under any scheduler instead
    (docs/qos.rst).  :meth:`select` answers the primary, :meth:`select_all` every path.
    """

    duplicates = True

    __slots__ = ()

    def select_all(
        self, paths: Sequence[P], requirements: FrameRequirements, *, now: float
    ) -> list[P]:
        """The primary, then every other eligible path with window room, fastest first."""
        primary = self.select(paths, requirements, now=now)
        if primary is None:
            return []
        others = [p for p in eligible_paths(paths) if p is not primary and has_room(p)]
        others.sort(key=_srtt)
        return [primary, *others]


@register("wrr")
class WeightedRoundRobin(Scheduler):
    """
    Smooth weighted round-robin (nginx's algorithm) over weights that adapt to bandwidth shares.

    Every ``adapt_interval`` seconds (default: the fastest eligible path's smoothed RTT),
    :meth:`adapt` moves each weight by the seed's exponential moving average,
    ``w = (1 - a) * w + a * share`` with ``share`` the path's fraction of the summed bandwidth
    estimates, and holds it at ``min_weight`` or more so that every path keeps being measured.
    """

    __slots__ = (
        "adaptation_rate", "min_weight", "adapt_interval", "_weights", "_current", "_next_adapt"
    )

    def __init__(
        self,
        *,
        adaptation_rate: float = 0.125,
        min_weight: float = 0.05,
        adapt_interval: float | None = None,
        ecf: bool = True,
        beta: float = ECF_BETA,
    ) -> None:
        super().__init__(ecf=ecf, beta=beta)
        if not 0.0 < adaptation_rate <= 1.0:
            raise ConfigurationError(f"adaptation_rate must be in (0, 1]: {adaptation_rate!r}")
        if not 0.0 <= min_weight < 1.0:
            raise ConfigurationError(f"min_weight must be in [0, 1): {min_weight!r}")
        self.adaptation_rate = adaptation_rate
        self.min_weight = min_weight
        self.adapt_interval = adapt_interval
        self._weights: dict[int, float] = {}
        self._current: dict[int, float] = {}
        self._next_adapt = float("-inf")

    @property
    def weights(self) -> dict[int, float]:
        """A copy of the weights by path ID."""
        return dict(self._weights)

    def adapt(self, paths: Sequence[SchedulablePath], *, now: float) -> None:
        """Move the weights of ``paths`` towards their bandwidth shares; forget other paths."""
        if not paths:
            return
        bandwidths = [path_bandwidth(p) for p in paths]
        total = sum(bandwidths)
        if total <= 0.0:
            return
        a, initial, old = self.adaptation_rate, 1.0 / len(paths), self._weights
        weights = {}
        for path, bandwidth in zip(paths, bandwidths):
            weight = (1.0 - a) * old.get(path.id, initial) + a * bandwidth / total
            weights[path.id] = max(self.min_weight, weight)
        self._weights = weights
        self._current = {k: v for k, v in self._current.items() if k in weights}
        interval = self.adapt_interval
        if interval is None:
            interval = min(_srtt(p) for p in paths)
        self._next_adapt = now + interval

    def select(
        self, paths: Sequence[P], requirements: FrameRequirements, *, now: float
    ) -> P | None:
        """Adapt the weights when due, then select as every scheduler does."""
        if now >= self._next_adapt:
            self.adapt(eligible_paths(paths), now=now)
        return super().select(paths, requirements, now=now)

    def choose(self, ready: list[P], requirements: FrameRequirements, *, now: float) -> P | None:
        """Smooth WRR: raise each ready path's credit by its weight, take the richest."""
        weights, current = self._weights, self._current
        default = 1.0 / len(ready)
        best, best_credit, total = ready[0], float("-inf"), 0.0
        for path in ready:
            weight = weights.get(path.id, default)
            credit = current.get(path.id, 0.0) + weight
            current[path.id] = credit
            total += weight
            if credit > best_credit:
                best, best_credit = path, credit
        current[best.id] -= total
        return best


#: Weights by priority (each sums to 1): critical data is latency- and loss-heavy, normal data
#: bandwidth-heavy; reliability and congestion (the detector's figure) weigh on all of them.
DEFAULT_CRITERIA: Mapping[int, CriteriaWeights] = {
    NORMAL: CriteriaWeights(latency=0.15, bandwidth=0.45, loss=0.12, jitter=0.04, cost=0.12,
                            reliability=0.04, congestion=0.08),
    HIGH: CriteriaWeights(latency=0.30, bandwidth=0.22, loss=0.18, jitter=0.08, cost=0.08,
                          reliability=0.06, congestion=0.08),
    CRITICAL: CriteriaWeights(latency=0.45, bandwidth=0.04, loss=0.27, jitter=0.10, cost=0.04,
                              reliability=0.05, congestion=0.05),
}  # fmt: skip


def path_figures(path: SchedulablePath, *, now: float) -> Figures:
    """What the multi-criteria score reads of ``path``: its predicted RTT and rate one smoothed
    RTT ahead, loss rate, jitter, cost, reliability and congestion."""
    rtt = path.recovery.rtt
    srtt = rtt.smoothed_rtt
    metrics = path.metrics
    if metrics is None:
        return Figures(srtt, path_bandwidth(path), 0.0, rtt.jitter, 0.0)
    reliability = getattr(metrics, "reliability", None)
    return Figures(
        predicted_rtt(path, srtt, now=now),
        predicted_rate(path, srtt, now=now),
        metrics.loss_rate,
        rtt.jitter,
        metrics.cost,
        1.0 if reliability is None else reliability(now=now),
        getattr(metrics, "congestion", 0.0),
    )


@register("multi-criteria")
class MultiCriteria(Scheduler):
    """
    The seed's EnhancedScheduler: the ready path whose predicted figures (:func:`path_figures`)
    score best (:func:`criteria_score`), with the weights of the frame's priority (a stream's
    latency budget is the QoS enforcer's: it routes the stream before the scheduler chooses).

    With ``learn`` (the default) a :class:`~kwik_twisted.core.qos.model.PerformanceModel` records
    each period's predictions, selections (:meth:`on_sent`) and achievements (:meth:`on_acked`)
    and adapts the weights (:attr:`criteria`) online.

    :ivar criteria: the weights by priority, as learnt so far.
    :ivar model: the performance model (``None`` without ``learn``).
    """

    __slots__ = ("criteria", "model", "_last")

    def __init__(
        self,
        *,
        criteria: Mapping[int, CriteriaWeights] | None = None,
        learn: bool = True,
        ecf: bool = True,
        beta: float = ECF_BETA,
    ) -> None:
        super().__init__(ecf=ecf, beta=beta)
        table = dict(DEFAULT_CRITERIA)
        table.update(criteria or {})
        self.criteria = table
        self.model = PerformanceModel(table) if learn else None
        self._last: tuple[int, int] | None = None  # (path ID, priority) of the last choice

    def choose(self, ready: list[P], requirements: FrameRequirements, *, now: float) -> P | None:
        """The best-scoring ready path."""
        priority = max(NORMAL, min(requirements.priority, CRITICAL))
        model = self.model
        predicting = model is not None and any(model.wants_prediction(p.id) for p in ready)
        if len(ready) == 1 and not predicting:
            return ready[0]
        figures = [path_figures(p, now=now) for p in ready]
        if predicting:
            for path, f in zip(ready, figures):
                model.predict(path.id, f)  # type: ignore[union-attr]
        best = ready[0]
        if len(ready) > 1:
            weights = self.criteria[priority]
            best_rtt = min(f.rtt for f in figures)
            top = max(f.bandwidth for f in figures)
            best_score = float("-inf")
            for path, f in zip(ready, figures):
                score = weighted(weights, criteria_terms(f, best_rtt=best_rtt, top_bandwidth=top))
                if score > best_score:
                    best, best_score = path, score
        self._last = (best.id, priority)
        return best

    def on_sent(self, path: SchedulablePath, size: int, *, now: float) -> None:
        """Tell the model which priority's data the last choice carried."""
        last = self._last
        if last is not None and last[0] == path.id and self.model is not None:
            self.model.selected(last[0], last[1])
            self._last = None

    def on_acked(self, path: SchedulablePath, acked_bytes: int, *, now: float) -> None:
        """Tell the model what ``path`` achieved: its RTT sample, its delivery-rate sample (when
        not application-limited) and its loss and send counters."""
        model = self.model
        if model is None:
            return
        rtt = path.recovery.rtt
        metrics = path.metrics
        rate = getattr(metrics, "rate_sample", 0.0)
        if getattr(metrics, "sample_app_limited", False):
            rate = 0.0
        model.achieved(
            path.id,
            now=now,
            latest_rtt=rtt.latest_rtt,
            min_rtt=rtt.min_rtt,
            smoothed_rtt=rtt.smoothed_rtt,
            rate=rate,
            lost=getattr(path, "packets_lost", 0),
            sent=getattr(path, "packets_sent", 0),
        )
