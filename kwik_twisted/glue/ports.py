"""
What the server and client UDP ports share: their sockets, batched sending and read batches.

Theory of operation.  A Kwik port is a :class:`~twisted.internet.protocol.DatagramProtocol` on a
:class:`~kwik_twisted.glue.udp.BatchingPort` (or any UDP port, on a reactor without file
descriptors).  It owns its connection glue objects
(:class:`~kwik_twisted.glue.connection.KwikConnection`) and provides what they expect of it
(:class:`~kwik_twisted.glue.interfaces.IConnectionOwner`): the server port in
:mod:`kwik_twisted.glue.server`, the client's in :mod:`kwik_twisted.glue.client`.  This module has
what both share (:class:`PortMixin`) and the extra sockets of multipath (:class:`PathSocket`).

Multipath.  A port protocol may own more sockets (:class:`PathSocket`), each bound to one local
address: a client binds one per extra path (connected to that path's server address); a server may
listen on several addresses with one port number, all feeding one dispatcher.  Every datagram
reaches the core with the local address of the socket it arrived on
(:class:`~kwik_twisted.glue.interfaces.IPathSocketOwner`), and each datagram the core returns
leaves through the socket whose local address is the path's.  A socket bound to a wildcard address
reports that address (``0.0.0.0``): the kernel then picks the source address of replies, so a
multihomed server should bind each of its addresses instead (``docs/endpoints.rst``,
"Multipath").

Read batches.  When the port provides
:class:`~kwik_twisted.glue.interfaces.IBatchingUDPTransport`, it also tells its protocol when a
read batch ended (:class:`~kwik_twisted.glue.interfaces.IReadBatchObserver`); the connections that
received datagrams in the batch are serviced then, once each, rather than on the next reactor turn.
"""

from __future__ import annotations

from twisted.internet import defer, error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from zope.interface import implementer

from ..core.crypto.handshake import TlsSession
from .connection import ip_address
from .interfaces import IBatchingUDPTransport, IReadBatchObserver
from .udp import enlarge_buffers, listenBatchingUDP, send_batch, take_too_big

#: The largest datagram our UDP ports read.
MAX_DATAGRAM = 65535

log = Logger()


def tls_session(context, config, *, is_client: bool, session=None) -> TlsSession:
    """
    A :class:`TlsSession` on a shared OpenSSL ``context`` (bind it with ``partial``), offering
    ``session`` (a ticket, client only) for resumption.
    """
    return TlsSession(config, is_client=is_client, context=context, session=session)


def _write(transport, connected: tuple | None, datagrams: list, remote: tuple) -> list[int]:
    """
    Send datagrams to one address, batched (UDP GSO) where the port can; return the sizes the
    kernel refused as too big for the route (EMSGSIZE), for path MTU discovery.

    A failing send is lost packets, which recovery handles; so is a socket already stopped (a
    path's socket closing while its connection still flushes).
    """
    if transport is None:
        log.debug("Kwik datagrams to {addr} not sent: the socket is closed", addr=remote)
        return []
    try:
        if connected is None:
            send_batch(transport, datagrams, remote)
        elif remote == connected:
            send_batch(transport, datagrams, None)
        else:
            log.debug("Kwik datagram to {addr} not sent: the socket is connected to {other}",
                      addr=remote, other=connected)
    except (OSError, error.MessageLengthError, error.InvalidAddressError) as e:
        log.debug("Kwik datagram to {addr} not sent: {error}", addr=remote, error=e)
    return take_too_big(transport)


