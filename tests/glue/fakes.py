"""
A fake UDP reactor: a ``task.Clock`` whose UDP ports exchange datagrams in memory.

:class:`FakeUDPReactor` lets the glue run real Kwik connections (real TLS, real packets)
deterministically and without sockets: datagrams are queued by ``write`` and delivered by
:meth:`FakeUDPReactor.pump`, which also runs the delayed calls that come due, in fake time.
:class:`FakeKwik` puts a Kwik server endpoint and a client endpoint on one such reactor, with
seeded entropy.  :class:`FakeStreamConnection` and :class:`FakeConnectionOwner` stand in for the
connection glue's collaborators, providing the same glue interfaces as the real ones.
"""

from __future__ import annotations

import errno
from collections import deque
from dataclasses import dataclass

from twisted.internet import defer, error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IHostnameResolver,
    IHostResolution,
    IListeningPort,
    IReactorPluggableNameResolver,
    IReactorUDP,
    IUDPTransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from zope.interface import implementer

from kwik_twisted.core.entropy import SeededEntropy
from kwik_twisted.endpoints import KwikClientEndpoint, KwikServerEndpoint
from kwik_twisted.errors import ConfigurationError
from kwik_twisted.glue.interfaces import IConnectionOwner, IStreamConnection
from kwik_twisted.interfaces import IKwikMessageProtocol
from kwik_twisted.testing.pair import client_config, server_config
from kwik_twisted.wire import QosPolicy

SERVER_PORT = 4433


@implementer(IUDPTransport, IListeningPort)
class FakeUDPPort:
    """One bound fake UDP port."""

    def __init__(self, reactor: FakeUDPReactor, addr: tuple, protocol) -> None:
        self.reactor = reactor
        self.addr = addr
        self.protocol = protocol
        self.connectedAddr: tuple | None = None
        self.listening = True

    def write(self, data: bytes, addr: tuple | None = None) -> None:
        """Queue a datagram (to the connected address when ``addr`` is None)."""
        if not self.listening:
            raise OSError(errno.EBADF, "port closed")
        self.reactor.inFlight.append((self.addr, addr or self.connectedAddr, bytes(data)))

    def connect(self, host: str, port: int) -> None:
        """Connect the port (its writes then default to this address)."""
        self.connectedAddr = (host, port)

    def getHost(self):
        """The bound address."""
        cls = IPv6Address if ":" in self.addr[0] else IPv4Address
        return cls("UDP", *self.addr)

    def stopListening(self):
        """Unbind."""
        if self.listening:
            self.listening = False
            del self.reactor.ports[self.addr]
            self.protocol.doStop()
        return defer.succeed(None)

    loseConnection = stopListening

    def startListening(self) -> None:
        """Ports start bound."""

    def setBroadcastAllowed(self, enabled) -> None:
        """Unused."""

    def getBroadcastAllowed(self) -> bool:
        """Unused."""
        return False


