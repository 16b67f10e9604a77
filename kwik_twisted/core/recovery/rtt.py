"""
Round-trip time estimation for one path (RFC 9002 §5).

Every ACK that newly acknowledges the path's largest acknowledged packet, when
at least one newly acknowledged packet was ack-eliciting, gives one RTT
sample: the time since that packet was sent.  :class:`RttEstimator` keeps:

* ``latest_rtt``: the last raw sample;
* ``min_rtt``: the smallest raw sample seen (§5.2), never adjusted for ACK
  delay;
* ``smoothed_rtt`` and ``rttvar``: the exponentially weighted mean and mean
  deviation of samples corrected for the peer's reported ACK delay (§5.3).
  The first sample sets them directly (srtt = sample, rttvar = sample / 2);
  until then they derive from ``initial_rtt`` (§6.2.2).  The ACK delay is
  capped by the peer's ``max_ack_delay`` once the handshake is confirmed, and
  is only subtracted when that leaves the sample no lower than ``min_rtt``.

Two extra figures feed path metrics: ``jitter``, the smoothed mean deviation
of successive raw samples (RFC 3550 §6.4.1 style, gain 1/16), and
``samples``, how many samples were taken.
"""

from __future__ import annotations

#: Timer granularity, kGranularity in RFC 9002 §6.1.2 (seconds).
GRANULARITY = 0.001
#: Default initial RTT, kInitialRtt in RFC 9002 §6.2.2 (seconds).
INITIAL_RTT = 0.333


class RttEstimator:
    """
    The RTT estimate of one path.

    :ivar initial_rtt: the RTT assumed before any sample.
    :ivar latest_rtt: the last raw sample (0.0 before the first).
    :ivar min_rtt: the minimum raw sample (``initial_rtt`` before the first).
    :ivar smoothed_rtt: the smoothed RTT, ``srtt``.
    :ivar rttvar: the RTT variation.
    :ivar jitter: the smoothed mean deviation of successive raw samples.
    :ivar samples: how many samples were taken.
    :ivar adjusted_rtt: the latest sample less the ACK delay the peer reported (when that stays
        at or above ``min_rtt``, as for ``smoothed_rtt``): what the path itself took.
    """

    __slots__ = (
        "initial_rtt",
        "latest_rtt",
        "min_rtt",
        "smoothed_rtt",
        "rttvar",
        "jitter",
        "samples",
        "adjusted_rtt",
    )

    def __init__(self, initial_rtt: float = INITIAL_RTT) -> None:
        self.initial_rtt = initial_rtt
        self.reset()

    def reset(self) -> None:
        """Forget every sample (RFC 9002 §5.3, for example after a path change)."""
        self.latest_rtt = self.adjusted_rtt = 0.0
        self.min_rtt = self.initial_rtt
        self.smoothed_rtt = self.initial_rtt
        self.rttvar = self.initial_rtt / 2
        self.jitter = 0.0
        self.samples = 0

    @property
    def has_sample(self) -> bool:
        """Whether at least one RTT sample was taken."""
        return self.samples > 0

    def update(
        self,
        latest_rtt: float,
        ack_delay: float = 0.0,
        *,
        max_ack_delay: float = 0.0,
        handshake_confirmed: bool = True,
    ) -> None:
        """
        Take one RTT sample (RFC 9002 §5.1-§5.3).

        :param latest_rtt: the time since the largest newly acknowledged
            packet was sent.
        :param ack_delay: the ACK delay the peer reported, in seconds.
        :param max_ack_delay: the peer's max_ack_delay transport parameter.
        :param handshake_confirmed: whether to cap ``ack_delay`` by
            ``max_ack_delay`` (only once the handshake is confirmed).
        """
        if latest_rtt < 0.0:
            latest_rtt = 0.0
        if self.samples == 0:
            self.latest_rtt = self.min_rtt = self.smoothed_rtt = self.adjusted_rtt = latest_rtt
            self.rttvar = latest_rtt / 2
            self.samples = 1
            return
        previous = self.latest_rtt
        self.latest_rtt = latest_rtt
        self.samples += 1
        self.jitter += (abs(latest_rtt - previous) - self.jitter) / 16
        if latest_rtt < self.min_rtt:
            self.min_rtt = latest_rtt
        if handshake_confirmed and ack_delay > max_ack_delay:
            ack_delay = max_ack_delay
        adjusted = latest_rtt
        if ack_delay > 0.0 and latest_rtt >= self.min_rtt + ack_delay:
            adjusted = latest_rtt - ack_delay
        self.adjusted_rtt = adjusted
        self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.smoothed_rtt - adjusted)
        self.smoothed_rtt = 0.875 * self.smoothed_rtt + 0.125 * adjusted

    def pto_interval(self, max_ack_delay: float = 0.0) -> float:
        """The probe timeout before backoff: srtt + max(4*rttvar, kGranularity) + max_ack_delay."""
        return self.smoothed_rtt + max(4 * self.rttvar, GRANULARITY) + max_ack_delay

    def loss_delay(self) -> float:
        """The time threshold of loss detection: 9/8 * max(srtt, latest_rtt), at least 1 ms."""
        delay = 1.125 * max(self.smoothed_rtt, self.latest_rtt)
        return delay if delay > GRANULARITY else GRANULARITY

    def __repr__(self) -> str:
        return (
            f"<RttEstimator srtt={self.smoothed_rtt:.6f} rttvar={self.rttvar:.6f} "
            f"min={self.min_rtt:.6f} latest={self.latest_rtt:.6f} samples={self.samples}>"
        )
