"""
A client connection's UDP port: connected to the server, opening the client's extra paths.

Theory of operation.  Each client connection has a UDP port of its own
(:class:`KwikClientProtocol`), *connected* to the server's address so that an ICMP "port
unreachable" fails the handshake at once (``ConnectionRefusedError``) instead of waiting for the
timeout.  The port owns the connection glue (:class:`~kwik_twisted.glue.connection.KwikConnection`)
and provides :class:`~kwik_twisted.glue.interfaces.IConnectionOwner` to it; it reports the
connection's life to the endpoint's record of it
(:class:`~kwik_twisted.glue.interfaces.IClientPortOwner`).  A failed handshake becomes the
``ConnectError`` that :func:`handshake_error` chooses.

Multipath.  The client binds one socket per extra path of its endpoint
(:class:`~kwik_twisted.glue.ports.PathSocket`, connected to that path's server address) when it
starts, and opens the paths once the handshake completed.  With ``use_advertised`` it opens a path
to each address the server advertises (ADD_ADDRESS) the same way, on a socket of its own connected
to that address (the core itself is told not to: it would send from the main socket, which is
connected to the server's first address only).  The endpoint's path costs are set on the core's
paths as they open, as the backups are marked.

Server load.  The server's transport parameters, which carry its load, arrive a round trip after
the client's handshake completed; the port watches for them after each datagram it hands the
connection (one attribute test, until they came) and reports the load once to ``onServerLoad``.
"""

from __future__ import annotations

import dataclasses
from functools import partial

from twisted.internet import error
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..core.connection import Connection
from ..core.crypto.handshake import make_context
from ..errors import ConfigurationError, ErrorCode
from ..events import AddressAdvertised, ConnectionTerminated, PathEvent, PathValidated
from .connection import KwikConnection, describe_termination
from .interfaces import IConnectionOwner, IPathSocketOwner
from .ports import PathSocket, PortMixin, tls_session
from .qlog import qlog_directory, tracer_factory
from .udp import enlarge_buffers

log = Logger()


