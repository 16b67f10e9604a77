"""Per-path loss recovery: RTT estimation, loss detection and probe timeouts, pacing."""

from kwik_twisted.core.recovery.loss import AckResult, LossRecovery, SentPacket, TimeoutResult
from kwik_twisted.core.recovery.pacing import Pacer
from kwik_twisted.core.recovery.rtt import GRANULARITY, INITIAL_RTT, RttEstimator

__all__ = [
    "GRANULARITY",
    "INITIAL_RTT",
    "AckResult",
    "LossRecovery",
    "Pacer",
    "RttEstimator",
    "SentPacket",
    "TimeoutResult",
]
