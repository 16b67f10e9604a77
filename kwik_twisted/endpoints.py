"""
Kwik endpoints: ``IStreamServerEndpoint`` and ``IStreamClientEndpoint`` over Kwik streams.

Theory of operation.  A server endpoint listens on one UDP port (:class:`KwikServerProtocol`);
every stream a client opens becomes a protocol built by the listening factory, whose ``doStart``
runs on listen and ``doStop`` on ``stopListening``.  Stopping the port closes its connections at
once.  Its connections accept unordered streams only when the factory's ``protocol`` class
implements :class:`~kwik_twisted.interfaces.IKwikMessageProtocol`; for any other factory every
stream is reassembled in order (``docs/endpoints.rst``, "Ordered and unordered streams").

A client endpoint's ``connect()`` opens a *stream*, not a connection: streams to the same server
(``host``, ``port``, TLS server name and an equal :class:`~kwik_twisted.config.ConnectionConfig`)
share one live Kwik connection from a per-reactor pool, unless ``reuse=False``.  Each stream gets
the endpoint's ``priority`` and ``qos``; more streams, with other options, open on the same
connection with ``transport.kwikConnection.openStream``.  A host name is resolved to all its
addresses, IPv6 and IPv4, and handshakes race to them as Twisted's ``HostnameEndpoint`` does
(:mod:`kwik_twisted.glue.dualstack`), the addresses whose servers last reported a lower load
first (each endpoint remembers the loads it heard, for a minute).  The Deferred fires
with the protocol, already connected, once the handshake completed; it fails with
``DNSLookupError``, ``ConnectionRefusedError`` (ICMP port unreachable), :class:`KwikHandshakeError`
(a ``ConnectError`` carrying the TLS reason), ``TimeoutError`` after ``timeout`` seconds, or
``ConnectingCancelledError`` when cancelled.  As with Twisted's endpoints, the factory's
``doStart`` runs when connecting and ``doStop`` when the attempt fails or the stream's protocol
lost its connection.  A new connection offers the TLS session ticket its endpoint kept from an
earlier connection to the same server name and port (:mod:`kwik_twisted.glue.tickets`), unless
``resumption=False``: a resumed handshake skips the certificate.

Multipath.  A client endpoint given ``paths`` binds one more UDP socket per extra path (to the
path's local address) when it connects, and opens the paths once the handshake completed; ``backup``
marks paths as backups, and ``costs`` gives paths a cost (a costly path carries data only when the
cheaper ones cannot meet the demand or the QoS).  With ``config.use_advertised`` it also opens a
path to each address the server advertises, from a socket of its own (see
:mod:`kwik_twisted.glue.client`).  A server endpoint given ``extraInterfaces`` listens on those
addresses too (same port number, same connections), so a client may open paths to any of them.

In a worker process of :mod:`kwik_twisted.workers` (``KWIK_WORKER_*`` in the environment) a
server endpoint adopts the UDP socket its parent bound for its port instead of binding
(:mod:`kwik_twisted.glue.workerport`), and its CIDs route back to it (``docs/deployment.rst``).

A pooled connection with no streams left lingers :data:`POOL_LINGER` seconds for reuse, then
closes. :func:`closeClientConnections` closes every client connection of a reactor and fires when
their UDP ports are stopped (tests call it to leave the reactor clean).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from weakref import WeakKeyDictionary

from twisted.internet import defer, error
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IListeningPort, IStreamClientEndpoint, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .config import ConnectionConfig
from .core.crypto.handshake import make_context
from .core.paths.manager import check_cost
from .errors import ConfigurationError, KwikError
from .glue.client import KwikClientProtocol, KwikHandshakeError
from .glue.connection import ip_address
from .glue.controls import checkQoS
from .glue.dualstack import AddressRace, ClientCandidate, ServerLoads, bindable, resolveAddresses
from .glue.entropy import SystemEntropy
from .glue.interfaces import IClientPortOwner
from .glue.ports import MAX_DATAGRAM
from .glue.server import KwikServerProtocol
from .glue.tickets import TicketStore
from .glue.udp import listenBatchingUDP
from .glue.workerport import adoptWorkerSocket, workerConfig
from .glue.workers import worker_environment
from .streams import Priority, QoSPolicy, as_priority

#: Seconds an unused pooled client connection stays open for reuse.
POOL_LINGER = 2.0

log = Logger()


# -- server ---------------------------------------------------------------------------------


@implementer(IStreamServerEndpoint)
class KwikServerEndpoint:
    """
    Listen for Kwik connections on a UDP port.

    :param port: the UDP port (0 picks a free one; ``getHost()`` of the listening port tells which).
    :param config: a server :class:`ConnectionConfig` (certificate and key in ``config.tls``).
    :param interface: the local address to bind (``""``: every IPv4 address; ``"::"``: IPv6).
    :param extraInterfaces: more local addresses to listen on, with the same port number, for the
        same connections (clients may open paths to any of them).  Binding each address of a
        multihomed server, rather than a wildcard, makes replies leave from the address a path
        uses.
    :param entropy: a randomness source (default: the OS's CSPRNG).
    :param qlog: a directory for qlog traces, one file per connection
        (``<odcid>_server.sqlog``); ``None``: the ``QLOGDIR`` environment variable, if set.
    """

    def __init__(self, reactor, port: int, *, config: ConnectionConfig, interface: str = "",
                 extraInterfaces=(), entropy=None, qlog: str | None = None) -> None:
        self._qlog = qlog
        self._reactor = reactor
        self._port = port
        self._config = config
        self._interface = interface
        self._extraInterfaces = tuple(extraInterfaces)
        self._entropy = entropy or SystemEntropy()

    def listen(self, protocolFactory) -> defer.Deferred:
        """Listen; the Deferred fires with a :class:`KwikListeningPort` (or CannotListenError)."""
        return defer.execute(self._listen, protocolFactory)

    def _listen(self, factory) -> KwikListeningPort:
        port = KwikListeningPort(self._reactor, self._port, self._interface, self._config, factory,
                                 self._entropy, self._extraInterfaces, qlog=self._qlog)
        port.startListening()
        return port

    def __repr__(self) -> str:
        return f"<KwikServerEndpoint {self._interface or '*'}:{self._port}>"


@implementer(IListeningPort)
class KwikListeningPort:
    """A listening Kwik server: a UDP port and the connections on it."""

    def __init__(self, reactor, port: int, interface: str, config, factory, entropy,
                 extraInterfaces=(), qlog: str | None = None) -> None:
        self._qlog = qlog
        self._reactor = reactor
        self._portNumber = port
        self._interface = interface
        self._extraInterfaces = tuple(extraInterfaces)
        self._config = config
        self.factory = factory
        self._entropy = entropy
        self._udp = None
        self._worker = None
        self.protocol: KwikServerProtocol | None = None

    def startListening(self) -> None:
        """
        Bind the UDP port(s) (no-op when listening).

        :raises CannotListenError: a port is in use (none stays bound then).
        """
        if self._udp is not None:
            return
        worker = worker_environment()
        config = self._config if worker is None else workerConfig(self._config, worker)
        proto = KwikServerProtocol(self._reactor, config, self.factory, entropy=self._entropy,
                                   qlog=self._qlog)
        if worker is None:
            udp = listenBatchingUDP(self._reactor, self._portNumber, proto,
                                    interface=self._interface, maxPacketSize=MAX_DATAGRAM)
        else:
            udp = self._adopt(worker, proto)
        self._worker = worker
        number = udp.getHost().port
        try:
            for interface in self._extraInterfaces:
                proto.bindSocket(interface, number)
        except BaseException:
            proto.stopSockets()
            udp.stopListening()
            raise
        self._udp = udp
        self.protocol = proto
        self._portNumber = number  # listen again on the same port if restarted
        self.factory.doStart()
        log.info("Kwik server listening on {address}", address=self._udp.getHost())

    def stopListening(self) -> defer.Deferred:
        """Close every connection at once, stop the UDP port, then ``factory.doStop()``."""
        udp, self._udp = self._udp, None
        if udp is None:
            return defer.succeed(None)
        if self._worker is not None:
            log.info("Kwik worker {index} of {count} (generation {generation}) stops listening: "
                     "{misrouted} misrouted datagrams", index=self._worker.index,
                     count=self._worker.count, generation=self._worker.generation,
                     misrouted=self.protocol.dispatcher.stats.get("misrouted", 0))
        self.protocol.shutdown()
        d = defer.gatherResults([defer.maybeDeferred(udp.stopListening),
                                 self.protocol.stopSockets()], consumeErrors=True)
        d.addCallback(lambda _: None)
        d.addBoth(self._stopped)
        return d

    def _stopped(self, result):
        self.factory.doStop()
        return result

    def getHost(self):
        """The bound UDP address (the real port number when 0 was asked for)."""
        if self._udp is not None:
            return self._udp.getHost()
        return ip_address((self._interface or "0.0.0.0", self._portNumber))

    def __repr__(self) -> str:
        return f"<KwikListeningPort {self.getHost()}>"

    def _adopt(self, worker, proto):
        """In a worker process: adopt the socket the parent bound (see glue/workerport.py)."""
        return adoptWorkerSocket(self._reactor, worker, self._portNumber, proto,
                                 self._extraInterfaces, self)

    def connectionCount(self) -> int:
        """How many connections the port has (0 when not listening)."""
        return len(self.protocol.connections) if self._udp is not None else 0


# -- client ---------------------------------------------------------------------------------

#: reactor -> {key: [entries]}: the pooled client connections of each reactor.
_pools: WeakKeyDictionary = WeakKeyDictionary()
#: reactor -> set of every client connection (pooled or not), for closeClientConnections.
_all: WeakKeyDictionary = WeakKeyDictionary()


def _registry(table: WeakKeyDictionary, reactor, default):
    try:
        return table.setdefault(reactor, default)
    except TypeError:  # a reactor that cannot be weakly referenced: pool on the object itself
        name = "_kwik_pool_" + str(id(table))
        if not hasattr(reactor, name):
            setattr(reactor, name, default)
        return getattr(reactor, name)


def closeClientConnections(reactor) -> defer.Deferred:
    """Close every Kwik client connection of ``reactor``; fire when their ports are stopped."""
    entries = list(_registry(_all, reactor, set()))
    return defer.gatherResults([entry.shutdown() for entry in entries], consumeErrors=True)


@implementer(IStreamClientEndpoint)
class KwikClientEndpoint:
    """
    Open Kwik streams to ``host``:``port``.

    :param host: a host name or an IPv4/IPv6 literal.  A name is resolved to all its IPv6 and
        IPv4 addresses with the reactor's ``nameResolver``, and handshakes to them start in turn,
        each :data:`~kwik_twisted.glue.dualstack.ATTEMPT_DELAY` seconds after the previous one
        (at once when one fails); the first to complete is the connection (as Twisted's
        ``HostnameEndpoint`` does).
    :param config: a client :class:`ConnectionConfig`; when ``config.tls.server_name`` is unset the
        certificate is checked against ``host``.
    :param timeout: seconds before a connection attempt fails with ``TimeoutError``.
    :param bindAddress: ``(host, port)`` to bind the client's UDP port to.
    :param reuse: share a live connection to the same server with other endpoints.
    :param paths: extra paths, each a local IP address (a path from there to the server), or a
        tuple ``(local_host, remote_host, remote_port)`` where ``remote_host`` (an IP address)
        and ``remote_port`` may be ``None`` for the server's.  Each gets its own UDP socket.
    :param backup: indexes of paths to mark backup (0: the handshake's path, 1: the first of
        ``paths``...).
    :param costs: ``{index: cost}``, indexes as ``backup``'s: what sending on each path costs, a
        finite number >= 0 (0 by default); a path with a cost carries data only when cheaper
        paths cannot meet the demand or the streams' QoS.  ``setPathCost`` changes it later.
    :param priority: the :class:`~kwik_twisted.streams.Priority` of the stream each
        ``connect()`` opens.
    :param qos: the :class:`~kwik_twisted.streams.QoSPolicy` of the stream each ``connect()``
        opens (sent with it), or ``None``.
    :param qlog: a directory for qlog traces, one file per connection
        (``<odcid>_client.sqlog``); ``None``: the ``QLOGDIR`` environment variable, if set.
    :param resumption: resume later connections to a server with a TLS session ticket from an
        earlier one (kept per endpoint: :class:`~kwik_twisted.glue.tickets.TicketStore`).
    :raises ConfigurationError: a path, backup index or cost is malformed, there are more paths
        than ``config.max_paths``, or ``priority`` is not a priority.
    :raises TypeError: ``qos`` is not a ``QoSPolicy``.
    """

    def __init__(self, reactor, host: str, port: int, *, config: ConnectionConfig,
                 timeout: float = 30.0, bindAddress: tuple | None = None, reuse: bool = True,
                 paths=(), backup=(), costs=None, entropy=None, priority=Priority.NORMAL,
                 qos: QoSPolicy | None = None, qlog: str | None = None,
                 resumption: bool = True) -> None:
        self._qlog = qlog
        self._tickets = TicketStore() if resumption else None
        self._reactor = reactor
        self._host = host
        self._port = port
        tls = config.tls
        if tls is not None and getattr(tls, "server_name", "") is None:
            config = dataclasses.replace(config, tls=dataclasses.replace(tls, server_name=host))
        self._config = config
        self._timeout = timeout
        self._bindAddress = bindAddress
        self._reuse = reuse
        self._paths = normalizePaths(paths)
        self._backup = _backupIndexes(backup, len(self._paths))
        self._costs = _costPairs(costs or {}, len(self._paths))
        self._serverLoads = ServerLoads()
        if len(self._paths) >= config.max_paths:
            raise ConfigurationError(
                f"{len(self._paths)} extra paths and the handshake's exceed max_paths "
                f"({config.max_paths})")
        self._entropy = entropy or SystemEntropy()
        self._tlsContext = None
        self._streamOptions = {"priority": as_priority(priority), "qos": checkQoS(qos)}

    def _sharedContext(self):
        """
        The OpenSSL context every connection of this endpoint shares, made on first use.

        Loading the trust roots costs more than a handshake's own bookkeeping; a server likewise
        shares one context.  PEM files are read when the first connection is made.
        """
        if self._tlsContext is None:
            self._tlsContext = make_context(self._config.tls, is_client=True)
        return self._tlsContext

    def connect(self, protocolFactory) -> defer.Deferred:
        """Open a stream; fires with the connected protocol."""
        entry = self._entry()
        protocolFactory.doStart()
        attempt = _Attempt(self._reactor, protocolFactory, entry, self._timeout,
                           self._streamOptions)
        entry.addAttempt(attempt)
        if entry.state == "new":
            entry.start()
        return attempt.deferred

    def _entry(self) -> _ClientConnection:
        key = (self._host, self._port, getattr(self._config.tls, "server_name", None),
               self._paths, self._backup, self._costs, self._qlog)
        pool = _registry(_pools, self._reactor, {})
        if self._reuse:
            for entry in pool.get(key, ()):
                if entry.reusable and entry.config == self._config:
                    return entry
        entry = _ClientConnection(self._reactor, self._host, self._port, self._config,
                                  self._bindAddress, self._entropy, key if self._reuse else None,
                                  self._paths, self._backup, self._sharedContext, self._qlog,
                                  costs=self._costs, loads=self._serverLoads,
                                  tickets=self._tickets)
        if self._reuse:
            pool.setdefault(key, []).append(entry)
        _registry(_all, self._reactor, set()).add(entry)
        return entry

    def __repr__(self) -> str:
        return f"<KwikClientEndpoint {self._host}:{self._port}>"


def _ipLiteral(what: str, value) -> str:
    if not isinstance(value, str) or not (isIPAddress(value) or isIPv6Address(value)):
        raise ConfigurationError(f"{what} {value!r}: expected an IPv4 or IPv6 address")
    return value


def normalizePaths(paths) -> tuple[tuple[str, str | None, int | None], ...]:
    """
    Check extra-path descriptions; return ``(local_host, remote_host, remote_port)`` triples.

    Each item is a local IP address, or a tuple of one to three items ``(local_host[,
    remote_host[, remote_port]])``; a missing or ``None`` remote part means the server's.

    :raises ConfigurationError: an item is malformed.
    """
    result = []
    for item in paths:
        parts = (item,) if isinstance(item, str) else tuple(item)
        if not 1 <= len(parts) <= 3:
            raise ConfigurationError(f"path {item!r}: expected (local, remote host, remote port)")
        local, host, port = (parts + (None, None))[:3]
        local = _ipLiteral("path local address", local)
        if host is not None:
            host = _ipLiteral("path remote address", host)
        if port is not None and (type(port) is not int or not 1 <= port <= 65535):
            raise ConfigurationError(f"path {item!r}: remote port must be 1..65535")
        result.append((local, host, port))
    return tuple(result)


def _backupIndexes(backup, count: int) -> tuple[int, ...]:
    indexes = tuple(sorted(set(backup)))
    for index in indexes:
        if type(index) is not int or not 0 <= index <= count:
            raise ConfigurationError(f"backup path {index!r}: expected 0..{count}")
    return indexes


def _costPairs(costs, count: int) -> tuple[tuple[int, float], ...]:
    """``{index: cost}`` checked, as sorted ``(index, cost)`` pairs."""
    pairs = []
    for index, cost in sorted(dict(costs).items()):
        if type(index) is not int or not 0 <= index <= count:
            raise ConfigurationError(f"cost of path {index!r}: expected a path 0..{count}")
        pairs.append((index, check_cost(cost)))
    return tuple(pairs)


class _Attempt:
    """One ``connect()`` call: its Deferred, its timeout, its factory."""

    def __init__(self, reactor, factory, entry: _ClientConnection, timeout: float,
                 streamOptions: dict) -> None:
        self.factory = factory
        self.streamOptions = streamOptions
        self.entry = entry
        self.deferred = defer.Deferred(self._cancel)
        self._timer = reactor.callLater(timeout, self._timedOut) if timeout else None
        self._timeout = timeout

    def _finish(self) -> bool:
        if self.deferred.called:
            return False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        return True

    def ready(self, conn) -> None:
        """The connection is up: open our stream and fire."""
        if not self._finish():
            return
        addr = self.entry.peerAddress()
        try:
            protocol = self.factory.buildProtocol(addr)
            if protocol is None:
                raise error.NoProtocol()
            conn.openStream(protocol, onLost=self.factory.doStop, **self.streamOptions)
        except KwikError as e:
            self.factory.doStop()
            self.deferred.errback(error.ConnectError(string=f"cannot open a stream: {e}"))
        except BaseException:
            self.factory.doStop()
            self.deferred.errback(Failure())
        else:
            self.deferred.callback(protocol)

    def fail(self, failure: Failure) -> None:
        """The connection attempt failed."""
        if self._finish():
            self.factory.doStop()
            self.deferred.errback(failure)

    def _timedOut(self) -> None:
        self._timer = None
        self.entry.removeAttempt(self)
        self.fail(Failure(error.TimeoutError(
            string=f"no Kwik handshake with {self.entry.host}:{self.entry.port} "
                   f"within {self._timeout} seconds")))

    def _cancel(self, deferred) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self.entry.removeAttempt(self)
        self.factory.doStop()
        deferred.errback(error.ConnectingCancelledError(self.entry.peerAddress()))


@implementer(IClientPortOwner)
class _ClientConnection:
    """
    One client Kwik connection: resolution, UDP port, handshake, then streams until it closes.

    ``state`` goes new → resolving → handshaking → ready → closing → dead.
    """

    def __init__(self, reactor, host, port, config, bindAddress, entropy, key, paths=(),
                 backup=(), context=None, qlog=None, *, costs=(),
                 loads: ServerLoads | None = None, tickets=None) -> None:
        self.qlog = qlog
        self.tickets = tickets
        self.reactor = reactor
        self.context = context
        self.host = host
        self.port = port
        self.config = config
        self.bindAddress = bindAddress
        self.entropy = entropy
        self.key = key
        self.paths = paths
        self.backup = backup
        self.costs = costs
        self.loads = loads
        self.state = "new"
        self.address: str | None = host if (isIPAddress(host) or isIPv6Address(host)) else None
        self.attempts: list[_Attempt] = []
        self.proto: KwikClientProtocol | None = None
        self._addressRace: AddressRace | None = None
        self._resolving: defer.Deferred | None = None
        self._linger = None
        self._closed: list[defer.Deferred] = []

    @property
    def reusable(self) -> bool:
        """Whether new streams may join this connection."""
        return self.state in ("new", "resolving", "handshaking", "ready")

    def peerAddress(self):
        """The server's address (the host as given until it is resolved)."""
        return ip_address((self.address or self.host, self.port))

    # -- attempts --------------------------------------------------------------------

    def addAttempt(self, attempt: _Attempt) -> None:
        """Serve ``attempt`` now if the connection is up, else when it is."""
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        if self.state == "ready":
            attempt.ready(self.proto.connection)
        else:
            self.attempts.append(attempt)

    def removeAttempt(self, attempt: _Attempt) -> None:
        """An attempt gave up (timeout, cancel); a connection nobody waits for is abandoned."""
        if attempt in self.attempts:
            self.attempts.remove(attempt)
        if not self.attempts and self.state in ("new", "resolving", "handshaking"):
            self._teardown("connection attempt abandoned")

    # -- setting up ------------------------------------------------------------------

    def start(self) -> None:
        """Resolve the host (unless it is an IP literal), then race handshakes to its addresses."""
        if self.address is not None:
            self._race([self.address])
            return
        self.state = "resolving"
        d = self._resolving = resolveAddresses(self.reactor, self.host, self.port)
        d.addCallbacks(self._resolved, self._resolveFailed)

    def _resolveFailed(self, failure: Failure) -> None:
        self._resolving = None
        if self.state != "resolving":
            return
        if not failure.check(error.DNSLookupError):
            failure = Failure(error.DNSLookupError(f"{self.host}: {failure.getErrorMessage()}"))
        self._fail(failure)

    def _resolved(self, addresses: list[str]) -> None:
        self._resolving = None
        if self.state == "resolving":
            self._race(addresses)

    def _race(self, addresses: list[str]) -> None:
        """Handshake with each address in turn (a head start each); the first to finish wins."""
        self.state = "handshaking"
        try:
            context = self.context() if self.context is not None else None
        except Exception:
            self._fail(Failure())
            return
        launch = partial(ClientCandidate, self.reactor, port=self.port,
                         bindAddress=self.bindAddress, owner=self, loads=self.loads,
                         config=self.config, entropy=self.entropy, paths=self.paths,
                         backup=self.backup, costs=self.costs, tlsContext=context,
                         tickets=self.tickets,
                         qlog=self.qlog)
        if self.loads is not None:  # the less loaded servers first
            addresses = self.loads.order(addresses, self.reactor.seconds())
        usable = bindable(addresses, self.bindAddress)
        if not usable:
            self._fail(Failure(error.DNSLookupError(
                f"{self.host}: no address of the bind address's family ({addresses})")))
            return
        race = self._addressRace = AddressRace(self.reactor, usable, launch)
        race.deferred.addCallbacks(self._won, self._fail)
        race.start()

    def _won(self, candidate: ClientCandidate) -> None:
        """``candidate``'s handshake completed first: it is the connection (it tells us so)."""
        candidate.won = True
        self.address = candidate.address
        self.proto = candidate.proto

    # -- IClientPortOwner: what the client port protocol tells us -------------------------

    def handshakeCompleted(self) -> None:
        """Serve every waiting attempt."""
        self.state = "ready"
        attempts, self.attempts = self.attempts, []
        for attempt in attempts:
            attempt.ready(self.proto.connection)
        if not self.proto.connection.liveStreams:
            self.idle()

    def connectionFailed(self, failure: Failure) -> None:
        """The handshake failed."""
        self._fail(failure)

    def terminated(self) -> None:
        """The connection ended after its handshake: no new streams join it."""
        self._leavePool()
        if self.state == "ready":
            self.state = "closing"

    def idle(self) -> None:
        """No streams left: linger for reuse, then close."""
        if self.state != "ready" or self._linger is not None:
            return
        self._linger = self.reactor.callLater(POOL_LINGER, self._lingered)

    def _lingered(self) -> None:
        self._linger = None
        if self.state == "ready" and not self.proto.connection.liveStreams:
            self._leavePool()
            self.state = "closing"
            self.proto.connection.close(0, "idle")

    def gone(self) -> None:
        """The core state is gone: stop the UDP port."""
        self._teardown("connection gone")
        self._stopPort()

    # -- ending ----------------------------------------------------------------------

    def _fail(self, failure: Failure) -> None:
        attempts, self.attempts = self.attempts, []
        self._teardown(failure.getErrorMessage())
        for attempt in attempts:
            attempt.fail(failure)

    def _leavePool(self) -> None:
        if self.key is None:
            return
        pool = _registry(_pools, self.reactor, {})
        entries = pool.get(self.key, [])
        if self in entries:
            entries.remove(self)
        if not entries:
            pool.pop(self.key, None)

    def _teardown(self, reason: str) -> None:
        """Give the connection up; the port stops once the core connection is gone."""
        if self.state == "dead":
            return
        self.state = "dead"
        self._leavePool()
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        if self._resolving is not None:
            self._resolving.cancel()
        if self._addressRace is not None and self.proto is None:
            self._addressRace.cancel()  # stops every attempt (each port stops when it is gone)
        conn = self.proto.connection if self.proto is not None else None
        if conn is not None and not conn.dead:
            conn.abandon(reason)  # its connectionGone stops the port (maybe after this service)
            return
        self._stopPort()

    def _stopPort(self) -> None:
        """Stop the UDP port of every handshake attempt (the winner's too)."""
        candidates = self._addressRace.candidates if self._addressRace is not None else []
        stops = [candidate.stop() for candidate in candidates]
        defer.gatherResults(stops, consumeErrors=True).addBoth(self._portStopped)

    def _portStopped(self, result) -> None:
        _registry(_all, self.reactor, set()).discard(self)
        waiting, self._closed = self._closed, []
        for d in waiting:
            d.callback(None)

    def shutdown(self) -> defer.Deferred:
        """Close gracefully (draining) and fire when the UDP port is stopped."""
        d = defer.Deferred()
        if self.state == "dead":
            if self in _registry(_all, self.reactor, set()):
                self._closed.append(d)
            else:
                d.callback(None)
            return d
        self._closed.append(d)
        if self.state == "ready":
            self._leavePool()
            self.state = "closing"
            if self._linger is not None and self._linger.active():
                self._linger.cancel()
            self._linger = None
            self.proto.connection.close(0, "client closing")
        elif self.state != "closing":
            self._fail(Failure(error.ConnectError(string="Kwik client connections closed")))
        return d


__all__ = [
    "KwikClientEndpoint", "KwikHandshakeError", "KwikListeningPort", "KwikServerEndpoint",
    "POOL_LINGER", "closeClientConnections",
]
