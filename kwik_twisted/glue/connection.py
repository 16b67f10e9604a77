"""
The connection glue: one sans-I/O Kwik connection driven by the reactor.

Theory of operation.  A :class:`KwikConnection` owns one core
:class:`~kwik_twisted.core.connection.Connection` and drives it the way the core's docstring asks:
after every call in (a datagram, the timer, an application write) it *services* the connection: it
hands the core's events to the stream transports, sends every datagram :meth:`datagrams_to_send`
returns, and re-arms its one :class:`~twisted.internet.interfaces.IDelayedCall` from
:meth:`next_deadline`.  Application calls (``write``, ``resumeProducing``...) do not service on the
spot: they schedule one service *turn* with ``callLater(0)``, so a protocol writing a hundred small
chunks in one callback costs one flush, not a hundred.

Contracts (:mod:`kwik_twisted.glue.interfaces`).  The connection's *owner* is the port protocol
that feeds it datagrams (:mod:`kwik_twisted.glue.server`, :mod:`kwik_twisted.glue.client`); it
provides :class:`~kwik_twisted.glue.interfaces.IConnectionOwner`: it sends the datagrams, knows the
local address, opens paths, and is told of streams the peer opens and of the connection's life.
Each stream is a :class:`~kwik_twisted.glue.transport.KwikStreamTransport`; the connection
provides what it calls (:class:`~kwik_twisted.glue.interfaces.IStreamConnection`) and hands it the
core's stream events through :class:`~kwik_twisted.glue.interfaces.IStreamEventSink`.  Path
events also reach the stream protocols that provide
:class:`~kwik_twisted.interfaces.IKwikConnectionObserver`.  To applications, the connection is an
:class:`~kwik_twisted.interfaces.IKwikConnection` (``transport.kwikConnection``): it opens streams
with a priority, a QoS policy, an ordering and a path assignment, and manages paths (that half is
:class:`~kwik_twisted.glue.pathcontrols.PathControls`), and sends and receives unreliable datagrams
(:class:`~kwik_twisted.glue.datagrams.DatagramControls`).

Logging (one line each, at info level, through twisted.logger).  A connection's start (its
handshake completing) and its end, with the peer's address, the duration, the bytes each way, their
split over the live paths and the close reason (an idle timeout adds a hint about keepAlive=); path
events with both addresses; a failed handshake with the peer's address and the TLS reason.  Every
connection is in the process's :data:`~kwik_twisted.glue.registry.LIVE` registry while it lives
(what ``/metrics`` and ``/status`` read, :mod:`kwik_twisted.glue.metrics`).

Exceptions.  The core raises nothing a peer can provoke (it turns protocol errors into
CONNECTION_CLOSE), so any exception escaping it here is a bug: it is logged with its traceback and
ends that one connection (INTERNAL_ERROR), never the port or its other connections.
"""

from __future__ import annotations

from twisted.internet import error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..core.connection import BURST_LIMIT, Connection
from ..core.crypto.alerts import alert_name
from ..errors import ErrorCode, StreamStateError
from ..events import (
    AddressAdvertised,
    ConnectionTerminated,
    DatagramDropped,
    DatagramReceived,
    HandshakeCompleted,
    PathEvent,
    QoSViolated,
    StopSendingReceived,
    StreamClosed,
    StreamDataReceived,
    StreamOpened,
    StreamReset,
    StreamWritable,
)
from ..interfaces import IKwikConnection, IKwikConnectionObserver, IKwikQoSObserver
from ..streams import Priority
from .controls import streamOptions
from .datagrams import DatagramControls, onDatagramDropped, onDatagramReceived
from .interfaces import IStreamConnection
from .pathcontrols import PathControls
from .registry import LIVE
from .transport import KwikStreamTransport
from .udp import report_too_big

#: Rounds of ``datagrams_to_send`` in one turn before the reactor gets to read (and so see ACKs).
FLUSH_ROUNDS = 8
#: The least a timer waits when the core's deadline did not move on after it ran (a safety net).
MIN_TIMER_DELAY = 0.001
#: Code of the RESET_STREAM / STOP_SENDING a refused or aborted stream gets.
STREAM_ABORTED = 0

log = Logger()


def ip_address(host_port: tuple) -> IPv4Address | IPv6Address:
    """The Twisted address of a ``(host, port)`` pair (type ``"UDP"``, as Twisted's UDP ports)."""
    host, port = host_port[0], host_port[1]
    if ":" in host:
        return IPv6Address("UDP", host, port)
    return IPv4Address("UDP", host, port)


def peer_address(core: Connection) -> tuple | None:
    """The peer's address on ``core``'s lowest-numbered live path (``None`` when none is left)."""
    paths = core.paths
    return paths[min(paths)].remote_addr if paths else None


