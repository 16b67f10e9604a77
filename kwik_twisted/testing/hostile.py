"""
Hostile Kwik peers over real UDP sockets, and a Kwik server in a child process to aim them at.

:class:`HostilePeer` is a real client :class:`~kwik_twisted.core.connection.Connection` on a real
loopback UDP socket.  It completes an honest handshake; after that a test injects datagrams of its
choosing, sealed with the connection's real application keys (:func:`~.pair.forge` for frames the
encoders accept, :func:`seal_plaintext` with :func:`raw_stream_frame` / :func:`raw_control_frame`
for bytes they refuse to build: too many ACK ranges, lz4 bombs).  ``honest = False`` discards what
the core itself would send, so only the forged traffic goes out.  The peer records the server's
``ConnectionTerminated`` (the typed error code a violation earns, ``docs/protocol.rst``).

:class:`HandshakeFlooder` sends many clients' first flights from many source ports: one real
ClientHello flight is decrypted once and re-sealed under fresh connection IDs (initial keys are
derived from the destination CID, protocol.rst "Initial keys"), so every attempt is a valid,
distinct Initial that makes the server create state and run TLS, for the cost of two AEAD calls.

:class:`ServerProcess` runs a :class:`~kwik_twisted.endpoints.KwikServerEndpoint` in a child
Python process (``python -m kwik_twisted.testing.hostile serve``) under ``tracemalloc``, so its
memory (traced bytes and RSS) is the server's alone, not the attacker's.  Each stream it accepts
answers the SHA-256 of what the client sent once the client's FIN arrives.  The parent asks for
figures over the child's stdin/stdout (one JSON line per ``measure``).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import select
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterable
from struct import pack
from zlib import crc32

from twisted.internet import defer, task
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from zope.interface import implementer

from ..config import ConnectionConfig
from ..core.connection import BURST_LIMIT, Connection
from ..core.crypto.protection import initial_protections
from ..core.entropy import SeededEntropy
from ..events import ConnectionTerminated, Event, StreamDataReceived
from ..wire import (
    Epoch,
    Header,
    decode_packet,
    encode_packet,
    encode_varint,
)
from .pair import DevCertificates, forge, seal_plaintext, server_config

#: Frame flag bits and the control priority, from protocol.rst ("Frame flags").
FIN, COMPRESSED, ENCRYPTED, ORDERED = 0x01, 0x04, 0x08, 0x10
CONTROL_PRIORITY = 0xFF
#: Bytes a socket of ours asks the kernel to buffer.
SOCKET_BUFFER = 4 * 1024 * 1024


# -- hand-made frames ------------------------------------------------------------------------


def raw_stream_frame(
    stream_id: int,
    wire_data: bytes,
    *,
    offset: int = 0,
    flags: int = ENCRYPTED | ORDERED,
    checksum: int | None = None,
) -> bytes:
    """A STREAM frame field by field (protocol.rst "Frames"); ``checksum`` defaults to CRC-32
    of ``wire_data`` (pass the decompressed data's CRC for a COMPRESSED frame)."""
    if checksum is None:
        checksum = crc32(wire_data)
    return b"".join(
        (
            encode_varint(stream_id),
            pack(">QB", offset, flags),
            encode_varint(len(wire_data)),
            pack(">IB", checksum, 0),
            encode_varint(0),
            wire_data,
        )
    )


def raw_control_frame(ctype: int, body: bytes) -> bytes:
    """A control frame of type ``ctype`` with ``body`` (under application keys)."""
    return b"".join(
        (
            encode_varint(ctype),
            pack(">QB", 0, ENCRYPTED),
            encode_varint(len(body)),
            pack(">IB", crc32(body), CONTROL_PRIORITY),
            encode_varint(0),
            body,
        )
    )


def varints(*values: int) -> bytes:
    """The concatenated varints of a control frame body."""
    return b"".join(encode_varint(v) for v in values)


def _enlarge(transport) -> None:
    sock = transport.getHandle()
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        except OSError:
            pass


# -- the hostile peer ------------------------------------------------------------------------


class HostilePeer(DatagramProtocol):
    """
    A Kwik client on a real UDP socket that can send forged, authenticated traffic.

    :ivar honest: send what the core itself produces (ACKs, retransmissions); set to ``False`` to
        send only injected datagrams.
    :ivar terminated: fires with the client's :class:`ConnectionTerminated` (for a server's
        CONNECTION_CLOSE: ``by_peer=True`` and the server's error code).
    :ivar sent_datagrams, sent_bytes, received_datagrams, received_bytes: traffic counters.
    """

    def __init__(
        self, reactor, server: tuple[str, int], config: ConnectionConfig, *, seed: int = 1
    ) -> None:
        self.reactor = reactor
        self.server = server
        self.config = config
        self.seed = seed
        self.honest = True
        self.core: Connection | None = None
        self.events: list[Event] = []
        self.terminated: defer.Deferred = defer.Deferred()
        self.termination: ConnectionTerminated | None = None
        self.sent_datagrams = self.sent_bytes = 0
        self.received_datagrams = self.received_bytes = 0
        self._port = None
        self._timer = None
        self._confirmed: defer.Deferred | None = None
        self._replies: dict[int, tuple[list[bytes], defer.Deferred]] = {}

    # -- life cycle ------------------------------------------------------------------

    def connect(self) -> defer.Deferred:
        """Bind a loopback socket and handshake; fire (with self) once the handshake is
        confirmed, or fail with the termination if it ends first."""
        self._port = self.reactor.listenUDP(0, self, interface="127.0.0.1", maxPacketSize=65535)
        _enlarge(self._port)
        host = self._port.getHost()
        self.core = Connection.client(
            self.config,
            local_addr=(host.host, host.port),
            remote_addr=self.server,
            entropy=SeededEntropy(self.seed),
            now=self.reactor.seconds(),
        )
        self._confirmed = defer.Deferred()
        self.service()
        return self._confirmed

    def stop(self) -> defer.Deferred:
        """Forget the connection (without a CONNECTION_CLOSE) and stop the socket."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        port, self._port = self._port, None
        if port is None:
            return defer.succeed(None)
        return defer.maybeDeferred(port.stopListening)

    # -- injecting -------------------------------------------------------------------

    def send_frames(self, frames: Iterable) -> int:
        """Send one datagram carrying ``frames``, sealed with our keys; return its size."""
        return self._send(forge(self.core, frames, now=self.reactor.seconds()))

    def send_plaintext(self, plaintext: bytes, **header) -> int:
        """Send one datagram with an arbitrary plaintext (see :func:`seal_plaintext`)."""
        return self._send(
            seal_plaintext(self.core, plaintext, now=self.reactor.seconds(), **header)
        )

    def send_many(
        self, build, count: int, *, batch: int = 16, pause: float = 0.002
    ) -> defer.Deferred:
        """Send ``build(i)`` (a list of frames, or bytes already sealed) for ``i`` in
        ``range(count)``, ``batch`` datagrams per reactor turn with ``pause`` seconds between
        turns (so the receiver's socket buffer does not overflow); fire with the bytes sent."""

        @defer.inlineCallbacks
        def run():
            total = 0
            for i in range(count):
                if self.termination is not None:
                    break
                item = build(i)
                total += self._send(item) if isinstance(item, bytes) else self.send_frames(item)
                if (i + 1) % batch == 0:
                    yield task.deferLater(self.reactor, pause, lambda: None)
            return total

        return run()

    def request(self, data: bytes) -> defer.Deferred:
        """Honestly open a stream, send ``data`` and FIN; fire with what the server answers
        (its bytes up to its FIN)."""
        sid = self.core.open_stream()
        d = self.expect_reply(sid)
        self.core.send_stream_data(sid, data, end_stream=True)
        self.service()
        return d

    def expect_reply(self, stream_id: int) -> defer.Deferred:
        """Fire with what the server sends on ``stream_id`` (one we opened) up to its FIN."""
        d = defer.Deferred()
        self._replies[stream_id] = ([], d)
        return d

    # -- driving the core --------------------------------------------------------------

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        """Feed the core; then service."""
        self.received_datagrams += 1
        self.received_bytes += len(data)
        if self.core is None:
            return
        host = self._port.getHost() if self._port is not None else None
        local = (host.host, host.port) if host is not None else ("127.0.0.1", 0)
        self.core.receive_datagram(data, local, addr, now=self.reactor.seconds())
        self.service()

    def service(self) -> None:
        """Send (if honest) what the core has, collect its events, re-arm the timer."""
        core = self.core
        now = self.reactor.seconds()
        while True:
            out = core.datagrams_to_send(now=now)
            if self.honest:
                for data, _, _ in out:
                    self._send(data)
            if len(out) < BURST_LIMIT:
                break
        while (event := core.next_event()) is not None:
            self._event(event)
        if self._confirmed is not None and core.handshake_confirmed:
            d, self._confirmed = self._confirmed, None
            d.callback(self)
        self._rearm()

    def _event(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, StreamDataReceived) and event.stream_id in self._replies:
            parts, d = self._replies[event.stream_id]
            parts.append(event.data)
            if event.end_stream:
                del self._replies[event.stream_id]
                d.callback(b"".join(parts))
        elif isinstance(event, ConnectionTerminated) and self.termination is None:
            self.termination = event
            self.terminated.callback(event)
            if self._confirmed is not None:
                d, self._confirmed = self._confirmed, None
                d.errback(RuntimeError(f"connection ended during the handshake: {event}"))

    def _rearm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        deadline = self.core.next_deadline()
        if deadline is not None and self._port is not None:
            delay = max(0.0, deadline - self.reactor.seconds())
            self._timer = self.reactor.callLater(delay, self._onTimer)

    def _onTimer(self) -> None:
        self._timer = None
        self.core.handle_deadline(now=self.reactor.seconds())
        self.service()

    def _send(self, data: bytes) -> int:
        if self._port is None:
            return 0
        self.sent_datagrams += 1
        self.sent_bytes += len(data)
        try:
            self.transport.write(data, self.server)
        except OSError:
            pass  # a full socket buffer is a lost datagram
        return len(data)


# -- the handshake flooder ---------------------------------------------------------------


class _Sink(DatagramProtocol):
    """A flooder socket: counts what the server sends back."""

    def __init__(self, flooder: HandshakeFlooder) -> None:
        self.flooder = flooder

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        self.flooder.received_datagrams += 1
        self.flooder.received_bytes += len(data)


class HandshakeFlooder:
    """
    Sends clients' first flights (valid Initial packets) from ``sockets`` source ports.

    :ivar sent_datagrams, sent_bytes: what went out.
    :ivar received_datagrams, received_bytes: what the server sent back to all the sockets.
    """

    def __init__(
        self,
        reactor,
        server: tuple[str, int],
        config: ConnectionConfig,
        *,
        sockets: int = 200,
        seed: int = 1,
    ) -> None:
        self.reactor = reactor
        self.server = server
        self.sockets = sockets
        self.rng = random.Random(seed)
        self.template = _first_flight(config, seed)
        self.sent_datagrams = self.sent_bytes = 0
        self.received_datagrams = self.received_bytes = 0
        self._ports: list = []

    def start(self) -> HandshakeFlooder:
        """Bind the sockets (on 127.0.0.1, ephemeral ports)."""
        for _ in range(self.sockets):
            self._ports.append(self.reactor.listenUDP(0, _Sink(self), interface="127.0.0.1"))
        return self

    def attempt(self, index: int) -> None:
        """Send one fresh first flight (new CIDs) from socket ``index % sockets``."""
        dcid, scid = self.rng.randbytes(8), self.rng.randbytes(8)
        seal = initial_protections(dcid, is_client=True)[0].seal
        port = self._ports[index % len(self._ports)]
        for header, plaintext in self.template:
            fresh = Header(
                dcid,
                0,
                header.seq,
                header.packet_type,
                header.frame_count,
                header.compression,
                Epoch.INITIAL,
                scid,
            )
            data = encode_packet(fresh, plaintext, seal)
            self.sent_datagrams += 1
            self.sent_bytes += len(data)
            try:
                port.write(data, self.server)
            except OSError:
                pass

    def flood(self, attempts: int, *, batch: int = 20, pause: float = 0.005) -> defer.Deferred:
        """Make ``attempts`` connection attempts, ``batch`` per reactor turn, ``pause`` seconds
        apart; fire when all are sent."""

        @defer.inlineCallbacks
        def run():
            for i in range(attempts):
                self.attempt(i)
                if (i + 1) % batch == 0:
                    yield task.deferLater(self.reactor, pause, lambda: None)
            return attempts

        return run()

    def stop(self) -> defer.Deferred:
        """Stop every socket."""
        ports, self._ports = self._ports, []
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])


