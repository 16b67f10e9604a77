"""
Relays for ``twistd kwik``: forward every accepted connection to a client endpoint, or echo it.

A forwarded connection is a pair of :class:`Relay` protocols, one on the accepted connection and
one on the outgoing connection made with the ``--forward`` endpoint.  Bytes read on one side are
written to the other.  Back-pressure works both ways as in :mod:`twisted.protocols.portforward`:
each side's transport is registered as the streaming producer of the other's, so when one
transport's write buffer fills, it pauses reading on the other side, and the relay never holds
more than one transport buffer (about 64 KiB for TCP) per direction.  Until the outgoing
connection is up the accepted transport is paused; whatever still arrives is kept and sent first.

Half-closes are relayed (:class:`~twisted.internet.interfaces.IHalfCloseableProtocol`): an EOF on
one side becomes ``loseWriteConnection`` on the other, so request/response protocols that signal
the end of a request by shutting down their write side (``nc -N``, HTTP/1.0 uploads) work through
the tunnel; the pair closes once both directions have ended, or at once if either side is lost.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IPushProducer,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

log = Logger()


def _half_close(transport: Any) -> None:
    """
    Shut down ``transport``'s write side after flushing, or close it if it cannot half-close.

    The producer feeding it (the other side, which just sent EOF) is unregistered first: nothing
    more will be written, and a transport may stop its producer when its write side ends (Kwik
    stream transports do), which for a TCP transport would mean closing it.
    """
    lose_write = getattr(transport, "loseWriteConnection", None)
    if lose_write is None:
        transport.loseConnection()
        return
    transport.unregisterProducer()
    lose_write()


@implementer(IHalfCloseableProtocol)
class Relay(Protocol):
    """
    One side of a forwarded connection: writes what it reads to its peer's transport.

    :ivar peer: the other side, once both are connected.
    """

    peer: Relay | None = None
    _eof = False  # our side sent EOF (our read side ended)

    def dataReceived(self, data: bytes) -> None:
        """Relay ``data`` to the peer."""
        assert self.peer is not None
        self.peer.transport.write(data)

    def readConnectionLost(self) -> None:
        """Our side will send no more: relay the EOF, or close the pair if both sides are done."""
        self._eof = True
        peer = self.peer
        if peer is None:
            return
        if peer._eof:
            self.transport.loseConnection()
            peer.transport.loseConnection()
        else:
            _half_close(peer.transport)

    def writeConnectionLost(self) -> None:
        """Our write side is shut down (after a relayed EOF); nothing to do."""

    def connectionLost(self, reason: Failure | None = None) -> None:
        """
        Close the peer (after it flushes what it already holds).

        Our transport was the peer's producer: it is unregistered first, or a peer transport that
        had paused it would wait for it to resume (or unregister) for ever before closing.
        """
        peer, self.peer = self.peer, None
        if peer is not None:
            peer.peer = None
            if peer.transport.producer is not None:
                peer.transport.unregisterProducer()
            peer.transport.loseConnection()

    def pair(self, other: Relay) -> None:
        """Join two connected relays, with back-pressure in both directions."""
        self.peer, other.peer = other, self
        self.transport.registerProducer(other.transport, True)
        other.transport.registerProducer(self.transport, True)


class OutgoingRelay(Relay):
    """The relay on the outgoing connection; pairs itself with the accepted side."""

    def __init__(self, incoming: ForwardingProtocol) -> None:
        self.incoming = incoming

    def connectionMade(self) -> None:
        self.incoming.outgoingConnected(self)


class _OutgoingFactory(Factory):
    noisy = False  # one per forwarded connection: starting/stopping would flood the log

    def __init__(self, incoming: ForwardingProtocol) -> None:
        self.incoming = incoming

    def buildProtocol(self, addr: IAddress) -> OutgoingRelay:
        protocol = self.incoming.factory.outgoingProtocol(self.incoming)
        protocol.factory = self
        return protocol


class ForwardingProtocol(Relay):
    """The relay on an accepted connection: connects to the factory's endpoint."""

    factory: ForwardingFactory
    _connecting: Deferred[Any] | None = None
    _lost = False

    def connectionMade(self) -> None:
        """Stop reading and connect to the forwarding endpoint."""
        self._pending: list[bytes] = []
        self.transport.pauseProducing()
        self._connecting = self.factory.endpoint.connect(_OutgoingFactory(self))
        self._connecting.addCallbacks(self._connected, self._notConnected)

    def outgoingConnected(self, outgoing: Relay) -> None:
        """The outgoing connection is up: pair, send what arrived meanwhile, start reading."""
        if self._lost:
            outgoing.transport.loseConnection()
            return
        self.pair(outgoing)
        # Resume before writing what is pending: that write may pause us again, and must win.
        if not self._eof:
            self.transport.resumeProducing()
        if self._pending:
            outgoing.transport.writeSequence(self._pending)
            self._pending = []
        if self._eof:
            _half_close(outgoing.transport)

    def dataReceived(self, data: bytes) -> None:
        """Relay ``data``, or keep it until the outgoing connection is up."""
        if self.peer is None:
            self._pending.append(data)
        else:
            self.peer.transport.write(data)

    def _connected(self, outgoing: Relay) -> None:
        self._connecting = None

    def _notConnected(self, failure: Failure) -> None:
        self._connecting = None
        if failure.check(CancelledError):
            return
        log.warn(
            "kwik forward: cannot connect to {endpoint}: {error}",
            endpoint=self.factory.description,
            error=failure.getErrorMessage(),
        )
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Close the outgoing side, or give up connecting it."""
        self._lost = True
        if self._connecting is not None:
            self._connecting.cancel()
        super().connectionLost(reason)


class ForwardingFactory(Factory):
    """
    Accepts connections and relays each to a new connection made with ``endpoint``.

    :ivar endpoint: the :class:`~twisted.internet.interfaces.IStreamClientEndpoint` to forward to.
    :ivar description: how log messages name it (the endpoint string, if known).
    """

    protocol = ForwardingProtocol
    #: The relay class used on outgoing connections (called with the accepted side's relay).
    outgoingProtocol = OutgoingRelay

    def __init__(self, endpoint: IStreamClientEndpoint, description: str | None = None) -> None:
        self.endpoint = endpoint
        self.description = description or repr(endpoint)


@implementer(IHalfCloseableProtocol, IPushProducer)
class EchoProtocol(Protocol):
    """Writes back what it reads; stops reading while its transport's write buffer is full."""

    def connectionMade(self) -> None:
        """Register as our own transport's producer (back-pressure)."""
        self.transport.registerProducer(self, True)

    def dataReceived(self, data: bytes) -> None:
        """Echo ``data``."""
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        """The peer finished sending: close once everything is echoed."""
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """Nothing to do: we never half-close ourselves."""

    def pauseProducing(self) -> None:
        """The write buffer is full: stop reading."""
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        """The write buffer drained: read again."""
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        """The transport is going away; it closes itself."""


class EchoFactory(Factory):
    """Makes :class:`EchoProtocol` instances."""

    protocol = EchoProtocol


__all__ = [
    "EchoFactory",
    "EchoProtocol",
    "ForwardingFactory",
    "ForwardingProtocol",
    "OutgoingRelay",
    "Relay",
]
