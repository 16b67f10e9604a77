"""
Server-side demultiplexing: one object per listening socket that owns many connections.

Theory of operation.  Every datagram names its destination connection ID in the envelope
(protocol.rst, "Connection IDs and routing"), so a server finds the connection by CID alone,
whatever address the datagram came from: that is what lets NAT rebinding and extra paths work.  A
datagram for an unknown CID that is a client's first packet (initial keys, a source CID, at least
1200 bytes) creates a connection; anything else for an unknown CID is dropped and counted.  The
dispatcher has the same sans-I/O shape as a connection (``receive_datagram``, ``datagrams_to_send``,
``next_deadline``, ``handle_deadline``), so a simulator or a Twisted ``DatagramProtocol`` drives
both the same way.

Load.  Each connection tells its client the server's load (the ``server_load`` transport parameter,
see :mod:`~kwik_twisted.core.handshake`): :meth:`ServerDispatcher.load`, the connections it routes
over its limit, in permille, read when the connection's handshake completes.  It counts the way
the limit is enforced (closed connections count until their owner forgets them),
so it costs O(1) and reads 1000 exactly when new connections are refused.  A connection routes
by its client's original DCID and by every CID it issued, at most ``active_connection_id_limit``
(its :class:`~kwik_twisted.core.cids.ConnectionIds` tells the dispatcher as it issues and retires
them).
"""

from __future__ import annotations

import dataclasses
from collections import Counter, OrderedDict
from collections.abc import Callable
from hashlib import sha256
from ipaddress import ip_address

from ..config import MIN_DATAGRAM_SIZE, ConnectionConfig
from ..errors import ConfigurationError, DroppedPacket
from ..wire import CID_LENGTH, decode_packet
from .connection import Connection
from .crypto.protection import initial_protections
from .crypto.tokens import (
    RateLimiter,
    ResetTokens,
    RetryTokens,
    encode_retry,
    stateless_reset,
    version_negotiation_reply,
)
from .entropy import Entropy
from .handshake import FULL_LOAD
from .lb import new_cid, owns

#: New connections accepted at most (a handshake flood cannot exhaust memory).
DEFAULT_MAX_CONNECTIONS = 10000
#: Half-open connections (handshake not complete) from which ``retry="auto"`` asks every new
#: client to prove its address first.
DEFAULT_RETRY_THRESHOLD = 64
#: The Retry policies: always, never, or from :data:`DEFAULT_RETRY_THRESHOLD` half-open on.
RETRY_MODES = ("yes", "no", "auto")
#: Stateless answers (resets, Version Negotiation) per second and burst: for the whole server,
#: and for each source prefix (an IPv4 /24, an IPv6 /56), so junk from one network cannot use up
#: the answers another network's clients need.  The sources tracked are bounded (least recently
#: seen forgotten first).
ANSWER_RATE, ANSWER_BURST = 1000.0, 200
SOURCE_ANSWER_RATE, SOURCE_ANSWER_BURST = 10.0, 5
MAX_ANSWER_SOURCES = 4096