@implementer(IConnectionOwner, IPathSocketOwner)
class KwikClientProtocol(PortMixin, DatagramProtocol):
    """
    The UDP port of one client connection, connected to the server's address.

    :param owner: the endpoint's record of the connection, an
        :class:`~kwik_twisted.glue.interfaces.IClientPortOwner`: told ``handshakeCompleted()``,
        ``connectionFailed(failure)`` (before the handshake completed), ``terminated()`` (after),
        ``idle()`` (no streams left) and ``gone()``.
    :param paths: extra paths, ``(local_host, (remote_host, remote_port))`` each: :meth:`start`
        binds a socket for each, and the paths open when the handshake completed.
    :param backup: indexes of the paths to mark backup: 0 is the handshake's path, 1 the first of
        ``paths``, and so on.
    :param costs: ``(index, cost)`` pairs, indexes as ``backup``'s: each path's cost (see
        :meth:`~kwik_twisted.core.paths.manager.PathManager.set_cost`).
    :param onServerLoad: called once with the load (0..1) the server reports in its transport
        parameters, if it does.
    :param tlsContext: an OpenSSL context made by ``make_context(config.tls, is_client=True)`` to
        share (an endpoint shares one among its connections); ``None`` makes one.
    :param qlog: the directory of qlog traces (default: ``$QLOGDIR``; neither: no traces).
    :param tickets: the endpoint's :class:`~kwik_twisted.glue.tickets.TicketStore` (a ticket is
        taken from it and offered, the server's new ones filed in it); ``None``: no resumption.
    """

    def __init__(self, reactor, config, remote: tuple, *, entropy, owner, paths=(),
                 backup=(), costs=(), tlsContext=None, qlog: str | None = None,
                 onServerLoad=None, tickets=None) -> None:
        self._tlsContext = tlsContext
        self._tickets = tickets
        self._ticketsSeen = 0
        self._qlog = qlog
        self.reactor = reactor
        self.config = config
        self.remote = remote
        self._connectedTo = remote
        self.entropy = entropy
        self.owner = owner
        self.connection: KwikConnection | None = None
        self.handshaken = False
        self._refused = None
        self._local = ("", 0)
        self._plannedPaths = tuple(paths)
        self._backup = tuple(backup)
        self._costs = tuple(costs)
        self._onServerLoad = onServerLoad
        self._planned: list[PathSocket] = []
        self._backupOnValidation: set[int] = set()
        self.sockets = {}

    def startProtocol(self) -> None:
        """Connect the socket to the server's address (ICMP errors then reach us)."""
        self.transport.connect(*self.remote)
        enlarge_buffers(self.transport)
        self.enableReadBatches()

    def start(self) -> None:
        """
        Bind the extra paths' sockets, create the core connection and send the ClientHello.

        :raises CannotListenError: an extra path's local address cannot be bound.
        """
        host = self.transport.getHost()
        self._local = (host.host, host.port)
        for local_host, remote in self._plannedPaths:
            self._planned.append(self.bindSocket(local_host, 0, remote))
        context = self._tlsContext or make_context(self.config.tls, is_client=True)
        # The glue, not the core, opens the paths to advertised addresses (addressAdvertised):
        # the main socket is connected to the server's first address and cannot reach them.
        config = dataclasses.replace(self.config, use_advertised=False)
        session = None
        if self._tickets is not None:
            session = self._tickets.take(self.ticketKey(), self.reactor.seconds())
        core = Connection.client(
            config, local_addr=self._local, remote_addr=self.remote,
            entropy=self.entropy, now=self.reactor.seconds(),
            tls_factory=partial(tls_session, context, session=session),
            new_tracer=tracer_factory(qlog_directory(self._qlog), is_client=True),
        )
        self.connection = KwikConnection(self.reactor, core, self)
        self.connection.service()

    def datagramReceivedOn(self, local: tuple, data: bytes, addr: tuple) -> None:
        """Feed the connection (and report the server's load once its parameters came)."""
        if self.connection is not None:
            self.connection.receive(data, local, addr)
            if self._onServerLoad is not None:
                self._reportServerLoad()
            if self._tickets is not None:
                self._fileTicket()

    def ticketKey(self) -> tuple:
        """Where this server's tickets are filed: ``(server name, port)``."""
        return (getattr(self.config.tls, "server_name", None) or self.remote[0], self.remote[1])

    def _fileTicket(self) -> None:
        """File the session once TLS saw a (new) ticket after the handshake."""
        tls = self.connection.core.handshake.tls
        if tls.tickets == self._ticketsSeen:
            return
        self._ticketsSeen = tls.tickets
        session = tls.session
        if session is not None:
            self._tickets.put(self.ticketKey(), session, self.reactor.seconds())

    def _reportServerLoad(self) -> None:
        core = self.connection.core
        if core.handshake.peer_parameters is None:
            return
        report, self._onServerLoad = self._onServerLoad, None
        load = core.path_manager.server_load
        if load is not None:
            report(load)

    def connectionRefused(self) -> None:
        """ICMP port unreachable: fatal during the handshake (reported on the next turn)."""
        if self.handshaken or self._refused is not None:
            return
        self._refused = self.reactor.callLater(0, self._onRefused)

    def _onRefused(self) -> None:
        if self.handshaken or self.connection is None or self.connection.dead:
            return
        host, port = self.remote
        self.owner.connectionFailed(Failure(error.ConnectionRefusedError(
            string=f"nothing listens on UDP {host} port {port}")))

    def stopProtocol(self) -> None:
        """Cancel a pending refusal report."""
        if self._refused is not None and self._refused.active():
            self._refused.cancel()

    # -- paths ---------------------------------------------------------------------------

    def openPath(self, localHost: str, remote: tuple | None) -> int:
        """Bind a socket to ``localHost`` and open a path from it to ``remote`` (or the server)."""
        remote = tuple(remote) if remote is not None else self.remote
        sock = self.bindSocket(localHost, 0, remote)
        return self._openOn(sock)

    def _openOn(self, sock: PathSocket) -> int:
        try:
            return self.connection.core.open_path(sock.local, sock.remote)
        except ValueError as e:
            del self.sockets[sock.local]
            sock.transport.stopListening()
            raise ConfigurationError(f"cannot open a path from {sock.local[0]}: {e}") from None

    def _openPlanned(self) -> None:
        """The handshake completed: open the endpoint's extra paths, mark the backups."""
        ids = [0]
        planned, self._planned = self._planned, []
        for sock in planned:
            try:
                ids.append(self._openOn(sock))
            except ConfigurationError as e:
                log.warn("Kwik path not opened: {error}", error=e)
        for index in self._backup:
            if index < len(ids):
                self.connection.core.set_path_backup(ids[index], True)
                if index:
                    self._backupOnValidation.add(ids[index])
        for index, cost in self._costs:
            if index < len(ids):
                self.connection.core.path_manager.set_cost(ids[index], cost)

    # -- owner interface ----------------------------------------------------------------

    def streamOpenedByPeer(self, conn: KwikConnection, stream_id: int) -> None:
        """A client endpoint has no factory for server-opened streams: refuse them."""
        conn.refuseStream(stream_id)

    def handshakeCompleted(self, conn: KwikConnection) -> None:
        """Tell the endpoint the connection is usable (its streams connect), then open paths."""
        self.handshaken = True
        self.owner.handshakeCompleted()
        if not conn.dead:
            self._openPlanned()

    def addressAdvertised(self, conn: KwikConnection, event: AddressAdvertised) -> None:
        """
        The server advertised another address: with ``use_advertised``, open a path to it.

        The path gets a socket of its own, bound to the main socket's local host (or the wildcard
        of the address's family) and connected to the advertised address: the main socket is
        connected to the server's first address and could not reach it.  A path the connection
        cannot take (``max_paths``, an address already used) is logged, not opened.
        """
        address = (event.address[0], event.address[1])
        paths = conn.core.paths
        if not self.config.use_advertised or conn.dead:
            return
        if any(path.remote_addr == address for path in paths.values()):
            return
        if len(paths) >= self.config.max_paths:
            log.info("Kwik: advertised address {address} not used: {count} paths already",
                     address=address, count=len(paths))
            return
        local = self._local[0]
        if (":" in local) != (":" in address[0]):
            local = "::" if ":" in address[0] else "0.0.0.0"
        try:
            conn.openPath(local, address)
        except (ConfigurationError, error.CannotListenError) as e:
            log.warn("Kwik path to the advertised address {address} not opened: {error}",
                     address=address, error=e)

    def pathChanged(self, conn: KwikConnection, event: PathEvent) -> None:
        """
        A backup path validated: tell the server again that it is a backup.

        The PATH_STATUS sent when the path opened may have reached the server before the path's
        first packet did, and a server ignores the status of a path it does not know yet.
        """
        if isinstance(event, PathValidated) and event.path_id in self._backupOnValidation:
            self._backupOnValidation.discard(event.path_id)
            conn.core.set_path_backup(event.path_id, True)

    def connectionTerminated(self, conn: KwikConnection, event: ConnectionTerminated) -> None:
        """Fail the handshake, or tell the endpoint the connection may not be reused."""
        if self.handshaken:
            self.owner.terminated()
        else:
            self.owner.connectionFailed(Failure(handshake_error(event)))

    def streamsIdle(self, conn: KwikConnection) -> None:
        """No streams left."""
        if self.handshaken:
            self.owner.idle()

    def connectionGone(self, conn: KwikConnection) -> None:
        """The core state is gone: the endpoint stops the port."""
        self.owner.gone()


class KwikHandshakeError(error.ConnectError):
    """The Kwik handshake failed (the TLS reason is in the message)."""


def handshake_error(event: ConnectionTerminated) -> error.ConnectError:
    """The ``ConnectError`` for a connection that ended during its handshake."""
    code = event.error_code
    if 0x100 <= code <= 0x1FF:
        return KwikHandshakeError(string=f"TLS handshake failed: {event.reason}")
    if code == ErrorCode.CONNECTION_REFUSED:
        return error.ConnectionRefusedError(string=event.reason or "refused by the server")
    return error.ConnectError(string=f"{describe_termination(event)} during the handshake")


__all__ = [
    "KwikClientProtocol", "KwikHandshakeError", "handshake_error",
]
