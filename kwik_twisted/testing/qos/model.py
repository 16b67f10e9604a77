"""
What a QoS scenario is made of (paths, flows) and what it measured (per flow, per path).

See :mod:`kwik_twisted.testing.qos` for how :func:`~kwik_twisted.testing.qos.run.run_scenario`
fills these.  Series are ``array`` pairs ``(times, cumulative)`` so any window is two bisections.
"""

from __future__ import annotations

import math
import statistics
import struct
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ...core.connection import Connection
from ...events import QoSViolated
from ..links import LinkConfig
from ..simulator import Network

#: What starts every message of a timed flow: its sequence number and its write time (seconds).
HEADER = struct.Struct("!Id")
#: The smallest drop-tail queue a :class:`PathSpec` gets (two full datagrams).
MIN_QUEUE_BYTES = 3000


@dataclass(frozen=True, slots=True)
class PathSpec:
    """
    One client address and its two links to the server.

    Both directions get ``delay`` (and ``jitter`` and ``loss``); only the client-to-server one
    is rate limited, unless ``reverse_rate_bps`` is given.  The drop-tail queue is ``queue_bytes``,
    else ``queue_ms`` of the rate, else the simulator's default (two bandwidth-delay products).
    ``cost`` is given to the client's path manager (``set_path_cost``) when it can take one.
    """

    delay: float = 0.010
    rate_bps: float | None = 10e6
    queue_ms: float | None = None
    queue_bytes: int | None = None
    loss: float = 0.0
    cost: float | None = None
    reverse_rate_bps: float | None = None
    jitter: float = 0.0

    def up_link(self) -> LinkConfig:
        """The client-to-server link."""
        return LinkConfig(
            delay=self.delay,
            rate_bps=self.rate_bps,
            queue_bytes=queue_limit(self.rate_bps, self.queue_ms, self.queue_bytes),
            loss=self.loss,
            jitter=self.jitter,
        )

    def down_link(self) -> LinkConfig:
        """The server-to-client link."""
        rate = self.reverse_rate_bps
        return LinkConfig(
            delay=self.delay,
            rate_bps=rate,
            queue_bytes=queue_limit(rate, self.queue_ms, self.queue_bytes) if rate else None,
            loss=self.loss,
            jitter=self.jitter,
        )


def queue_limit(rate_bps: float | None, queue_ms: float | None, queue_bytes: int | None):
    """The drop-tail bound in bytes: ``queue_bytes``, else ``queue_ms`` of ``rate_bps``."""
    if queue_bytes is not None:
        return queue_bytes
    if queue_ms is None or rate_bps is None:
        return None
    return max(MIN_QUEUE_BYTES, int(rate_bps * queue_ms / 1000 / 8))


@dataclass(frozen=True, slots=True)
class MessageFlow:
    """``size``-byte messages every ``interval`` seconds from ``start`` to ``stop``."""

    name: str
    size: int = 200
    interval: float = 0.020
    qos: Any = None
    priority: int = 0
    start: float = 0.0
    stop: float | None = None

    def __post_init__(self) -> None:
        if self.size < HEADER.size or self.interval <= 0:
            raise ValueError(f"a message is at least {HEADER.size} bytes, at a positive interval")


@dataclass(frozen=True, slots=True)
class RateFlow:
    """A constant ``rate_bps`` as ``chunk``-byte messages, skipped while not writable."""

    name: str
    rate_bps: float
    chunk: int = 1200
    qos: Any = None
    priority: int = 0
    start: float = 0.0
    stop: float | None = None

    @property
    def size(self) -> int:
        """Bytes per message."""
        return self.chunk

    @property
    def interval(self) -> float:
        """Seconds between two messages."""
        return self.chunk * 8 / self.rate_bps


@dataclass(frozen=True, slots=True)
class BulkFlow:
    """As much as the stream takes, from ``start`` to ``stop``."""

    name: str
    qos: Any = None
    priority: int = 0
    start: float = 0.0
    stop: float | None = None


