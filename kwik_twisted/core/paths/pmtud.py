"""
Path MTU discovery for one path: DPLPMTUD (RFC 8899) with QUIC's padded probes (RFC 9000 §14.3).

Theory of operation.  Every path owns a :class:`PathMtu` (``path.mtu``).  It decides the size
of the path's datagrams, ``path.max_datagram_size`` (the one attribute the packet assembler reads;
0 until the search starts, meaning the connection-wide ``ctx.max_datagram_size``), and tells the
path's congestion controller and pacer when that size changes.

* **Start.**  Once the handshake is confirmed and the path usable, the sender calls
  :meth:`PathMtu.start` with the connection's base size (``config.max_datagram_size``, 1350 by
  default, known to pass) and the peer's ``max_datagram_size`` transport parameter.  The *upper
  bound* is the smaller of that and our ``max_udp_payload``; the *floor* is :data:`BASE_PLPMTU`
  (1200 bytes, the QUIC minimum): the size never goes below it.
* **Search** (SEARCHING).  A binary search between the largest confirmed size and the upper
  bound: the probe is the midpoint; it ends (SEARCH_COMPLETE) when the step is below
  :data:`MIN_STEP` bytes.  A probe is one ack-eliciting packet of exactly the probe size (PING
  and PADDING), counted in bytes in flight, sent when the congestion window has room for it.
  Its acknowledgement confirms the size: the path's datagrams grow to it at once.  Its loss is
  *not* a congestion signal and not a path-failure signal (RFC 9000 §14.4, RFC 8899 §4.1): the
  loss detector keeps it from the congestion controller and the sender from the path's loss
  counters.  A size whose probe was lost :data:`MAX_PROBES` times is too big: the upper bound
  drops below it.  The probe timer is the path's own loss detection (a probe is declared lost
  like any packet, about one PTO at the latest).
* **Raise timer.**  :data:`PMTU_RAISE_TIMER` seconds after a search completed, it runs again
  up to the original upper bound (a route may have grown).
* **Black holes** (back to BASE, RFC 8899 §4.3).  The size in use stops passing when the route
  changes.  Two signs: :data:`BLACK_HOLE_LOSSES` packets larger than :data:`BASE_PLPMTU` lost
  while only smaller ones were acknowledged since the last large one; or
  :data:`BLACK_HOLE_PTOS` probe timeouts in a row (nothing at all acknowledged) while the size is
  above the floor.  Either way the size falls to the floor, the upper bound to just below the
  failed size, and the search starts again.  A real outage also looks like this: the cost is a
  search, the raise timer later restores the old upper bound.
* **Too big** (:meth:`PathMtu.on_too_big`).  The Twisted glue sends with fragmentation off
  (``IP_PMTUDISC_PROBE``, ``IPV6_DONTFRAG``) and reports a local ``EMSGSIZE``: the kernel knows the
  route MTU, which is the form of ICMP feedback available through Twisted.  The upper bound drops
  below the size; a probe of that size counts as lost for good; if the size in use was that big,
  it falls to the floor and the search starts again.

With ``pmtud`` off the object stays DISABLED: nothing is probed and every packet keeps
``config.max_datagram_size``.  Cost on the hot path: the sender reads :attr:`PathMtu.due` once per
send round and :attr:`PathMtu.watching` once per ACK frame; losses (rare) always come here.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..recovery.loss import SentPacket
    from .path import Path

__all__ = [
    "BASE_PLPMTU",
    "BLACK_HOLE_LOSSES",
    "BLACK_HOLE_PTOS",
    "MAX_PROBES",
    "MIN_STEP",
    "PMTU_RAISE_TIMER",
    "MtuState",
    "PathMtu",
]

#: The floor (RFC 8899 BASE_PLPMTU): QUIC's smallest datagram; the size never falls below it.
BASE_PLPMTU = 1200
#: Probes of one size lost before that size counts as too big (RFC 8899 MAX_PROBES).
MAX_PROBES = 3
#: Seconds after a completed search before it runs again upward (RFC 8899 PMTU_RAISE_TIMER).
PMTU_RAISE_TIMER = 600.0
#: The search stops when the next step would be smaller than this (as quinn's minimum change).
MIN_STEP = 16
#: Large packets lost, with only smaller ones acknowledged since, that mean a black hole.
BLACK_HOLE_LOSSES = 3
#: Consecutive probe timeouts (nothing acknowledged) above the floor that mean a black hole.
BLACK_HOLE_PTOS = 2

_NEVER = math.inf


class MtuState(Enum):
    """Where a path's search stands (RFC 8899 §5.2)."""

    DISABLED = "disabled"
    BASE = "base"
    SEARCHING = "searching"
    SEARCH_COMPLETE = "search_complete"
    ERROR = "error"


