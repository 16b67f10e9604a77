"""
The engine room of the Twisted glue: UDP ports driving sans-I/O Kwik connections.

Theory of operation.  A :class:`KwikConnection` owns one core
:class:`~kwik_twisted.core.connection.Connection` and drives it the way the core's docstring asks:
after every call in (a datagram, the timer, an application write) it *services* the connection: it
hands the core's events to the stream transports, sends every datagram :meth:`datagrams_to_send`
returns, and re-arms its one :class:`~twisted.internet.interfaces.IDelayedCall` from
:meth:`next_deadline`.  Application calls (``write``, ``resumeProducing``...) do not service on the
spot: they schedule one service *turn* with ``callLater(0)``, so a protocol writing a hundred small
chunks in one callback costs one flush, not a hundred.

A UDP port is a :class:`~twisted.internet.protocol.DatagramProtocol`.  A server port
(:class:`KwikServerProtocol`) routes datagrams by destination connection ID to its connections,
creating them through a :class:`~kwik_twisted.core.dispatcher.ServerDispatcher`; every stream a
client opens becomes a protocol from the listening factory.  A client connection
(:class:`KwikClientProtocol`) has a UDP port of its own, *connected* to the server's address so
that an ICMP "port unreachable" fails the handshake at once (``ConnectionRefusedError``) instead of
waiting for the timeout.

Multipath.  A port protocol may own more sockets (:class:`PathSocket`), each bound to one local
address: a client binds one per extra path (connected to that path's server address) and opens the
paths once the handshake completed; a server may listen on several addresses with one port number,
all feeding one dispatcher.  A client configured with ``use_advertised`` opens a path to each
address the server advertises (ADD_ADDRESS) the same way, on a socket of its own connected to that
address (the core itself is told not to: it would send from the main socket, which is connected
to the server's first address only).  Every datagram reaches the core with the local address of
the socket it arrived on, and each datagram the core returns leaves through the socket whose
local address is the path's.  A socket bound to a wildcard address reports that address
(``0.0.0.0``): the kernel then picks the source address of replies, so a multihomed server should
bind each of its addresses instead (``docs/endpoints.rst``, "Multipath").  Path events reach the
stream protocols that provide :class:`~kwik_twisted.interfaces.IKwikConnectionObserver`.

Logging.  A connection that ends on its idle timeout is logged at info level with the peer's
address (it is what a user of a tunnel needs to know); other ends are logged at debug level.

Exceptions.  The core raises nothing a peer can provoke (it turns protocol errors into
CONNECTION_CLOSE), so any exception escaping it here is a bug: it is logged with its traceback and
ends that one connection (INTERNAL_ERROR), never the port or its other connections.
"""

from __future__ import annotations

import dataclasses
import socket
from functools import partial

from twisted.internet import defer, error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from .core.connection import BURST_LIMIT, Connection
from .core.crypto.handshake import TlsSession, make_context
from .core.dispatcher import ServerDispatcher
from .errors import ConfigurationError, DroppedPacket, ErrorCode, StreamStateError
from .events import (
    AddressAdvertised,
    ConnectionTerminated,
    HandshakeCompleted,
    PathEvent,
    PathValidated,
    StopSendingReceived,
    StreamClosed,
    StreamDataReceived,
    StreamOpened,
    StreamReset,
    StreamWritable,
)
from .interfaces import IKwikConnectionObserver, IKwikMessageProtocol
from .transport import KwikStreamTransport
from .udp import listenBatchingUDP, send_batch
from .wire import peek_dcid

#: Rounds of ``datagrams_to_send`` in one turn before the reactor gets to read (and so see ACKs).
FLUSH_ROUNDS = 8
#: The least a timer waits when the core's deadline did not move on after it ran (a safety net).
MIN_TIMER_DELAY = 0.001
#: Socket buffers asked of the kernel (it caps them at net.core.[rw]mem_max).
SOCKET_BUFFER = 4 * 1024 * 1024
#: Code of the RESET_STREAM / STOP_SENDING a refused or aborted stream gets.
STREAM_ABORTED = 0
#: The largest datagram our UDP ports read.
MAX_DATAGRAM = 65535

log = Logger()


def ip_address(host_port: tuple) -> IPv4Address | IPv6Address:
    """The Twisted address of a ``(host, port)`` pair (type ``"UDP"``, as Twisted's UDP ports)."""
    host, port = host_port[0], host_port[1]
    if ":" in host:
        return IPv6Address("UDP", host, port)
    return IPv4Address("UDP", host, port)


