"""Congestion controllers behind one ABC, registered by name: newreno, cubic, lia, olia."""

from kwik_twisted.core.congestion import coupled, cubic, newreno  # noqa: F401  (registers them)
from kwik_twisted.core.congestion.base import (
    CongestionController,
    available_controllers,
    create,
    register,
    unregister,
)
from kwik_twisted.core.congestion.coupled import CoupledGroup, Lia, Olia
from kwik_twisted.core.congestion.cubic import Cubic
from kwik_twisted.core.congestion.newreno import NewReno

__all__ = [
    "CongestionController",
    "CoupledGroup",
    "Cubic",
    "Lia",
    "NewReno",
    "Olia",
    "available_controllers",
    "create",
    "register",
    "unregister",
]
