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
the limit is enforced (two routing CIDs per connection, closed ones until their owner forgets them),
so it costs O(1) and reads 1000 exactly when new connections are refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from ..config import MIN_DATAGRAM_SIZE, ConnectionConfig
from ..errors import DroppedPacket
from ..wire import CID_LENGTH, decode_packet
from .connection import Connection
from .crypto.protection import initial_protections
from .entropy import Entropy
from .handshake import FULL_LOAD

#: New connections accepted at most (a handshake flood cannot exhaust memory).
DEFAULT_MAX_CONNECTIONS = 10000


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
    ) -> None:
        self.config = config
        self.entropy = entropy
        self.on_connection = on_connection
        self.max_connections = max_connections
        self.tls_factory = tls_factory
        self.new_tracer = new_tracer
        self.connections: dict[bytes, Connection] = {}
        self.stats: Counter[str] = Counter()

    def receive_datagram(
        self, data: bytes, local_addr: tuple, remote_addr: tuple, *, now: float
    ) -> Connection | None:
        """
        Route one datagram (see :meth:`Connection.receive_datagram`).

        :returns: the connection it went to (possibly a new one), or ``None`` if it was dropped.
        """
        dcid = bytes(data[2 : 2 + CID_LENGTH])
        conn = self.connections.get(dcid)
        if conn is None:
            conn = self._accept(data, local_addr, remote_addr, now)
            if conn is None:
                return None
        conn.receive_datagram(data, local_addr, remote_addr, now=now)
        return conn

    def forget(self, conn: Connection) -> None:
        """Stop routing to ``conn`` (the owner calls this once it has seen it close)."""
        for cid in [cid for cid, c in self.connections.items() if c is conn]:
            del self.connections[cid]

    def _accept(
        self, data: bytes, local_addr: tuple, remote_addr: tuple, now: float
    ) -> Connection | None:
        if len(data) < MIN_DATAGRAM_SIZE:
            self.stats["dropped_short_or_unknown"] += 1
            return None
        try:
            packet = decode_packet(data)
            header = packet.header
        except DroppedPacket as e:
            self.stats["dropped_" + type(e).__name__] += 1
            return None
        if header.scid is None or header.path_id != 0:
            self.stats["dropped_unknown_connection"] += 1
            return None
        _, receive = initial_protections(header.dcid, is_client=False)
        try:
            receive.open(header.path_id, header.seq, packet.aad, packet.payload)
        except DroppedPacket:
            # Anyone can fake an envelope; only a datagram sealed with the initial keys costs a
            # connection (the keys are public, but garbage floods no longer create state).
            self.stats["dropped_DecryptionFailed"] += 1
            return None
        # Every connection is routed by its two CIDs: a constant-time count (closed connections
        # count until their owner forgets them), where a scan per initial datagram made a
        # handshake flood quadratic.
        if len(self.connections) >= 2 * self.max_connections:
            self.stats["refused_too_many"] += 1
            return None
        conn = Connection.server(
            self.config,
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
        self.connections[header.dcid] = conn
        self.connections[conn.local_cid] = conn
        self.stats["accepted"] += 1
        if self.on_connection is not None:
            self.on_connection(conn)
        return conn

    def load(self) -> int:
        """The server's load in permille: connections routed over ``max_connections``."""
        limit = 2 * self.max_connections  # each connection is routed by two CIDs
        return min(FULL_LOAD, len(self.connections) * FULL_LOAD // max(1, limit))

    def _live(self) -> set[Connection]:
        return {c for c in self.connections.values() if not c.is_closed}

    def datagrams_to_send(self, *, now: float) -> list[tuple[bytes, tuple, tuple]]:
        """Datagrams of every connection; closed connections are forgotten."""
        out: list[tuple[bytes, tuple, tuple]] = []
        seen = set()
        for cid, conn in list(self.connections.items()):
            if conn.is_closed:
                del self.connections[cid]
                continue
            if id(conn) in seen:
                continue
            seen.add(id(conn))
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
