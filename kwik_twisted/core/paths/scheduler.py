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
   window room, with ``k`` the bytes waiting to be sent, ``delta = max(rttvar_f, rttvar_s)`` and
   ``beta = 0.25``::

       x_f = max(k, cwnd_f)    n = 1 + x_f / cwnd_f      # round trips to drain k through f
       if n * srtt_f + pacing_wait_f < (1 + waiting * beta) * (srtt_s + delta):
           x_s = max(k, cwnd_s)
           if srtt_s * x_s / cwnd_s >= 2 * srtt_f + delta:
               waiting = True; wait for f                # s would finish later than f
           else: send on s                               # (waiting unchanged)
       else: waiting = False; send on s                  # f is saturated for long enough

   ``n * srtt_f`` is the time for ``f`` to open its window (one RTT) and carry the backlog;
   ``srtt_s + delta`` is the time one window on ``s`` takes, with a variance margin.  ``waiting`` is
   the paper's hysteresis: once the scheduler chose to wait, the slow path must look better by
   ``beta`` before it is used again, so decisions do not flap.  ``pacing_wait_f`` (our addition) is
   how long ``f``'s pacer still holds it.  Also ours: a fastest path whose probe timer has fired
   since its last acknowledgement (``pto_count > 0``) is never waited for: a path that just died
   keeps its low smoothed RTT and a full window, and waiting for it would stall the other paths
   until it is declared failed.  :func:`would_arrive_later` is the stateless test and
   :class:`CompletionTimeGate` carries ``waiting``.

