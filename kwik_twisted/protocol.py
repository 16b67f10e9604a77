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

Exceptions.  The core raises nothing a peer can provoke (it turns protocol errors into
CONNECTION_CLOSE), so any exception escaping it here is a bug: it is logged with its traceback and
ends that one connection (INTERNAL_ERROR), never the port or its other connections.
"""

from __future__ import annotations

import socket
from functools import partial

from twisted.internet import error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from .core.connection import BURST_LIMIT, Connection
from .core.crypto.handshake import TlsSession, make_context
from .core.dispatcher import ServerDispatcher
from .errors import DroppedPacket, ErrorCode, StreamStateError
from .events import (
    ConnectionTerminated,
    HandshakeCompleted,
    PathEvent,
    StopSendingReceived,
    StreamClosed,
    StreamDataReceived,
    StreamOpened,
    StreamReset,
    StreamWritable,
)
from .transport import KwikStreamTransport
from .wire import peek_dcid

#: Rounds of ``datagrams_to_send`` in one turn before the reactor gets to read (and so see ACKs).
FLUSH_ROUNDS = 8
#: Socket buffers asked of the kernel (it caps them at net.core.[rw]mem_max).
SOCKET_BUFFER = 4 * 1024 * 1024
#: Code of the RESET_STREAM / STOP_SENDING a refused or aborted stream gets.
STREAM_ABORTED = 0

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

    :param owner: the port protocol; it provides ``sendDatagram(data, addr)``, ``hostAddress()``,
        ``streamOpenedByPeer(conn, stream_id)``, ``handshakeCompleted(conn)``,
        ``connectionTerminated(conn, event)``, ``connectionGone(conn)`` and ``streamsIdle(conn)``.
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
        self._servicing = False
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
        self.scheduleTurn()

    def service(self) -> None:
        """Dispatch events, run producers, send datagrams, re-arm the timer."""
        if self.dead:
            return
        self._servicing = True
        try:
            self._dispatchEvents()
            self._runPulls()
            more = self._flush()
            self._rearm()
        except Exception:
            self._servicing = False
            self._crash(Failure())
            return
        self._servicing = False
        if self._abandon is not None:
            self._doAbandon(self._abandon)
        elif self.core.is_closed:
            self._gone()
        elif more or self._pulls:
            self.scheduleTurn()

    def scheduleTurn(self) -> None:
        """Service once on the next reactor turn (batches application calls)."""
        if self.dead or self._turn is not None:
            return
        self._turn = self.reactor.callLater(0, self._onTurn)

    def _onTurn(self) -> None:
        self._turn = None
        self.service()

    def _onTimer(self) -> None:
        self._timer = None
        if self.dead:
            return
        try:
            self.core.handle_deadline(now=self.reactor.seconds())
        except Exception:
            self._crash(Failure())
            return
        self.service()

    def _flush(self) -> bool:
        """Send what the core has; return whether it may have more (the round limit was hit)."""
        send = self.owner.sendDatagram
        now = self.reactor.seconds()
        for _ in range(FLUSH_ROUNDS):
            out = self.core.datagrams_to_send(now=now)
            for data, _local, remote in out:
                send(data, remote)
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
                log.info("Kwik path {path_id} {event}: {local} <-> {remote}",
                         path_id=event.path_id, event=type(event).__name__,
                         local=event.local_addr, remote=event.remote_addr)

    def _onHandshake(self, event: HandshakeCompleted) -> None:
        log.debug("Kwik handshake complete ({cipher})", cipher=event.cipher)
        self.owner.handshakeCompleted(self)

    def _onStreamOpened(self, event: StreamOpened) -> None:
        self.liveStreams.add(event.stream_id)
        self.owner.streamOpenedByPeer(self, event.stream_id)

    def _onData(self, event: StreamDataReceived) -> None:
        transport = self.transports.get(event.stream_id)
        if transport is not None:
            transport._dataReceived(event.data, event.end_stream)

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
        log.debug("Kwik connection ended: {reason}", reason=reason)
        for transport in list(self.transports.values()):
            transport._connectionGone(error.ConnectionLost(reason))
        self.owner.connectionTerminated(self, event)

    # -- streams ---------------------------------------------------------------------

    def attach(self, stream_id: int, protocol, onLost=None) -> KwikStreamTransport:
        """Connect ``protocol`` to a new transport for ``stream_id``."""
        peer = ip_address(self.core.paths[min(self.core.paths)].remote_addr)
        transport = KwikStreamTransport(self, stream_id, self.owner.hostAddress(), peer, protocol,
                                        onLost=onLost)
        self.transports[stream_id] = transport
        transport._start()
        return transport

    def openStream(self, protocol, onLost=None) -> KwikStreamTransport:
        """
        Open a stream of ours and connect ``protocol`` to it.

        :raises KwikError: the peer's stream limit does not allow another stream now.
        """
        stream_id = self.core.open_stream()
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
}


class _PortMixin:
    """What server and client ports share: sending datagrams and the local address."""

    transport = None
    _connectedUDP = False

    def sendDatagram(self, data: bytes, addr: tuple) -> None:
        """Send one datagram; a failing send is a lost packet, which recovery handles."""
        try:
            if self._connectedUDP:
                self.transport.write(data)
            else:
                self.transport.write(data, addr)
        except (OSError, error.MessageLengthError) as e:
            log.debug("Kwik datagram to {addr} not sent: {error}", addr=addr, error=e)

    def hostAddress(self) -> IPv4Address | IPv6Address:
        """The local UDP address."""
        host = self.transport.getHost()
        return ip_address((host.host, host.port))


class KwikServerProtocol(_PortMixin, DatagramProtocol):
    """
    A listening UDP port: many connections, each stream a protocol from ``factory``.

    :raises ConfigurationError: (from the constructor) the TLS configuration is unusable.
    """

    def __init__(self, reactor, config, factory, *, entropy) -> None:
        self.reactor = reactor
        self.factory = factory
        context = make_context(config.tls, is_client=False)
        self.dispatcher = ServerDispatcher(
            config, entropy=entropy, on_connection=self._newConnection,
            tls_factory=partial(_serverSession, context),
        )
        self.connections: dict[Connection, KwikConnection] = {}
        self._local: tuple = ("", 0)

    def startProtocol(self) -> None:
        """Remember our address; enlarge the socket buffers."""
        host = self.transport.getHost()
        self._local = (host.host, host.port)
        enlarge_buffers(self.transport)

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        """Route a datagram to its connection (or let the dispatcher accept a new one)."""
        try:
            dcid = peek_dcid(data)
        except DroppedPacket:
            return
        core = self.dispatcher.connections.get(dcid)
        if core is not None:
            glue = self.connections.get(core)
            if glue is not None:
                glue.receive(data, self._local, addr)
            return
        try:
            self.dispatcher.receive_datagram(data, self._local, addr, now=self.reactor.seconds())
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


def _serverSession(context, config, *, is_client: bool) -> TlsSession:
    return TlsSession(config, is_client=is_client, context=context)


class KwikClientProtocol(_PortMixin, DatagramProtocol):
    """
    The UDP port of one client connection, connected to the server's address.

    :param owner: told ``handshakeCompleted()``, ``connectionFailed(failure)`` (before the handshake
        completed), ``terminated()`` (after), ``idle()`` (no streams left) and ``gone()``.
    """

    _connectedUDP = True

    def __init__(self, reactor, config, remote: tuple, *, entropy, owner) -> None:
        self.reactor = reactor
        self.config = config
        self.remote = remote
        self.entropy = entropy
        self.owner = owner
        self.connection: KwikConnection | None = None
        self.handshaken = False
        self._refused = None
        self._local: tuple = ("", 0)

    def startProtocol(self) -> None:
        """Connect the socket to the server's address (ICMP errors then reach us)."""
        self.transport.connect(*self.remote)
        enlarge_buffers(self.transport)

    def start(self) -> None:
        """Create the core connection and send the ClientHello."""
        host = self.transport.getHost()
        self._local = (host.host, host.port)
        core = Connection.client(
            self.config, local_addr=self._local, remote_addr=self.remote,
            entropy=self.entropy, now=self.reactor.seconds(),
        )
        self.connection = KwikConnection(self.reactor, core, self)
        self.connection.service()

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        """Feed the connection."""
        if self.connection is not None:
            self.connection.receive(data, self._local, addr)

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

    # -- owner interface ----------------------------------------------------------------

    def streamOpenedByPeer(self, conn: KwikConnection, stream_id: int) -> None:
        """A client endpoint has no factory for server-opened streams: refuse them."""
        conn.refuseStream(stream_id)

    def handshakeCompleted(self, conn: KwikConnection) -> None:
        """Tell the endpoint the connection is usable."""
        self.handshaken = True
        self.owner.handshakeCompleted()

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
    "KwikClientProtocol", "KwikConnection", "KwikHandshakeError", "KwikServerProtocol",
    "handshake_error", "ip_address",
]
