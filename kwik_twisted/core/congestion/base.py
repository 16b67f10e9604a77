"""
The congestion-controller interface and the registry of controllers by name.

A :class:`CongestionController` belongs to one path and only keeps the
congestion window; the path's :class:`~kwik_twisted.core.recovery.loss.LossRecovery`
owns ``bytes_in_flight`` and calls the controller as packets are sent, acked
and lost.  The base class implements what every window-based controller of
RFC 9002 §7 shares, leaving two hooks to subclasses:

* :meth:`CongestionController.increase` grows the window for bytes acked
  outside a recovery period, unless the sender is application-limited
  (§7.8);
* :meth:`CongestionController.on_congestion_event` shrinks it, at most once
  per recovery period: a loss of a packet sent before the period started does
  not reduce again (§7.3.2).

Windows follow §7.2: initial ``min(10 * mds, max(14720, 2 * mds))``, minimum
``2 * mds``; persistent congestion (§7.6.2) collapses the window to the
minimum.  Application-limited detection follows Linux's
``tcp_is_cwnd_limited``: after :meth:`~CongestionController.on_app_limited`,
the window stops growing until a send fills it again (half of it during slow
start, all but three datagrams in congestion avoidance).

Slow start (§7.3.1) is the same for every controller here: :meth:`_slow_start`
grows the window by the bytes acknowledged up to ssthresh and hands the rest
to the controller's congestion avoidance.

A delay-aware cap (:attr:`CongestionController.cap`, set by the QoS enforcer on a path that
carries latency-bound data, docs/qos.rst) bounds the window the sender sees without changing the
controller's own state: ``cwnd`` is ``min(window, cap)``, and the window stops growing while it is
already twice the cap (so lifting the cap does not release a burst the path never carried).

Controllers register under a name with :func:`register`; :func:`create` makes
one by name (the endpoint string's ``congestion=`` option), and
:func:`is_coupled` says whether the named controller couples the paths of a
connection (its class sets ``coupled = True``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar, Protocol

from kwik_twisted.core.registry import Registry
from kwik_twisted.errors import ConfigurationError

#: The default maximum datagram size, in bytes.
MAX_DATAGRAM_SIZE = 1350
_NEVER = float("-inf")


class AckedPacket(Protocol):
    """What a controller reads from a sent packet."""

    size: int
    sent_time: float


class RttSource(Protocol):
    """What a controller reads from a path's RTT estimator."""

    smoothed_rtt: float
    min_rtt: float
    latest_rtt: float


def default_initial_window(max_datagram_size: int) -> int:
    """The initial congestion window of RFC 9002 §7.2."""
    return min(10 * max_datagram_size, max(14720, 2 * max_datagram_size))