def enlarge_buffers(port) -> None:
    """Ask for large socket buffers: a burst of datagrams must not overflow the receiver's queue."""
    sock = getattr(port, "socket", None)
    if sock is None:
        return
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        except OSError:
            pass


def describe_termination(event: ConnectionTerminated) -> str:
    """A one-line description of why a connection ended."""
    who = "the peer" if event.by_peer else "us"
    if event.error_code == ErrorCode.IDLE_TIMEOUT and not event.by_peer:
        return "idle timeout"
    detail = f": {event.reason}" if event.reason else ""
    return f"connection closed by {who} (error 0x{event.error_code:x}){detail}"


class KwikConnection:
    """
    The glue of one Kwik connection: the core connection, its stream transports and its timer.

    :param owner: the port protocol; it provides ``sendDatagram(data, local, remote)``,
        ``hostAddress()``, ``openPath(localHost, remote)``, ``streamOpenedByPeer(conn, stream_id)``,
        ``handshakeCompleted(conn)``, ``pathChanged(conn, event)``,
        ``addressAdvertised(conn, event)``, ``connectionTerminated(conn, event)``,
        ``connectionGone(conn)`` and ``streamsIdle(conn)``.
    :ivar transports: the stream transports still connected to a protocol, by stream ID.
    :ivar liveStreams: IDs of the streams the core still keeps (connected or closing).
    :ivar terminated: the :class:`ConnectionTerminated` event, once the connection ended.
    """

    def __init__(self, reactor, core: Connection, owner) -> None:
        self.reactor = reactor
        self.core = core
        self.owner = owner
        self.transports: dict[int, KwikStreamTransport] = {}
        self.liveStreams: set[int] = set()
        self.terminated: ConnectionTerminated | None = None
        self.dead = False
        self._timer = None
        self._turn = None
        self._timerRanAt = float("-inf")
        self._servicing = False
        self._flushAhead = False
        self._abandon: str | None = None
        self._pulls: set[KwikStreamTransport] = set()

    # -- driving the core ------------------------------------------------------------

    def receive(self, data: bytes, local_addr: tuple, remote_addr: tuple) -> None:
        """Feed one datagram to the core; service once the reactor has read this batch."""
        if self.dead:
            return
        try:
            self.core.receive_datagram(data, local_addr, remote_addr, now=self.reactor.seconds())
        except Exception:
            self._crash(Failure())
            return
        received = self.owner.received
        if received is not None:
            received[self] = None  # serviced when the port's read batch ends
        else:
            self.scheduleTurn()

    def service(self) -> None:
        """Dispatch events, run producers, send datagrams, re-arm the timer."""
        if self.dead:
            return
        self._servicing = self._flushAhead = True
        try:
            self._dispatchEvents()
            self._runPulls()
            self._flushAhead = False
            more = self._flush()
            self._rearm()
        except Exception:
            self._servicing = self._flushAhead = False
            self._crash(Failure())
            return
        self._servicing = False
        if self._abandon is not None:
            self._doAbandon(self._abandon)
        elif self.core.is_closed:
            self._gone()
        elif more or self._pulls or self.core.has_events:
            self.scheduleTurn()

    def scheduleTurn(self) -> None:
        """
        Service once on the next reactor turn (batches application calls).

        Not while a service is about to flush: what an event handler does goes out with that
        flush (a turn would find nothing left to do).
        """
        if self.dead or self._turn is not None or self._flushAhead:
            return
        self._turn = self.reactor.callLater(0, self._onTurn)

    def _onTurn(self) -> None:
        self._turn = None
        self.service()

    def _onTimer(self) -> None:
        self._timer = None
        if self.dead:
            return
        self._timerRanAt = now = self.reactor.seconds()
        try:
            self.core.handle_deadline(now=now)
        except Exception:
            self._crash(Failure())
            return
        self.service()

    def _flush(self) -> bool:
        """Send what the core has; return whether it may have more (the round limit was hit)."""
        send = self.owner.sendDatagrams
        now = self.reactor.seconds()
        for _ in range(FLUSH_ROUNDS):
            out = self.core.datagrams_to_send(now=now)
            if out:
                send(out)
            if len(out) < BURST_LIMIT:
                return False
        return True

    def _rearm(self) -> None:
        deadline = self.core.next_deadline()
        timer = self._timer
        if deadline is None:
            if timer is not None:
                timer.cancel()
                self._timer = None
            return
        if deadline <= self._timerRanAt:
            # The core handled this deadline and still says it is due: wait a little rather than
            # fire again at once (a busy loop would starve every other connection).  Never seen
            # since the keep-alive fix; counted so that a test or an operator would notice.
            self.core.stats["timer_stalls"] += 1
            deadline = self._timerRanAt + MIN_TIMER_DELAY
        delay = max(0.0, deadline - self.reactor.seconds())
        if timer is None:
            self._timer = self.reactor.callLater(delay, self._onTimer)
        elif timer.getTime() != deadline:
            timer.reset(delay)

    def _runPulls(self) -> None:
        pulls, self._pulls = self._pulls, set()
        for transport in pulls:
            transport._pull()

    # -- events ----------------------------------------------------------------------

    def _dispatchEvents(self) -> None:
        core = self.core
        while (event := core.next_event()) is not None:
            handler = _HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)
            elif isinstance(event, PathEvent):
                self._onPathEvent(event)

    def _onPathEvent(self, event: PathEvent) -> None:
        """Log a path event and hand it to every stream protocol observing the connection."""
        log.info("Kwik path {path_id} {event}: {local} <-> {remote}",
                 path_id=event.path_id, event=type(event).__name__,
                 local=event.local_addr, remote=event.remote_addr)
        self.owner.pathChanged(self, event)
        for transport in list(self.transports.values()):
            protocol = transport.protocol
            if not IKwikConnectionObserver.providedBy(protocol) or transport.disconnected:
                continue
            try:
                protocol.pathEvent(event)
            except Exception:
                log.failure("pathEvent of {protocol} failed", Failure(), protocol=protocol)

    def _onHandshake(self, event: HandshakeCompleted) -> None:
        log.debug("Kwik handshake complete ({cipher})", cipher=event.cipher)
        self.owner.handshakeCompleted(self)

    def _onStreamOpened(self, event: StreamOpened) -> None:
        self.liveStreams.add(event.stream_id)
        self.owner.streamOpenedByPeer(self, event.stream_id)

    def _onData(self, event: StreamDataReceived) -> None:
        transport = self.transports.get(event.stream_id)
        if transport is not None:
            transport._dataReceived(event.offset, event.data, event.end_stream)

    def _onReset(self, event: StreamReset) -> None:
        transport = self.transports.get(event.stream_id)
        if transport is not None:
            transport._peerReset(event.error_code)

    def _onStopSending(self, event: StopSendingReceived) -> None:
        transport = self.transports.get(event.stream_id)
        if transport is not None:
            transport._stopSendingReceived(event.error_code)

    def _onWritable(self, event: StreamWritable) -> None:
        transport = self.transports.get(event.stream_id)
        if transport is not None:
            transport._writable()

    def _onClosed(self, event: StreamClosed) -> None:
        self.liveStreams.discard(event.stream_id)
        transport = self.transports.get(event.stream_id)
        if transport is not None:
            transport._streamClosed()
        if not self.liveStreams:
            self.owner.streamsIdle(self)

    def _onTerminated(self, event: ConnectionTerminated) -> None:
        if self.terminated is not None:
            return
        self.terminated = event
        reason = describe_termination(event)
        if event.error_code == ErrorCode.IDLE_TIMEOUT and not event.by_peer:
            log.info("Kwik connection with {peer} ended: {reason} (nothing received within the "
                     "negotiated idle timeout of {timeout} s; see "
                     "keepAlive= in docs/endpoints.rst)",
                     peer=self.peerAddress(), reason=reason, timeout=self.core.idle_timeout)
        else:
            log.debug("Kwik connection with {peer} ended: {reason}", peer=self.peerAddress(),
                      reason=reason)
        for transport in list(self.transports.values()):
            transport._connectionGone(error.ConnectionLost(reason))
        self.owner.connectionTerminated(self, event)

    def _onAddressAdvertised(self, event: AddressAdvertised) -> None:
        self.owner.addressAdvertised(self, event)

    def peerAddress(self) -> tuple | None:
        """The peer's address on the lowest-numbered live path (``None`` when none is left)."""
        paths = self.core.paths
        return paths[min(paths)].remote_addr if paths else None

    # -- streams ---------------------------------------------------------------------

    def attach(self, stream_id: int, protocol, onLost=None) -> KwikStreamTransport:
        """Connect ``protocol`` to a new transport for ``stream_id``."""
        peer = ip_address(self.core.paths[min(self.core.paths)].remote_addr)
        transport = KwikStreamTransport(self, stream_id, self.owner.hostAddress(), peer, protocol,
                                        onLost=onLost)
        self.transports[stream_id] = transport
        transport._start()
        return transport

    def openStream(self, protocol, onLost=None, *, ordered: bool = True) -> KwikStreamTransport:
        """
        Open a stream of ours and connect ``protocol`` to it.

        :param ordered: ``False`` opens the stream without the ORDERED flag: the peer's bytes on
            it reach ``protocol.pieceReceived`` if ``protocol`` provides
            :class:`~kwik_twisted.interfaces.IKwikMessageProtocol` (else the stream is reset
            the first time a piece would arrive out of order).
        :raises KwikError: the peer's stream limit does not allow another stream now.
        """
        stream_id = self.core.open_stream(ordered=ordered)
        self.liveStreams.add(stream_id)
        return self.attach(stream_id, protocol, onLost)

    def refuseStream(self, stream_id: int) -> None:
        """Reset both directions of a stream nobody will read."""
        self.resetStream(stream_id, STREAM_ABORTED)
        self.stopSending(stream_id, STREAM_ABORTED)
        self.scheduleTurn()

    def detach(self, stream_id: int) -> None:
        """Forget a transport whose protocol lost its connection."""
        self.transports.pop(stream_id, None)

    def requestPull(self, transport: KwikStreamTransport) -> None:
        """Let ``transport`` feed its protocol or pull its producer on the next turn."""
        self._pulls.add(transport)
        self.scheduleTurn()

    # -- paths ---------------------------------------------------------------------------

    def pathMetrics(self) -> dict:
        """
        A snapshot of every live path's metrics, by path ID (the core's ``path_metrics()``).

        :returns: ``{path_id: PathMetrics}`` (smoothed RTT, bandwidth, loss rate, congestion
            window and bytes in flight, ...; see :mod:`kwik_twisted.core.paths.metrics`).
        """
        return self.core.path_metrics()

    def openPath(self, localHost: str, remote: tuple | None = None) -> int:
        """
        Open another path (client only): bind a UDP socket to ``localHost`` and open a path from
        it to ``remote`` (default: the server's address).  Returns the path ID; the path carries
        data once validated (``PathValidated``).

        :raises ConfigurationError: on a server, on a closed connection, or when ``max_paths``
            paths exist already.
        :raises CannotListenError: ``localHost`` cannot be bound.
        """
        if self.dead or self.core.is_closed:
            raise ConfigurationError("the Kwik connection is closed")
        path_id = self.owner.openPath(localHost, remote)
        self.scheduleTurn()
        return path_id

    def setPathBackup(self, pathId: int, backup: bool = True) -> None:
        """
        Make a path a backup (used only while no other path works), or a primary again.

        :raises ConfigurationError: no such path.
        """
        self._checkPath(pathId)
        self.core.set_path_backup(pathId, backup)
        self.scheduleTurn()

    def abandonPath(self, pathId: int) -> None:
        """
        Stop using a path for good (PATH_ABANDON); its data moves to the other paths.

        :raises ConfigurationError: no such path, or it is the last one (close the connection
            instead).
        """
        self._checkPath(pathId)
        try:
            self.core.abandon_path(pathId)
        except ValueError as e:  # the last path
            raise ConfigurationError(str(e)) from None
        self.scheduleTurn()

    def _checkPath(self, pathId: int) -> None:
        if pathId not in self.core.paths:
            raise ConfigurationError(f"no path {pathId} (paths: {sorted(self.core.paths)})")

    # -- the calls transports make (a stream already gone is not an error) -----------------

    def _call(self, method, *args) -> bool:
        if self.dead:
            return False
        try:
            method(*args)
        except StreamStateError:
            return False
        except Exception:
            failure = Failure()
            self.reactor.callLater(0, self._crash, failure)
            return False
        return True

    def send(self, stream_id: int, data: bytes, fin: bool = False) -> bool:
        """Queue data (and FIN) on a stream; schedule a flush."""
        ok = self._call(self.core.send_stream_data, stream_id, data, fin)
        self.scheduleTurn()
        return ok

    def streamOrdered(self, stream_id: int) -> bool:
        """
        Whether the core delivers a stream's bytes in order (``True`` for a stream gone).

        That is its reassembler's kind, not the peer's ORDERED flag: a server that does not
        accept unordered streams reassembles them in order.
        """
        return not self.core.stream_delivers_pieces(stream_id)

    def writable(self, stream_id: int) -> bool:
        """Whether the stream's send buffer has room."""
        return not self.dead and self.core.stream_writable(stream_id)

    def resetStream(self, stream_id: int, code: int) -> None:
        """Abandon our direction of a stream."""
        self._call(self.core.reset_stream, stream_id, code)

    def stopSending(self, stream_id: int, code: int) -> None:
        """Ask the peer to stop sending on a stream."""
        self._call(self.core.stop_sending, stream_id, code)

    def pauseReading(self, stream_id: int, paused: bool) -> None:
        """Stop or resume delivering a stream's data."""
        self._call(self.core.pause_reading, stream_id, paused)
        if not paused:
            self.scheduleTurn()

    # -- ending ----------------------------------------------------------------------

    def close(self, code: int = 0, reason: str = "") -> None:
        """Close gracefully: CONNECTION_CLOSE, then the draining period, then gone."""
        if self.dead:
            return
        self._call(self.core.close, code, reason)
        self.scheduleTurn()

    def abandon(self, reason: str) -> None:
        """Close now: send CONNECTION_CLOSE once and forget the connection without draining."""
        if self.dead:
            return
        if self._servicing:
            self._abandon = reason
            return
        self._doAbandon(reason)

    def _doAbandon(self, reason: str) -> None:
        self._abandon = None
        try:
            self.core.close(ErrorCode.NO_ERROR, reason, application=False)
            self._dispatchEvents()
            self._flush()
        except Exception:
            self._crash(Failure())
            return
        self._gone()

    def _crash(self, failure: Failure) -> None:
        if self.dead:
            return
        log.failure("Kwik connection aborted after an internal error", failure)
        try:
            self.core.close(ErrorCode.INTERNAL_ERROR, "internal error", application=False)
            self._flush()
        except Exception:
            pass
        event = ConnectionTerminated(ErrorCode.INTERNAL_ERROR,
                                     f"internal error: {failure.getErrorMessage()}", False)
        if self.terminated is None:
            self._onTerminated(event)
        self._gone()

    def _gone(self) -> None:
        if self.dead:
            return
        self.dead = True
        for call in (self._timer, self._turn):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._turn = None
        self._pulls.clear()
        for transport in list(self.transports.values()):
            transport._connectionGone(error.ConnectionLost("connection closed"))
        self.owner.connectionGone(self)


