"""
Packet pacing for one path (RFC 9002 §7.7).

A token bucket in bytes, refilled at ``N * cwnd / srtt`` with N = 1.25 so
that pacing never holds the path below its window, and holding at most a
burst of ``burst_packets`` datagrams (never more than the window), which is
also what it starts with.  :meth:`Pacer.next_send_time` says when the next
datagram may leave (``None``: now); a send takes its size from the bucket,
which may go into debt by one datagram so the following send waits for it.
Call :meth:`Pacer.update` when the window or the smoothed RTT change.
"""

from __future__ import annotations

#: The pacing gain N of RFC 9002 §7.7.
PACING_GAIN = 1.25
#: The burst allowance, in datagrams.
BURST_PACKETS = 10
#: Bytes of rounding error forgiven, so a timer set by next_send_time lets the packet go.
_EPSILON = 1e-6
#: A datagram may leave this many seconds early.  Event loops sleep in whole milliseconds
#: (``epoll_wait``), so a shorter wait costs a full millisecond of idle time: at loopback rates
#: the sender slept after every burst.  Sending early adds at most ``rate * granularity`` bytes
#: to a burst (about one datagram at 10 Mbit/s), as pacing implementations with coarse timers do.
PACING_GRANULARITY = 0.001


class Pacer:
    """
    The pacing token bucket of one path.

    :ivar rate: the pacing rate in bytes per second (``inf`` when unpaced).
    :ivar capacity: the bucket size in bytes.
    :ivar tokens: the bytes that may leave now.
    """

    __slots__ = (
        "max_datagram_size",
        "burst_packets",
        "gain",
        "rate",
        "capacity",
        "tokens",
        "_last",
    )

    def __init__(
        self,
        *,
        cwnd: int,
        srtt: float,
        max_datagram_size: int = 1350,
        burst_packets: int = BURST_PACKETS,
        gain: float = PACING_GAIN,
    ) -> None:
        self.max_datagram_size = max_datagram_size
        self.burst_packets = burst_packets
        self.gain = gain
        self.rate = float("inf")
        self.capacity = 0.0
        self.tokens = 0.0
        self.update(cwnd=cwnd, srtt=srtt)
        self.tokens = self.capacity
        self._last: float | None = None

    def update(self, *, cwnd: int, srtt: float) -> None:
        """Recompute the rate and burst size from the window and the smoothed RTT."""
        mds = self.max_datagram_size
        self.rate = self.gain * cwnd / srtt if srtt > 0.0 else float("inf")
        capacity = float(min(self.burst_packets * mds, cwnd))
        self.capacity = capacity if capacity > mds else float(mds)
        if self.tokens > self.capacity:
            self.tokens = self.capacity

    def _refill(self, now: float) -> None:
        last = self._last
        if last is not None and now > last:
            tokens = self.tokens + (now - last) * self.rate
            self.tokens = tokens if tokens < self.capacity else self.capacity
        if last is None or now > last:
            self._last = now

    def next_send_time(self, *, now: float) -> float | None:
        """When the next full-size datagram may leave; ``None`` means now."""
        self._refill(now)
        missing = self.max_datagram_size - self.tokens
        if missing <= _EPSILON or self.rate == float("inf"):
            return None
        wait = missing / self.rate
        # Waits below the timer granularity are not worth a timer (they also include waits below
        # the clock's resolution, a deadline that would never let the packet go).
        return None if wait < PACING_GRANULARITY else now + wait

    def on_packet_sent(self, size: int, *, now: float) -> float | None:
        """Take ``size`` bytes from the bucket; return when the next datagram may leave."""
        self.consume(size, now)
        return self.next_send_time(now=now)

    def consume(self, size: int, now: float) -> None:
        """:meth:`on_packet_sent` for a sender that asks :meth:`next_send_time` itself later."""
        self._refill(now)
        self.tokens -= size
