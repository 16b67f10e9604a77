"""
UDP through Kwik datagrams, for ``twistd kwik --listen udp:PORT --forward kwik:...`` on one side
and ``twistd kwik --listen kwik:... --forward udp:HOST:PORT`` on the other.

Theory of operation.  A *flow* is one local UDP peer (source address) of the entrance.  The
entrance (:class:`UDPTunnelEntrance`, a ``DatagramProtocol`` on the ``--listen udp:`` port) gives
each flow a stream of its own, opened with the ``--forward`` Kwik client endpoint: the stream
carries nothing but says when the flow starts and ends, and its stream ID names the flow.  Each UDP
datagram then travels as one Kwik datagram (``sendDatagram``) whose first varint is that stream ID,
so flows can share a Kwik connection (an endpoint with ``reuse``) and each side finds its flow in
O(1) (:class:`_Demux`, the connection's datagram receiver).  The entrance writes one byte on the
stream (:data:`HELLO`: a stream exists for the peer only once data arrives), and the exit holds
the few datagrams that arrive before their flow's stream (packets put datagrams before stream
data, and a lost STREAM frame comes back later), bounded by :data:`EARLY_FLOWS` and
:data:`EARLY_DATAGRAMS`.  At the exit
(:class:`UDPTunnelExitFactory`, the factory of the ``--listen kwik:`` endpoint) each flow's stream
gets a UDP socket of its own connected to the ``--forward udp:`` target, so the target's replies
find their flow by the socket they arrive on and go back through the tunnel to the entrance, which
writes them to the flow's source address.

Unreliable end to end, as UDP is: a datagram larger than the Kwik connection carries, or sent
while the send queue is full, is dropped and counted (``stats``), never fragmented.  Bounds: at
most :data:`MAX_FLOWS` flows (the least recently active is closed beyond), :data:`PENDING_LIMIT`
datagrams held per flow while its stream is being opened, and a flow silent for
:data:`FLOW_IDLE` seconds is closed (its stream, then its exit socket).
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from weakref import WeakKeyDictionary

from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from ..errors import DatagramError, KwikError
from ..interfaces import IKwikDatagramProtocol
from ..wire import encode_varint, pull_varint

log = Logger()

#: Local UDP peers an entrance serves at once.
MAX_FLOWS = 256
#: Seconds without a datagram either way after which a flow is closed.
FLOW_IDLE = 60.0
#: Datagrams a flow holds while its stream is being opened (the oldest are dropped beyond).
PENDING_LIMIT = 64
#: Flows whose datagrams arrived before their stream, and datagrams held for each, at most.
EARLY_FLOWS, EARLY_DATAGRAMS = 16, 8
#: What an entrance writes on a flow's stream: a stream exists for the peer once data arrives.
HELLO = b"\x00"

_DEMUXES: WeakKeyDictionary = WeakKeyDictionary()


def parseUDP(description: str, *, listen: bool) -> tuple[str, int]:
    """
    ``udp:PORT[:interface=HOST]`` (``listen``) or ``udp:HOST:PORT`` (forward) as ``(host,
    port)``; colons in a host (IPv6) are escaped with a backslash, as in endpoint strings.

    :raises ValueError: anything else.
    """
    parts = _split(description)
    if not parts or parts[0] != "udp":
        raise ValueError("a UDP endpoint starts with udp:")
    if listen:
        if len(parts) not in (2, 3) or (len(parts) == 3 and not parts[2].startswith("interface=")):
            raise ValueError("expected udp:PORT or udp:PORT:interface=HOST")
        host = parts[2].removeprefix("interface=") if len(parts) == 3 else ""
        return host, _port(parts[1])
    if len(parts) != 3 or not parts[1]:
        raise ValueError("expected udp:HOST:PORT")
    return parts[1], _port(parts[2])


def _split(description: str) -> list[str]:
    parts, current, escaped = [], [], False
    for char in description:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return port


@implementer(IKwikDatagramProtocol)
class _Demux:
    """The datagram receiver of one Kwik connection: hands each datagram to the flow its first
    varint names (the stream ID of the flow's stream)."""

    def __init__(self, stats: Counter) -> None:
        self.flows: dict[int, object] = {}
        self.early: OrderedDict[int, list[bytes]] = OrderedDict()
        self.stats = stats

    def register(self, flow_id: int, flow) -> None:
        """Route ``flow_id`` to ``flow``, and hand it what arrived before its stream did."""
        self.flows[flow_id] = flow
        for data in self.early.pop(flow_id, ()):
            flow.fromTunnel(data)

    def datagramReceived(self, data: bytes) -> None:
        try:
            flow_id, pos = pull_varint(memoryview(data), 0)
        except KwikError:
            self.stats["udp_tunnel_malformed"] += 1
            return
        flow = self.flows.get(flow_id)
        if flow is None:  # its stream may come later (in the same packet, or retransmitted)
            held = self.early.get(flow_id)
            if held is None:
                if len(self.early) >= EARLY_FLOWS:
                    self.stats["udp_tunnel_dropped"] += len(self.early.popitem(last=False)[1])
                held = self.early[flow_id] = []
            if len(held) < EARLY_DATAGRAMS:
                held.append(data[pos:])
            else:
                self.stats["udp_tunnel_dropped"] += 1
            return
        flow.fromTunnel(data[pos:])

    def datagramsDropped(self, count: int, reason: str) -> None:
        self.stats["udp_tunnel_dropped"] += count


def _demux(connection, stats: Counter) -> _Demux:
    demux = _DEMUXES.get(connection)
    if demux is None:
        demux = _DEMUXES[connection] = _Demux(stats)
        connection.setDatagramReceiver(demux)
    return demux


def _send(connection, prefix: bytes, data: bytes, stats: Counter) -> None:
    try:
        connection.sendDatagram(prefix + data)
    except DatagramError:
        stats["udp_tunnel_dropped"] += 1
    else:
        stats["udp_tunnel_sent"] += 1


class _FlowStream(Protocol):
    """The stream of an entrance flow: tells the flow it is open, and when it ends."""

    def __init__(self, flow: _Flow) -> None:
        self.flow = flow

    def connectionLost(self, reason=None) -> None:
        self.flow.ended()


class _Flow:
    """One local UDP peer of an entrance (see the module docstring)."""

    def __init__(self, entrance: UDPTunnelEntrance, addr: tuple) -> None:
        self.entrance = entrance
        self.addr = addr
        self.stream: _FlowStream | None = None
        self.connection = None
        self.prefix = b""
        self.pending: deque[bytes] = deque()
        self.closed = False
        self.timer = entrance.reactor.callLater(FLOW_IDLE, self.close)

    def start(self) -> None:
        factory = Factory()
        factory.buildProtocol = lambda addr: _FlowStream(self)
        d = self.entrance.endpoint.connect(factory)
        d.addCallbacks(self._opened, self._failed)

    def _opened(self, stream: _FlowStream) -> None:
        if self.closed:
            stream.transport.loseConnection()
            return
        self.stream = stream
        self.connection = connection = stream.transport.kwikConnection
        flow_id = stream.transport.streamId
        self.prefix = encode_varint(flow_id)
        stream.transport.write(HELLO)
        _demux(connection, self.entrance.stats).register(flow_id, self)
        while self.pending:
            _send(connection, self.prefix, self.pending.popleft(), self.entrance.stats)

    def _failed(self, failure) -> None:
        log.info("UDP tunnel flow from {addr} could not open its Kwik stream: {error}",
                 addr=self.addr, error=failure.getErrorMessage())
        self.close()

    def toTunnel(self, data: bytes) -> None:
        """A datagram from the local peer."""
        self.timer.reset(FLOW_IDLE)
        if self.connection is None:
            self.pending.append(data)
            if len(self.pending) > PENDING_LIMIT:
                self.pending.popleft()
                self.entrance.stats["udp_tunnel_dropped"] += 1
            return
        _send(self.connection, self.prefix, data, self.entrance.stats)

    def fromTunnel(self, data: bytes) -> None:
        """A datagram from the exit, for the local peer."""
        if self.closed:
            return
        self.timer.reset(FLOW_IDLE)
        self.entrance.stats["udp_tunnel_received"] += 1
        self.entrance.transport.write(data, self.addr)

    def close(self) -> None:
        """End the flow: its stream, its timer, its place in the entrance."""
        if self.closed:
            return
        self.closed = True
        if self.timer.active():
            self.timer.cancel()
        self.entrance.forget(self)
        if self.stream is not None and self.stream.transport is not None:
            self.stream.transport.loseConnection()

    def ended(self) -> None:
        """The flow's stream is gone."""
        if self.connection is not None:
            demux = _DEMUXES.get(self.connection)
            if demux is not None and demux.flows.get(_flow_id(self.prefix)) is self:
                del demux.flows[_flow_id(self.prefix)]
        self.close()


def _flow_id(prefix: bytes) -> int:
    return pull_varint(memoryview(prefix), 0)[0]


class UDPTunnelEntrance(DatagramProtocol):
    """
    The ``--listen udp:`` side: each local UDP peer becomes a flow through ``endpoint`` (a Kwik
    client endpoint).

    :ivar stats: datagrams sent into and received from the tunnel, and dropped.
    """

    def __init__(self, reactor, endpoint) -> None:
        self.reactor = reactor
        self.endpoint = endpoint
        self.flows: OrderedDict[tuple, _Flow] = OrderedDict()
        self.stats: Counter[str] = Counter()

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        flow = self.flows.get(addr)
        if flow is None:
            if len(self.flows) >= MAX_FLOWS:
                next(iter(self.flows.values())).close()  # the least recently active
            flow = self.flows[addr] = _Flow(self, addr)
            flow.start()
        else:
            self.flows.move_to_end(addr)
        if not flow.closed:
            flow.toTunnel(data)

    def forget(self, flow: _Flow) -> None:
        """Stop routing to ``flow`` (closed)."""
        if self.flows.get(flow.addr) is flow:
            del self.flows[flow.addr]

    def stopProtocol(self) -> None:
        for flow in list(self.flows.values()):
            flow.close()


class _ExitSocket(DatagramProtocol):
    """The UDP socket of one exit flow, connected to the target."""

    def __init__(self, stream: _ExitStream) -> None:
        self.stream = stream

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        self.stream.fromTarget(data)

    def connectionRefused(self) -> None:
        self.stream.tunnel.stats["udp_tunnel_refused"] += 1


class _ExitStream(Protocol):
    """The stream of one flow at the exit: a UDP socket to the target while it lives."""

    def __init__(self, tunnel: UDPTunnelExitFactory) -> None:
        self.tunnel = tunnel
        self.port = None
        self.prefix = b""
        self.connection = None

    def connectionMade(self) -> None:
        factory = self.tunnel
        self.connection = self.transport.kwikConnection
        flow_id = self.transport.streamId
        self.prefix = encode_varint(flow_id)
        interface = "::" if ":" in factory.host else ""
        self.socket = _ExitSocket(self)
        # Whole datagrams (Twisted's default buffer, 8192 bytes, would cut larger ones short:
        # a reply too large for the tunnel is dropped and reported, never truncated).
        self.port = factory.reactor.listenUDP(0, self.socket, interface=interface,
                                              maxPacketSize=65535)
        self.port.connect(factory.host, factory.port)
        _demux(self.connection, factory.stats).register(flow_id, self)

    def fromTunnel(self, data: bytes) -> None:
        """A datagram of the flow, for the target."""
        self.tunnel.stats["udp_tunnel_received"] += 1
        try:
            self.port.write(data)
        except OSError:
            self.tunnel.stats["udp_tunnel_refused"] += 1

    def fromTarget(self, data: bytes) -> None:
        """A datagram from the target, back through the tunnel."""
        _send(self.connection, self.prefix, data, self.tunnel.stats)

    def connectionLost(self, reason=None) -> None:
        if self.port is not None:
            self.port.stopListening()
            self.port = None
        demux = _DEMUXES.get(self.connection) if self.connection is not None else None
        if demux is not None:
            demux.flows.pop(_flow_id(self.prefix), None)


class UDPTunnelExitFactory(Factory):
    """The factory of the ``--listen kwik:`` side when ``--forward`` is ``udp:HOST:PORT``."""

    def __init__(self, reactor, host: str, port: int) -> None:
        self.reactor = reactor
        self.host = host
        self.port = port
        self.stats: Counter[str] = Counter()

    def buildProtocol(self, addr) -> _ExitStream:
        return _ExitStream(self)


__all__ = [
    "FLOW_IDLE", "MAX_FLOWS", "PENDING_LIMIT", "UDPTunnelEntrance", "UDPTunnelExitFactory",
    "parseUDP",
]
