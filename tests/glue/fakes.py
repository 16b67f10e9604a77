"""
A fake UDP reactor: a ``task.Clock`` whose UDP ports exchange datagrams in memory.

:class:`FakeUDPReactor` lets the glue run real Kwik connections (real TLS, real packets)
deterministically and without sockets: datagrams are queued by ``write`` and delivered by
:meth:`FakeUDPReactor.pump`, which also runs the delayed calls that come due, in fake time.
:class:`FakeKwik` puts a Kwik server endpoint and a client endpoint on one such reactor, with
seeded entropy.
"""

from __future__ import annotations

import errno
from collections import deque

from twisted.internet import defer, error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IListeningPort, IReactorUDP, IUDPTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from zope.interface import implementer

from kwik_twisted.core.entropy import SeededEntropy
from kwik_twisted.endpoints import KwikClientEndpoint, KwikServerEndpoint
from kwik_twisted.testing.pair import client_config, server_config

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


@implementer(IReactorUDP)
class FakeUDPReactor(Clock):
    """
    A clock with in-memory UDP.

    :ivar inFlight: queued ``(source, destination, datagram)`` triples.
    :ivar drop: a predicate ``(source, destination, datagram) -> bool`` that loses datagrams.
    :ivar names: what :meth:`resolve` knows.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ports: dict[tuple, FakeUDPPort] = {}
        self.inFlight: deque = deque()
        self.drop = None
        self.names = {"localhost": "127.0.0.1"}
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
        """Resolve from :attr:`names`; anything else is a DNSLookupError."""
        if name in self.names:
            return defer.succeed(self.names[name])
        return defer.fail(error.DNSLookupError(name))

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
        """Open a stream; return ``(client protocol, deferred result list)`` after pumping."""
        results: list = []
        d = self.client.connect(Factory.forProtocol(clientProtocol))
        d.addBoth(results.append)
        self.pump()
        return results

    def pump(self, seconds: float = 0.0) -> None:
        """Run the fake network until quiet."""
        self.reactor.pump(seconds)


class FakeStreamConnection:
    """
    What a :class:`~kwik_twisted.transport.KwikStreamTransport` calls on its Kwik connection,
    recorded: the stream operations (``send``, ``resetStream``, ``stopSending``, ...) append
    ``(name, arguments)`` to :attr:`calls`.

    :ivar ordered: what ``streamOrdered`` answers (the core's view of the stream's ORDERED flag).
    :ivar reactor: a ``task.Clock`` for the transport's ``callLater(0)`` calls.
    """

    def __init__(self, ordered: bool = True) -> None:
        self.ordered = ordered
        self.reactor = Clock()
        self.calls: list[tuple] = []
        self.detached: list[int] = []

    def streamOrdered(self, stream_id: int) -> bool:
        """The configured answer."""
        return self.ordered

    def writable(self, stream_id: int) -> bool:
        """Always room."""
        return True

    def detach(self, stream_id: int) -> None:
        """Record that the transport let go of its stream."""
        self.detached.append(stream_id)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)

        def record(*args):
            self.calls.append((name, args))

        return record
