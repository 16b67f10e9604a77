"""
CUBIC congestion control (RFC 9438).

Slow start is Reno's.  In congestion avoidance the window follows the cubic
function of the time ``t`` since the congestion avoidance stage began (the
last congestion event, or the end of slow start)::

    W_cubic(t) = C * (t - K)**3 + W_max        (segments; C = 0.4)
    K = cbrt((W_max - cwnd_epoch) / C)

where ``W_max`` is the window just before the last reduction, lowered by
fast convergence (§4.7) when it shrank since the event before, and
``cwnd_epoch`` the window when the stage began.  Each ACK moves the window a
fraction of the way to ``target = clamp(W_cubic(t + srtt), cwnd, 1.5 cwnd)``
(§4.4, §4.5).  Alongside, ``W_est`` models what Reno would have reached,
growing by ``alpha = 3 (1 - beta) / (1 + beta)`` segments per window acked
(1 once above ``W_max``); while ``W_cubic(t) < W_est`` the window is
``W_est`` (the Reno-friendly region, §4.3).  A congestion event multiplies
the window by ``beta = 0.7`` (§4.6).  After persistent congestion the cubic
state is forgotten (§4.8).

Not done: HyStart++ (RFC 9406) and the spurious-loss rollback of §4.9.
"""

from __future__ import annotations

from kwik_twisted.core.congestion.base import CongestionController, RttSource, register

#: The cubic scaling constant C, in segments per second cubed.
CUBIC_C = 0.4
#: The multiplicative decrease factor beta_cubic.
CUBIC_BETA = 0.7
_ALPHA = 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA)


@register("cubic")
class Cubic(CongestionController):
    """
    The CUBIC controller of RFC 9438.

    :ivar fast_convergence: whether to lower ``W_max`` when the window shrank
        between two congestion events (§4.7).
    """

    def __init__(self, *, fast_convergence: bool = True, **kw: int | None) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.fast_convergence = fast_convergence
        self._w_max = 0.0
        self._k = 0.0
        self._epoch_start: float | None = None
        self._w_est = 0.0

    @property
    def w_max(self) -> float:
        """The window before the last reduction, in bytes (0 before any)."""
        return self._w_max

    @property
    def k(self) -> float:
        """The time, in seconds from the epoch start, at which W_cubic returns to W_max."""
        return self._k

    @property
    def epoch_start(self) -> float | None:
        """When the current congestion avoidance stage began, or ``None``."""
        return self._epoch_start

    def w_cubic(self, t: float) -> float:
        """W_cubic(t) in bytes, ``t`` seconds after the epoch start."""
        return CUBIC_C * (t - self._k) ** 3 * self.max_datagram_size + self._w_max

    def increase(self, acked_bytes: int, *, now: float, rtt: RttSource) -> None:
        """Slow start, then the cubic or Reno-friendly growth of §4.2-§4.5."""
        if self._cwnd < self._ssthresh:
            acked_bytes = self._slow_start(acked_bytes)
            if not acked_bytes:
                return
        if self._epoch_start is None:
            self._start_epoch(now)
        cwnd = self._cwnd
        mds = self.max_datagram_size
        alpha = _ALPHA if self._w_est < self._w_max else 1.0
        self._w_est += alpha * acked_bytes * mds / cwnd
        t = now - self._epoch_start  # type: ignore[operator]
        if self.w_cubic(t) < self._w_est:
            if self._w_est > cwnd:
                self._cwnd = self._w_est
            return
        target = self.w_cubic(t + rtt.smoothed_rtt)
        if target > 1.5 * cwnd:
            target = 1.5 * cwnd
        if target > cwnd:
            self._cwnd = cwnd + (target - cwnd) * acked_bytes / cwnd

    def _start_epoch(self, now: float) -> None:
        """Begin a congestion avoidance stage without a preceding reduction."""
        self._epoch_start = now
        if self._w_max < self._cwnd:
            self._w_max = self._cwnd
        self._set_k()
        self._w_est = self._cwnd

    def _set_k(self) -> None:
        excess = (self._w_max - self._cwnd) / self.max_datagram_size
        self._k = (excess / CUBIC_C) ** (1 / 3) if excess > 0 else 0.0

    def on_congestion_event(self, *, now: float) -> None:
        """Multiply the window by beta, with fast convergence (§4.6, §4.7)."""
        cwnd = self._cwnd
        if self.fast_convergence and cwnd < self._w_max:
            self._w_max = cwnd * (1 + CUBIC_BETA) / 2
        else:
            self._w_max = cwnd
        self._ssthresh = max(int(cwnd * CUBIC_BETA + 0.5), self.minimum_window)
        self._cwnd = self._ssthresh
        self._epoch_start = now
        self._set_k()
        self._w_est = self._cwnd

    def on_persistent_congestion(self, *, now: float) -> None:
        """Collapse to the minimum window and forget the cubic state (§4.8)."""
        self._ssthresh = max(int(self._cwnd * CUBIC_BETA + 0.5), self.minimum_window)
        super().on_persistent_congestion(now=now)
        self._epoch_start = None
        self._w_max = 0.0
        self._k = 0.0
        self._w_est = 0.0
