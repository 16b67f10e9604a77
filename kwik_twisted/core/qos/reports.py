"""
Congestion reports: the frozen values the congestion detectors give out.

Theory of operation.  :class:`~kwik_twisted.core.qos.detector.CongestionDetector` grades each path
with a :class:`CongestionLevel` and names the detectors that see congestion by
:class:`CongestionType`; its ``report()`` freezes a path into a :class:`PathCongestionReport`.
:func:`global_report` combines the paths' reports into a :class:`CongestionReport`, the seed's
CongestionReport:

* ``level`` is the worst level over the paths given (NONE without paths);
* ``congested_paths`` the IDs of the paths at MODERATE or worse, ascending;
* ``total_delivery_rate`` the sum of the paths' delivery rates;
* ``paths`` the paths' reports as a tuple sorted by path ID (a tuple keeps the report hashable
  and immutable; :meth:`CongestionReport.path` finds one by ID);
* ``actions`` the responses the enforcer took, as short strings.

Both reports have ``as_dict()`` (JSON-ready: levels as lower-case names, tuples as lists, for
qlog) and ``from_dict()``, its inverse.  The module holds values only: it imports no detector.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any


class CongestionType(StrEnum):
    """Which detector saw congestion."""

    DELAY = "delay"
    LOSS = "loss"
    QUEUE = "queue"


class CongestionLevel(IntEnum):
    """How congested a path is; ``MODERATE`` and above count as congested."""

    NONE = 0
    LIGHT = 1
    MODERATE = 2
    SEVERE = 3


def _level_name(level: CongestionLevel) -> str:
    """The JSON spelling of a level: its lower-case name."""
    return level.name.lower()


@dataclass(frozen=True, slots=True)
class PathCongestionReport:
    """
    One path's congestion state at a moment (times in seconds, rates in bytes per second).

    :ivar types: the detectors reading LIGHT or worse, as sorted strings.
    :ivar predicted_queueing_delay: the forecast for ``horizon`` seconds after the report.
    :ivar congestion: the 0..1 figure.
    :ivar since: when the current episode began (``None``: no episode).
    """

    path_id: int
    level: CongestionLevel
    types: tuple[str, ...]
    queueing_delay: float
    predicted_queueing_delay: float
    horizon: float
    loss_rate: float
    baseline_loss_rate: float
    delivery_rate: float
    bytes_in_flight: int
    congestion: float
    since: float | None

    @property
    def congested(self) -> bool:
        """Whether the level is MODERATE or worse."""
        return self.level >= CongestionLevel.MODERATE

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values (the level as its lower-case name, types as a list)."""
        return {
            "path_id": self.path_id,
            "level": _level_name(self.level),
            "types": list(self.types),
            "queueing_delay": self.queueing_delay,
            "predicted_queueing_delay": self.predicted_queueing_delay,
            "horizon": self.horizon,
            "loss_rate": self.loss_rate,
            "baseline_loss_rate": self.baseline_loss_rate,
            "delivery_rate": self.delivery_rate,
            "bytes_in_flight": self.bytes_in_flight,
            "congestion": self.congestion,
            "since": self.since,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PathCongestionReport:
        """The report :meth:`as_dict` gave ``data`` for."""
        values = dict(data)
        values["level"] = CongestionLevel[str(data["level"]).upper()]
        values["types"] = tuple(data["types"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class CongestionReport:
    """
    The connection's congestion state at a moment: the seed's CongestionReport.

    :ivar paths: the paths' reports, as a tuple sorted by path ID (:meth:`path` finds one).
    :ivar level: the worst level over ``paths`` (NONE without paths).
    :ivar congested_paths: the IDs of the congested paths, ascending.
    :ivar total_delivery_rate: the sum of the paths' delivery rates, bytes per second.
    :ivar actions: the responses the enforcer took, as short strings.
    """

    time: float
    paths: tuple[PathCongestionReport, ...]
    level: CongestionLevel
    congested_paths: tuple[int, ...]
    total_delivery_rate: float
    actions: tuple[str, ...] = ()

    def path(self, path_id: int) -> PathCongestionReport | None:
        """The report of path ``path_id``, if it is in this report."""
        for report in self.paths:
            if report.path_id == path_id:
                return report
        return None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values (``paths`` as a list of the paths' ``as_dict()``)."""
        return {
            "time": self.time,
            "paths": [report.as_dict() for report in self.paths],
            "level": _level_name(self.level),
            "congested_paths": list(self.congested_paths),
            "total_delivery_rate": self.total_delivery_rate,
            "actions": list(self.actions),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CongestionReport:
        """The report :meth:`as_dict` gave ``data`` for."""
        return cls(
            time=data["time"],
            paths=tuple(PathCongestionReport.from_dict(path) for path in data["paths"]),
            level=CongestionLevel[str(data["level"]).upper()],
            congested_paths=tuple(data["congested_paths"]),
            total_delivery_rate=data["total_delivery_rate"],
            actions=tuple(data["actions"]),
        )


def global_report(
    reports: Iterable[PathCongestionReport], *, now: float, actions: Iterable[str] = ()
) -> CongestionReport:
    """Combine the paths' reports taken at ``now`` into the connection's report."""
    paths = tuple(sorted(reports, key=lambda report: report.path_id))
    level = max((report.level for report in paths), default=CongestionLevel.NONE)
    return CongestionReport(
        time=now,
        paths=paths,
        level=CongestionLevel(level),
        congested_paths=tuple(report.path_id for report in paths if report.congested),
        total_delivery_rate=sum(report.delivery_rate for report in paths),
        actions=tuple(actions),
    )


__all__ = [
    "CongestionLevel",
    "CongestionReport",
    "CongestionType",
    "PathCongestionReport",
    "global_report",
]
