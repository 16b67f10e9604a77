"""Small drivers shared by the congestion-controller tests."""

from __future__ import annotations

from kwik_twisted.core.congestion.base import CongestionController
from kwik_twisted.core.recovery.loss import SentPacket
from kwik_twisted.core.recovery.rtt import RttEstimator

MDS = 1350


def steady_rtt(value: float) -> RttEstimator:
    """An RTT estimator with one sample of ``value``."""
    rtt = RttEstimator()
    rtt.update(value)
    return rtt


def packets(count: int, sent_time: float, size: int = MDS) -> list[SentPacket]:
    """``count`` packets of ``size`` bytes sent at ``sent_time``."""
    return [SentPacket(i, sent_time, size) for i in range(count)]


def round_trip(controller: CongestionController, now: float, rtt: RttEstimator) -> float:
    """
    Send a full window of datagrams at ``now`` and acknowledge them one RTT
    later, one ACK per datagram; return the time of the last ACK.
    """
    count = max(1, controller.cwnd // MDS)
    for i in range(count):
        controller.on_packet_sent(MDS, now=now, bytes_in_flight=(i + 1) * MDS)
    ack_time = now + rtt.smoothed_rtt
    for packet in packets(count, now):
        controller.on_packets_acked([packet], now=ack_time, rtt=rtt)
    return ack_time
