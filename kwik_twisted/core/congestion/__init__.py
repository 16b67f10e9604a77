"""
Congestion controllers behind one ABC, registered by name: newreno, cubic, lia, olia.

:func:`create` makes one by name; :func:`is_coupled` tells whether a name's controllers share a
:class:`CoupledGroup` across a connection's paths (LIA and OLIA do).
"""

from kwik_twisted.core.congestion import coupled, cubic, newreno  # noqa: F401  (registers them)
from kwik_twisted.core.congestion.base import (
    CongestionController,
    available_controllers,
    create,
    is_coupled,
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
    "is_coupled",
    "register",
    "unregister",
]
