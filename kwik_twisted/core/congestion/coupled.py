"""
Coupled multipath congestion control: LIA (RFC 6356) and OLIA (Khalili et al.,
"MPTCP is not Pareto-optimal", CoNEXT 2012; draft-khalili-mptcp-congestion-control).

The paths of one connection share a :class:`CoupledGroup`; each path's
controller joins it and remembers its path's smoothed RTT from the ACKs it
sees.  Slow start and the halving on loss are Reno's, per path; only the
congestion-avoidance increase on one path depends on every path (windows
``w`` in segments, RTTs ``rtt`` in seconds, per segment acknowledged):

* LIA: ``min(alpha / w_total, 1 / w_r)`` with
  ``alpha = w_total * max(w_p / rtt_p**2) / (sum(w_p / rtt_p))**2``, so the
  connection takes no more than one TCP would on its best path, and one path
  never grows faster than TCP would on it.
* OLIA: ``(w_r / rtt_r**2) / (sum(w_p / rtt_p))**2 + alpha_r / w_r``, where
  ``alpha_r`` moves window from the paths with the largest windows (set M)
  to the best paths that do not have them (B \\ M); "best" maximises
  ``l_p**2 / rtt_p``, with ``l_p`` the larger of the bytes acknowledged between
  the last two losses and since the last loss.

A controller made without a group gets one of its own, and a group of one
path behaves exactly as Reno.  Call :meth:`CoupledController.leave` when a
path is abandoned.
"""

from __future__ import annotations

from collections.abc import Iterable

from kwik_twisted.core.congestion.base import (
    AckedPacket,
    CongestionController,
    RttSource,
    register,
)

_LOSS_REDUCTION = 0.5


class CoupledGroup:
    """The coupled controllers of one connection's paths."""

    __slots__ = ("members",)

    def __init__(self) -> None:
        self.members: list[CoupledController] = []

    def add(self, controller: CoupledController) -> None:
        """Couple ``controller`` with the others."""
        if controller not in self.members:
            self.members.append(controller)

    def remove(self, controller: CoupledController) -> None:
        """Stop coupling ``controller`` (its path is gone)."""
        if controller in self.members:
            self.members.remove(controller)

    def measured(self) -> list[CoupledController]:
        """The members that have an RTT estimate."""
        return [m for m in self.members if m.srtt > 0.0]


class CoupledController(CongestionController):
    """
    The part LIA and OLIA share: group membership, Reno slow start and loss.

    :ivar group: the group this path's controller is coupled in.
    :ivar srtt: the path's smoothed RTT as last seen (0.0 before an ACK).
    """

    coupled = True

    def __init__(self, *, group: CoupledGroup | None = None, **kw: int | None) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.group = group if group is not None else CoupledGroup()
        self.group.add(self)
        self.srtt = 0.0

    def leave(self) -> None:
        """Leave the group, for a path that is abandoned."""
        self.group.remove(self)

    @property
    def segments(self) -> float:
        """The window in segments."""
        return self._cwnd / self.max_datagram_size

    def on_packets_acked(
        self, packets: Iterable[AckedPacket], *, now: float, rtt: RttSource
    ) -> None:
        """Remember the path's RTT, then grow as the base class says."""
        self.srtt = rtt.smoothed_rtt
        super().on_packets_acked(packets, now=now, rtt=rtt)

    def increase(self, acked_bytes: int, *, now: float, rtt: RttSource) -> None:
        """Reno slow start; the coupled increase in congestion avoidance."""
        if self._cwnd < self._ssthresh:
            acked_bytes = self._slow_start(acked_bytes)
            if not acked_bytes:
                return
        per_segment = self.increase_per_segment()
        grown = self._cwnd + per_segment * acked_bytes
        self._cwnd = grown if grown > self.minimum_window else self.minimum_window

    def increase_per_segment(self) -> float:
        """The window increase, in segments, per segment acknowledged."""
        raise NotImplementedError

    def on_congestion_event(self, *, now: float) -> None:
        """Halve this path's window (RFC 6356 §3: loss handling is Reno's)."""
        self._ssthresh = max(int(self._cwnd * _LOSS_REDUCTION), self.minimum_window)
        self._cwnd = self._ssthresh


@register("lia")
class Lia(CoupledController):
    """The Linked Increases Algorithm of RFC 6356."""

    def increase_per_segment(self) -> float:
        """``min(alpha / w_total, 1 / w_r)`` (RFC 6356 §3)."""
        own = self.segments
        members = self.group.measured()
        if len(members) < 2:
            return 1.0 / own
        total = sum(m.segments for m in members)
        best = max(m.segments / (m.srtt * m.srtt) for m in members)
        rate = sum(m.segments / m.srtt for m in members)
        alpha = total * best / (rate * rate)
        coupled = alpha / total
        reno = 1.0 / own
        return coupled if coupled < reno else reno


@register("olia")
class Olia(CoupledController):
    """The Opportunistic Linked Increases Algorithm."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self._since_loss = 0
        self._between_losses = 0

    @property
    def quality_bytes(self) -> int:
        """``l_r``: the larger of the bytes acked between the last two losses and since."""
        return max(self._since_loss, self._between_losses)

    def on_packets_acked(
        self, packets: Iterable[AckedPacket], *, now: float, rtt: RttSource
    ) -> None:
        """Count the bytes delivered since the last loss, then grow."""
        packets = list(packets)
        self._since_loss += sum(p.size for p in packets)
        super().on_packets_acked(packets, now=now, rtt=rtt)

    def on_congestion_event(self, *, now: float) -> None:
        """Start a new loss interval and halve the window."""
        self._between_losses = self._since_loss
        self._since_loss = 0
        super().on_congestion_event(now=now)

    def increase_per_segment(self) -> float:
        """``(w_r / rtt_r**2) / (sum(w_p / rtt_p))**2 + alpha_r / w_r``."""
        own = self.segments
        members = self.group.measured()
        if len(members) < 2:
            return 1.0 / own
        rate = sum(m.segments / m.srtt for m in members)
        term = (own / (self.srtt * self.srtt)) / (rate * rate)
        return term + self._alpha(members) / own

    def _alpha(self, members: list[CoupledController]) -> float:
        """OLIA's alpha_r, moving window from the largest windows to the best paths."""
        largest = max(m.segments for m in members)
        with_max = [m for m in members if m.segments >= largest]
        qualities = [_quality(m) for m in members]
        top = max(qualities)
        best_not_max = [m for m, q in zip(members, qualities) if q >= top and m.segments < largest]
        if not best_not_max:
            return 0.0
        if self in best_not_max:
            return 1.0 / (len(members) * len(best_not_max))
        if self in with_max:
            return -1.0 / (len(members) * len(with_max))
        return 0.0


def _quality(member: CoupledController) -> float:
    """``l_p**2 / rtt_p`` for OLIA members; 0 for others in a mixed group."""
    if isinstance(member, Olia):
        quality = member.quality_bytes
        return quality * quality / member.srtt
    return 0.0
