"""
The client's side of the server's stateless answers: Retry, Version Negotiation, stateless reset.

Theory of operation (protocol.rst, "Retry", "Version negotiation", "Stateless reset").  A server
that keeps no state for a datagram may still answer it; the client must act on the answer
without trusting more than it proves:

* **Retry** is accepted once, only before anything else from the server authenticated, only
  addressed to our CID and with a valid integrity tag (which proves it saw our first Initial).
  The client then addresses the Retry's source CID, which from then on takes the original
  destination CID's place everywhere (it seeds the initial keys and is bound into the
  application keys, on both sides: the server's connection is created from the Initial sent to
  it), carries the token in every later Initial, and sends its first flight again.
* **Version Negotiation** listing our version is ignored (RFC 8999: a forgery or a confused
  middlebox); one that does not, arriving before anything from the server authenticated, ends
  the connection at once.
* A **stateless reset** (recognised by the connection's CIDs, see :mod:`.cids`) ends the
  connection at once, drained: the peer has no state to answer a CONNECTION_CLOSE.

:func:`end_statelessly` also ends a connection whose send keys are used up (a peer that never
answers a key update): it may not seal even a CONNECTION_CLOSE with them.
"""

from __future__ import annotations

from ..errors import DroppedPacket, ErrorCode
from ..events import ConnectionTerminated
from ..wire import VERSION
from .crypto.tokens import decode_retry, decode_version_negotiation, is_version_negotiation

#: Why a connection whose peer never answered a key update ends (RFC 9001, section 6.6).
KEYS_USED_UP = "the peer never answered a key update: the keys reached their confidentiality limit"


def end_statelessly(conn, code: int, reason: str, now: float, by_peer: bool = True) -> None:
    """End ``conn`` at once, nothing sent, reporting ``code`` as the peer's close (``by_peer``)
    or as our own (keys used up: we may not seal even a CONNECTION_CLOSE with them)."""
    lifecycle = conn.lifecycle
    if lifecycle.is_ending:
        return
    if by_peer:
        lifecycle.peer_closed(deadline=now)
    else:
        lifecycle.idle_timeout()  # the table's "closed at once, nothing sent"
    conn._events.append(ConnectionTerminated(code, reason, by_peer, None, False))


def on_long_answer(conn, data: bytes, now: float) -> None:
    """
    A client received a long-envelope datagram that is not an Initial: a Retry or a Version
    Negotiation (anything else is dropped).

    :raises DroppedPacket: it is not one we act on.
    """
    if not conn.is_client or conn._peer_cid_learned:
        raise DroppedPacket("a stateless answer after the server's first packet")
    if is_version_negotiation(data):
        dcid, scid, versions = decode_version_negotiation(data)
        if dcid != conn.local_cid or scid != conn.original_dcid:
            raise DroppedPacket("a Version Negotiation that does not echo our CIDs")
        if VERSION in versions:
            raise DroppedPacket("a Version Negotiation listing our version")
        listed = ", ".join(f"0x{v:08x}" for v in versions)
        end_statelessly(
            conn, ErrorCode.VERSION_NEGOTIATION, f"the server speaks only {listed}", now
        )
        return
    ctx = conn._out
    if ctx.retry_token:
        raise DroppedPacket("a second Retry")
    scid, token = decode_retry(data, conn.original_dcid, conn.local_cid)
    ctx.peer_cid = scid
    ctx.retry_token = token
    conn.original_dcid = conn.handshake.original_dcid = scid
    conn.keys.restart_initial(scid)
    conn.stats["retry_received"] += 1
    conn.records.requeue(conn.paths[0].recovery.abandon())  # the first flight, again
