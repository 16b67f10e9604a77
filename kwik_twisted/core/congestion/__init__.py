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


def controller_factory(name: str, max_datagram_size: int):
    """
    A function making the congestion controller of each new or recovered path of one
    connection; coupled ones (LIA, OLIA) share one :class:`CoupledGroup` per connection.
    """
    extra = {"group": CoupledGroup()} if is_coupled(name) else {}

    def new_controller():
        return create(name, max_datagram_size=max_datagram_size, **extra)

    return new_controller


__all__ = [
    "CongestionController",
    "CoupledGroup",
    "Cubic",
    "Lia",
    "NewReno",
    "Olia",
    "available_controllers",
    "controller_factory",
    "create",
    "is_coupled",
    "register",
    "unregister",
]