def _first_flight(config: ConnectionConfig, seed: int) -> list[tuple[Header, bytes]]:
    """A client's first datagrams, decrypted: ``(header, plaintext)`` pairs to re-seal."""
    client = Connection.client(
        config,
        local_addr=("127.0.0.1", 1),
        remote_addr=("127.0.0.1", 2),
        entropy=SeededEntropy(seed),
        now=0.0,
    )
    flight = []
    for data, _, _ in client.datagrams_to_send(now=0.0):
        packet = decode_packet(data)
        header = packet.header
        receive = initial_protections(header.dcid, is_client=False)[1]
        plaintext = receive.open(header.path_id, header.seq, packet.aad, packet.payload)
        flight.append((header, bytes(plaintext)))
    return flight


# -- the server in a child process -----------------------------------------------------------


@implementer(IHalfCloseableProtocol)
class DigestReply(Protocol):
    """Hashes what the client sends; at the client's FIN, writes the SHA-256 and closes."""

    def connectionMade(self) -> None:
        self.hash = hashlib.sha256()

    def dataReceived(self, data: bytes) -> None:
        self.hash.update(data)

    def readConnectionLost(self) -> None:
        self.transport.write(self.hash.digest())
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass


def rss_bytes() -> int:
    """This process's resident set size (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class ServerProcess:
    """
    A Kwik server (``KwikServerEndpoint`` on 127.0.0.1, :class:`DigestReply` streams) in a
    child process, measured with ``tracemalloc``.

    :param certs: the server's certificate (the child reads it from files in ``directory``).
    :param config: overrides of the server :class:`ConnectionConfig` (JSON-able values).

    Blocking calls (the child answers within milliseconds): :meth:`start`, :meth:`measure`,
    :meth:`stop`.  A test's reactor pauses while they wait; nothing it runs needs that time.
    """

    def __init__(self, certs: DevCertificates, directory: str, *, seed: int = 1, **config) -> None:
        self.certs = certs
        self.directory = directory
        self.seed = seed
        self.config = config
        self.address: tuple[str, int] | None = None
        self._proc: subprocess.Popen | None = None
        self._buffer = b""

    def start(self, timeout: float = 60.0) -> tuple[str, int]:
        """Start the child; return the server's ``(host, port)`` once it listens."""
        os.makedirs(self.directory, exist_ok=True)
        for name in ("chain", "key"):
            with open(os.path.join(self.directory, name + ".pem"), "wb") as f:
                f.write(getattr(self.certs, name))
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        log = open(os.path.join(self.directory, "server.log"), "wb")
        with log:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kwik_twisted.testing.hostile",
                    "serve",
                    "--certs",
                    self.directory,
                    "--seed",
                    str(self.seed),
                    "--config",
                    json.dumps(self.config),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
            )
        ready = self._read(timeout)
        self.address = ("127.0.0.1", ready["port"])
        return self.address

    def measure(self, quiet: float = 0.3, timeout: float = 60.0) -> dict:
        """
        Figures of the server once it has been ``quiet`` seconds without a datagram, after a
        full garbage collection: ``traced`` (tracemalloc bytes), ``peak``, ``rss`` (bytes),
        ``connections`` (live), ``accepted`` and ``stats`` (the dispatcher's counters),
        ``terminations`` (``[code, by_peer, reason]`` of every connection that ended), ``cpu``
        (the child's CPU seconds so far).
        """
        self._command(f"measure {quiet}")
        return self._read(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop listening (connections are closed) and wait for the child to exit."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.write(b"quit\n")
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()

    def _command(self, line: str) -> None:
        self._proc.stdin.write(line.encode() + b"\n")
        self._proc.stdin.flush()

    def _read(self, timeout: float) -> dict:
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], timeout)
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:
                raise RuntimeError("the server process did not answer (see server.log)")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)