class PathMtu:
    """
    The datagram size of one path and its search (see the module docstring).

    :param path: the path (its ``max_datagram_size``, controller and pacer are updated).
    :param enabled: whether PMTUD runs (``config.pmtud``).
    :param max_udp_payload: our own ceiling (``config.max_udp_payload``).
    :param owner: has ``stats`` (a Counter) and ``trace`` (a ``Trace`` or ``None``).
    :ivar state: an :class:`MtuState`.
    :ivar size: the confirmed size in use (0 before :meth:`start`).
    :ivar upper: the largest size still worth probing.
    :ivar ceiling: the upper bound the search started with (the raise timer returns to it).
    :ivar probe: the probe packet in flight, or ``None``.
    :ivar probe_size: the size being probed (0: none).
    :ivar attempts: probes of ``probe_size`` lost so far.
    :ivar due: when the sender should call :meth:`next_probe` (``inf``: not until told).
    :ivar watching: whether ACKs must be shown to :meth:`on_acked` (a probe in flight, or large
        losses not yet explained).
    """

    __slots__ = (
        "path",
        "owner",
        "state",
        "size",
        "upper",
        "ceiling",
        "limit",
        "probe",
        "probe_size",
        "attempts",
        "due",
        "watching",
        "lost_large",
        "small_acked",
    )

    def __init__(self, path: Path, *, enabled: bool, max_udp_payload: int, owner) -> None:
        self.path = path
        self.owner = owner
        self.state = MtuState.BASE if enabled else MtuState.DISABLED
        self.size = 0
        self.limit = max_udp_payload
        self.upper = self.ceiling = max_udp_payload
        self.probe: SentPacket | None = None
        self.probe_size = 0
        self.attempts = 0
        self.due = 0.0 if enabled else _NEVER
        self.watching = False
        self.lost_large = 0
        self.small_acked = False

    @property
    def running(self) -> bool:
        """Whether the search has started (losses and timeouts are of interest)."""
        return self.size != 0

    # -- the search ------------------------------------------------------------------------

    def start(self, base: int, peer_limit: int, *, now: float) -> None:
        """Begin: datagrams of ``base`` bytes, search up to min(our limit, ``peer_limit``)."""
        self.ceiling = self.upper = max(BASE_PLPMTU, min(self.limit, peer_limit))
        self.state = MtuState.SEARCHING
        self._set_size(max(BASE_PLPMTU, min(base, self.ceiling)), "start", now)
        self._next(now)

    def next_probe(self, *, now: float) -> int:
        """The size of the probe to send now (0: none; the raise timer may restart the search)."""
        if self.state is MtuState.SEARCH_COMPLETE or self.state is MtuState.ERROR:
            if now < self.due:
                return 0
            self.upper = self.ceiling  # the raise timer: a route may carry more now
            self.state = MtuState.SEARCHING
            self._next(now)
        if self.probe is not None or self.state is not MtuState.SEARCHING:
            return 0
        return self.probe_size

    def on_probe_sent(self, packet: SentPacket) -> None:
        """The probe ``packet`` went out; wait for its fate."""
        packet.mtu_probe = True
        self.probe = packet
        self.due = _NEVER
        self.watching = True
        self.owner.stats["pmtud_probes_sent"] += 1

    def _next(self, now: float) -> None:
        """Pick the next probe size, or complete the search."""
        low, high = self.size, self.upper
        step = (high - low + 1) // 2
        self.attempts = 0
        if step < MIN_STEP:
            self.state = MtuState.SEARCH_COMPLETE
            self.probe_size = 0
            self.due = now + PMTU_RAISE_TIMER
            return
        self.probe_size = low + step
        self.due = now

    def _probe_done(self) -> None:
        self.probe = None
        self.watching = self.lost_large > 0

    # -- outcomes ---------------------------------------------------------------------------

    def on_acked(self, packets: list[SentPacket], *, now: float) -> None:
        """ACKed ``packets`` of the path (called while :attr:`watching`)."""
        probe = self.probe
        large = False
        for packet in packets:
            if packet is probe:
                self.owner.stats["pmtud_probes_acked"] += 1
                self._probe_done()
                if packet.size > self.size:
                    self._set_size(packet.size, "probe_acked", now)
                self._next(now)
            if packet.size > BASE_PLPMTU:
                large = True
        if large:
            self.lost_large = 0
            self.small_acked = False
        elif packets and self.lost_large:
            self.small_acked = True
        self.watching = self.probe is not None or self.lost_large > 0

    def on_lost(self, packets: list[SentPacket], *, now: float) -> list[SentPacket]:
        """``packets`` of the path were declared lost: handle the probe among them, watch for a
        black hole; return the others (the probe is no loss of the path's)."""
        probe = self.probe
        others = [p for p in packets if not p.mtu_probe]  # stale probes are no loss either
        if probe is not None and len(others) < len(packets) and probe in packets:
            self.owner.stats["pmtud_probes_lost"] += 1
            self._probe_done()
            self.attempts += 1
            if self.attempts >= MAX_PROBES:
                self.upper = probe.size - 1
                self._next(now)
            else:
                self.due = now
        large = sum(1 for p in others if p.size > BASE_PLPMTU)
        if large and self.size > BASE_PLPMTU:
            self.lost_large += large
            self.watching = True
            if self.small_acked and self.lost_large >= BLACK_HOLE_LOSSES:
                self._black_hole("black_hole", now)
        return others

    def on_pto(self, pto_count: int, *, now: float) -> None:
        """The path's probe timeout fired for the ``pto_count``-th time in a row."""
        if pto_count >= BLACK_HOLE_PTOS and self.size > BASE_PLPMTU:
            self._black_hole("black_hole_pto", now)

    def on_too_big(self, size: int, *, now: float) -> None:
        """The local stack refused a datagram of ``size`` bytes (``EMSGSIZE``): the route
        carries less."""
        if not self.running:
            return
        self.upper = max(BASE_PLPMTU, min(self.upper, size - 1))
        probe = self.probe
        if probe is not None and probe.size >= size:
            self._probe_done()  # its loss, reported later, is ignored
            self.owner.stats["pmtud_probes_lost"] += 1
        if self.size >= size:
            self._black_hole("too_big", now)
        elif self.probe is None and self.state is MtuState.SEARCHING:
            self._next(now)

    def _black_hole(self, reason: str, now: float) -> None:
        """The size in use no longer passes: back to the floor, search below the failed size."""
        self.upper = max(BASE_PLPMTU, min(self.upper, self.size - 1))
        self.lost_large = 0
        self.small_acked = False
        self.probe = None  # a probe in flight was bigger still: its fate no longer matters
        self.watching = False
        self.owner.stats["pmtud_black_holes"] += 1
        self._set_size(BASE_PLPMTU, reason, now)
        self.state = MtuState.SEARCHING
        self._next(now)
        if self.state is MtuState.SEARCH_COMPLETE:
            self.state = MtuState.ERROR if self.upper <= BASE_PLPMTU else self.state

    def refresh(self) -> None:
        """The path came back from failure with a fresh congestion controller: count its window
        in the path's size; a probe it had in flight was forgotten with the rest (its fate will
        never be told): probe that size again."""
        if self.size:
            controller = self.path.recovery.controller
            controller.max_datagram_size = self.size
            controller.minimum_window = 2 * self.size
        if self.probe is not None:
            self._probe_done()
            self.due = 0.0

    def _set_size(self, size: int, reason: str, now: float) -> None:
        """Use ``size`` for the path's datagrams; tell its controller, pacer and trace."""
        old = self.size
        self.size = size
        path = self.path
        path.max_datagram_size = size
        controller = path.recovery.controller
        controller.max_datagram_size = size
        controller.minimum_window = 2 * size
        path.pacer.max_datagram_size = size
        trace = self.owner.trace
        if trace is not None and old != size:
            trace.path_mtu_updated(path.id, old, size, reason, now)

    def __repr__(self) -> str:
        return (
            f"<PathMtu {self.state.name} size={self.size} upper={self.upper} "
            f"probe={self.probe_size}>"
        )