_HANDLERS = {
    HandshakeCompleted: KwikConnection._onHandshake,
    StreamOpened: KwikConnection._onStreamOpened,
    StreamDataReceived: KwikConnection._onData,
    StreamReset: KwikConnection._onReset,
    StopSendingReceived: KwikConnection._onStopSending,
    StreamWritable: KwikConnection._onWritable,
    StreamClosed: KwikConnection._onClosed,
    ConnectionTerminated: KwikConnection._onTerminated,
    AddressAdvertised: KwikConnection._onAddressAdvertised,
}


def _write(transport, connected: tuple | None, datagrams: list, remote: tuple) -> None:
    """
    Send datagrams to one address, batched (UDP GSO) where the port can.

    A failing send is lost packets, which recovery handles.
    """
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


class PathSocket(DatagramProtocol):
    """
    One more UDP socket of a port protocol, bound to one local address.

    Its datagrams reach the owner's ``datagramReceivedOn(local, data, addr)`` with the socket's own
    local address.  Given ``remote``, the socket is connected to it (it then hears only that
    address; an ICMP "port unreachable" is logged and left to path validation to notice).
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

    def send(self, datagrams: list, remote: tuple) -> None:
        """Send ``datagrams`` to ``remote`` (which must be the connected address, if any)."""
        _write(self.transport, self.remote, datagrams, remote)


class _PortMixin:
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

    def sendDatagram(self, data: bytes, local: tuple, remote: tuple) -> None:
        """Send one datagram from the socket bound to ``local`` (the main socket by default)."""
        self.sendDatagrams([(data, local, remote)])

    def sendDatagrams(self, out: list) -> None:
        """
        Send ``(data, local, remote)`` triples, each from the socket bound to its ``local``.

        Consecutive datagrams of one path go out as one batch (one ``sendmsg`` with UDP GSO where
        the kernel has it).
        """
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
                sock.send(datagrams, remote)
            else:
                _write(self.transport, self._connectedTo, datagrams, remote)
            start = end

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        """A datagram on the main socket."""
        self.datagramReceivedOn(self._local, data, addr)

    def enableReadBatches(self) -> None:
        """Service connections at the end of each read batch if the port tells us when."""
        if hasattr(self.transport, "sendBatch"):
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


class KwikServerProtocol(_PortMixin, DatagramProtocol):
    """
    A listening UDP port: many connections, each stream a protocol from ``factory``.

    When the factory's ``protocol`` class implements
    :class:`~kwik_twisted.interfaces.IKwikMessageProtocol`, the connections accept unordered
    streams (``accept_unordered``); otherwise the core reassembles every stream in order.
    More local addresses (same dispatcher, same connections) are added with :meth:`bindSocket`.

    :raises ConfigurationError: (from the constructor) the TLS configuration is unusable.
    """

    def __init__(self, reactor, config, factory, *, entropy) -> None:
        self.reactor = reactor
        self.factory = factory
        if not config.accept_unordered and wantsPieces(factory):
            config = dataclasses.replace(config, accept_unordered=True)
        context = make_context(config.tls, is_client=False)
        self.dispatcher = ServerDispatcher(
            config, entropy=entropy, on_connection=self._newConnection,
            tls_factory=partial(_serverSession, context),
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
        except DroppedPacket:
            return
        core = self.dispatcher.connections.get(dcid)
        if core is not None:
            glue = self.connections.get(core)
            if glue is not None:
                glue.receive(data, local, addr)
            return
        try:
            self.dispatcher.receive_datagram(data, local, addr, now=self.reactor.seconds())
        except Exception:
            log.failure("Kwik server failed to accept a connection from {addr}", addr=addr)
            core = self.dispatcher.connections.get(dcid)
            glue = self.connections.get(core) if core is not None else None
            if glue is not None:
                glue._crash(Failure())
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
        addr = ip_address(conn.core.paths[min(conn.core.paths)].remote_addr)
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
        """Nothing to do: streams arrive by themselves."""

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
        for cid in (core.local_cid, core.original_dcid):
            if self.dispatcher.connections.get(cid) is core:
                del self.dispatcher.connections[cid]

    def shutdown(self, reason: str = "server stopped") -> None:
        """Close every connection at once (the port is about to stop)."""
        for conn in list(self.connections.values()):
            conn.abandon(reason)


def wantsPieces(factory) -> bool:
    """Whether ``factory``'s ``protocol`` class implements IKwikMessageProtocol (takes pieces)."""
    protocol = getattr(factory, "protocol", None)
    return isinstance(protocol, type) and IKwikMessageProtocol.implementedBy(protocol)