@implementer(IHostResolution)
class FakeResolution:
    """One name lookup of a :class:`FakeNameResolver`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        """Lookups complete at once: nothing to cancel."""


@implementer(IHostnameResolver)
class FakeNameResolver:
    """
    A name resolver (``reactor.nameResolver``) that knows only ``names``, answering at once.

    :ivar names: host name -> an IP address or a list of them (IPv6 and IPv4), in the order the
        resolver reports them.
    :ivar asked: every name looked up, in order.
    """

    def __init__(self, names: dict) -> None:
        self.names = names
        self.asked: list[str] = []

    def resolveHostName(self, resolutionReceiver, hostName, portNumber=0, addressTypes=None,
                        transportSemantics="TCP"):
        """Report the known addresses of ``hostName`` of the asked types (none if unknown)."""
        self.asked.append(hostName)
        resolution = FakeResolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        known = self.names.get(hostName, [])
        for host in [known] if isinstance(known, str) else known:
            kind = IPv6Address if ":" in host else IPv4Address
            if addressTypes is None or kind in addressTypes:
                resolutionReceiver.addressResolved(kind(transportSemantics, host, portNumber))
        resolutionReceiver.resolutionComplete()
        return resolution


@implementer(IReactorUDP, IReactorPluggableNameResolver)
class FakeUDPReactor(Clock):
    """
    A clock with in-memory UDP.

    :ivar inFlight: queued ``(source, destination, datagram)`` triples.
    :ivar drop: a predicate ``(source, destination, datagram) -> bool`` that loses datagrams.
    :ivar names: what :meth:`resolve` and :attr:`nameResolver` know (a name -> an address or a
        list of addresses).
    :ivar nameResolver: a :class:`FakeNameResolver` of :attr:`names`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ports: dict[tuple, FakeUDPPort] = {}
        self.inFlight: deque = deque()
        self.drop = None
        self.names = {"localhost": "127.0.0.1"}
        self.nameResolver = FakeNameResolver(self.names)
        self.delivered = 0
        self._nextPort = 50000

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        """Bind a fake port (``""`` and ``0.0.0.0`` mean 127.0.0.1)."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(interface, interface)
        if port == 0:
            while (host, self._nextPort) in self.ports:
                self._nextPort += 1
            port = self._nextPort
        if (host, port) in self.ports:
            raise error.CannotListenError(interface, port,
                                          OSError(errno.EADDRINUSE, "Address already in use"))
        udp = self.ports[(host, port)] = FakeUDPPort(self, (host, port), protocol)
        protocol.makeConnection(udp)
        return udp

    def resolve(self, name, timeout=None):
        """Resolve from :attr:`names` (the first address); anything else is a DNSLookupError."""
        if name in self.names:
            known = self.names[name]
            return defer.succeed(known if isinstance(known, str) else known[0])
        return defer.fail(error.DNSLookupError(name))

    def installNameResolver(self, resolver):
        """Replace :attr:`nameResolver`; return the old one."""
        old, self.nameResolver = self.nameResolver, resolver
        return old

    def _deliver(self) -> None:
        source, destination, data = self.inFlight.popleft()
        if self.drop is not None and self.drop(source, destination, data):
            return
        port = self.ports.get(destination)
        if port is None:
            sender = self.ports.get(source)
            if sender is not None and sender.connectedAddr == destination:
                sender.protocol.connectionRefused()
            return
        self.delivered += 1
        port.protocol.datagramReceived(data, source)

    def pump(self, seconds: float = 0.0, maxSteps: int = 1_000_000) -> None:
        """Deliver datagrams and run due calls until quiet, letting up to ``seconds`` pass."""
        end = self.seconds() + seconds
        for _ in range(maxSteps):
            if self.inFlight:
                self._deliver()
                continue
            now = self.seconds()
            upcoming = [call.getTime() for call in self.getDelayedCalls()]
            if any(when <= now for when in upcoming):
                self.advance(0)
                continue
            following = min((when for when in upcoming if when <= end), default=None)
            if following is None:
                if now < end:
                    self.advance(end - now)
                    continue
                return
            self.advance(following - now)
        raise RuntimeError("the fake network did not go quiet")


class FakeKwik:
    """
    A Kwik server endpoint and a client endpoint on one :class:`FakeUDPReactor`.

    :ivar serverProtocols: every protocol the server factory built, in order.
    """

    def __init__(self, serverProtocol=Protocol, seed: int = 1, serverConfig=None,
                 **clientKw) -> None:
        self.reactor = FakeUDPReactor()
        self.serverProtocols: list = []
        factory = Factory.forProtocol(serverProtocol)
        build = factory.buildProtocol

        def buildProtocol(addr):
            protocol = build(addr)
            self.serverProtocols.append(protocol)
            return protocol

        factory.buildProtocol = buildProtocol
        self.serverFactory = factory
        config = serverConfig or server_config()
        server = KwikServerEndpoint(self.reactor, SERVER_PORT, config=config,
                                    interface="127.0.0.1", entropy=SeededEntropy(seed))
        self.listening = []
        server.listen(factory).addCallback(self.listening.append)
        self.port = self.listening[0]
        clientKw.setdefault("config", client_config())
        clientKw.setdefault("entropy", SeededEntropy(seed + 100))
        self.client = KwikClientEndpoint(self.reactor, "127.0.0.1", SERVER_PORT, **clientKw)

    def connect(self, clientProtocol=Protocol) -> tuple:
        """Open a stream; return the list of what the Deferred fired with, after pumping."""
        results: list = []
        d = self.client.connect(Factory.forProtocol(clientProtocol))
        d.addBoth(results.append)
        self.pump()
        return results

    def pump(self, seconds: float = 0.0) -> None:
        """Run the fake network until quiet."""
        self.reactor.pump(seconds)


@dataclass
class FakeStreamView:
    """A core stream view, as ``Connection.stream(sid)`` returns one (wire units)."""

    priority: int = 0
    qos: QosPolicy | None = None
    ordered: bool = True
    paths: tuple | None = None
    progress: tuple = (0, 0, 0, 0, 0)


@implementer(IStreamConnection)
class FakeStreamConnection:
    """
    What a :class:`~kwik_twisted.glue.transport.KwikStreamTransport` calls on its Kwik connection
    (:class:`~kwik_twisted.glue.interfaces.IStreamConnection`), recorded: the stream operations
    (``send``, ``resetStream``, ``stopSending``, ``pauseReading``, ``requestPull``,
    ``scheduleTurn``) append ``(name, arguments)`` to :attr:`calls`.

    :ivar ordered: what ``streamOrdered`` answers (the core's view of the stream's ORDERED flag).
    :ivar reactor: a ``task.Clock`` for the transport's ``callLater(0)`` calls.
    :ivar detached: the stream IDs whose transport let go of them, in order.
    :ivar view: what ``streamView`` answers (a :class:`FakeStreamView`; ``None``: the stream is
        gone); ``updateStream`` records its call and changes it.
    """

    def __init__(self, ordered: bool = True) -> None:
        self.ordered = ordered
        self.reactor = Clock()
        self.calls: list[tuple] = []
        self.detached: list[int] = []
        self.view: FakeStreamView | None = FakeStreamView(ordered=ordered)

    def _record(self, name: str, *args) -> None:
        self.calls.append((name, args))

    def send(self, streamId: int, data: bytes, fin: bool = False) -> bool:
        """Record the data; the core would take it."""
        self._record("send", streamId, data, fin)
        return True

    def resetStream(self, streamId: int, code: int) -> None:
        """Record a RESET_STREAM."""
        self._record("resetStream", streamId, code)

    def stopSending(self, streamId: int, code: int) -> None:
        """Record a STOP_SENDING."""
        self._record("stopSending", streamId, code)

    def pauseReading(self, streamId: int, paused: bool) -> None:
        """Record a pause or a resume."""
        self._record("pauseReading", streamId, paused)

    def requestPull(self, transport) -> None:
        """Record that the transport wants a ``pull()`` (the test calls it)."""
        self._record("requestPull", transport)

    def scheduleTurn(self) -> None:
        """Record that a service turn was asked for."""
        self._record("scheduleTurn")

    def streamOrdered(self, streamId: int) -> bool:
        """The configured answer."""
        return self.ordered

    def streamView(self, streamId: int):
        """The configured view."""
        return self.view

    def updateStream(self, streamId: int, **changes) -> None:
        """Record the change and apply it to :attr:`view` (if the stream is not gone)."""
        self._record("updateStream", streamId, changes)
        if self.view is not None:
            for name, value in changes.items():
                setattr(self.view, name, value)

    def writable(self, streamId: int) -> bool:
        """Always room."""
        return True

    def detach(self, streamId: int) -> None:
        """Record that the transport let go of its stream."""
        self.detached.append(streamId)


@implementer(IConnectionOwner)
class FakeConnectionOwner:
    """
    The port side of the connection glue (:class:`~kwik_twisted.glue.interfaces.IConnectionOwner`),
    reduced to recording: datagrams sent go to :attr:`sent`, every other call to :attr:`calls` as
    ``(name, arguments)``.  It has no end-of-batch hook (``received`` is ``None``), so a
    connection services on the next turn.
    """

    received = None

    def __init__(self) -> None:
        self.sent: list[tuple] = []
        self.calls: list[tuple] = []

    def sendDatagrams(self, out: list) -> None:
        """Keep the ``(data, local, remote)`` triples."""
        self.sent.extend(out)

    def hostAddress(self):
        """A fixed local address."""
        return IPv4Address("UDP", "127.0.0.1", 50000)

    def openPath(self, localHost: str, remote) -> int:
        """Refuse, as a server does."""
        raise ConfigurationError("the fake owner opens no paths")

    def streamOpenedByPeer(self, conn, streamId: int) -> None:
        """Record the stream."""
        self.calls.append(("streamOpenedByPeer", (conn, streamId)))

    def handshakeCompleted(self, conn) -> None:
        """Record the handshake."""
        self.calls.append(("handshakeCompleted", (conn,)))

    def pathChanged(self, conn, event) -> None:
        """Record the path event."""
        self.calls.append(("pathChanged", (conn, event)))

    def addressAdvertised(self, conn, event) -> None:
        """Record the advertised address."""
        self.calls.append(("addressAdvertised", (conn, event)))

    def connectionTerminated(self, conn, event) -> None:
        """Record the termination."""
        self.calls.append(("connectionTerminated", (conn, event)))

    def streamsIdle(self, conn) -> None:
        """Record that no streams are left."""
        self.calls.append(("streamsIdle", (conn,)))

    def connectionGone(self, conn) -> None:
        """Record that the connection is gone."""
        self.calls.append(("connectionGone", (conn,)))


# -- stream protocols the glue tests share ------------------------------------------


class Echo(Protocol):
    """Sends every byte back."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class Collect(Protocol):
    """Collects data; ``received`` fires when ``expected`` bytes arrived."""

    expected = 5

    def connectionMade(self) -> None:
        self.buffer = b""
        self.received = defer.Deferred()
        self.lost = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= self.expected and not self.received.called:
            self.received.callback(self.buffer)

    def connectionLost(self, reason) -> None:
        self.lost.callback(reason.value)


class Recorder(Protocol):
    """A plain protocol: records the bytes and the reason it lost its connection."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.lost: list = []
        self.done: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason) -> None:
        self.lost.append(reason)
        self.done.callback(self)

    @property
    def received(self) -> bytes:
        return b"".join(self.chunks)


@implementer(IKwikMessageProtocol)
class PieceRecorder(Recorder):
    """A protocol that takes pieces: records ``(offset, data)`` in arrival order."""

    def __init__(self) -> None:
        super().__init__()
        self.pieces: list[tuple[int, bytes]] = []

    def pieceReceived(self, offset: int, data: bytes) -> None:
        self.pieces.append((offset, data))
