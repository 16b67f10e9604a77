"""
Dual-stack connecting for the client endpoint: every address of a name, tried in turn.

Theory of operation (as Twisted's ``HostnameEndpoint``, after RFC 8305 "Happy Eyeballs").
:func:`resolveAddresses` asks the reactor's name resolver
(:class:`~twisted.internet.interfaces.IReactorPluggableNameResolver`, so a test can plug in its
own) for every IPv6 and IPv4 address of the host, in the resolver's order (``getaddrinfo`` sorts
them by RFC 6724 preference); a reactor without one is asked ``reactor.resolve`` (one IPv4
address).  An :class:`AddressRace` then starts a handshake to the first address, and to the next
one after a head start of :data:`ATTEMPT_DELAY` seconds, or at once when an attempt fails; the
first handshake to complete wins, and every other attempt is cancelled (its connection abandoned,
its UDP port stopped).  When all of them failed, the race fails with the last failure.

Server load.  A server tells each client its load when the handshake completes (the
``server_load`` transport parameter, 0..1).  An endpoint remembers the figure of each address it
heard from in a :class:`ServerLoads` (bounded, each figure forgotten after :data:`LOAD_LIFETIME`
seconds), and :meth:`ServerLoads.order` puts the addresses of the next race in order of their
servers' last load (:func:`orderByLoad`): a known idler server first, a known busier one after the
addresses never heard from, which count as half loaded (:data:`UNKNOWN_LOAD`), so that they get
tried and their load learnt.  Loads in the same tenth (:data:`LOAD_STEP`) count as equal and keep
the resolver's order, so noise does not override the address-family preference.

Each attempt is a :class:`ClientCandidate`: one UDP port and one
:class:`~kwik_twisted.glue.client.KwikClientProtocol` connected to one address.  It stands in for
the endpoint's record of the connection (:class:`~kwik_twisted.glue.interfaces.IClientPortOwner`)
towards its port protocol: while racing it reports to the race; once it won, it hands every report
on to the record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from twisted.internet import defer, error
from twisted.internet.abstract import isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IReactorPluggableNameResolver, IResolutionReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from .client import KwikClientProtocol
from .interfaces import IClientPortOwner
from .ports import MAX_DATAGRAM
from .udp import listenBatchingUDP

#: Seconds each address has to itself before the next one is tried (HostnameEndpoint's
#: ``attemptDelay``, RFC 8305's "Connection Attempt Delay").
ATTEMPT_DELAY = 0.3
#: Seconds a server's reported load is used to order its address; older figures are forgotten.
LOAD_LIFETIME = 60.0
#: Addresses whose load one endpoint remembers at most (the least recently reported go first).
MAX_LOADS = 32
#: The load an address never heard from counts as (in the middle, so it is tried before a busier
#: server and after an idler one).
UNKNOWN_LOAD = 0.5
#: Loads closer than this (in the same tenth) order as equal.
LOAD_STEP = 0.1


@implementer(IResolutionReceiver)
class _Addresses:
    """Collects the addresses of one resolution; ``deferred`` fires with their hosts."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.hosts: list[str] = []
        self.deferred = defer.Deferred()

    def resolutionBegan(self, resolution) -> None:
        """Nothing to do."""

    def addressResolved(self, address) -> None:
        """Remember ``address``'s host (once)."""
        if address.host not in self.hosts:
            self.hosts.append(address.host)

    def resolutionComplete(self) -> None:
        """Fire with the hosts, or DNSLookupError when there is none."""
        if self.deferred.called:
            return
        if self.hosts:
            self.deferred.callback(self.hosts)
        else:
            self.deferred.errback(error.DNSLookupError(f"{self.host}: no IPv4 or IPv6 address"))


def bindable(addresses: list[str], bindAddress) -> list[str]:
    """
    The addresses a client bound to ``bindAddress`` can try, in order.

    Without a bind address, all of them.  With one, only those of its family (an IPv4 socket
    cannot reach an IPv6 address, as ``HostnameEndpoint`` also reasons); and with a fixed port,
    only the first of those, because a stopped UDP port frees its socket only on the next reactor
    turn and the next attempt could not bind the same port.
    """
    if not bindAddress:
        return list(addresses)
    host, port = bindAddress
    if host:
        v6 = isIPv6Address(host)
        addresses = [a for a in addresses if isIPv6Address(a) == v6]
    return list(addresses[:1]) if port else list(addresses)


#: Both loopback addresses, which a ``localhost`` name always means (RFC 6761, section 6.3).
LOOPBACKS = ("::1", "127.0.0.1")


