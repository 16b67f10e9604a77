"""
The performance model: what each path selection achieved, and multi-criteria weights that learn
from it (the seed's RecordSelection / UpdateModel).

Theory of operation.  The ``multi-criteria`` scheduler
(:class:`~kwik_twisted.core.paths.scheduler.MultiCriteria`) scores a path with seven criteria,
each a term in 0..1 computed from the path's :class:`Figures` by :func:`criteria_terms`::

    latency     = best_rtt / rtt                 (1 for the fastest path of the set)
    bandwidth   = bandwidth / top_bandwidth      (1 for the widest)
    loss        = 1 - min(1, loss_rate / LOSS_SATURATION)
    jitter      = 1 / (1 + jitter / best_rtt)
    cost        = 1 / (1 + cost)
    reliability = reliability                    (the share of its life the path was usable)
    congestion  = 1 - congestion                 (the detector's 0..1 figure)

and a path's score is the weighted sum, with the :class:`CriteriaWeights` of the data's priority.
The weights are a prior; :class:`PerformanceModel` checks the criteria against what the paths
then achieve and shifts trust between them.

**Periods.**  The model works in periods of one smoothed RTT (the longest of the paths it heard
from in the previous period, so that each had a round trip to show its outcome; at least
:data:`MIN_PERIOD`).  At the first selection of a period the scheduler gives the *predicted*
figures of every candidate (:meth:`PerformanceModel.predict`: predicted RTT and rate, loss,
jitter, cost, reliability, congestion), which stay in force until the next period's;
:meth:`~PerformanceModel.selected` marks which priorities chose which paths; each ACK adds to the
path's *achieved* figures (:meth:`~PerformanceModel.achieved`): the mean of its RTT samples, the
best delivery-rate sample that was not application-limited, the share of the packets sent in the
period that were lost, the mean change between successive RTT samples, and
``1 - (1 - q) * (1 - l)`` for congestion with ``q`` the mean queueing share of the RTT samples and
``l`` that loss over :data:`LOSS_SATURATION`.  Cost and reliability
are what the path is, not forecasts: their achieved figures are the predicted ones.

**The update** (at the end of a period, on an ACK, when at least two paths have both a
prediction and achievements): each set of figures is turned into terms (normalised within its
own set).  A criterion ``c`` is judged by how well ranking the paths by its predicted term
alone ranks them by its achieved term: over every pair ``(i, j)`` of those paths::

    discordant   = (pred_c(i) - pred_c(j)) * (ach_c(i) - ach_c(j)) < 0
    loss_c       = sum over discordant pairs of |ach_c(i) - ach_c(j)|  /  pairs that test c

where a pair *tests* ``c`` when both differences exceed :data:`TIE` (a tie predicts nothing, an
achieved tie refutes nothing).  Then, for each priority that selected a path in the period,
multiplicative weights (Hedge)::

    w_c <- w_c * exp(-LEARNING_RATE * loss_c)     (a criterion no pair tested lost nothing)

then the weights are renormalised to sum 1, each held within ``[MIN_WEIGHT, MAX_WEIGHT]``
(0.02..0.8; :func:`bounded`: each weight is ``clip(s * w_c)`` for the one scale ``s`` that makes
the sum 1).  So a path whose RTT estimate understates the delay it then shows, enough to invert
the latency ranking, costs the latency criterion trust, and the weight it loses spreads over the
others in proportion (cost, a policy that is never tested, included); accurate predictions leave
the weights as they are.  Each weight stays in bounds whatever the
input, one update per period at most, and the rule has no randomness: the same selections and
ACKs give the same weights.

Memory: one record per path (a path neither predicted nor acknowledged for a whole period is
forgotten; paths are bounded by the connection's ``max_paths``); O(1) per selection and per ACK,
O(paths² x criteria) per update.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import astuple, dataclass
from typing import NamedTuple

from ..paths.metrics import LOSS_SATURATION

#: The criteria, in :class:`CriteriaWeights` field order.
CRITERIA = ("latency", "bandwidth", "loss", "jitter", "cost", "reliability", "congestion")
#: The bounds of each learnt weight (the weights of a priority sum to 1).
MIN_WEIGHT = 0.02
MAX_WEIGHT = 0.8
#: Hedge's learning rate: a criterion whose ranking is wrong by a full term loses
#: ``1 - exp(-LEARNING_RATE)`` (26%) of its weight in one update.
LEARNING_RATE = 0.3
#: The shortest period between updates, seconds.
MIN_PERIOD = 0.001
#: Differences of terms at most this large count as ties.
TIE = 1e-6
_TINY_RTT = 1e-6


@dataclass(frozen=True, slots=True)
class CriteriaWeights:
    """The weights of the multi-criteria score (they need not sum to 1; learnt ones do)."""

    latency: float
    bandwidth: float
    loss: float
    jitter: float
    cost: float
    reliability: float = 0.0
    congestion: float = 0.0


class Figures(NamedTuple):
    """
    What is known, or was seen, of one path (seconds, bytes per second, fractions).

    :ivar rtt: the round-trip time.
    :ivar bandwidth: the rate it carries.
    :ivar loss_rate: the share of packets lost, 0..1.
    :ivar jitter: the variation of successive RTT samples.
    :ivar cost: the user-set cost.
    :ivar reliability: the share of its life the path was usable, 0..1.
    :ivar congestion: 0 (none) .. 1 (saturated).
    """

    rtt: float
    bandwidth: float
    loss_rate: float
    jitter: float
    cost: float
    reliability: float = 1.0
    congestion: float = 0.0


def criteria_terms(figures: Figures, *, best_rtt: float, top_bandwidth: float) -> tuple:
    """The seven terms of ``figures`` in 0..1, in :data:`CRITERIA` order (module docstring);
    ``best_rtt`` and ``top_bandwidth`` are the best of the set the path is compared within."""
    best_rtt = best_rtt if best_rtt > _TINY_RTT else _TINY_RTT
    rtt = figures.rtt
    loss = figures.loss_rate / LOSS_SATURATION
    return (
        best_rtt / rtt if rtt > best_rtt else 1.0,
        figures.bandwidth / top_bandwidth if top_bandwidth > 0.0 else 1.0,
        1.0 - (1.0 if loss > 1.0 else loss if loss > 0.0 else 0.0),
        1.0 / (1.0 + figures.jitter / best_rtt),
        1.0 / (1.0 + (figures.cost if figures.cost > 0.0 else 0.0)),
        min(1.0, max(0.0, figures.reliability)),
        1.0 - min(1.0, max(0.0, figures.congestion)),
    )


def weighted(weights: CriteriaWeights, terms: tuple) -> float:
    """The score of ``terms`` (:func:`~kwik_twisted.core.qos.model.criteria_terms`)."""
    return (
        weights.latency * terms[0]
        + weights.bandwidth * terms[1]
        + weights.loss * terms[2]
        + weights.jitter * terms[3]
        + weights.cost * terms[4]
        + weights.reliability * terms[5]
        + weights.congestion * terms[6]
    )


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
    reliability: float = 1.0,
    congestion: float = 0.0,
) -> float:
    """
    The multi-criteria score of one path (higher is better), each term in 0..1::

        latency     = best_rtt / srtt                 (1 for the fastest candidate)
        bandwidth   = bandwidth / top_bandwidth        (1 for the widest candidate)
        loss        = 1 - min(1, loss_rate / LOSS_SATURATION)
        jitter      = 1 / (1 + jitter / best_rtt)
        cost        = 1 / (1 + cost)
        reliability = reliability                      (a path often failed scores lower)
        congestion  = 1 - congestion                   (a congested path scores lower)

    ``reliability`` is the share of the path's life it was usable, ``congestion`` the 0..1
    figure of its congestion detector (:attr:`PathMetricsTracker.congestion
    <kwik_twisted.core.paths.metrics.PathMetricsTracker.congestion>`).  The scheduler's
    :class:`~kwik_twisted.core.paths.scheduler.MultiCriteria` uses it.
    """
    figures = Figures(srtt, bandwidth, loss_rate, jitter, cost, reliability, congestion)
    terms = criteria_terms(figures, best_rtt=best_rtt, top_bandwidth=top_bandwidth)
    return weighted(weights, terms)


def set_terms(figures: dict[int, Figures]) -> dict[int, tuple]:
    """:func:`criteria_terms` of each path of a set, normalised within it."""
    best_rtt = min(f.rtt for f in figures.values())
    top = max(f.bandwidth for f in figures.values())
    return {
        pid: criteria_terms(f, best_rtt=best_rtt, top_bandwidth=top) for pid, f in figures.items()
    }


def bounded(values: Sequence[float], low: float = MIN_WEIGHT, high: float = MAX_WEIGHT) -> list:
    """
    ``values`` scaled to sum to 1 with each held within ``[low, high]``: ``clip(s * v)`` for the
    one scale ``s`` that makes the sum 1 (found by bisection: the sum grows with ``s``).  Needs
    ``len * low <= 1 <= len * high``.  Values at or below 0 (or under 1e-12 of the largest) sit
    at ``low``, or share what the others leave when even ``high`` for every positive one does not
    reach 1; all of them at or below 0 share equally.
    """
    n = len(values)
    top = max(values)
    if not top > 0.0:
        return [1.0 / n] * n
    vals = [v / top if v / top > 1e-12 else 0.0 for v in values]  # relative; 1e-12 counts as 0
    positive = [v for v in vals if v > 0.0]
    if high * len(positive) + low * (n - len(positive)) <= 1.0:
        rest = (1.0 - high * len(positive)) / (n - len(positive)) if n > len(positive) else 0.0
        return [high if v > 0.0 else rest for v in vals]
    # the sum grows with s: bisect log(s) between all-low and all-high, then let the weights
    # strictly inside the bounds absorb the rounding left
    lo, hi = math.log(low / max(positive)) - 1.0, math.log(high / min(positive)) + 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        scale = math.exp(mid)
        if sum(min(high, max(low, scale * v)) for v in vals) < 1.0:
            lo = mid
        else:
            hi = mid
    scale = math.exp(hi)
    out = [min(high, max(low, scale * v)) for v in vals]
    inside = [i for i, v in enumerate(out) if low < v < high]
    room = sum(out[i] for i in inside)
    if room > 0.0:
        factor = (room + 1.0 - sum(out)) / room
        for i in inside:
            out[i] *= factor
    return out


class _Record:
    """One path's prediction in force and its achievements in the current period."""

    __slots__ = ("predicted", "fresh", "priorities", "rtt_sum", "queue_sum", "jitter_sum",
                 "samples", "last_rtt", "best_rate", "first_lost", "first_sent", "lost",
                 "sent")  # fmt: skip

    def __init__(self) -> None:
        self.predicted: Figures | None = None
        self.first_lost = self.first_sent = self.lost = self.sent = -1
        self.last_rtt = 0.0
        self.roll()

    def roll(self) -> None:
        """Start a new period: the prediction stays in force until the next one replaces it."""
        self.fresh = False  # whether this period made its prediction yet
        self.priorities = 0  # a bit per priority that chose the path
        self.rtt_sum = self.queue_sum = self.jitter_sum = 0.0
        self.samples = 0
        self.best_rate = 0.0
        self.first_lost, self.first_sent = self.lost, self.sent

    def figures(self) -> Figures | None:
        """The achieved figures (``None``: no prediction, or no RTT sample)."""
        predicted = self.predicted
        n = self.samples
        if predicted is None or n == 0:
            return None
        sent = self.sent - self.first_sent
        loss = (self.lost - self.first_lost) / sent if sent > 0 else 0.0
        loss = min(1.0, max(0.0, loss))
        queueing = self.queue_sum / n
        congestion = 1.0 - (1.0 - queueing) * (1.0 - min(1.0, loss / LOSS_SATURATION))
        jitter = self.jitter_sum / (n - 1) if n > 1 else predicted.jitter
        return Figures(self.rtt_sum / n, self.best_rate or predicted.bandwidth, loss, jitter,
                       predicted.cost, predicted.reliability, congestion)  # fmt: skip


