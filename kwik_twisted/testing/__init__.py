"""
Public testing tools: a deterministic network simulator that runs sans-I/O Kwik
connections over impaired one-way links in simulated time (no sockets, no clock).
"""

from kwik_twisted.testing.links import Link, LinkConfig, LinkStats
from kwik_twisted.testing.simulator import EPSILON, Network, StopReason

__all__ = ["EPSILON", "Link", "LinkConfig", "LinkStats", "Network", "StopReason"]