def isLocalhost(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a name under ``.localhost`` (RFC 6761, 6.3)."""
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def resolveAddresses(reactor, host: str, port: int) -> defer.Deferred:
    """
    Every IPv6 and IPv4 address of ``host``, in the resolver's order.

    A ``localhost`` name means the loopback of both families whatever the hosts file says (RFC
    6761, section 6.3, as browsers do): many systems map it to 127.0.0.1 only, and a server
    listening on ``::1`` would then be out of reach.  The resolver's answers come first, then the
    loopback addresses it did not give.

    :returns: a Deferred firing with a list of IP address strings, or failing with
        ``DNSLookupError``.
    """
    pluggable = IReactorPluggableNameResolver(reactor, None)
    if pluggable is None:
        found = reactor.resolve(host).addCallback(lambda address: [address])
    else:
        receiver = _Addresses(host)
        try:
            pluggable.nameResolver.resolveHostName(receiver, host, port,
                                                   (IPv4Address, IPv6Address), "UDP")
        except Exception:
            return defer.fail()
        found = receiver.deferred
    if isLocalhost(host):
        found.addErrback(lambda _: [])
        found.addCallback(lambda hosts: hosts + [a for a in LOOPBACKS if a not in hosts])
    return found


def orderByLoad(addresses: Iterable[str], loads: Mapping[str, float]) -> list[str]:
    """
    ``addresses`` in order of their servers' load, lowest first (a stable sort, so equal loads keep
    the resolver's order).

    :param loads: the known load (0..1) of some addresses; the others count as
        :data:`UNKNOWN_LOAD`.  Loads in the same :data:`LOAD_STEP` count as equal.
    """

    step = round(LOAD_STEP * 1000)

    def bucket(address: str) -> int:  # in permille, so that 0.3 is in the third tenth
        return round(loads.get(address, UNKNOWN_LOAD) * 1000) // step

    return sorted(addresses, key=bucket)


class ServerLoads:
    """
    The load each server address last reported, for one endpoint: bounded to :data:`MAX_LOADS`
    addresses, each figure forgotten :data:`LOAD_LIFETIME` seconds after it arrived.

    The entries are kept in the order they were reported (a new report moves its address to the
    end), so the oldest is always first: expiry and eviction take from the front, O(1) each.
    """

    __slots__ = ("_loads", "lifetime", "limit")

    def __init__(self, lifetime: float = LOAD_LIFETIME, limit: int = MAX_LOADS) -> None:
        self._loads: dict[str, tuple[float, float]] = {}
        self.lifetime = lifetime
        self.limit = limit

    def __len__(self) -> int:
        return len(self._loads)

    def record(self, address: str, load: float, now: float) -> None:
        """``address``'s server reported ``load`` (0..1) at ``now``."""
        self._loads.pop(address, None)
        self._loads[address] = (min(1.0, max(0.0, load)), now)
        self._expire(now)
        while len(self._loads) > self.limit:
            del self._loads[next(iter(self._loads))]

    def get(self, address: str, now: float) -> float | None:
        """The load ``address``'s server last reported, or ``None`` (never, or too long ago)."""
        self._expire(now)
        entry = self._loads.get(address)
        return None if entry is None else entry[0]

    def order(self, addresses: Iterable[str], now: float) -> list[str]:
        """``addresses`` with the less loaded servers first (see :func:`orderByLoad`)."""
        self._expire(now)
        loads = {address: entry[0] for address, entry in self._loads.items()}
        return orderByLoad(addresses, loads)

    def _expire(self, now: float) -> None:
        loads = self._loads
        while loads:
            oldest = next(iter(loads))
            if now - loads[oldest][1] < self.lifetime:
                return
            del loads[oldest]


class AddressRace:
    """
    Handshakes to several addresses, each started :data:`ATTEMPT_DELAY` seconds after the
    previous one (at once when one fails); the first to complete wins.

    :param launch: ``launch(address)`` makes a candidate: an object with ``start(race)``, which
        begins its handshake and later calls :meth:`succeeded` or :meth:`failed`, and
        ``stop()``, which gives it up.
    :ivar deferred: fires with the winning candidate, or fails with the last failure (never
        after :meth:`cancel`).
    :ivar candidates: every candidate started, in order.
    """

    def __init__(self, reactor, addresses, launch, delay: float = ATTEMPT_DELAY) -> None:
        self.reactor = reactor
        self.deferred = defer.Deferred()
        self.candidates: list = []
        self._pending = list(addresses)
        self._running: list = []
        self._launch = launch
        self._delay = delay
        self._timer = None
        self._lastFailure: Failure | None = None
        self._done = False

    def start(self) -> None:
        """Start the first attempt."""
        self._next()

    def _next(self) -> None:
        self._cancelTimer()
        if self._done:
            return
        if not self._pending:
            self._maybeFail()
            return
        address = self._pending.pop(0)
        try:
            candidate = self._launch(address)
        except Exception:
            self._lastFailure = Failure()
            self._next()
            return
        self.candidates.append(candidate)
        self._running.append(candidate)
        if self._pending:
            self._timer = self.reactor.callLater(self._delay, self._next)
        candidate.start(self)

    def succeeded(self, candidate) -> None:
        """``candidate`` completed its handshake: it wins unless another did first."""
        if candidate in self._running:
            self._running.remove(candidate)
        if self._done:
            candidate.stop()
            return
        self._done = True
        self._stopOthers()
        self.deferred.callback(candidate)

    def failed(self, candidate, failure: Failure) -> None:
        """``candidate`` failed: try the next address now (or fail when none is left)."""
        if candidate not in self._running:
            return
        self._running.remove(candidate)
        self._lastFailure = failure
        candidate.stop()
        if self._pending:
            self._next()
        else:
            self._maybeFail()

    def cancel(self) -> None:
        """Give up: stop every attempt; the Deferred never fires."""
        self._done = True
        self._stopOthers()

    def _maybeFail(self) -> None:
        if self._running or self._done:
            return
        self._done = True
        failure = self._lastFailure or Failure(error.ConnectError(string="no address to try"))
        self.deferred.errback(failure)

    def _stopOthers(self) -> None:
        self._cancelTimer()
        self._pending.clear()
        running, self._running = self._running, []
        for candidate in running:
            candidate.stop()

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


@implementer(IClientPortOwner)
class ClientCandidate:
    """
    One handshake attempt to one address: a UDP port and its client port protocol.

    :param owner: the endpoint's record of the connection (an ``IClientPortOwner``): told
        everything once this candidate won.
    :param loads: the endpoint's :class:`ServerLoads`, told the load the server at ``address``
        reports (``None``: nobody is told).
    :param settings: the keyword arguments of the port protocol besides ``reactor``,
        ``remote``, ``owner`` and ``onServerLoad`` (``config``, ``entropy``, ``paths``,
        ``backup``, ``costs``, ``tlsContext``); each path's ``None`` remote host is this
        candidate's address.
    :ivar stopped: fires once the UDP port (and the sockets of the extra paths) stopped.
    """

    def __init__(self, reactor, address: str, port: int, bindAddress, owner,
                 loads: ServerLoads | None = None, **settings) -> None:
        self.reactor = reactor
        self.loads = loads
        self.address = address
        self.port = port
        self.bindAddress = bindAddress
        self.owner = owner
        self.settings = settings
        self.proto: KwikClientProtocol | None = None
        self.won = False
        self.stopped = defer.Deferred()
        self._race: AddressRace | None = None
        self._udp = None
        self._stopping = False

    def start(self, race: AddressRace) -> None:
        """Bind the UDP port and send the ClientHello; a failure is reported to the race."""
        self._race = race
        settings = dict(self.settings)
        settings["paths"] = [(local, (host or self.address, port or self.port))
                             for local, host, port in settings.get("paths", ())]
        interface, port = self.bindAddress or ("::" if isIPv6Address(self.address) else "", 0)
        if self.loads is not None:
            settings["onServerLoad"] = self._serverLoad
        proto = KwikClientProtocol(self.reactor, remote=(self.address, self.port), owner=self,
                                   **settings)
        try:
            self._udp = listenBatchingUDP(self.reactor, port, proto, interface=interface,
                                          maxPacketSize=MAX_DATAGRAM)
            self.proto = proto
            proto.start()
        except Exception:
            failure = Failure()
            self.stop()
            race.failed(self, failure)

    def stop(self, reason: str = "connection attempt given up") -> defer.Deferred:
        """Abandon the connection (its port stops once it is gone) or stop the port now."""
        conn = self.proto.connection if self.proto is not None else None
        if conn is not None and not conn.dead:
            conn.abandon(reason)
        else:
            self._stopPort()
        return self.stopped

    def _stopPort(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        stops = [defer.maybeDeferred(self._udp.stopListening)] if self._udp is not None else []
        if self.proto is not None:
            stops.append(self.proto.stopSockets())
        self._udp = None
        d = defer.gatherResults(stops, consumeErrors=True)
        d.addBoth(lambda _: self.stopped.callback(None))

    def _serverLoad(self, load: float) -> None:
        """The server at our address reported its load: the endpoint remembers it."""
        self.loads.record(self.address, load, self.reactor.seconds())

    # -- IClientPortOwner ------------------------------------------------------------

    def handshakeCompleted(self) -> None:
        """Report to the race; the winner tells the owner."""
        if self._race is not None:
            self._race.succeeded(self)
        if self.won:
            self.owner.handshakeCompleted()

    def connectionFailed(self, failure: Failure) -> None:
        """Report to the race (or to the owner, once won)."""
        if self.won:
            self.owner.connectionFailed(failure)
        elif self._race is not None:
            self._race.failed(self, failure)

    def terminated(self) -> None:
        """Hand on once won."""
        if self.won:
            self.owner.terminated()

    def idle(self) -> None:
        """Hand on once won."""
        if self.won:
            self.owner.idle()

    def gone(self) -> None:
        """The connection's core state is gone: the owner (once won) or we stop the port."""
        if self.won:
            self.owner.gone()
        else:
            self._stopPort()


__all__ = [
    "ATTEMPT_DELAY", "AddressRace", "ClientCandidate", "ServerLoads", "orderByLoad",
    "resolveAddresses",
]