def describe_termination(event: ConnectionTerminated) -> str:
    """A one-line description of why a connection ended."""
    who = "the peer" if event.by_peer else "us"
    if event.error_code == ErrorCode.IDLE_TIMEOUT and not event.by_peer:
        return "idle timeout"
    detail = f": {event.reason}" if event.reason else ""
    return f"connection closed by {who} (error 0x{event.error_code:x}){detail}"


def failure_label(event: ConnectionTerminated) -> str:
    """A short label for why a handshake failed (bounded: a metric label): ``tls_`` and the TLS
    alert's name, or the transport error's name."""
    code = event.error_code
    if event.application:
        return "application_error"
    if ErrorCode.HANDSHAKE_FAILED <= code <= ErrorCode.HANDSHAKE_FAILED + 0xFF:
        return "tls_" + alert_name(code - ErrorCode.HANDSHAKE_FAILED).replace(" ", "_")
    try:
        return ErrorCode(code).name.lower()
    except ValueError:
        return f"error_0x{code:x}"


def traffic_summary(core: Connection) -> tuple[int, int, str]:
    """``(bytes sent, bytes received, per-path split)`` over ``core``'s live paths, the split
    as ``path 0 (local <-> remote) 120 sent / 4000 received, path 1 ...``."""
    sent = received = 0
    parts = []
    metrics = core.path_metrics()
    for path_id in sorted(metrics):
        m = metrics[path_id]
        path = core.paths.get(path_id)
        where = f" ({path.local_addr} <-> {path.remote_addr})" if path is not None else ""
        parts.append(f"path {path_id}{where} [{m.state}] {m.bytes_sent} sent / "
                     f"{m.bytes_received} received")
        sent += m.bytes_sent
        received += m.bytes_received
    return sent, received, ", ".join(parts) or "no paths"


