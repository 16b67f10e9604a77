"""
The path half of a connection's application API: metrics, opening, backup status, cost,
abandonment.

Theory of operation.  :class:`PathControls` is the part of
:class:`~kwik_twisted.glue.connection.KwikConnection` that manages paths for an application (its
:class:`~kwik_twisted.interfaces.IKwikConnection` path methods), kept apart so the connection glue
stays a readable size.  It keeps no state: every call checks its arguments, changes the core
connection (``self.core``; opening a path goes through the port protocol, ``self.owner``, which
binds the path's socket) and schedules a service turn (``self.scheduleTurn``) so that what it
queued goes out.  Mistakes (no such path, the last path, a bad cost) are
:class:`~kwik_twisted.errors.ConfigurationError`.
"""

from __future__ import annotations

from ..errors import ConfigurationError


class PathControls:
    """
    The path methods of :class:`~kwik_twisted.glue.connection.KwikConnection` (a mixin: it uses
    the connection's ``core``, ``owner``, ``dead`` and ``scheduleTurn``).
    """

    __slots__ = ()

    def pathMetrics(self) -> dict:
        """
        A snapshot of every live path's metrics, by path ID (the core's ``path_metrics()``).

        :returns: ``{path_id: PathMetrics}`` (smoothed RTT, bandwidth, loss rate, congestion
            window and bytes in flight, the path's ``state`` -- validating, active, backup,
            failed --, packets and bytes sent, received, lost and retransmitted, datagram size
            and last activity; see :mod:`kwik_twisted.core.paths.metrics`).
        """
        return self.core.path_metrics()

    def openPath(self, localHost: str, remote: tuple | None = None) -> int:
        """
        Open another path (client only): bind a UDP socket to ``localHost`` and open a path from
        it to ``remote`` (default: the server's address).  Returns the path ID; the path carries
        data once validated (``PathValidated``).

        :raises ConfigurationError: on a server, on a closed connection, or when ``max_paths``
            paths exist already.
        :raises CannotListenError: ``localHost`` cannot be bound.
        """
        if self.dead or self.core.is_closed:
            raise ConfigurationError("the Kwik connection is closed")
        path_id = self.owner.openPath(localHost, remote)
        self.scheduleTurn()
        return path_id

    def setPathBackup(self, pathId: int, backup: bool = True) -> None:
        """
        Make a path a backup (used only while no other path works), or a primary again.

        :raises ConfigurationError: no such path.
        """
        _checkPath(self.core, pathId)
        self.core.set_path_backup(pathId, backup)
        self.scheduleTurn()

    def setPathCost(self, pathId: int, cost: float) -> None:
        """
        Set what sending on a path costs (0 by default; a metered link is dearer): a path with a
        cost carries data only when cheaper paths cannot meet the demand or the streams' QoS.
        Local only: the peer is not told.

        :raises ConfigurationError: no such path, or ``cost`` is not a finite number >= 0.
        """
        try:
            self.core.path_manager.set_cost(pathId, cost)
        except ConfigurationError:  # a bad cost
            raise
        except ValueError as e:  # no such path
            raise ConfigurationError(str(e)) from None
        self.scheduleTurn()

    def abandonPath(self, pathId: int) -> None:
        """
        Stop using a path for good (PATH_ABANDON); its data moves to the other paths.

        :raises ConfigurationError: no such path, or it is the last one (close the connection
            instead).
        """
        _checkPath(self.core, pathId)
        try:
            self.core.abandon_path(pathId)
        except ValueError as e:  # the last path
            raise ConfigurationError(str(e)) from None
        self.scheduleTurn()


def _checkPath(core, pathId: int) -> None:
    """:raises ConfigurationError: ``core`` has no path ``pathId``."""
    if pathId not in core.paths:
        raise ConfigurationError(f"no path {pathId} (paths: {sorted(core.paths)})")


__all__ = ["PathControls"]