def _serverSession(context, config, *, is_client: bool) -> TlsSession:
    return TlsSession(config, is_client=is_client, context=context)


class KwikClientProtocol(_PortMixin, DatagramProtocol):
    """
    The UDP port of one client connection, connected to the server's address.

    :param owner: told ``handshakeCompleted()``, ``connectionFailed(failure)`` (before the handshake
        completed), ``terminated()`` (after), ``idle()`` (no streams left) and ``gone()``.
    :param paths: extra paths, ``(local_host, (remote_host, remote_port))`` each: :meth:`start`
        binds a socket for each, and the paths open when the handshake completed.
    :param backup: indexes of the paths to mark backup: 0 is the handshake's path, 1 the first of
        ``paths``, and so on.
    :param tlsContext: an OpenSSL context made by ``make_context(config.tls, is_client=True)`` to
        share (an endpoint shares one among its connections); ``None`` makes one.
    """

    def __init__(self, reactor, config, remote: tuple, *, entropy, owner, paths=(),
                 backup=(), tlsContext=None) -> None:
        self._tlsContext = tlsContext
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
        core = Connection.client(
            config, local_addr=self._local, remote_addr=self.remote,
            entropy=self.entropy, now=self.reactor.seconds(),
            tls_factory=partial(_serverSession, context),
        )
        self.connection = KwikConnection(self.reactor, core, self)
        self.connection.service()

    def datagramReceivedOn(self, local: tuple, data: bytes, addr: tuple) -> None:
        """Feed the connection."""
        if self.connection is not None:
            self.connection.receive(data, local, addr)

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
    "MAX_DATAGRAM", "KwikClientProtocol", "KwikConnection", "KwikHandshakeError",
    "KwikServerProtocol", "PathSocket", "handshake_error", "ip_address",
]