@implementer(IStreamConnection, IKwikConnection)
class KwikConnection(PathControls, DatagramControls):
    """
    The glue of one Kwik connection: the core connection, its stream transports and its timer.

    :param owner: the port protocol, an :class:`~kwik_twisted.glue.interfaces.IConnectionOwner`.
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
        self._abandonReason: str | None = None
        self._pulls: set[KwikStreamTransport] = set()
        self.startedAt = reactor.seconds()
        self.registry = LIVE
        LIVE.add(self, server=not getattr(core, "is_client", True))

    # -- driving the core ------------------------------------------------------------

    def receive(self, data: bytes, local_addr: tuple, remote_addr: tuple) -> None:
        """Feed one datagram to the core; service once the reactor has read this batch."""
        if self.dead:
            return
        try:
            self.core.receive_datagram(data, local_addr, remote_addr, now=self.reactor.seconds())
        except Exception:
            self.crash(Failure())
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
            pulls, self._pulls = self._pulls, set()
            for transport in pulls:
                transport.pull()
            self._flushAhead = False
            more = self._flush()
            self._rearm()
        except Exception:
            self._servicing = self._flushAhead = False
            self.crash(Failure())
            return
        self._servicing = False
        if self._abandonReason is not None:
            self.abandon(self._abandonReason)
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
            self.crash(Failure())
            return
        self.service()

    def _flush(self) -> bool:
        """Send what the core has; return whether it may have more (the round limit was hit)."""
        send = self.owner.sendDatagrams
        now = self.reactor.seconds()
        for _ in range(FLUSH_ROUNDS):
            out = self.core.datagrams_to_send(now=now)
            if out:
                refused = send(out)
                if refused:  # EMSGSIZE: path MTU discovery learns the route's limit
                    report_too_big(self.core, refused, now=now)
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
        name = type(event).__name__
        log.info("Kwik path {path_id} {what} with {peer}: {local} <-> {remote}",
                 path_id=event.path_id, what=name.removeprefix("Path").lower(), event=name,
                 peer=peer_address(self.core), local=event.local_addr, remote=event.remote_addr)
        self.owner.pathChanged(self, event)
        for transport in list(self.transports.values()):
            protocol = transport.protocol
            if not IKwikConnectionObserver.providedBy(protocol) or transport.disconnected:
                continue
            try:
                protocol.pathEvent(event)
            except Exception:
                log.failure("pathEvent of {protocol} failed", Failure(), protocol=protocol)

    def _onQoSViolated(self, event: QoSViolated) -> None:
        """Log a broken QoS promise and tell the stream's protocol if it observes QoS."""
        log.warn("Kwik stream {stream_id} with {peer}: QoS {metric} not met ({measured:.4g} "
                 "against {bound:.4g})", stream_id=event.stream_id, peer=peer_address(self.core),
                 metric=event.metric, measured=event.measured, bound=event.bound)
        transport = self.transports.get(event.stream_id)
        protocol = None if transport is None else transport.protocol
        if protocol is None or not IKwikQoSObserver.providedBy(protocol):
            return
        try:
            protocol.qosViolated(event)
        except Exception:
            log.failure("qosViolated of {protocol} failed", Failure(), protocol=protocol)

    def _onHandshake(self, event: HandshakeCompleted) -> None:
        core = self.core
        log.info("Kwik connection with {peer} started ({side}, {cipher}, handshake took "
                 "{duration:.3f} s)", peer=peer_address(core),
                 side="client" if core.is_client else "server", cipher=event.cipher,
                 duration=self.reactor.seconds() - self.startedAt)
        self.owner.handshakeCompleted(self)

    def _onStreamOpened(self, event: StreamOpened) -> None:
        self.liveStreams.add(event.stream_id)
        self.owner.streamOpenedByPeer(self, event.stream_id)

    def _onData(self, event: StreamDataReceived) -> None:
        transport = self.transports.get(event.stream_id)
        if transport is not None:
            transport.dataReceivedAt(event.offset, event.data, event.end_stream)

    def _onStreamEvent(self, event: StreamReset | StopSendingReceived | StreamWritable) -> None:
        """Hand a stream event to its transport, if it still has one (see ``_STREAM_EVENTS``)."""
        transport = self.transports.get(event.stream_id)
        if transport is not None:
            _STREAM_EVENTS[type(event)](transport, event)

    def _onClosed(self, event: StreamClosed) -> None:
        self.liveStreams.discard(event.stream_id)
        transport = self.transports.get(event.stream_id)
        if transport is not None:
            transport.streamClosed()
        if not self.liveStreams:
            self.owner.streamsIdle(self)

    def _onTerminated(self, event: ConnectionTerminated) -> None:
        if self.terminated is not None:
            return
        self.terminated = event
        reason = describe_termination(event)
        self._logEnd(event, reason)
        for transport in list(self.transports.values()):
            transport.connectionGone(error.ConnectionLost(reason))
        self.owner.connectionTerminated(self, event)

    def _logEnd(self, event: ConnectionTerminated, reason: str) -> None:
        """The one line saying how the connection ended (or that its handshake failed)."""
        core = self.core
        duration = self.reactor.seconds() - self.startedAt
        if not core.handshake_complete:
            if event.error_code == ErrorCode.NO_ERROR and not event.application:
                # One side gave the attempt up (a lost address race, a connect timeout, a
                # cancel): nothing failed, so it is neither counted nor reported as a failure.
                log.debug("Kwik handshake with {peer} given up after {duration:.3f} s",
                          peer=peer_address(core), duration=duration)
                return
            label = failure_label(event)
            self.registry.handshakeFailed(label)
            log.info("Kwik handshake with {peer} failed after {duration:.3f} s ({label}): "
                     "{reason}", peer=peer_address(core), duration=duration, label=label,
                     reason=reason)
            return
        sent, received, split = traffic_summary(core)
        hint = ""
        if event.error_code == ErrorCode.IDLE_TIMEOUT and not event.by_peer:
            hint = (f" (nothing received within the negotiated idle timeout of "
                    f"{core.idle_timeout} s; see keepAlive= in docs/endpoints.rst)")
        log.info("Kwik connection with {peer} ended: {reason} after {duration:.3f} s; "
                 "{sent} bytes sent, {received} received; {split}{hint}",
                 peer=peer_address(core), reason=reason, duration=duration, sent=sent,
                 received=received, split=split, hint=hint, code=event.error_code)

    def _onAddressAdvertised(self, event: AddressAdvertised) -> None:
        self.owner.addressAdvertised(self, event)

    # -- streams ---------------------------------------------------------------------

    def attach(self, stream_id: int, protocol, onLost=None) -> KwikStreamTransport:
        """Connect ``protocol`` to a new transport for ``stream_id``."""
        peer = ip_address(peer_address(self.core))
        transport = KwikStreamTransport(self, stream_id, self.owner.hostAddress(), peer, protocol,
                                        onLost=onLost)
        self.transports[stream_id] = transport
        transport.attached()
        return transport

    def openStream(self, protocol, onLost=None, *, priority=Priority.NORMAL, qos=None,
                   ordered: bool = True, compress: bool | None = None,
                   paths=None) -> KwikStreamTransport:
        """
        Open a stream of ours and connect ``protocol`` to it
        (:meth:`kwik_twisted.interfaces.IKwikConnection.openStream`).

        :param onLost: called (no arguments) after ``protocol.connectionLost``.
        :param priority: a :class:`~kwik_twisted.streams.Priority` (or 0, 1, 2).
        :param qos: a :class:`~kwik_twisted.streams.QoSPolicy` sent with the stream, or ``None``.
        :param ordered: ``False`` opens the stream without the ORDERED flag; ``protocol`` must
            then provide :class:`~kwik_twisted.interfaces.IKwikMessageProtocol`, whose
            ``pieceReceived`` gets the peer's bytes as they arrive.
        :param compress: lz4-compress the stream's data (``None``: the ``compression`` setting).
        :param paths: path IDs the stream's frames keep to while any of them works, or ``None``.
        :returns: the stream's transport (an ``IKwikStreamTransport``).
        :raises TypeError: ``ordered=False`` with a plain protocol; a ``qos`` of the wrong type.
        :raises ConfigurationError: a bad priority or path ID.
        :raises KwikError: the peer's stream limit does not allow another stream now, or the
            connection is closed.
        """
        options = streamOptions(protocol, priority=priority, qos=qos, ordered=ordered,
                                compress=compress, paths=paths)
        if self.dead or self.terminated is not None:
            raise StreamStateError("the Kwik connection is closed: no new streams")
        stream_id = self.core.open_stream(**options)
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

    # -- paths (the path methods are PathControls', in pathcontrols.py) -----------------

    def congestionReport(self):
        """The seed's CongestionReport now (see :meth:`IKwikConnection.congestionReport`)."""
        return self.core.qos.report(now=self.reactor.seconds())

    def updateKeys(self) -> bool:
        """Update the application keys soon (see :meth:`IKwikConnection.updateKeys`)."""
        if self.dead or not self.core.keys.request_update():
            return False
        self.scheduleTurn()
        return True

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
            self.reactor.callLater(0, self.crash, failure)
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
        view = self.core.stream(stream_id)
        return view is None or view.ordered

    def writable(self, stream_id: int) -> bool:
        """Whether the stream's send buffer has room."""
        return not self.dead and self.core.stream_writable(stream_id)

    def streamView(self, stream_id: int):
        """The core's read-only view of a stream, or ``None`` once it forgot it."""
        return self.core.stream(stream_id)

    def updateStream(self, stream_id: int, **changes) -> None:
        """
        Change a stream's ``priority``, ``qos`` (wire form) or ``paths`` (nothing once gone).

        :raises ConfigurationError: a path ID is neither an open nor a pending path.
        """
        if self.dead:
            return
        try:
            self.core.update_stream(stream_id, **changes)
        except StreamStateError:
            return  # the stream is gone
        self.scheduleTurn()

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
        """
        Close now: send CONNECTION_CLOSE once and forget the connection without draining.

        Called while the connection is being serviced (from an event handler), it happens once
        that service is over.
        """
        if self.dead:
            return
        if self._servicing:
            self._abandonReason = reason
            return
        self._abandonReason = None
        try:
            self.core.close(ErrorCode.NO_ERROR, reason, application=False)
            self._dispatchEvents()
            self._flush()
        except Exception:
            self.crash(Failure())
            return
        self._gone()

    def crash(self, failure: Failure) -> None:
        """End the connection after an internal error (a bug): log it, INTERNAL_ERROR, gone."""
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
        self.registry.discard(self)
        for call in (self._timer, self._turn):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._turn = None
        self._pulls.clear()
        trace = self.core.trace
        if trace is not None and hasattr(trace.tracer, "close"):
            trace.tracer.close()  # the qlog file (glue/qlog.py)
        for transport in list(self.transports.values()):
            transport.connectionGone(error.ConnectionLost("connection closed"))
        self.owner.connectionGone(self)