def _serve(args) -> None:
    """The child: listen, then answer ``measure QUIET`` and ``quit`` lines on stdin."""
    tracemalloc.start()
    from twisted.internet import reactor, stdio
    from twisted.protocols.basic import LineReceiver

    from ..endpoints import KwikServerEndpoint

    def read(name):
        with open(os.path.join(args.certs, name + ".pem"), "rb") as f:
            return f.read()

    certs = DevCertificates(b"", read("chain"), read("key"))
    config = server_config(certs, **json.loads(args.config))
    endpoint = KwikServerEndpoint(
        reactor, 0, config=config, interface="127.0.0.1", entropy=SeededEntropy(args.seed)
    )
    state = {"last": 0.0, "terminations": []}

    class Control(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            command, *rest = line.decode().split()
            if command == "measure":
                self._measure(float(rest[0]) if rest else 0.3, reactor.seconds() + 30.0)
            elif command == "quit":
                self.quit()

        def _measure(self, quiet: float, give_up: float) -> None:
            now = reactor.seconds()
            if now - state["last"] < quiet and now < give_up:
                reactor.callLater(0.05, self._measure, quiet, give_up)
                return
            gc.collect()
            traced, peak = tracemalloc.get_traced_memory()
            proto = port.protocol
            figures = {
                "traced": traced,
                "peak": peak,
                "rss": rss_bytes(),
                "cpu": time.process_time(),
                "connections": len(proto.connections) if proto else 0,
                "accepted": proto.dispatcher.stats["accepted"] if proto else 0,
                "stats": dict(proto.dispatcher.stats) if proto else {},
                "terminations": state["terminations"],
            }
            self.transport.write(json.dumps(figures).encode() + b"\n")

        def quit(self) -> None:
            if reactor.running:
                port.stopListening().addBoth(lambda _: reactor.stop())

        def connectionLost(self, reason) -> None:
            self.quit()

    def listening(listening_port) -> None:
        nonlocal port
        port = listening_port
        proto = port.protocol
        receive, terminated = proto.datagramReceived, proto.connectionTerminated

        def received(data, addr):
            state["last"] = reactor.seconds()
            receive(data, addr)

        def ended(conn, event):
            state["terminations"].append([event.error_code, event.by_peer, event.reason])
            terminated(conn, event)

        proto.datagramReceived, proto.connectionTerminated = received, ended
        control = Control()
        stdio.StandardIO(control)
        control.transport.write(json.dumps({"port": port.getHost().port}).encode() + b"\n")

    port = None
    endpoint.listen(Factory.forProtocol(DigestReply)).addCallbacks(
        listening, lambda failure: (failure.printTraceback(), reactor.stop())
    )
    reactor.run()


def main(argv=None) -> None:
    """``python -m kwik_twisted.testing.hostile serve --certs DIR [--seed N] [--config JSON]``."""
    parser = argparse.ArgumentParser(
        prog="python -m kwik_twisted.testing.hostile",
        description="a Kwik server for hostile-peer tests",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a measured server (stdin: measure, quit)")
    serve.add_argument("--certs", required=True, help="directory with chain.pem and key.pem")
    serve.add_argument("--seed", type=int, default=1)
    serve.add_argument("--config", default="{}", help="ConnectionConfig overrides, as JSON")
    args = parser.parse_args(argv)
    _serve(args)


__all__ = [
    "DigestReply",
    "HandshakeFlooder",
    "HostilePeer",
    "ServerProcess",
    "main",
    "raw_control_frame",
    "raw_stream_frame",
    "rss_bytes",
    "seal_plaintext",
    "varints",
]

if __name__ == "__main__":
    main()
