"""
NewReno congestion control, as RFC 9002 §7 and Appendix B specify it for QUIC.

Slow start grows the window by the bytes acknowledged (doubling it every
round trip); congestion avoidance adds one maximum datagram per window's
worth of acknowledged bytes, counted exactly with an accumulator (as aioquic
does) instead of the ``mds * acked / cwnd`` per-packet approximation.  A
congestion event halves the window (kLossReductionFactor = 0.5), never below
the minimum window, once per recovery period (the base class enforces that).
"""

from __future__ import annotations

from kwik_twisted.core.congestion.base import CongestionController, RttSource, register

#: kLossReductionFactor of RFC 9002 §7.3.2.
LOSS_REDUCTION_FACTOR = 0.5


@register("newreno")
class NewReno(CongestionController):
    """The NewReno controller of RFC 9002."""

    def __init__(self, **kw: int | None) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self._avoidance_acked = 0

    def increase(self, acked_bytes: int, *, now: float, rtt: RttSource) -> None:
        """Slow start up to ssthresh, then one datagram per window acknowledged."""
        if self._cwnd < self._ssthresh:
            acked_bytes = self._slow_start(acked_bytes)
            if not acked_bytes:
                return
        self._avoidance_acked += acked_bytes
        while self._avoidance_acked >= self._cwnd:
            self._avoidance_acked -= self._cwnd
            self._cwnd += self.max_datagram_size

    def on_congestion_event(self, *, now: float) -> None:
        """Halve the window (RFC 9002 §7.3.2)."""
        self._ssthresh = max(int(self._cwnd * LOSS_REDUCTION_FACTOR), self.minimum_window)
        self._cwnd = self._ssthresh
        self._avoidance_acked = 0
