"""
Twisted peers: Kwik through its endpoints, Twisted TCP, and raw Twisted UDP, all on 127.0.0.1.

The stream protocols here (:class:`Sink`, :class:`Echo`, :class:`Pusher`, :class:`Pinger`) are
ordinary Twisted protocols, so the same code runs over a Kwik stream and over TCP: only
:func:`listen` and :func:`connect` differ by ``kind`` (``"kwik"`` or ``"tcp"``).  Kwik client
endpoints use ``reuse=False`` so each benchmark connection is a fresh Kwik connection (a handshake,
a fresh congestion window), like a fresh TCP connection; :func:`disconnect` closes it.

:class:`Pusher` writes its payload as a streaming producer in 64 KiB chunks, the idiomatic Twisted
way (a TCP transport pauses it over its 64 KiB buffer, a Kwik stream over ``stream_send_buffer``).
Raw UDP has no flow control: :func:`udp_blast` sends bursts of datagrams, a burst per reactor turn,
and counts what arrives.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol

from kwik_twisted.endpoints import KwikClientEndpoint, KwikServerEndpoint, closeClientConnections
from kwik_twisted.testing.pair import DevCertificates, client_config, server_config

from . import Stalled

CHUNK = 64 * 1024
DATAGRAM = 1350


# -- stream protocols (Kwik or TCP) -----------------------------------------------------------


class Sink(Protocol):
    """Count bytes; at ``state.expected`` fire ``state.done`` (the time) and maybe ack with b"k"."""

    def __init__(self, state: SimpleNamespace) -> None:
        self.state = state
        self.received = 0
        self.finished = False

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        state = self.state
        state.received = self.received
        if self.received < state.expected or self.finished:
            return
        self.finished = True
        if state.done is not None and not state.done.called:
            state.done.callback(time.perf_counter())
        if state.ack:
            self.transport.write(b"k")


def _no_delay(transport) -> None:
    """Turn Nagle off (TCP); a Kwik stream sends at once anyway."""
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        set_no_delay(True)


class Echo(Protocol):
    """Send back whatever arrives."""

    def connectionMade(self) -> None:
        _no_delay(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class Pusher(Protocol):
    """
    Write ``payload`` as a streaming producer, then close the write side.

    ``started`` is the time of the first write; ``acked`` fires (with the time) on the first byte
    the peer sends back.
    """

    def __init__(self, payload: bytes, chunk: int = CHUNK) -> None:
        self.payload = payload
        self.chunk = chunk
        self.offset = 0
        self.paused = False
        self.running = False
        self.started = 0.0
        self.acked = defer.Deferred()

    def connectionMade(self) -> None:
        self.started = time.perf_counter()
        self.transport.registerProducer(self, True)
        if not self.paused:  # registering may have paused us already
            self._produce()

    def resumeProducing(self) -> None:
        self.paused = False
        self._produce()

    def _produce(self) -> None:
        if self.running:  # a resume from inside our own write
            return
        self.running = True
        payload, chunk, write = self.payload, self.chunk, self.transport.write
        while not self.paused and self.offset < len(payload):
            write(payload[self.offset:self.offset + chunk])
            self.offset += chunk
        self.running = False
        if self.offset >= len(payload) and self.transport.producer is self:
            self.transport.unregisterProducer()

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.paused = True

    def dataReceived(self, data: bytes) -> None:
        if not self.acked.called:
            self.acked.callback(time.perf_counter())


class Pinger(Protocol):
    """
    Round trips of ``message``: send it, wait for as many bytes back, repeat ``count`` times.

    ``done`` fires with the list of round-trip seconds.  With ``count == 1`` and ``started`` set
    beforehand (the time ``connect`` was called), the single sample is the time to first byte.
    """

    def __init__(self, message: bytes, count: int, *, first_byte: bool = False) -> None:
        self.message = message
        self.count = count
        self.first_byte = first_byte
        self.samples: list[float] = []
        self.pending = 0
        self.started = 0.0
        self.done = defer.Deferred()

    def connectionMade(self) -> None:
        _no_delay(self.transport)
        if not self.first_byte:
            self.started = time.perf_counter()
        self.pending = len(self.message)
        self.transport.write(self.message)

    def dataReceived(self, data: bytes) -> None:
        self.pending -= len(data)
        if self.first_byte and not self.samples:
            self.pending = 0
        if self.pending > 0 or self.done.called:
            return
        now = time.perf_counter()
        self.samples.append(now - self.started)
        if len(self.samples) >= self.count:
            self.done.callback(self.samples)
            return
        self.started, self.pending = now, len(self.message)
        self.transport.write(self.message)


# -- endpoints -------------------------------------------------------------------------------

#: Kwik with fixed 1350-byte datagrams, and with path MTU discovery (up to 16384 on loopback).
KWIK_KINDS = ("kwik", "kwik-pmtud")
#: Further :class:`~kwik_twisted.config.ConnectionConfig` fields for both Kwik sides
#: (``bulk.py --config key_update_interval=1000``).
KWIK_CONFIG: dict = {}


def listen(kind: str, factory: Factory, certs: DevCertificates | None = None, port: int = 0):
    """Listen on 127.0.0.1 (Kwik, Kwik with path MTU discovery, or TCP); a Deferred firing with
    the listening port."""
    if kind in KWIK_KINDS:
        endpoint = KwikServerEndpoint(reactor, port, interface="127.0.0.1",
                                      config=server_config(certs, **{"pmtud": kind == "kwik-pmtud",
                                                                     **KWIK_CONFIG}))
    elif kind == "tcp":
        endpoint = TCP4ServerEndpoint(reactor, port, interface="127.0.0.1")
    else:
        raise ValueError(kind)
    return endpoint.listen(factory)


def connect(kind: str, port: int, factory: Factory, certs: DevCertificates | None = None):
    """Connect a fresh connection (Kwik or TCP); a Deferred firing with the connected protocol."""
    if kind in KWIK_KINDS:
        endpoint = KwikClientEndpoint(reactor, "127.0.0.1", port, reuse=False,
                                      config=client_config(certs, **{"pmtud": kind == "kwik-pmtud",
                                                                     **KWIK_CONFIG}))
    elif kind == "tcp":
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    else:
        raise ValueError(kind)
    return endpoint.connect(factory)


def disconnect(kind: str, protocol: Protocol):
    """Close a client connection; a Deferred firing when it is gone."""
    if kind in KWIK_KINDS:
        return closeClientConnections(reactor)
    protocol.transport.loseConnection()
    return defer.succeed(None)


def sink_factory(expected: int, *, ack: bool = False) -> tuple[Factory, SimpleNamespace]:
    """A factory of :class:`Sink` sharing one state (reset ``state.done`` before each run)."""
    state = SimpleNamespace(expected=expected, done=None, ack=ack, received=0)
    factory = Factory()
    factory.protocol = Sink
    factory.buildProtocol = lambda addr: Sink(state)
    return factory, state


@defer.inlineCallbacks
def bulk_once(kind: str, port: int, payload: bytes, state, certs=None, *, remote: bool = False,
              timeout: float = 120.0):
    """
    One transfer on a fresh connection: seconds from first byte written to last received.

    :raises Stalled: not finished within ``timeout`` seconds (the message says how far it got).
    """
    if not remote:
        state.done, state.received = defer.Deferred(), 0
    pusher = Pusher(payload)
    proto = yield connect(kind, port, Factory.forProtocol(lambda: pusher), certs)
    waiting = pusher.acked if remote else state.done
    waiting.addTimeout(timeout, reactor)
    try:
        finished = yield waiting
    except defer.TimeoutError:
        got = "the peer's ack never came" if remote else f"{state.received} bytes received"
        raise Stalled(f"{kind} transfer stalled: {pusher.offset} of {len(payload)} bytes "
                      f"written, {got} after {timeout:g} s") from None
    yield disconnect(kind, proto)
    return finished - pusher.started


@defer.inlineCallbacks
def ttfb_once(kind: str, port: int, certs=None):
    """Seconds from ``connect()`` to the first byte of the echoed response (fresh connection)."""
    pinger = Pinger(b"ping", 1, first_byte=True)
    pinger.started = time.perf_counter()
    proto = yield connect(kind, port, Factory.forProtocol(lambda: pinger), certs)
    samples = yield pinger.done
    yield disconnect(kind, proto)
    return samples[0]


@defer.inlineCallbacks
def echo_rounds(kind: str, port: int, count: int, size: int, certs=None):
    """``count`` round trips of ``size`` bytes on one connection; their seconds."""
    pinger = Pinger(b"x" * size, count)
    proto = yield connect(kind, port, Factory.forProtocol(lambda: pinger), certs)
    samples = yield pinger.done
    yield disconnect(kind, proto)
    return samples


# -- raw UDP ---------------------------------------------------------------------------------


class _UdpCounter(DatagramProtocol):
    def __init__(self) -> None:
        self.bytes = 0
        self.datagrams = 0
        self.last = 0.0

    def datagramReceived(self, data: bytes, addr) -> None:
        self.bytes += len(data)
        self.datagrams += 1
        self.last = time.perf_counter()


@defer.inlineCallbacks
def udp_blast(size: int, *, burst: int = 64, quiet: float = 0.2):
    """
    Send ``size`` bytes as 1350-byte datagrams (``burst`` per reactor turn) to a counting port.

    Returns a dict: seconds (first send to last arrival), bytes sent and received, loss.
    """
    receiver = _UdpCounter()
    rport = reactor.listenUDP(0, receiver, interface="127.0.0.1", maxPacketSize=65535)
    sport = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
    addr = ("127.0.0.1", rport.getHost().port)
    datagram = bytes(DATAGRAM)
    total = -(-size // DATAGRAM)
    sent = dropped = 0
    started = time.perf_counter()
    while sent + dropped < total:
        for _ in range(min(burst, total - sent - dropped)):
            try:
                sport.write(datagram, addr)
                sent += 1
            except OSError:  # the socket buffer is full: the datagram is lost
                dropped += 1
        yield _turn()
    while time.perf_counter() - max(receiver.last, started) < quiet:
        yield _sleep(quiet / 4)
    yield rport.stopListening()
    yield sport.stopListening()
    seconds = max(receiver.last, started + 1e-9) - started
    return {"seconds": seconds, "sent_bytes": total * DATAGRAM, "received_bytes": receiver.bytes,
            "loss": 1 - receiver.datagrams / total}


class _UdpEcho(DatagramProtocol):
    def datagramReceived(self, data: bytes, addr) -> None:
        self.transport.write(data, addr)


class _UdpPinger(DatagramProtocol):
    def __init__(self, addr, message: bytes, count: int) -> None:
        self.addr = addr
        self.message = message
        self.count = count
        self.samples: list[float] = []
        self.started = 0.0
        self.done = defer.Deferred()

    def startProtocol(self) -> None:
        self.started = time.perf_counter()
        self.transport.write(self.message, self.addr)

    def datagramReceived(self, data: bytes, addr) -> None:
        now = time.perf_counter()
        self.samples.append(now - self.started)
        if len(self.samples) >= self.count:
            self.done.callback(self.samples)
            return
        self.started = now
        self.transport.write(self.message, self.addr)


@defer.inlineCallbacks
def udp_echo_rounds(count: int, size: int):
    """``count`` datagram round trips of ``size`` bytes (no loss expected on loopback)."""
    server = reactor.listenUDP(0, _UdpEcho(), interface="127.0.0.1")
    pinger = _UdpPinger(("127.0.0.1", server.getHost().port), b"x" * size, count)
    client = reactor.listenUDP(0, pinger, interface="127.0.0.1")
    samples = yield pinger.done
    yield client.stopListening()
    yield server.stopListening()
    return samples


def _turn():
    d = defer.Deferred()
    reactor.callLater(0, d.callback, None)
    return d


def _sleep(seconds: float):
    d = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d
