"""
The server's UDP port: one dispatcher, many connections, a protocol per stream.

Theory of operation.  :class:`KwikServerProtocol` routes each datagram by its destination
connection ID to the connection glue (:class:`~kwik_twisted.glue.connection.KwikConnection`) of
its connection; a datagram for no known connection goes to the core's
:class:`~kwik_twisted.core.dispatcher.ServerDispatcher`, which may accept a new connection.  Every
stream a client opens becomes a protocol built by the listening factory; a factory that builds
none (or raises) has the stream refused.  The port provides
:class:`~kwik_twisted.glue.interfaces.IConnectionOwner` to its connections; the core accepts and
manages the paths clients open, so most of that contract is a no-op here.  Stopping the port
(:meth:`KwikServerProtocol.shutdown`) closes every connection at once.
"""

from __future__ import annotations

import dataclasses
from functools import partial

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..core.connection import Connection
from ..core.crypto.handshake import make_context, server_secret
from ..core.dispatcher import ServerDispatcher
from ..errors import ConfigurationError, DroppedPacket
from ..events import AddressAdvertised, ConnectionTerminated, PathEvent
from ..interfaces import IKwikMessageProtocol
from ..wire import peek_dcid
from .connection import KwikConnection, ip_address, peer_address
from .interfaces import IConnectionOwner, IPathSocketOwner
from .ports import PortMixin, tls_session
from .qlog import qlog_directory, tracer_factory
from .udp import enlarge_buffers

log = Logger()


@implementer(IConnectionOwner, IPathSocketOwner)
class KwikServerProtocol(PortMixin, DatagramProtocol):
    """
    A listening UDP port: many connections, each stream a protocol from ``factory``.

    When the factory's ``protocol`` class implements
    :class:`~kwik_twisted.interfaces.IKwikMessageProtocol`, the connections accept unordered
    streams (``accept_unordered``); otherwise the core reassembles every stream in order.
    More local addresses (same dispatcher, same connections) are added with :meth:`bindSocket`.

    :param qlog: the directory of qlog traces (default: ``$QLOGDIR``; neither: no traces).
    :raises ConfigurationError: (from the constructor) the TLS configuration is unusable.
    """

    def __init__(self, reactor, config, factory, *, entropy, qlog: str | None = None) -> None:
        self.reactor = reactor
        self.factory = factory
        if not config.accept_unordered and wantsPieces(factory):
            config = dataclasses.replace(config, accept_unordered=True)
        context = make_context(config.tls, is_client=False)
        if config.static_secret is None:  # resets and Retry tokens outlive a restart
            config = dataclasses.replace(config, static_secret=server_secret(config.tls))
        self.dispatcher = ServerDispatcher(
            config, entropy=entropy, on_connection=self._newConnection,
            tls_factory=partial(tls_session, context),
            new_tracer=tracer_factory(qlog_directory(qlog), is_client=False),
        )
        self.connections: dict[Connection, KwikConnection] = {}
        self._local = ("", 0)
        self.sockets = {}

    def startProtocol(self) -> None:
        """Remember our address; enlarge the socket buffers."""
        host = self.transport.getHost()
        self._local = (host.host, host.port)
        enlarge_buffers(self.transport)
        self.enableReadBatches()

    def datagramReceivedOn(self, local: tuple, data: bytes, addr: tuple) -> None:
        """Route a datagram to its connection (or let the dispatcher accept a new one)."""
        try:
            dcid = peek_dcid(data)
        except DroppedPacket:  # no Kwik CID: the dispatcher may still answer (another version)
            dcid = b""
        core = self.dispatcher.connections.get(dcid)
        if core is not None:
            glue = self.connections.get(core)
            if glue is not None:
                glue.receive(data, local, addr)
            return
        dispatcher = self.dispatcher
        try:
            dispatcher.receive_datagram(data, local, addr, now=self.reactor.seconds())
            if dispatcher.replies:  # a Retry, a stateless reset or a Version Negotiation
                self.sendDatagrams(dispatcher.take_replies())
        except Exception:
            log.failure("Kwik server failed to accept a connection from {addr}", addr=addr)
            core = self.dispatcher.connections.get(dcid)
            glue = self.connections.get(core) if core is not None else None
            if glue is not None:
                glue.crash(Failure())
            return
        core = self.dispatcher.connections.get(dcid)
        glue = self.connections.get(core) if core is not None else None
        if glue is not None:
            glue.scheduleTurn()

    def _newConnection(self, core: Connection) -> None:
        self.connections[core] = KwikConnection(self.reactor, core, self)

    # -- owner interface ----------------------------------------------------------------

    def openPath(self, localHost: str, remote: tuple | None) -> int:
        """Only clients open paths."""
        raise ConfigurationError("only a Kwik client opens paths; the server accepts them")

    def streamOpenedByPeer(self, conn: KwikConnection, stream_id: int) -> None:
        """A client opened a stream: build a protocol for it."""
        addr = ip_address(peer_address(conn.core))
        try:
            protocol = self.factory.buildProtocol(addr)
        except Exception:
            log.failure("buildProtocol failed for a Kwik stream from {addr}", addr=addr)
            protocol = None
        if protocol is None:
            conn.refuseStream(stream_id)
            return
        conn.attach(stream_id, protocol)

    def handshakeCompleted(self, conn: KwikConnection) -> None:
        """The connection is no longer half open (``retry=auto`` counts half-open ones)."""
        self.dispatcher.handshake_done(conn.core)

    def addressAdvertised(self, conn: KwikConnection, event: AddressAdvertised) -> None:
        """Nothing to do: only a server advertises."""

    def pathChanged(self, conn: KwikConnection, event: PathEvent) -> None:
        """Nothing to do: the core accepts and manages the client's paths."""

    def connectionTerminated(self, conn: KwikConnection, event: ConnectionTerminated) -> None:
        """Nothing to do: the core drains, then :meth:`connectionGone` runs."""

    def streamsIdle(self, conn: KwikConnection) -> None:
        """Nothing to do: the client decides when a connection is no longer needed."""

    def connectionGone(self, conn: KwikConnection) -> None:
        """Forget a connection whose core state is gone."""
        core = conn.core
        self.connections.pop(core, None)
        self.dispatcher.forget(core)

    def shutdown(self, reason: str = "server stopped") -> None:
        """Close every connection at once (the port is about to stop)."""
        for conn in list(self.connections.values()):
            conn.abandon(reason)


def wantsPieces(factory) -> bool:
    """Whether ``factory``'s ``protocol`` class implements IKwikMessageProtocol (takes pieces)."""
    protocol = getattr(factory, "protocol", None)
    return isinstance(protocol, type) and IKwikMessageProtocol.implementedBy(protocol)


__all__ = ["KwikServerProtocol", "wantsPieces"]