class CongestionController(ABC):
    """
    A window-based congestion controller for one path.

    :cvar name: the registry name, set by :func:`register`.
    :cvar coupled: whether the controllers of one connection's paths share a group (LIA,
        OLIA): the connection then passes one ``group=`` to every path's controller.
    :ivar max_datagram_size: the datagram size windows are counted in.
    :ivar minimum_window: the smallest window, ``2 * max_datagram_size``.
    :ivar app_limited: whether the sender currently leaves the window unused.
    :ivar cap: the QoS enforcer's delay-aware bound on the window in bytes, or ``None``.
    """

    name: ClassVar[str] = ""
    coupled: ClassVar[bool] = False

    def __init__(
        self,
        *,
        max_datagram_size: int = MAX_DATAGRAM_SIZE,
        initial_window: int | None = None,
    ) -> None:
        if max_datagram_size <= 0:
            raise ConfigurationError(f"max_datagram_size must be positive: {max_datagram_size!r}")
        self.max_datagram_size = max_datagram_size
        self.minimum_window = 2 * max_datagram_size
        if initial_window is None:
            initial_window = default_initial_window(max_datagram_size)
        self._cwnd = max(initial_window, self.minimum_window)
        self._ssthresh = float("inf")
        self._recovery_start = _NEVER
        self.app_limited = False
        self.cap: int | None = None

    # -- state -------------------------------------------------------------

    @property
    def cwnd(self) -> int:
        """The congestion window in bytes (held at :attr:`cap` when one is set)."""
        cap = self.cap
        return int(self._cwnd) if cap is None or cap >= self._cwnd else cap

    @property
    def ssthresh(self) -> float:
        """The slow-start threshold, in bytes (infinite until the first loss)."""
        return self._ssthresh

    @property
    def in_slow_start(self) -> bool:
        """Whether the window is below the slow-start threshold."""
        return self._cwnd < self._ssthresh

    def can_send(self, bytes_in_flight: int) -> bool:
        """Whether the window allows another packet with ``bytes_in_flight`` outstanding."""
        return bytes_in_flight < self.cwnd

    def available(self, bytes_in_flight: int) -> int:
        """How many more bytes the window allows."""
        room = self.cwnd - bytes_in_flight
        return room if room > 0 else 0

    # -- events --------------------------------------------------------------

    def on_packet_sent(self, size: int, *, now: float, bytes_in_flight: int | None = None) -> None:
        """
        A packet of ``size`` bytes counted in flight was sent.

        :param bytes_in_flight: the bytes in flight including this packet; when
            it shows the window is being used, the app-limited mark is cleared.
        """
        if self.app_limited and bytes_in_flight is not None:
            cwnd = self.cwnd
            if self._cwnd < self._ssthresh:
                limited = 2 * bytes_in_flight >= cwnd
            else:
                limited = bytes_in_flight + 3 * self.max_datagram_size >= cwnd
            if limited:
                self.app_limited = False

    def on_app_limited(self, *, now: float) -> None:
        """The sender ran out of data with room left in the window: stop growing it."""
        self.app_limited = True

    def on_packets_acked(
        self, packets: Iterable[AckedPacket], *, now: float, rtt: RttSource
    ) -> None:
        """Packets counted in flight were acknowledged (RFC 9002 §7.3)."""
        recovery_start = self._recovery_start
        acked = 0
        for packet in packets:
            if packet.sent_time > recovery_start:
                acked += packet.size
        if acked and not self.app_limited:
            cap = self.cap
            if cap is None or self._cwnd < 2 * cap:
                self.increase(acked, now=now, rtt=rtt)

    def on_packets_lost(self, packets: Iterable[AckedPacket], *, now: float) -> None:
        """Packets counted in flight were declared lost: one congestion event at most."""
        latest = _NEVER
        for packet in packets:
            if packet.sent_time > latest:
                latest = packet.sent_time
        if latest > self._recovery_start:
            self._recovery_start = now
            self.on_congestion_event(now=now)

    def on_persistent_congestion(self, *, now: float) -> None:
        """Persistent congestion (RFC 9002 §7.6.2): collapse to the minimum window."""
        self._cwnd = self.minimum_window
        self._recovery_start = _NEVER

    def _slow_start(self, acked_bytes: int) -> int:
        """
        Slow start (RFC 9002 §7.3.1): grow the window by ``acked_bytes``, up to ssthresh.

        :returns: the acknowledged bytes left over for congestion avoidance (0 while the
            window stays below ssthresh, so the caller has nothing more to do).
        """
        room = self._ssthresh - self._cwnd
        if acked_bytes <= room:
            self._cwnd += acked_bytes
            return 0
        self._cwnd = int(self._ssthresh)
        return acked_bytes - int(room)

    # -- hooks -----------------------------------------------------------------

    @abstractmethod
    def increase(self, acked_bytes: int, *, now: float, rtt: RttSource) -> None:
        """Grow the window for ``acked_bytes`` acknowledged outside recovery."""

    @abstractmethod
    def on_congestion_event(self, *, now: float) -> None:
        """Reduce the window: a new recovery period starts at ``now``."""

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} cwnd={self.cwnd} ssthresh={self._ssthresh} "
            f"slow_start={self.in_slow_start}>"
        )


# ---------------------------------------------------------------------------
# The registry.

_REGISTRY: Registry = Registry("congestion controller")
register = _REGISTRY.register
unregister = _REGISTRY.unregister
available_controllers = _REGISTRY.names


def is_coupled(name: str) -> bool:
    """
    Whether the controller registered as ``name`` couples a connection's paths (LIA, OLIA).

    :raises ConfigurationError: if no controller has that name.
    """
    return _REGISTRY.get(name).coupled


def create(
    name: str, *, max_datagram_size: int = MAX_DATAGRAM_SIZE, **kw: Any
) -> CongestionController:
    """
    Make the controller registered as ``name``.

    :raises ConfigurationError: if no controller has that name, or the options
        do not suit it.
    """
    cls = _REGISTRY.get(name)
    try:
        return cls(max_datagram_size=max_datagram_size, **kw)
    except TypeError as e:
        raise ConfigurationError(f"bad options for congestion controller {name!r}: {e}") from e
