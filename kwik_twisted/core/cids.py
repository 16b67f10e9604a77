"""
Connection IDs per path: the ones we issue (and route by), and the ones the peer issued to us.

Theory of operation.  Every path has its own pair of connection IDs, so an observer of two paths
sees no header field they share (protocol.rst, "Connection IDs and routing").  Path 0 uses the
handshake's CIDs; for every further path ID each endpoint issues one CID with NEW_CONNECTION_ID,
with the stateless reset token that goes with it, ahead of time: a client opens path *n* only
once it holds the server's CID for *n*, and a server answers on path *n* only once it holds the
client's.  A short envelope carries no path ID: :meth:`ConnectionIds.path_of` finds the path from
the destination CID (one dict lookup per packet).

Bounds.  The peer may hold at most our ``active_connection_id_limit`` unretired CIDs from us and
we hold at most the same from it: a peer issuing more is a CONNECTION_ID_LIMIT_ERROR, so what a
peer can make us store is ``limit`` entries of 8 + 16 bytes.  When a path goes, the endpoint that
stops using the peer's CID for it says so with RETIRE_CONNECTION_ID; the issuer forgets the CID
(its server stops routing it) and issues one for the next unused path ID.  Path IDs are never
reused, so a late frame about a retired path is recognised and ignored.

The server's dispatcher routes by CID: it sets :attr:`ConnectionIds.router` and is told of every
CID we issue and retire.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from ..config import ConnectionConfig
from ..errors import ConnectionIdLimitError, ProtocolViolation, UnknownConnectionId
from ..wire.control import NewConnectionIdFrame, RetireConnectionIdFrame
from .crypto.tokens import ResetTokens, match_reset
from .entropy import Entropy

#: The active_connection_id_limit a peer that does not announce one is assumed to have.
DEFAULT_PEER_LIMIT = 2
#: The highest limit we act on: a peer announcing more gets this many CIDs from us.
MAX_LIMIT = 16


class ConnectionIds:
    """
    The CIDs of one connection, by path.

    :param local_cid: our handshake CID (path 0).
    :param limit: our ``active_connection_id_limit``: how many of the peer's CIDs we hold.
    :param new_cid: returns a fresh unpredictable 8-byte CID.
    :param reset_token: the stateless reset token of one of our CIDs.
    :param control: the connection's queue of control frames to send.
    :param is_retired: whether a path ID named a path that existed and is gone.
    """

    __slots__ = (
        "local", "local_by_path", "peer", "peer_tokens", "next_path", "peer_limit", "limit",
        "router", "_new_cid", "_reset_token", "_control", "_is_retired",
        "issuing", "path0_retired", "is_taken",
    )

    def __init__(
        self,
        *,
        local_cid: bytes,
        limit: int,
        new_cid: Callable[[], bytes],
        reset_token: Callable[[bytes], bytes],
        control: deque,
        is_retired: Callable[[int], bool],
    ) -> None:
        #: Our CIDs, by CID: the path each names.
        self.local: dict[bytes, int] = {local_cid: 0}
        self.local_by_path: dict[int, bytes] = {0: local_cid}
        #: The peer's CIDs by path, and their reset tokens (path 0's CID is the handshake's).
        self.peer: dict[int, bytes] = {}
        self.peer_tokens: dict[int, bytes] = {}
        #: The next path ID we issue a CID for.
        self.next_path = 1
        self.limit = limit
        self.peer_limit = DEFAULT_PEER_LIMIT
        #: ``router(cid, add)``: the server's dispatcher starts (``add``) or stops routing ``cid``.
        self.router: Callable[[bytes, bool], None] | None = None
        #: Whether we issue CIDs beyond path 0 yet (from the handshake's completion on).
        self.issuing = False
        self.path0_retired = False
        #: ``is_taken(cid)``: whether another connection routes by ``cid`` (set by the server's
        #: dispatcher: CIDs laid out for load balancers have as few as 31 random bits).
        self.is_taken: Callable[[bytes], bool] | None = None
        self._new_cid = new_cid
        self._reset_token = reset_token
        self._control = control
        self._is_retired = is_retired

    # -- ours --------------------------------------------------------------------------

    def path_of(self, cid: bytes) -> int:
        """
        The path a destination CID of ours names (one dict lookup per packet received).

        :raises UnknownConnectionId: not a CID of ours (retired, or never issued).
        """
        path_id = self.local.get(cid)
        if path_id is None:
            raise UnknownConnectionId("no path has this destination connection ID")
        return path_id

    def start(self, peer_limit: int) -> None:
        """Issue CIDs for further paths up to ``peer_limit`` (the handshake completed: up to the
        limit any peer accepts; then again once the peer's own limit is known), telling the peer
        path 0's reset token the first time."""
        self.peer_limit = max(self.peer_limit, DEFAULT_PEER_LIMIT, min(MAX_LIMIT, peer_limit))
        if not self.issuing:
            self.issuing = True
            cid = self.local_by_path[0]
            self._control.append(NewConnectionIdFrame(0, cid, self._reset_token(cid)))
        self._issue()

    def _issue(self) -> None:
        while len(self.local_by_path) < self.peer_limit and self.next_path <= 0xFFFFFFFF:
            path_id, self.next_path = self.next_path, self.next_path + 1
            cid = self._new_cid()
            while cid in self.local or (self.is_taken is not None and self.is_taken(cid)):
                cid = self._new_cid()  # a collision: rare (see is_taken), and never reused
            self.local[cid] = path_id
            self.local_by_path[path_id] = cid
            if self.router is not None:
                self.router(cid, True)
            self._control.append(NewConnectionIdFrame(path_id, cid, self._reset_token(cid)))

    def on_retire(self, frame: RetireConnectionIdFrame) -> None:
        """
        The peer stopped using our CID for ``frame.path_id``: forget it, issue the next one.

        :raises ProtocolViolation: we never issued a CID for that path.
        """
        if frame.path_id >= self.next_path:
            raise ProtocolViolation(f"RETIRE_CONNECTION_ID for path {frame.path_id}, never issued")
        cid = self.local_by_path.pop(frame.path_id, None)
        if cid is None:
            return  # retired already
        del self.local[cid]
        if self.router is not None:
            self.router(cid, False)
        if self.issuing:
            self._issue()

    def all_local(self) -> list[bytes]:
        """Every CID of ours still routed (the dispatcher forgets them with the connection)."""
        return list(self.local)

    # -- the peer's --------------------------------------------------------------------

    def on_new(self, frame: NewConnectionIdFrame, path0_cid: bytes) -> None:
        """
        The peer issued a CID.

        :raises ProtocolViolation: another CID for a path that has one, or a path-0 CID that is
            not the handshake's.
        :raises ConnectionIdLimitError: beyond our ``active_connection_id_limit``.
        """
        path_id, cid = frame.path_id, frame.connection_id
        if path_id == 0:
            if cid != path0_cid:
                raise ProtocolViolation("NEW_CONNECTION_ID for path 0 is not the handshake's CID")
            self.peer_tokens[0] = frame.reset_token
            return
        known = self.peer.get(path_id)
        if known is not None:
            if known != cid:
                raise ProtocolViolation(f"a second connection ID for path {path_id}")
            return  # a retransmission
        if self._is_retired(path_id):
            return  # late: we retired that path's CID already
        if len(self.peer) + 2 - self.path0_retired > self.limit:  # path 0's CID counts too
            raise ConnectionIdLimitError(
                f"more than active_connection_id_limit={self.limit} connection IDs"
            )
        self.peer[path_id] = cid
        self.peer_tokens[path_id] = frame.reset_token

    def can_start(self, path_id: int) -> bool:
        """Whether a path ``path_id`` can work: we hold the peer's CID for it and issued ours
        (without ours the peer could not answer on it)."""
        return path_id in self.peer and path_id in self.local_by_path

    def peer_cid(self, path_id: int) -> bytes | None:
        """The peer's CID for ``path_id`` (``None`` for path 0: the handshake's, kept apart)."""
        return self.peer.get(path_id)

    def retire_peer(self, path_id: int) -> None:
        """A path is gone: stop using the peer's CID for it and tell the peer."""
        if path_id == 0 and not self.path0_retired:
            self.path0_retired = True
        elif self.peer.pop(path_id, None) is None:
            return
        if True:
            self.peer_tokens.pop(path_id, None)
            self._control.append(RetireConnectionIdFrame(path_id))

    def is_reset(self, datagram: bytes) -> bool:
        """Whether a datagram we could not open is a stateless reset from the peer (it ends with
        the token of one of the peer's CIDs)."""
        return bool(self.peer_tokens) and match_reset(datagram, self.peer_tokens.values())


def on_new_connection_id(conn, frame: NewConnectionIdFrame, path, now: float) -> None:
    """The connection's handler of NEW_CONNECTION_ID: keep the CID; a path that waited for it
    may start."""
    conn.cids.on_new(frame, conn.peer_cid)
    conn.path_manager.start_waiting(now=now)


def on_retire_connection_id(conn, frame: RetireConnectionIdFrame, path, now: float) -> None:
    """The connection's handler of RETIRE_CONNECTION_ID: forget our CID, issue the next; a path
    that waited for our CID may start."""
    conn.cids.on_retire(frame)
    conn.path_manager.start_waiting(now=now)


def reset_tokens(config: ConnectionConfig, entropy: Entropy) -> Callable[[bytes], bytes]:
    """The reset token function of a connection: from the configured static secret (a server's,
    shared by its dispatcher, so it can reset connections it no longer knows), else a fresh one."""
    return ResetTokens(config.static_secret or entropy.random_bytes(32)).token