_HANDLERS = {
    HandshakeCompleted: KwikConnection._onHandshake,
    StreamOpened: KwikConnection._onStreamOpened,
    StreamDataReceived: KwikConnection._onData,
    StreamReset: KwikConnection._onStreamEvent,
    StopSendingReceived: KwikConnection._onStreamEvent,
    StreamWritable: KwikConnection._onStreamEvent,
    StreamClosed: KwikConnection._onClosed,
    ConnectionTerminated: KwikConnection._onTerminated,
    AddressAdvertised: KwikConnection._onAddressAdvertised,
    QoSViolated: KwikConnection._onQoSViolated,
    DatagramReceived: onDatagramReceived,
    DatagramDropped: onDatagramDropped,
}

#: How a stream transport (an ``IStreamEventSink``) takes each of the core's simpler stream events.
_STREAM_EVENTS = {
    StreamReset: lambda transport, event: transport.resetByPeer(event.error_code),
    StopSendingReceived: lambda transport, event: transport.stopSendingReceived(event.error_code),
    StreamWritable: lambda transport, event: transport.streamWritable(),
}


__all__ = [
    "FLUSH_ROUNDS", "MIN_TIMER_DELAY", "STREAM_ABORTED", "KwikConnection", "describe_termination",
    "failure_label", "ip_address", "peer_address", "traffic_summary",
]
