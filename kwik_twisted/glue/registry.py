"""
The live Kwik connections of this process, for ``/metrics`` and ``/status``
(:mod:`kwik_twisted.glue.metrics`).

Every :class:`~kwik_twisted.glue.connection.KwikConnection` adds itself to :data:`LIVE` when it is
made and removes itself when its core state is gone, so whatever reads the registry (a scrape)
sees exactly the connections alive now: per-connection series vanish with their connection, and
the number of series stays bounded by the number of live connections.  Beside the set, the
registry keeps the process's two totals that outlive connections: connections accepted (server
side) and handshakes failed, by reason.
"""

from __future__ import annotations

from collections import Counter


class ConnectionRegistry:
    """
    A set of live connections plus two process totals.

    :ivar accepted: connections a server port accepted so far.
    :ivar opened: connections a client opened so far.
    :ivar handshakesFailed: handshakes that failed, by reason label (see
        :func:`kwik_twisted.glue.connection.failure_label`).
    """

    def __init__(self) -> None:
        self._live: dict[object, None] = {}  # insertion-ordered set
        self.accepted = 0
        self.opened = 0
        self.handshakesFailed: Counter[str] = Counter()

    def add(self, conn, *, server: bool) -> None:
        """A connection was made (``server``: accepted by a server port)."""
        self._live[conn] = None
        if server:
            self.accepted += 1
        else:
            self.opened += 1

    def discard(self, conn) -> None:
        """A connection is gone."""
        self._live.pop(conn, None)

    def handshakeFailed(self, reason: str) -> None:
        """Count a failed handshake under ``reason`` (a short, bounded label)."""
        self.handshakesFailed[reason] += 1

    def connections(self) -> list:
        """The live connections, oldest first."""
        return list(self._live)

    def __len__(self) -> int:
        return len(self._live)


#: The process's registry: every KwikConnection registers here.
LIVE = ConnectionRegistry()

__all__ = ["LIVE", "ConnectionRegistry"]