class PerformanceModel:
    """
    Records what each path selection achieved and adapts the per-priority weights (module
    docstring).

    :param table: the weights by priority; the model updates it in place (the scheduler reads
        the same mapping).
    :ivar updates: how many updates changed the weights.
    """

    __slots__ = ("table", "records", "next_update", "period", "updates")

    def __init__(self, table: MutableMapping[int, CriteriaWeights]) -> None:
        self.table = table
        self.records: dict[int, _Record] = {}
        self.next_update: float | None = None  # the end of the current period
        self.period = 0.0  # the longest smoothed RTT heard in the current period
        self.updates = 0

    def wants_prediction(self, path_id: int) -> bool:
        """Whether the current period has no prediction for ``path_id`` yet."""
        record = self.records.get(path_id)
        return record is None or not record.fresh

    def predict(self, path_id: int, figures: Figures) -> None:
        """The predicted figures of a candidate path (the period's first prediction stays)."""
        record = self.records.get(path_id)
        if record is None:
            record = self.records[path_id] = _Record()
        if not record.fresh:
            record.predicted = figures
            record.fresh = True

    def selected(self, path_id: int, priority: int) -> None:
        """Data of ``priority`` went on ``path_id``."""
        record = self.records.get(path_id)
        if record is not None:
            record.priorities |= 1 << priority

    def achieved(
        self,
        path_id: int,
        *,
        now: float,
        latest_rtt: float,
        min_rtt: float,
        smoothed_rtt: float,
        rate: float,
        lost: int,
        sent: int,
    ) -> None:
        """
        An ACK on ``path_id``: its latest RTT sample, the path's ``min_rtt`` and ``smoothed_rtt``,
        the latest delivery-rate sample and the path's cumulative packets ``lost`` and ``sent``.
        Ends the period (and updates the weights) when it is due.
        """
        record = self.records.get(path_id)
        if record is not None and record.predicted is not None and latest_rtt > 0.0:
            if record.samples:
                record.jitter_sum += abs(latest_rtt - record.last_rtt)
            record.samples += 1
            record.rtt_sum += latest_rtt
            record.queue_sum += max(0.0, latest_rtt - min_rtt) / latest_rtt
            record.last_rtt = latest_rtt
            if rate > record.best_rate:
                record.best_rate = rate
            if record.first_sent < 0:
                record.first_lost, record.first_sent = lost, sent
            record.lost, record.sent = lost, sent
        if smoothed_rtt > self.period:
            self.period = smoothed_rtt
        next_update = self.next_update
        if next_update is None or now >= next_update:
            if next_update is not None:
                self.update()
            records = self.records
            for pid in [pid for pid, r in records.items() if not (r.samples or r.fresh)]:
                del records[pid]  # heard nothing of it for a period: forget it
            for record in records.values():
                record.roll()
            period = self.period
            self.next_update = now + (period if period > MIN_PERIOD else MIN_PERIOD)
            self.period = 0.0  # the next period lasts the longest RTT heard in this one

    def update(self) -> bool:
        """Judge the criteria on the current period and adapt the weights of the priorities that
        selected paths; return whether anything changed."""
        predicted, achieved, priorities = {}, {}, 0
        for pid, record in self.records.items():
            figures = record.figures()
            if figures is not None:
                predicted[pid] = record.predicted
                achieved[pid] = figures
                priorities |= record.priorities
        if len(predicted) < 2 or not priorities:
            return False
        losses = criteria_losses(set_terms(predicted), set_terms(achieved))
        if all(loss is None for loss in losses):
            return False
        table = self.table
        for priority in list(table):
            if priorities >> priority & 1:
                table[priority] = learn(table[priority], losses)
        self.updates += 1
        return True

    def __repr__(self) -> str:
        return f"<PerformanceModel {len(self.records)} paths, {self.updates} updates>"


def criteria_losses(predicted: dict[int, tuple], achieved: dict[int, tuple]) -> list:
    """Each criterion's loss in 0..1 (``None``: no pair tested it), over the pairs of paths."""
    ids = sorted(predicted)
    losses: list[float | None] = []
    for c in range(len(CRITERIA)):
        tested = wrong = 0.0
        for a, i in enumerate(ids):
            for j in ids[a + 1 :]:
                dp = predicted[i][c] - predicted[j][c]
                da = achieved[i][c] - achieved[j][c]
                if abs(dp) <= TIE or abs(da) <= TIE:
                    continue
                tested += 1
                if dp * da < 0.0:
                    wrong += abs(da)
        losses.append(wrong / tested if tested else None)
    return losses


def learn(weights: CriteriaWeights, losses: Iterable[float | None]) -> CriteriaWeights:
    """Hedge on the tested criteria (an untested one lost nothing), then :func:`bounded`."""
    values = list(astuple(weights))
    for c, loss in enumerate(losses):
        if loss is not None:
            values[c] *= math.exp(-LEARNING_RATE * loss)
    return CriteriaWeights(*bounded(values))