Flow = MessageFlow | RateFlow | BulkFlow


def with_qos(flows: Iterable[Flow], enabled: bool) -> list[Flow]:
    """``flows`` as they are (``enabled``) or with every QoS policy removed."""
    return list(flows) if enabled else [replace(f, qos=None) for f in flows]


# -- what a scenario measured ----------------------------------------------------------------


class Delays(list):
    """One-way delays in seconds, with their statistics (``nan`` when empty)."""

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile (0..100), nearest rank."""
        if not self:
            return math.nan
        ordered = sorted(self)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]

    def p50(self) -> float:
        """The median."""
        return self.percentile(50)

    def p99(self) -> float:
        """The 99th percentile."""
        return self.percentile(99)

    def mean(self) -> float:
        """The mean."""
        return statistics.fmean(self) if self else math.nan

    def std(self) -> float:
        """The population standard deviation (the jitter figure)."""
        return statistics.pstdev(self) if len(self) > 1 else math.nan

    def max(self) -> float:
        """The largest."""
        return max(self) if self else math.nan


def _at(times: array, cumulative: array, t: float) -> int:
    """The cumulative count of a ``(times, cumulative)`` series at time ``t``."""
    i = bisect_right(times, t)
    return cumulative[i - 1] if i else 0


@dataclass
class FlowResult:
    """What one flow wrote, what reached the server application and when, and its paths."""

    name: str
    kind: str
    stream_id: int
    start: float  # the measured window
    end: float
    write_times: list[float] = field(default_factory=list)  # by sequence number
    delivery_delays: list[float] = field(default_factory=list)  # by sequence number; nan: none
    delivery_times: array = field(default_factory=lambda: array("d"))
    delivered_cumulative: array = field(default_factory=lambda: array("q"))
    bytes_written: int = 0
    skipped_bytes: int = 0
    sent_bytes: int = 0  # STREAM frame bytes, resends included, the whole run
    resent_bytes: int = 0
    cross_path_bytes: int = 0
    path_times: dict[int, array] = field(default_factory=dict)  # path index -> send times
    path_cumulative: dict[int, array] = field(default_factory=dict)

    def delays_in(self, start: float, end: float) -> Delays:
        """Delays of the delivered messages written in ``[start, end)``."""
        lo, hi = bisect_left(self.write_times, start), bisect_left(self.write_times, end)
        return Delays(d for d in self.delivery_delays[lo:hi] if d == d)

    @property
    def delays(self) -> Delays:
        """Delays of the delivered messages written in the measured window."""
        return self.delays_in(self.start, self.end)

    def p50(self) -> float:
        """Median one-way delay in the window."""
        return self.delays.p50()

    def p99(self) -> float:
        """99th percentile one-way delay in the window."""
        return self.delays.p99()

    def late_fraction(self, bound: float, start: float | None = None, end: float | None = None):
        """Of the messages written in ``[start, end - bound)`` (the window by default), the
        fraction delivered later than ``bound`` after their write, or not at all."""
        start = self.start if start is None else start
        end = self.end if end is None else end
        lo = bisect_left(self.write_times, start)
        hi = bisect_left(self.write_times, end - bound)
        if hi <= lo:
            return math.nan
        late = sum(1 for d in self.delivery_delays[lo:hi] if not d <= bound)
        return late / (hi - lo)

    def bytes_delivered(self, start: float | None = None, end: float | None = None) -> int:
        """Bytes the server application got in ``[start, end]`` (the window by default)."""
        start = self.start if start is None else start
        end = self.end if end is None else end
        times, cumulative = self.delivery_times, self.delivered_cumulative
        return _at(times, cumulative, end) - _at(times, cumulative, start)

    def goodput_bps(self, start: float | None = None, end: float | None = None) -> float:
        """Bits per second the server application got in ``[start, end]``."""
        start = self.start if start is None else start
        end = self.end if end is None else end
        return self.bytes_delivered(start, end) * 8 / (end - start) if end > start else math.nan

    def max_gap(self, start: float | None = None, end: float | None = None) -> float:
        """The longest time in ``[start, end]`` without a delivery (seconds)."""
        start = self.start if start is None else start
        end = self.end if end is None else end
        times = self.delivery_times
        points = [start, *times[bisect_right(times, start) : bisect_right(times, end)], end]
        return max(b - a for a, b in zip(points, points[1:]))

    def bytes_by_path(self, start: float | None = None, end: float | None = None) -> dict:
        """STREAM bytes of this flow sent on each path (index) in ``[start, end]``."""
        start = self.start if start is None else start
        end = self.end if end is None else end
        return {
            index: _at(times, self.path_cumulative[index], end)
            - _at(times, self.path_cumulative[index], start)
            for index, times in sorted(self.path_times.items())
        }

    def share(self, path: int, start: float | None = None, end: float | None = None) -> float:
        """The fraction of this flow's STREAM bytes sent on path ``path`` in the window."""
        by_path = self.bytes_by_path(start, end)
        total = sum(by_path.values())
        return by_path.get(path, 0) / total if total else math.nan

    def first_sent_on(self, path: int, after: float) -> float | None:
        """When this flow's data first went on path ``path`` at or after ``after``."""
        times = self.path_times.get(path)
        i = bisect_left(times, after) if times is not None else 0
        return times[i] if times is not None and i < len(times) else None

    @property
    def redundancy(self) -> float:
        """Resent bytes over the bytes of the stream sent once."""
        unique = self.sent_bytes - self.resent_bytes
        return self.resent_bytes / unique if unique else math.nan


