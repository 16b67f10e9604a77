"""
The QoS enforcer: what each stream's policy asks of the paths, and what the connection does about
it (the seed's QoSEnforcer and analyzeFrameRequirements; docs/qos.rst is the user's view).

Theory of operation.  A stream's effective policy (``stream.qos``: ours, or the peer's request)
turns into :class:`Requirements` (:func:`requirements_of`).  Every few milliseconds of a send
round (:meth:`QoSEnforcer.before_send`, at most once per :data:`EVAL_FLOOR` or a quarter of the
fastest path's RTT) the enforcer estimates each usable path (:class:`PathEstimate`) and decides:

* **Routes.**  For each stream with a latency, jitter or loss requirement, the paths that can
  meet it: the predicted one-way delay of a message written now (propagation ``min_rtt / 2``, the
  congestion detector's forecast of the path's queueing delay one smoothed RTT ahead, the wait in
  our own send queue and one datagram's serialization) within the latency limit
  (``max_latency`` less a guard of :data:`GUARD_SHARE` of it, at least :data:`GUARD_FLOOR`), and
  the path's loss rate within ``loss_threshold``.  A path that failed a stream's test rejoins only
  with :data:`REJOIN_SHARE` of the limit to spare (hysteresis: no flapping between paths).  A
  jitter-bound stream stays on one path while that path passes (a path change is a delay step).
  The passing paths become the stream's route (``SendQueue.route``: the send queue then hands the
  stream's frames only to those paths, and the configured scheduler picks among them); when every
  usable path passes the route is lifted.  When none passes, the best path is used (the lowest
  predicted delay, or the lowest loss rate), and a stream whose loss threshold is the unmet promise
  also gets *selective redundancy*: each packet carrying its data is copied onto the second-best
  path (:attr:`QoSEnforcer.redundant`; the sender makes the copy).
* **Delay-aware caps** (a BBR-style bound on bytes in flight).  While a latency- or jitter-bound
  stream is open, each usable path that could meet some such stream's limit gets a cap on its
  congestion window: ``rate * (min_rtt + target)``, with ``target`` half the slack the tightest
  such stream leaves on that path (its limit less propagation and serialization), at most the
  stream's ``max_jitter``, at least :data:`MIN_TARGET`.  The cap keeps the queue at the
  bottleneck near ``target`` instead of filling the buffer: the path stays busy (the cap exceeds
  the bandwidth-delay product) while latency-bound data meets its budget, and the other paths
  stay viable fallbacks.  ``rate`` is the path's bandwidth estimate, or its recent delivery rate
  while the queue stands far above target (the bottleneck got slower: the recent rate is then its
  new capacity; "far above" is half the target plus two datagrams' serialization, since a pair
  of datagrams sent back to back reads as a few milliseconds of queue on a slow path).  A
  cap-limited path delivers only what the cap lets through, so a path that carries no delay-bound
  data now (a fallback) probes: one smoothed RTT in :data:`PROBE_CYCLE` its cap is
  :data:`PROBE_GAIN` times larger (BBR's ProbeBW), so its estimate can rise to capacity it was not
  shown (without it, an RTT inflated by ACK aggregation held a 4 Mbit/s fallback path at 2 Mbit/s).
  Paths that cannot serve any such stream fill their buffers as usual.
* **Violations.**  An unmet promise is reported as
  :class:`~kwik_twisted.events.QoSViolated` once per episode: the episode ends after the promise
  has been met for :data:`EPISODE_HOLD` seconds.  ``min_bandwidth`` is judged by the shaper's
  admission (guarantees against the sum of the usable paths' bandwidth estimates) after the
  connection has carried data for :data:`ADMISSION_GRACE` seconds (estimates start low).
* **Reports.**  :meth:`QoSEnforcer.report` is the seed's CongestionReport: each path's detector
  report and the global figures, with the actions the enforcer is taking.  A change of a path's
  congestion level is traced (qlog ``kwik:congestion_report``).

Cost: with nothing to enforce (no stream with a policy and no cap set) :meth:`before_send` is
one attribute test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from ...events import QoSViolated
from ..paths.scheduler import eligible_paths, path_cost
from ..streams.budget import NO_MEMBERS, with_member
from .detector import CongestionDetector, CongestionReport, global_report

__all__ = [
    "ADMISSION_GRACE",
    "EPISODE_HOLD",
    "EVAL_FLOOR",
    "GUARD_FLOOR",
    "GUARD_SHARE",
    "MIN_TARGET",
    "REJOIN_SHARE",
    "PathEstimate",
    "QoSEnforcer",
    "Requirements",
    "requirements_of",
]

#: The shortest interval between two evaluations, in seconds.
EVAL_FLOOR = 0.002
#: Seconds of evaluation interval per (stream with a policy, usable path): 256 streams on four
#: paths are evaluated every 0.1 s at most (an evaluation costs about 4 us per pair).
EVAL_COST = 1e-4
#: The share of ``max_latency`` held back as a guard against estimation error ...
GUARD_SHARE = 0.10
#: ... and its floor, in seconds.
GUARD_FLOOR = 0.002
#: A path excluded from a stream's route rejoins when its prediction is this share of the limit.
REJOIN_SHARE = 0.8
#: Seconds a path excluded from a stream's route must pass before it rejoins.
REJOIN_HOLD = 0.5
#: The smallest queue target of a delay-aware cap, in seconds.
MIN_TARGET = 0.001
#: One smoothed RTT in PROBE_CYCLE the cap is PROBE_GAIN times larger (BBR's ProbeBW cycle): a
#: cap-limited path delivers only what the cap lets through, so without a probe its estimate, and
#: the cap, could never rise to capacity it was not shown.
PROBE_CYCLE = 8
PROBE_GAIN = 1.25
#: Datagrams a delay-aware cap always allows.
MIN_CAP_DATAGRAMS = 4
#: Seconds a promise must be met before a new violation episode can begin.
EPISODE_HOLD = 1.0
#: Seconds a promise must stay unmet (and at least one smoothed RTT) before it is reported.
CONFIRM_FLOOR = 0.05
#: Seconds of data before guaranteed rates are judged against the paths' estimates.
ADMISSION_GRACE = 1.0
#: How often the guarantees are judged, in seconds.
ADMISSION_INTERVAL = 0.1
#: A standing queue of this share of the cap's target means the path is saturated: its recent
#: delivery rate is then its capacity.
SATURATED_SHARE = 0.5
#: ... plus this many datagrams' serialization (a pair sent back to back, an ACK every second
#: packet: a few milliseconds of "queue" on a slow path that is not saturated at all).
SATURATED_PACKETS = 2


class Requirements(NamedTuple):
    """
    What a stream asks of the paths (the seed's analyzeFrameRequirements), in seconds, a fraction
    and bytes per second; ``None``: no requirement.
    """

    priority: int
    max_latency: float | None
    max_jitter: float | None
    loss_threshold: float | None
    min_rate: float | None

    @property
    def delay_bound(self) -> bool:
        """Whether the stream bounds its delay (latency or jitter)."""
        return self.max_latency is not None or self.max_jitter is not None

    @property
    def routed(self) -> bool:
        """Whether the stream's paths are chosen for it (latency, jitter or loss)."""
        return self.delay_bound or self.loss_threshold is not None


def requirements_of(stream) -> Requirements | None:
    """The requirements of ``stream``'s effective policy (its wire ``QosPolicy``), or ``None``."""
    qos = stream.qos
    if qos is None:
        return None
    kbps, latency_ms, jitter_ms, ppm = qos
    return Requirements(
        stream.priority,
        latency_ms / 1000 if latency_ms else None,
        jitter_ms / 1000 if jitter_ms else None,
        ppm / 1_000_000 if ppm else None,
        kbps * 125.0 if kbps else None,
    )


class PathEstimate(NamedTuple):
    """
    What the enforcer predicts of one usable path.

    :ivar one_way: the one-way delay of a small message written now (seconds), without our own
        send queue's wait (added per stream).
    :ivar propagation: ``min_rtt / 2``.
    :ivar queueing: the forecast queueing delay at the bottleneck.
    :ivar rate: the bandwidth estimate in bytes per second (``cwnd / srtt`` without one).
    :ivar serialization: one datagram's time at ``rate``.
    :ivar loss_rate: the path's loss rate.
    """

    path: object
    one_way: float
    propagation: float
    queueing: float
    rate: float
    serialization: float
    loss_rate: float


def latency_limit(max_latency: float) -> float:
    """The delay a path must be predicted under to carry a stream with ``max_latency``."""
    return max_latency - max(GUARD_FLOOR, GUARD_SHARE * max_latency)


class _Episode:
    """One (stream, metric) promise's violation episode."""

    __slots__ = ("violated", "met_since", "unmet_since")

    def __init__(self) -> None:
        self.violated = False
        self.met_since: float | None = None
        self.unmet_since: float | None = None


class QoSEnforcer:
    """
    The QoS data plane of one connection (see the module docstring).

    :param streams: the stream manager (its ``qos_streams``, ``send_queue``).
    :param paths: the path manager.
    :param emit: where :class:`~kwik_twisted.events.QoSViolated` events go.
    :param max_datagram_size: the datagram size, for serialization and the caps' floor.
    :ivar detectors: the congestion detector of each path, by path ID.
    :ivar capped: the IDs of the paths whose window the enforcer caps now.
    :ivar trace: a :class:`~kwik_twisted.core.trace.Trace` when the connection is traced.
    """

    __slots__ = (
        "streams", "paths", "emit", "stats", "max_datagram_size", "detectors", "capped", "trace",
        "_next_eval", "_next_admission", "_data_since", "_episodes", "_routes", "redundant",
        "_levels", "_actions", "_confirm", "_excluded"
    )

    def __init__(
        self,
        *,
        streams,
        paths,
        emit: Callable,
        stats,
        max_datagram_size: Callable[[], int],
    ) -> None:
        self.streams = streams
        self.paths = paths
        self.emit = emit
        self.stats = stats
        self.max_datagram_size = max_datagram_size
        self.detectors: dict[int, CongestionDetector] = {}
        self.capped: set[int] = NO_MEMBERS  # type: ignore[assignment]
        self.trace = None
        self._next_eval = float("-inf")
        self._next_admission = float("-inf")
        self._data_since: float | None = None
        self._episodes: dict[tuple[int, str], _Episode] = {}
        self._routes: dict = {}  # stream -> its route (frozenset of path IDs, or None: any)
        self.redundant: set = NO_MEMBERS  # type: ignore[assignment]  # streams whose packets are copied onto a second path
        self._levels: dict[int, int] = {}
        self._actions: tuple[str, ...] = ()
        self._confirm = 0.0
        self._excluded: dict = {}  # (stream, path ID) -> when the path last failed the stream

    # -- the detectors -----------------------------------------------------------------

    def attach(self, path, *, now: float) -> CongestionDetector:
        """Give ``path`` its congestion detector (fed by its metrics tracker) and return it."""
        detector = self.detectors.get(path.id)
        if detector is None:
            detector = self.detectors[path.id] = CongestionDetector(path.id, now=now)
        if path.metrics is not None:
            path.metrics.detector = detector
        return detector

    def sync(self, *, now: float) -> None:
        """Give every path its detector, and drop those of paths that are gone."""
        paths = self.paths.paths
        for path in paths.values():
            if path.id not in self.detectors:
                self.attach(path, now=now)
        for path_id in [pid for pid in self.detectors if pid not in paths]:
            self.forget(path_id)

    def forget(self, path_id: int) -> None:
        """A path is gone: drop its detector and route mentions."""
        self.detectors.pop(path_id, None)
        if self.capped:
            self.capped.discard(path_id)
        self._levels.pop(path_id, None)

    # -- the send round ------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether there is anything to enforce (a stream with a policy, or a cap to lift)."""
        return bool(self.streams.qos_streams) or bool(self.capped) or bool(self._routes)

    def before_send(self, *, now: float) -> None:
        """Re-evaluate routes, caps and violations when due (the sender calls this first)."""
        if now < self._next_eval:
            return
        usable = self._usable()
        if not usable:
            self._next_eval = now + EVAL_FLOOR
            return
        fastest = min(p.recovery.rtt.smoothed_rtt for p in usable)
        # The work grows with streams x paths (a peer may ask a policy on every stream it opens):
        # the interval grows with it, so the enforcer's CPU share stays bounded.
        work = len(self.streams.qos_streams) * len(usable) * EVAL_COST
        self._next_eval = now + max(EVAL_FLOOR, fastest / 4, work)
        self._confirm = fastest
        self._evaluate(usable, now)

    def _usable(self) -> list:
        return eligible_paths(list(self.paths.paths.values()))

    def _evaluate(self, usable: list, now: float) -> None:
        estimates = {p.id: self.estimate(p, now=now) for p in usable}
        streams = [
            (s, r)
            for s in list(self.streams.qos_streams)
            if (r := requirements_of(s)) is not None
            and not s.send_state.terminal
            and not s.send.is_reset
            and s.send.write_offset  # only what we send is ours to keep a promise for
        ]
        if streams and self._data_since is None:
            self._data_since = now
        actions: list[str] = []
        live = set()
        leaving: dict = {}  # path ID -> the streams whose route left it in this evaluation
        for stream, req in streams:
            if req.routed:
                live.add(stream)
                self._route(stream, req, estimates, now, actions, leaving)
        if leaving:
            self._rescue(leaving, estimates)
        for key in [k for k in self._excluded if k[0] not in live or k[1] not in estimates]:
            del self._excluded[key]
        for stream in [s for s in self._routes if s not in live]:
            del self._routes[stream]
            if self.redundant:
                self.redundant.discard(stream)
            self.streams.send_queue.route(stream, None)  # even once its sending side ended
        if self._episodes:
            ids = {s.id for s, _r in streams}
            for key in [key for key in self._episodes if key[0] not in ids]:
                del self._episodes[key]
        bounds = {(r.max_latency, r.max_jitter): r for _s, r in streams if r.delay_bound}
        self._apply_caps(list(bounds.values()), estimates, now, actions)
        if any(r.min_rate for _s, r in streams) and now >= self._next_admission:
            self._next_admission = now + ADMISSION_INTERVAL
            self._admission(usable, estimates, now)
        self._actions = tuple(actions)
        self._trace_levels(now)

    # -- estimates -----------------------------------------------------------------------

    def estimate(self, path, *, now: float) -> PathEstimate:
        """The :class:`PathEstimate` of ``path`` now."""
        recovery = path.recovery
        rtt = recovery.rtt
        srtt, min_rtt = rtt.smoothed_rtt, rtt.min_rtt
        if not min_rtt or min_rtt == float("inf"):
            min_rtt = srtt
        metrics = path.metrics
        rate = 0.0 if metrics is None else metrics.bandwidth
        if rate <= 0.0:
            rate = recovery.controller.cwnd / max(srtt, 1e-6)
        detector = self.detectors.get(path.id) or self.attach(path, now=now)
        queueing = detector.predicted_queueing_delay(now=now, horizon=srtt)
        # The path's own datagram size (path MTU discovery's), else the connection's.
        serialization = (path.max_datagram_size or self.max_datagram_size()) / rate
        propagation = min_rtt / 2
        loss = 0.0 if metrics is None else metrics.loss_rate
        one_way = propagation + queueing + serialization
        return PathEstimate(path, one_way, propagation, queueing, rate, serialization, loss)

    def _send_wait(self, stream, estimate: PathEstimate) -> float:
        """How long a message of ``stream`` waits in our send queue for the streams ahead of it:
        one datagram per other queued stream of its level or above (round-robin), and one more
        when the path's window is full (its next ACK frees room)."""
        queues = self.streams.send_queue.queues
        ahead = sum(len(queues[level]) for level in range(stream.priority, len(queues)))
        if stream.queued:
            ahead -= 1
        recovery = estimate.path.recovery
        if recovery.bytes_in_flight >= recovery.controller.cwnd:
            ahead += 1
        return max(0, ahead) * estimate.serialization

    # -- routes ----------------------------------------------------------------------------

    def _passes(self, stream, req: Requirements, est: PathEstimate, was_in: bool) -> str | None:
        """The first requirement ``est`` fails for ``stream`` (``None``: it passes); a path that
        is not in the stream's route must pass with :data:`REJOIN_SHARE` of the limit to spare."""
        share = 1.0 if was_in else REJOIN_SHARE
        if req.max_latency is not None:
            delay = est.one_way + self._send_wait(stream, est)
            if delay > share * latency_limit(req.max_latency):
                return "max_latency"
        if req.loss_threshold is not None:
            if est.loss_rate > share * req.loss_threshold:
                return "loss_threshold"
        return None

    def _route(
        self, stream, req, estimates: dict, now: float, actions: list, leaving: dict
    ) -> None:
        previous = self._routes.get(stream)
        excluded = self._excluded
        passing, failures = [], {}
        for pid, est in estimates.items():
            was_in = previous is None or pid in previous
            failed = self._passes(stream, req, est, was_in)
            if failed is not None:
                excluded[(stream, pid)] = now
                failures[pid] = failed
            elif was_in or now - excluded.get((stream, pid), now) >= REJOIN_HOLD:
                passing.append(pid)
                excluded.pop((stream, pid), None)
        redundant = False
        if req.max_jitter is not None and passing:
            current = next(iter(previous)) if previous and len(previous) == 1 else None
            keep = current if current in passing else None
            pick = keep if keep is not None else min(passing, key=lambda i: estimates[i].one_way)
            route: frozenset[int] | None = frozenset((pick,))
        elif passing:
            route = None if len(passing) == len(estimates) else frozenset(passing)
        else:
            metric = "loss_threshold" if "loss_threshold" in failures.values() else "max_latency"
            route, redundant = self._best_effort(stream, req, metric, estimates, now)
        for metric in ("max_latency", "loss_threshold"):
            if passing or metric not in failures.values():
                self._met(stream.id, metric, now)
        if route != previous:
            self.streams.send_queue.route(stream, route)
            self.stats["qos_reroutes"] += 1
            if route is not None:
                left = (estimates.keys() if previous is None else previous) - route
                for pid in left:
                    if pid in estimates:
                        leaving.setdefault(pid, set()).add(stream)
        self._routes[stream] = route
        if redundant:
            self.redundant = with_member(self.redundant, stream)
        elif self.redundant:
            self.redundant.discard(stream)
        if route is not None:
            actions.append(f"route stream {stream.id} on paths {sorted(route)}")
        if redundant:
            actions.append(f"duplicate stream {stream.id}")

    def _rescue(self, leaving: dict, estimates: dict) -> None:
        """Streams left paths (``leaving``: path ID -> streams): what of them is still in flight
        there is queued again, to go on their new routes at once (whichever copy arrives first
        counts), so an ordered stream is not held up behind data stuck in a path that can no
        longer meet its promise.  One pass over each path's packets in flight."""
        rescued = 0
        for pid, streams in leaving.items():
            for packet in estimates[pid].path.recovery.in_flight_packets():
                for record in packet.frames:
                    if getattr(record, "stream", None) in streams:
                        self.streams.on_record_lost(record)
                        rescued += record.length
        self.stats["qos_rescued_bytes"] += rescued

    def _best_effort(self, stream, req, metric: str, estimates: dict, now: float):
        """No path meets ``metric``: the best path, redundancy for loss, one violation."""
        if metric == "loss_threshold":  # the cheaper of equally lossy paths carries the copies
            order = sorted(estimates, key=lambda i: (
                round(estimates[i].loss_rate, 3), path_cost(estimates[i].path),
                estimates[i].one_way))
            measured, bound = estimates[order[0]].loss_rate, req.loss_threshold
        else:
            order = sorted(estimates, key=lambda i: estimates[i].one_way)
            best = estimates[order[0]]
            measured, bound = best.one_way + self._send_wait(stream, best), req.max_latency
        self._violated(stream.id, metric, measured, bound, now)
        redundant = metric == "loss_threshold" and len(order) > 1
        return frozenset(order[:2] if redundant else order[:1]), redundant

    # -- caps ------------------------------------------------------------------------------

    def _apply_caps(self, bounds: list[Requirements], estimates: dict, now: float, actions) -> None:
        mds = self.max_datagram_size()
        capped = set()
        serving = self._serving(estimates)
        for pid, est in estimates.items():
            target = self._target(bounds, est)
            if target is None:
                continue
            rate = est.rate
            detector = self.detectors.get(pid)
            standing = SATURATED_SHARE * target + SATURATED_PACKETS * est.serialization
            if detector is not None and detector.queueing_delay >= standing:
                recent = getattr(getattr(est.path.metrics, "delivery", None), "bandwidth", 0.0)
                if recent > 0.0:
                    rate = recent  # a standing queue: the path is saturated, this is its capacity
            window = 2 * est.propagation + target
            srtt = est.path.recovery.rtt.smoothed_rtt
            if pid not in serving and srtt > 0.0 and int(now / srtt + pid) % PROBE_CYCLE == 0:
                window *= PROBE_GAIN  # one RTT in PROBE_CYCLE: room to show more capacity
            cap = max(MIN_CAP_DATAGRAMS * mds, int(rate * window))
            est.path.recovery.controller.cap = cap
            capped.add(pid)
            actions.append(f"cap path {pid} at {cap} bytes (queue target {target * 1000:.1f} ms)")
        for pid in self.capped - capped:
            path = self.paths.paths.get(pid)
            if path is not None:
                path.recovery.controller.cap = None
        self.capped = capped or NO_MEMBERS  # type: ignore[assignment]

    def _serving(self, estimates: dict) -> set[int]:
        """The paths delay-bound streams use now: their routes, and for a stream any path may
        carry, the one with the lowest predicted delay (where the scheduler sends it)."""
        serving: set[int] = set()
        fastest = min(estimates, key=lambda i: estimates[i].one_way) if estimates else None
        for stream, route in self._routes.items():
            qos = stream.qos
            if qos is None or not (qos.max_latency_ms or qos.max_jitter_ms):
                continue
            if route is None:
                if fastest is not None:
                    serving.add(fastest)
            else:
                serving |= route
        return serving

    @staticmethod
    def _target(bounds: list[Requirements], est: PathEstimate) -> float | None:
        """The queue target of the tightest delay bound ``est``'s path could meet, or ``None``."""
        target = None
        for req in bounds:
            slack = float("inf")
            if req.max_latency is not None:
                slack = latency_limit(req.max_latency) - est.propagation - est.serialization
                if slack <= 0.0:
                    continue  # propagation alone breaks it: this path cannot serve the stream
                slack /= 2
            if req.max_jitter is not None:
                slack = min(slack, req.max_jitter)
            slack = max(MIN_TARGET, slack)
            target = slack if target is None else min(target, slack)
        return target

    # -- guaranteed rates --------------------------------------------------------------------

    def _admission(self, usable: list, estimates: dict, now: float) -> None:
        if self._data_since is None or now - self._data_since < ADMISSION_GRACE:
            return
        shaper = getattr(self.streams.send_queue, "shaper", None)
        if shaper is None:
            return
        capacity = sum(est.rate for est in estimates.values())
        failing = {sid: (measured, bound) for sid, measured, bound in
                   shaper.admission(capacity, now=now)}
        for stream in self.streams.qos_streams:
            req = requirements_of(stream)
            if req is None or not req.min_rate:
                continue
            if stream.id in failing:
                self._violated(stream.id, "min_bandwidth", *failing[stream.id], now)
            else:
                self._met(stream.id, "min_bandwidth", now)

    # -- episodes ----------------------------------------------------------------------------

    def _violated(self, sid: int, metric: str, measured: float, bound: float, now: float) -> None:
        episode = self._episodes.get((sid, metric))
        if episode is None:
            episode = self._episodes[(sid, metric)] = _Episode()
        episode.met_since = None
        if episode.violated:
            return
        if episode.unmet_since is None:
            episode.unmet_since = now
        if now - episode.unmet_since < max(CONFIRM_FLOOR, self._confirm):
            return  # not yet: a start-up estimate or one bad sample is not an episode
        episode.violated = True
        self.stats["qos_violations"] += 1
        self.emit(QoSViolated(sid, metric, float(measured), float(bound)))

    def _met(self, sid: int, metric: str, now: float) -> None:
        episode = self._episodes.get((sid, metric))
        if episode is None:
            return
        episode.unmet_since = None
        if not episode.violated:
            return
        if episode.met_since is None:
            episode.met_since = now
        elif now - episode.met_since >= EPISODE_HOLD:
            episode.violated = False
            episode.met_since = None

    # -- reports -----------------------------------------------------------------------------

    def report(self, *, now: float) -> CongestionReport:
        """The seed's CongestionReport: every live path's detector and the global figures."""
        reports = []
        for path in list(self.paths.paths.values()):
            if path.usable or path.id in self.detectors:
                detector = self.detectors.get(path.id) or self.attach(path, now=now)
                horizon = path.recovery.rtt.smoothed_rtt
                reports.append(detector.report(now=now, horizon=horizon))
        return global_report(reports, now=now, actions=self._actions)

    def _trace_levels(self, now: float) -> None:
        changed = False
        for pid, detector in self.detectors.items():
            level = int(detector.level)
            if self._levels.get(pid, 0) != level:
                self._levels[pid] = level
                changed = True
        if changed and self.trace is not None:
            self.trace.congestion_report(self.report(now=now), now)