Schedulers (registry names): ``lowest-rtt`` (default), ``wrr`` (adaptive smooth weighted
round-robin, the seed's AdaptiveLoadBalancer), ``redundant`` (critical data on the two best paths)
and ``multi-criteria`` (the seed's EnhancedScheduler.SelectPath).  Bandwidth, loss and cost come
from ``path.metrics`` (a :class:`~kwik_twisted.core.paths.metrics.PathMetricsTracker`) when set;
without it the bandwidth is ``cwnd / srtt`` and loss and cost are 0.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from ...errors import ConfigurationError
from ..registry import Registry
from .metrics import LOSS_SATURATION, RecoverySource

NORMAL = 0
HIGH = 1
CRITICAL = 2
#: The ECF hysteresis factor.
ECF_BETA = 0.25
#: The registry name of the default scheduler.
DEFAULT_SCHEDULER = "lowest-rtt"
_TINY_RTT = 1e-6


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
    :ivar max_latency: the seed's QoS MaxLatency, one-way, in seconds (``None``: no bound).
    :ivar deadline: an absolute time by which the data should arrive (``None``: none).
    :ivar redundant: ask for duplication on two paths (honoured by the ``redundant`` scheduler).
    :ivar backlog: all bytes waiting to be sent, this frame included (ECF's ``k``; 0 means just
        ``size``).
    """

    priority: int = NORMAL
    size: int = 0
    max_latency: float | None = None
    deadline: float | None = None
    redundant: bool = False
    backlog: int = 0

    @property
    def critical(self) -> bool:
        """Whether this is critical (or control) data."""
        return self.priority >= CRITICAL

    def latency_budget(self, *, now: float) -> float | None:
        """The tightest of ``max_latency`` and ``deadline - now``, or ``None``."""
        budget = self.max_latency
        if self.deadline is not None:
            left = self.deadline - now
            budget = left if budget is None else min(budget, left)
        return budget


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
    """The path's delivery-rate estimate, else ``cwnd / srtt``, in bytes per second."""
    metrics = path.metrics
    if metrics is not None and metrics.bandwidth > 0.0:
        return metrics.bandwidth
    recovery = path.recovery
    return recovery.controller.cwnd / max(recovery.rtt.smoothed_rtt, _TINY_RTT)


def _fast_path_first(
    candidate: SchedulablePath, fastest: SchedulablePath, backlog: int, now: float, slack: float
) -> bool:
    f, s = fastest.recovery, candidate.recovery
    cwnd_f = max(1, f.controller.cwnd)
    n = 1.0 + max(backlog, cwnd_f) / cwnd_f
    deadline = fastest.pacing_deadline
    pacing_wait = deadline - now if deadline is not None and deadline > now else 0.0
    delta = max(f.rtt.rttvar, s.rtt.rttvar)
    return n * f.rtt.smoothed_rtt + pacing_wait < slack * (s.rtt.smoothed_rtt + delta)


def _slow_path_too_slow(candidate: SchedulablePath, fastest: SchedulablePath, backlog: int) -> bool:
    f, s = fastest.recovery, candidate.recovery
    cwnd_s = max(1, s.controller.cwnd)
    delta = max(f.rtt.rttvar, s.rtt.rttvar)
    return s.rtt.smoothed_rtt * max(backlog, cwnd_s) / cwnd_s >= 2.0 * f.rtt.smoothed_rtt + delta


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
        candidate, fastest, size
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
        if _slow_path_too_slow(candidate, fastest, size):
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

    def choose(self, ready: list[P], requirements: FrameRequirements, *, now: float) -> P | None:
        """The lowest-RTT ready path."""
        return lowest_rtt(ready)


@register("redundant")
class Redundant(LowestRtt):
    """
    Lowest-RTT for everything; critical data (or data flagged ``redundant``) also goes on the
    second-best ready path.  :meth:`select` answers the primary, :meth:`select_all` both.
    """

    def select_all(
        self, paths: Sequence[P], requirements: FrameRequirements, *, now: float
    ) -> list[P]:
        """The primary, plus the next-lowest-RTT ready path for critical or flagged data."""
        primary = self.select(paths, requirements, now=now)
        if primary is None:
            return []
        if not (requirements.critical or requirements.redundant):
            return [primary]
        others = [p for p in eligible_paths(paths) if p is not primary and has_room(p)]
        return [primary, lowest_rtt(others)] if others else [primary]


@register("wrr")
class WeightedRoundRobin(Scheduler):
    """
    Smooth weighted round-robin (nginx's algorithm) over weights that adapt to bandwidth shares.

    Every ``adapt_interval`` seconds (default: the fastest eligible path's smoothed RTT),
    :meth:`adapt` moves each weight by the seed's exponential moving average,
    ``w = (1 - a) * w + a * share`` with ``share`` the path's fraction of the summed bandwidth
    estimates, and holds it at ``min_weight`` or more so that every path keeps being measured.
    """

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


@dataclass(frozen=True, slots=True)
class CriteriaWeights:
    """The weights of the multi-criteria score (they need not sum to 1)."""

    latency: float
    bandwidth: float
    loss: float
    jitter: float
    cost: float


#: Weights by priority: critical data is latency- and loss-heavy, normal data bandwidth-heavy.
DEFAULT_CRITERIA: Mapping[int, CriteriaWeights] = {
    NORMAL: CriteriaWeights(latency=0.15, bandwidth=0.50, loss=0.15, jitter=0.05, cost=0.15),
    HIGH: CriteriaWeights(latency=0.35, bandwidth=0.25, loss=0.20, jitter=0.10, cost=0.10),
    CRITICAL: CriteriaWeights(latency=0.45, bandwidth=0.05, loss=0.30, jitter=0.15, cost=0.05),
}


def criteria_score(
    weights: CriteriaWeights,
    *,
    srtt: float,
    bandwidth: float,
    loss_rate: float,
    jitter: float,
    cost: float,
    best_rtt: float,
    top_bandwidth: float,
) -> float:
    """
    The multi-criteria score of one path (higher is better), each term in 0..1::

        latency   = best_rtt / srtt                   (1 for the fastest candidate)
        bandwidth = bandwidth / top_bandwidth          (1 for the widest candidate)
        loss      = 1 - min(1, loss_rate / LOSS_SATURATION)
        jitter    = 1 / (1 + jitter / best_rtt)
        cost      = 1 / (1 + cost)
    """
    best_rtt = max(best_rtt, _TINY_RTT)
    return (
        weights.latency * best_rtt / max(srtt, best_rtt)
        + weights.bandwidth * (bandwidth / top_bandwidth if top_bandwidth > 0.0 else 1.0)
        + weights.loss * (1.0 - min(1.0, loss_rate / LOSS_SATURATION))
        + weights.jitter / (1.0 + jitter / best_rtt)
        + weights.cost / (1.0 + max(0.0, cost))
    )


@register("multi-criteria")
class MultiCriteria(Scheduler):
    """
    The seed's EnhancedScheduler: the ready path with the best :func:`criteria_score`, using the
    weights of the frame's priority.  With a latency budget (``max_latency`` or ``deadline``), paths
    whose one-way estimate ``srtt / 2`` exceeds it are dropped when any path meets it.
    """

    def __init__(
        self,
        *,
        criteria: Mapping[int, CriteriaWeights] | None = None,
        ecf: bool = True,
        beta: float = ECF_BETA,
    ) -> None:
        super().__init__(ecf=ecf, beta=beta)
        table = dict(DEFAULT_CRITERIA)
        table.update(criteria or {})
        self.criteria = table

    def choose(self, ready: list[P], requirements: FrameRequirements, *, now: float) -> P | None:
        """The best-scoring ready path."""
        budget = requirements.latency_budget(now=now)
        if budget is not None:
            ready = [p for p in ready if _srtt(p) / 2 <= budget] or ready
        if len(ready) == 1:
            return ready[0]
        weights = self.criteria[max(NORMAL, min(requirements.priority, CRITICAL))]
        bandwidths = [path_bandwidth(p) for p in ready]
        best_rtt, top = min(_srtt(p) for p in ready), max(bandwidths)
        best, best_score = ready[0], float("-inf")
        for path, bandwidth in zip(ready, bandwidths):
            metrics, rtt = path.metrics, path.recovery.rtt
            score = criteria_score(
                weights,
                srtt=rtt.smoothed_rtt,
                bandwidth=bandwidth,
                loss_rate=0.0 if metrics is None else metrics.loss_rate,
                jitter=rtt.jitter,
                cost=0.0 if metrics is None else metrics.cost,
                best_rtt=best_rtt,
                top_bandwidth=top,
            )
            if score > best_score:
                best, best_score = path, score
        return best