@dataclass
class PathResult:
    """One path: its spec, its client path ID, and what its client-to-server link carried."""

    index: int
    spec: PathSpec
    path_id: int | None
    bytes_up: int  # in the measured window
    bytes_up_total: int
    lost_queue: int
    lost_random: int


@dataclass(frozen=True, slots=True)
class Violation:
    """A ``QoSViolated`` event with when and where it was emitted and the flow it names."""

    time: float
    side: str  # "client" or "server"
    flow: str | None
    event: QoSViolated


@dataclass
class ScenarioResult:
    """Everything :func:`run_scenario` measured; ``figures`` are a scenario function's own."""

    flows: dict[str, FlowResult]
    paths: list[PathResult]
    violations: list[Violation]
    capacity_bps: float
    ready_at: float | None
    warmup: float
    duration: float
    qos_report: Any = None
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    client: Connection | None = None
    network: Network | None = None

    def violations_of(self, flow: str | None = None, metric: str | None = None, *,
                      side: str | None = None, after: float = 0.0) -> list[Violation]:
        """The violations matching every given filter, emitted at or after ``after``."""
        return [
            v for v in self.violations
            if (flow is None or v.flow == flow) and (metric is None or v.event.metric == metric)
            and (side is None or v.side == side) and v.time >= after
        ]

    def summary(self) -> dict:
        """JSON-ready figures: the scenario's own, then per flow and per path."""
        flows = {
            name: {
                "p50_ms": f.p50() * 1000, "p99_ms": f.p99() * 1000,
                "goodput_mbps": f.goodput_bps() / 1e6, "redundancy": f.redundancy,
                "bytes_by_path": f.bytes_by_path(),
            }
            for name, f in self.flows.items()
        }
        return {
            "figures": {k: _json_number(v) for k, v in self.figures.items()},
            "flows": {n: {k: _json_number(v) for k, v in f.items()} for n, f in flows.items()},
            "paths": [{"bytes_up": p.bytes_up, "lost_queue": p.lost_queue} for p in self.paths],
            "violations": len(self.violations),
            "capacity_mbps": self.capacity_bps / 1e6,
            "ready_at": self.ready_at,
            "notes": self.notes,
        }


def _json_number(value: Any) -> Any:
    """``value``, or ``None`` for a nan (strict JSON has no nan)."""
    return None if isinstance(value, float) and math.isnan(value) else value
