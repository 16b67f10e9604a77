"""
A client endpoint's TLS session tickets, for resuming its next connection to the same server.

Theory of operation (protocol.rst, "Resumption").  A TLS 1.3 server sends session tickets after
the handshake; the client's :class:`~kwik_twisted.glue.client.KwikClientProtocol` files the latest
one here under ``(server name, port)``, and the endpoint's next connection to that server takes it
and offers it (a resumed handshake: no certificate sent, none verified, no signature).  Tickets
are single-use (RFC 8446 appendix C.4: reusing one lets an observer link the connections; the
server's stateless tickets would allow it): :meth:`TicketStore.take` removes the ticket it returns.
The store is bounded (:data:`MAX_TICKETS` servers, least recently filed evicted first) and a ticket
expires :data:`~kwik_twisted.core.crypto.handshake.TICKET_LIFETIME` seconds after it was filed
(the server's own lifetime; never more than the 24 hours RFC 8446 section 4.6.1 allows).  A
server that rejects a ticket (restarted: its ticket key is gone) costs a full handshake, never a
failure.  Time comes as ``now`` (the reactor's clock), so tests drive it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ..core.crypto.handshake import TICKET_LIFETIME

#: Servers whose tickets an endpoint keeps at most.
MAX_TICKETS = 16
#: The longest a ticket may be kept, whatever the configured lifetime (RFC 8446 section 4.6.1).
MAX_LIFETIME = 24 * 3600.0

TicketKey = tuple[str | None, int]


class TicketStore:
    """
    Session tickets by ``(server name, port)``: one per server, single-use, bounded, expiring.

    :param capacity: servers kept at most (the least recently filed is evicted).
    :param lifetime: seconds a ticket stays usable after :meth:`put` (capped at 24 hours).
    """

    __slots__ = ("_tickets", "capacity", "lifetime")

    def __init__(self, capacity: int = MAX_TICKETS, lifetime: float = TICKET_LIFETIME) -> None:
        if capacity < 1 or lifetime <= 0:
            raise ValueError("a ticket store needs a capacity >= 1 and a positive lifetime")
        self.capacity = capacity
        self.lifetime = min(float(lifetime), MAX_LIFETIME)
        self._tickets: OrderedDict[TicketKey, tuple[Any, float]] = OrderedDict()

    def put(self, key: TicketKey, session: Any, now: float) -> None:
        """File ``session`` (an ``SSL.Session``) for ``key``, replacing the one there."""
        self._tickets.pop(key, None)
        self._tickets[key] = (session, now + self.lifetime)
        while len(self._tickets) > self.capacity:
            self._tickets.popitem(last=False)

    def take(self, key: TicketKey, now: float) -> Any | None:
        """Remove and return ``key``'s ticket, or ``None`` (none filed, or it expired)."""
        entry = self._tickets.pop(key, None)
        if entry is None or now >= entry[1]:
            return None
        return entry[0]

    def __len__(self) -> int:
        return len(self._tickets)

    def __contains__(self, key: object) -> bool:
        return key in self._tickets


__all__ = ["MAX_LIFETIME", "MAX_TICKETS", "TicketKey", "TicketStore"]