@implementer(IReadBatchObserver)
class PathSocket(DatagramProtocol):
    """
    One more UDP socket of a port protocol, bound to one local address.

    Its datagrams reach the owner (an :class:`~kwik_twisted.glue.interfaces.IPathSocketOwner`)
    through ``datagramReceivedOn(local, data, addr)`` with the socket's own local address.  Given
    ``remote``, the socket is connected to it (it then hears only that address; an ICMP "port
    unreachable" is logged and left to path validation to notice).
    """

    def __init__(self, owner, remote: tuple | None = None) -> None:
        self.owner = owner
        self.remote = remote
        self.local: tuple = ("", 0)

    def startProtocol(self) -> None:
        """Learn the bound address; connect; enlarge the socket buffers."""
        host = self.transport.getHost()
        self.local = (host.host, host.port)
        if self.remote is not None:
            self.transport.connect(*self.remote)
        enlarge_buffers(self.transport)

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        """Hand the datagram to the owner with our local address."""
        self.owner.datagramReceivedOn(self.local, data, addr)

    def readBatchEnded(self) -> None:
        """The port read what the socket had: the owner services what it received."""
        self.owner.readBatchEnded()

    def connectionRefused(self) -> None:
        """Nothing listens at ``remote``: the path will not validate (the core decides)."""
        log.debug("Kwik path socket {local}: {remote} refused", local=self.local,
                  remote=self.remote)

    def send(self, datagrams: list, remote: tuple) -> list[int]:
        """Send ``datagrams`` to ``remote`` (which must be the connected address, if any); return
        the sizes refused as too big."""
        return _write(self.transport, self.remote, datagrams, remote)


class PortMixin:
    """
    What server and client ports share: their sockets, sending datagrams and the local address.

    The protocol's own UDP port is the main socket; :meth:`bindSocket` adds more.
    """

    transport = None
    reactor = None
    #: The extra sockets, by local address (each protocol's constructor makes its own dict).
    sockets: dict[tuple, PathSocket]
    #: The address the main socket is connected to (client), or ``None``.
    _connectedTo: tuple | None = None
    _local: tuple = ("", 0)
    #: Connections that received datagrams in the current read batch (an ordered set), or
    #: ``None`` when the port has no end-of-batch hook (they then service on the next turn).
    received: dict | None = None

    def bindSocket(self, interface: str, port: int = 0, remote: tuple | None = None) -> PathSocket:
        """
        Bind one more UDP socket to ``interface`` (and ``port``; 0 picks one).

        :raises CannotListenError: the address cannot be bound.
        """
        sock = PathSocket(self, remote)
        listenBatchingUDP(self.reactor, port, sock, interface=interface, maxPacketSize=MAX_DATAGRAM)
        self.sockets[sock.local] = sock
        return sock

    def stopSockets(self) -> defer.Deferred:
        """Stop every extra socket; fire when they are all stopped."""
        sockets = list(self.sockets.values())
        self.sockets.clear()
        return defer.gatherResults(
            [defer.maybeDeferred(sock.transport.stopListening) for sock in sockets
             if sock.transport is not None],
            consumeErrors=True,
        )

    def sendDatagrams(self, out: list) -> list | None:
        """
        Send ``(data, local, remote)`` triples, each from the socket bound to its ``local``.

        Consecutive datagrams of one path go out as one batch (one ``sendmsg`` with UDP GSO where
        the kernel has it).  Returns ``(size, local, remote)`` for each datagram the kernel refused
        as too big for its route (EMSGSIZE), or ``None``.
        """
        refused = None
        start = 0
        count = len(out)
        while start < count:
            _, local, remote = out[start]
            end = start + 1
            while end < count and out[end][1] == local and out[end][2] == remote:
                end += 1
            datagrams = [item[0] for item in out[start:end]]
            sockets = self.sockets
            sock = sockets.get(local) if sockets else None
            if sock is not None:
                too_big = sock.send(datagrams, remote)
            else:
                too_big = _write(self.transport, self._connectedTo, datagrams, remote)
            if too_big:
                refused = refused or []
                refused.extend((size, local, remote) for size in too_big)
            start = end
        return refused

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        """A datagram on the main socket."""
        self.datagramReceivedOn(self._local, data, addr)

    def enableReadBatches(self) -> None:
        """Service connections at the end of each read batch if the port tells us when."""
        if IBatchingUDPTransport.providedBy(self.transport):
            self.received = {}

    def readBatchEnded(self) -> None:
        """
        A socket's read batch ended: service each connection that received something.

        Servicing right away (rather than on the next reactor turn) saves a reactor iteration per
        batch, which is most of a small message's round trip.
        """
        received = self.received
        if not received:
            return
        self.received = {}
        for conn in received:
            conn.service()

    def hostAddress(self) -> IPv4Address | IPv6Address:
        """The local UDP address."""
        host = self.transport.getHost()
        return ip_address((host.host, host.port))


__all__ = ["MAX_DATAGRAM", "PathSocket", "PortMixin", "tls_session"]