class ServerDispatcher:
    """
    Routes datagrams to server connections and creates new ones.

    :param on_connection: called with each new :class:`Connection` before its first datagram is
        processed.
    :param new_tracer: ``new_tracer(original_dcid)`` returns the qlog tracer of a new connection
        (see :mod:`~kwik_twisted.core.trace`), or ``None`` for none.
    """

    def __init__(
        self,
        config: ConnectionConfig,
        *,
        entropy: Entropy,
        on_connection: Callable[[Connection], None] | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        tls_factory=None,
        new_tracer: Callable[[bytes], object] | None = None,
        retry_threshold: int = DEFAULT_RETRY_THRESHOLD,
    ) -> None:
        if config.retry not in RETRY_MODES:
            raise ConfigurationError(f"retry must be one of {', '.join(RETRY_MODES)}")
        if config.static_secret is None:  # one secret for every connection of this server
            config = dataclasses.replace(config, static_secret=entropy.random_bytes(32))
        self.config = config
        self.reset_tokens = ResetTokens(config.static_secret)
        self.retry_tokens = RetryTokens(config.static_secret)
        #: Stateless answers (resets, Version Negotiation) allowed: token buckets, one for the
        #: server and one per source prefix (see :data:`ANSWER_RATE`).
        self.limiter = RateLimiter(ANSWER_RATE, ANSWER_BURST)
        self.source_limiters: OrderedDict[bytes, RateLimiter] = OrderedDict()
        self.retry_threshold = retry_threshold
        #: Connections whose handshake has not completed (an ordered set), for ``retry="auto"``.
        self.half_open: dict[Connection, None] = {}
        #: Stateless datagrams to send, ``(data, local, remote)``: see :meth:`take_replies`.
        self.replies: list[tuple[bytes, tuple, tuple]] = []
        self.entropy = entropy
        self.on_connection = on_connection
        self.max_connections = max_connections
        self.tls_factory = tls_factory
        self.new_tracer = new_tracer
        #: Routing: every CID of ours, each connection's, and its client's original DCID.
        self.connections: dict[bytes, Connection] = {}
        #: The connections, in creation order (an ordered set).
        self.live: dict[Connection, None] = {}
        self.stats: Counter[str] = Counter()

    def receive_datagram(
        self, data: bytes, local_addr: tuple, remote_addr: tuple, *, now: float
    ) -> Connection | None:
        """
        Route one datagram (see :meth:`Connection.receive_datagram`).

        :returns: the connection it went to (possibly a new one), or ``None`` if it was dropped.
        """
        # Where RFC 8999 puts the destination CID: after the first byte of a short envelope, after
        # the version and a length byte in a long one (wire.peek_dcid, inlined: every datagram).
        dcid = bytes(data[6:14] if data and data[0] & 0x80 else data[1:9])
        conn = self.connections.get(dcid)
        if conn is None:
            conn = self._accept(data, local_addr, remote_addr, now)
            if conn is None:
                return None
        conn.receive_datagram(data, local_addr, remote_addr, now=now)
        if conn in self.half_open and (conn.handshake_complete or conn.is_closed):
            del self.half_open[conn]
        return conn

    def take_replies(self) -> list[tuple[bytes, tuple, tuple]]:
        """The stateless datagrams (Retry, stateless reset, Version Negotiation) that
        :meth:`receive_datagram` decided to send, as ``(data, local, remote)``; once each."""
        replies, self.replies = self.replies, []
        return replies

    def retry_active(self) -> bool:
        """Whether a new client must prove its address with a Retry token first."""
        mode = self.config.retry
        return mode == "yes" or (mode == "auto" and len(self.half_open) >= self.retry_threshold)

    def forget(self, conn: Connection) -> None:
        """Stop routing to ``conn`` (the owner calls this once it has seen it close)."""
        self.live.pop(conn, None)
        self.half_open.pop(conn, None)
        for cid in (conn.original_dcid, *conn.cids.all_local()):
            if self.connections.get(cid) is conn:
                del self.connections[cid]

    def _router(self, conn: Connection) -> Callable[[bytes, bool], None]:
        """What ``conn``'s CIDs (core/cids.py) call as they issue and retire CIDs."""

        def route(cid: bytes, add: bool) -> None:
            if add:
                self.connections[cid] = conn
            elif self.connections.get(cid) is conn:
                del self.connections[cid]

        return route

    def _accept(
        self, data: bytes, local_addr: tuple, remote_addr: tuple, now: float
    ) -> Connection | None:
        if data and not data[0] & 0x80:  # a short envelope: a connection we do not (or no
            self._reset(data, local_addr, remote_addr, now)  # longer) know
            return None
        if len(data) < MIN_DATAGRAM_SIZE:
            self.stats["dropped_short_or_unknown"] += 1
            return None
        try:
            packet = decode_packet(data)
            header = packet.header
        except DroppedPacket as e:
            self.stats["dropped_" + type(e).__name__] += 1
            self._negotiate_version(data, local_addr, remote_addr, now)
            return None
        if not owns(header.dcid, self.config):  # steering put another worker's Initial here
            self.stats["misrouted"] += 1
        validated = False
        if header.token or self.retry_active():
            validated = self._check_token(header, local_addr, remote_addr, now)
            if not validated:
                return None
        _, receive = initial_protections(header.dcid, is_client=False)
        try:
            receive.open(header.path_id, header.seq, packet.aad, packet.payload)
        except DroppedPacket:
            # Anyone can fake an envelope; only a datagram sealed with the initial keys costs a
            # connection (the keys are public, but garbage floods no longer create state).
            self.stats["dropped_DecryptionFailed"] += 1
            return None
        # A constant-time count (closed connections count until their owner forgets them), where
        # a scan per initial datagram made a handshake flood quadratic.
        if len(self.live) >= self.max_connections:
            self.stats["refused_too_many"] += 1
            return None
        conn = Connection.server(
            self.config,
            local_cid=self._fresh_cid(),
            original_dcid=header.dcid,
            peer_cid=header.scid,
            local_addr=local_addr,
            remote_addr=remote_addr,
            entropy=self.entropy,
            now=now,
            tls_factory=self.tls_factory,
            new_tracer=self.new_tracer,
        )
        conn.handshake.server_load = self.load
        conn.cids.router = self._router(conn)
        conn.cids.is_taken = self.connections.__contains__
        if validated:  # a Retry token proved the client's address: no amplification limit
            conn.paths[0].address_validated = True
        self.live[conn] = None
        self.half_open[conn] = None
        self.connections[header.dcid] = conn
        self.connections[conn.local_cid] = conn
        self.stats["accepted"] += 1
        if self.on_connection is not None:
            self.on_connection(conn)
        return conn

    # -- stateless answers ----------------------------------------------------------------

    def _check_token(self, header, local_addr: tuple, remote_addr: tuple, now: float) -> bool:
        """
        An Initial while Retry is on, or one carrying a token: whether its token validates.

        Without a token, the client is sent a Retry (no state kept: the token carries what the
        next Initial needs).  An invalid token is dropped: it is forged, expired, or from another
        address.
        """
        client_ip = _packed_ip(remote_addr)
        if not header.token:
            rscid = self._fresh_cid()
            token = self.retry_tokens.issue(
                client_ip, header.dcid, rscid, now, self.entropy.random_bytes(12)
            )
            retry = encode_retry(header.scid, rscid, token, header.dcid)
            self.replies.append((retry, local_addr, remote_addr))
            self.stats["retry_sent"] += 1
            return False
        if self.retry_tokens.validate(header.token, client_ip, header.dcid, now) is None:
            self.stats["retry_token_invalid"] += 1
            return False
        self.stats["retry_token_valid"] += 1
        return True

    def _fresh_cid(self) -> bytes:
        """A CID of ours (core/lb.py's layout) that routes to nothing yet."""
        cid = new_cid(self.config, self.entropy)
        while cid in self.connections:
            cid = new_cid(self.config, self.entropy)
        return cid

    def _reset(self, data: bytes, local_addr: tuple, remote_addr: tuple, now: float) -> None:
        """A short-envelope datagram for an unknown CID: answer with a stateless reset (smaller
        than it, rate-limited), so a peer of a connection we lost learns at once.  A worker
        never resets a CID another worker of its set owns (``misrouted``: a steering fault, or
        the other generation during a graceful restart): that connection may well be alive."""
        self.stats["dropped_unknown_connection"] += 1
        if len(data) < 1 + CID_LENGTH:
            return
        if not owns(bytes(data[1 : 1 + CID_LENGTH]), self.config):
            self.stats["misrouted"] += 1
            return
        if not self._may_answer(remote_addr, now):
            return
        token = self.reset_tokens.token(bytes(data[1 : 1 + CID_LENGTH]))
        reset = stateless_reset(token, len(data), self.entropy)
        if reset is not None:
            self.replies.append((reset, local_addr, remote_addr))
            self.stats["stateless_reset_sent"] += 1

    def _negotiate_version(
        self, data: bytes, local_addr: tuple, remote_addr: tuple, now: float
    ) -> None:
        """A long envelope of another version: list ours (RFC 8999, section 6), rate-limited."""
        reply = version_negotiation_reply(data, self.entropy.random_bytes(1)[0])
        if reply is not None and self._may_answer(remote_addr, now):
            self.replies.append((reply, local_addr, remote_addr))
            self.stats["version_negotiation_sent"] += 1

    def _may_answer(self, remote_addr: tuple, now: float) -> bool:
        """Whether a stateless answer to ``remote_addr`` is within its source prefix's budget
        and the server's (O(1); the sources tracked are bounded)."""
        packed = _packed_ip(remote_addr)
        prefix = packed[:3] if len(packed) == 4 else packed[:7]
        limiters = self.source_limiters
        limiter = limiters.get(prefix)
        if limiter is None:
            if len(limiters) >= MAX_ANSWER_SOURCES:
                limiters.popitem(last=False)
            limiter = limiters[prefix] = RateLimiter(SOURCE_ANSWER_RATE, SOURCE_ANSWER_BURST)
        else:
            limiters.move_to_end(prefix)
        if not limiter.allow(now):
            self.stats["answers_limited"] += 1
            return False
        if not self.limiter.allow(now):
            self.stats["answers_limited"] += 1
            return False
        return True

    def handshake_done(self, conn: Connection) -> None:
        """``conn``'s handshake completed (its owner tells us: the Twisted port routes known
        connections' datagrams past :meth:`receive_datagram`): it is no longer half open."""
        self.half_open.pop(conn, None)

    def load(self) -> int:
        """The server's load in permille: connections over ``max_connections``."""
        return min(FULL_LOAD, len(self.live) * FULL_LOAD // max(1, self.max_connections))

    def _live(self) -> list[Connection]:
        return [c for c in self.live if not c.is_closed]

    def datagrams_to_send(self, *, now: float) -> list[tuple[bytes, tuple, tuple]]:
        """The stateless replies (:meth:`take_replies`), then the datagrams of every connection;
        closed connections are forgotten."""
        out = self.take_replies()
        for conn in list(self.live):
            if conn.is_closed:
                self.forget(conn)
                continue
            out.extend(conn.datagrams_to_send(now=now))
        return out

    def next_deadline(self) -> float | None:
        """The earliest deadline of any connection."""
        deadlines = [d for c in self._live() if (d := c.next_deadline()) is not None]
        return min(deadlines) if deadlines else None

    def handle_deadline(self, *, now: float) -> None:
        """Run every connection's due timers."""
        for conn in self._live():
            deadline = conn.next_deadline()
            if deadline is not None and deadline <= now:
                conn.handle_deadline(now=now)


def _packed_ip(address: tuple) -> bytes:
    """The packed IP address of ``(host, port, ...)``; for a host that is not an IP address
    (never on a socket; a simulator may name hosts), 16 bytes of its name's hash."""
    host = str(address[0]).split("%", 1)[0]
    try:
        return ip_address(host).packed
    except ValueError:
        return sha256(host.encode()).digest()[:16]
