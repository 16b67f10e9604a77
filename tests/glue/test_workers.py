"""
Worker processes sharing a UDP port (:mod:`kwik_twisted.glue.workers`).

The steering program is checked three ways: its bytes (the exact instructions), its meaning
(:func:`run_program` over every route byte and header form) and the kernel's own decisions (a
reuseport group in this process, datagrams with chosen route bytes, which socket gets each).
Supervision runs real processes on loopback: ``python -m kwik_twisted.workers`` with a tiny UDP
worker that answers every datagram with its index, generation and pid, so which worker got a
datagram, restarts and graceful restarts are observed from outside; then ``twistd kwik --workers
2 --echo`` serves Kwik connections byte-exact (that part needs the lead's CID wiring: the
connections' CIDs must carry the worker's route byte, else it is skipped naming what is missing).
The error path (no Linux, a kernel refusing option 51) is simulated by monkeypatching.
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.python import usage
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from kwik_twisted import tap
from kwik_twisted.config import ConnectionConfig
from kwik_twisted.endpoints import KwikClientEndpoint, closeClientConnections
from kwik_twisted.errors import ConfigurationError
from kwik_twisted.glue import workers
from kwik_twisted.glue.workerport import DRAIN_CHECK, Drain, workerConfig
from kwik_twisted.parsers import parse_client_arguments
from kwik_twisted.tools import devcerts
from tests.glue import processes
from tests.glue.test_twistd_e2e import ProcessTestCase

#: Seconds processes get to start answering.
STARTUP = 30.0


def short_datagram(route: int, rotation: int = 0, size: int = 60) -> bytes:
    """A short-header datagram whose DCID has config rotation ``rotation``, route byte ``route``."""
    return bytes([0x40, (rotation << 5) | 7, route]) + b"s" * (size - 3)


def long_datagram(route: int, rotation: int = 0, size: int = 60) -> bytes:
    """A long-header datagram (Initial) whose DCID has the given rotation and route byte."""
    header = bytes([0xC0]) + struct.pack("!I", 0x4B574B03) + bytes([8, (rotation << 5) | 7, route])
    return header + b"l" * (size - len(header))


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


class ProgramTests(SynchronousTestCase):
    """The classic-BPF steering program: bytes and meaning."""

    def test_program_bytes(self) -> None:
        """Two workers, route offset 1: ldb [0]; jset #0x80; ldb [7]; ja; ldb [2]; mod #2; ret a."""
        expected = b"".join([
            _insn(0x30, 0, 0, 0),
            _insn(0x45, 0, 2, 0x80),
            _insn(0x30, 0, 0, 7),
            _insn(0x05, 0, 0, 1),
            _insn(0x30, 0, 0, 2),
            _insn(0x94, 0, 0, 2),
            _insn(0x16, 0, 0, 0),
        ])
        self.assertEqual(workers.steering_program(2), expected)

    def test_route_offset_and_base_change_the_loads_and_add(self) -> None:
        """A 2-byte server ID moves the route byte to CID offset 3; a base adds ``add #base``."""
        program = workers.steering_program(3, 3, base=3)
        self.assertEqual(program[2 * 8:3 * 8], _insn(0x30, 0, 0, 9))
        self.assertEqual(program[4 * 8:5 * 8], _insn(0x30, 0, 0, 4))
        self.assertEqual(program[5 * 8:], _insn(0x94, 0, 0, 3) + _insn(0x04, 0, 0, 3)
                         + _insn(0x16, 0, 0, 0))

    def test_every_route_byte_picks_its_worker(self) -> None:
        """For every route byte and both header forms the program returns route % N."""
        for count in (1, 2, 3, 7):
            program = workers.steering_program(count)
            for route in range(256):
                self.assertEqual(workers.run_program(program, short_datagram(route)), route % count)
                self.assertEqual(workers.run_program(program, long_datagram(route)), route % count)

    def test_draining_program_keeps_old_connections_on_the_old_generation(self) -> None:
        """
        Generation 1 (base 2) current, generation 0 (rotation 0, base 0) draining: short headers
        with rotation 0 go to the old half, every other datagram (long headers whatever their
        rotation) to the new one.
        """
        program = workers.steering_program(2, base=2, draining=(0, 0))
        for route in range(256):
            self.assertEqual(workers.run_program(program, short_datagram(route, 0)), route % 2)
            self.assertEqual(workers.run_program(program, short_datagram(route, 1)), 2 + route % 2)
            self.assertEqual(workers.run_program(program, short_datagram(route, 7)), 2 + route % 2)
            self.assertEqual(workers.run_program(program, long_datagram(route, 0)), 2 + route % 2)

    def test_bad_worker_counts_and_offsets_are_refused(self) -> None:
        """0 or 256 workers, a route offset of 0 or past the CID: ConfigurationError."""
        for count, offset in ((0, 1), (256, 1), (2, 0), (2, 20)):
            with self.assertRaises(ConfigurationError):
                workers.steering_program(count, offset)


class KernelSteeringTests(SynchronousTestCase):
    """The kernel applies the program to a reuseport group in this process."""

    def setUp(self) -> None:
        if not sys.platform.startswith("linux"):
            raise SkipTest("reuseport BPF steering is Linux only")
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(self.sender.close)

    def group(self, count: int) -> list[socket.socket]:
        group = workers.bind_group(count, 0, "127.0.0.1")
        for sock in group:
            self.addCleanup(sock.close)
        return group

    def receivedBy(self, group: list[socket.socket], datagram: bytes) -> int:
        """Send ``datagram`` to the group; the index of the socket that got it."""
        self.sender.sendto(datagram, group[0].getsockname())
        ready, _, _ = select.select(group, [], [], 5.0)
        self.assertEqual(len(ready), 1, "exactly one socket of the group gets the datagram")
        self.assertEqual(ready[0].recv(2048), datagram)
        return group.index(ready[0])

    def test_two_socket_group_steers_by_route_byte(self) -> None:
        """With the program attached, route byte r (short or long header) reaches socket r % 2."""
        group = self.group(2)
        workers.attach_program(group[0], workers.steering_program(2))
        for route in (0, 1, 2, 3, 0x80, 0xFF):
            self.assertEqual(self.receivedBy(group, short_datagram(route)), route % 2)
            self.assertEqual(self.receivedBy(group, long_datagram(route)), route % 2)

    def test_generations_in_a_four_socket_group(self) -> None:
        """The draining program, in the kernel: old short-header CIDs reach the old half."""
        group = self.group(4)
        workers.attach_program(group[0], workers.steering_program(2, base=2, draining=(0, 0)))
        for route in (0, 1, 6, 7):
            self.assertEqual(self.receivedBy(group, short_datagram(route, 0)), route % 2)
            self.assertEqual(self.receivedBy(group, short_datagram(route, 1)), 2 + route % 2)
            self.assertEqual(self.receivedBy(group, long_datagram(route, 0)), 2 + route % 2)


class ErrorPathTests(SynchronousTestCase):
    """No silent single process: a system that cannot steer is a clear error."""

    def setUp(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="kwik-workers-"))
        self.addCleanup(shutil.rmtree, directory, True)
        certs = devcerts.write_pem_files(directory)
        self.kwik = f"kwik:4433:privateKey={certs.key}:certKey={certs.chain}"

    def refuseOption51(self) -> None:
        original = socket.socket.setsockopt

        def setsockopt(sock, level, option, value, *rest):
            if option == workers.SO_ATTACH_REUSEPORT_CBPF:
                raise OSError(92, "Protocol not available")
            return original(sock, level, option, value, *rest)

        self.patch(socket.socket, "setsockopt", setsockopt)

    def test_kernel_refusing_option_51_is_a_configuration_error(self) -> None:
        """attach_program and check_supported raise ConfigurationError naming the option."""
        self.refuseOption51()
        with self.assertRaises(ConfigurationError) as caught:
            workers.check_supported()
        self.assertIn("SO_ATTACH_REUSEPORT_CBPF", str(caught.exception))

    def test_other_systems_are_refused(self) -> None:
        """On another OS bind_group raises ConfigurationError saying Linux is needed."""
        self.patch(workers.sys, "platform", "darwin")
        with self.assertRaises(ConfigurationError) as caught:
            workers.bind_group(2, 0, "127.0.0.1")
        self.assertIn("Linux", str(caught.exception))

    def test_twistd_kwik_workers_is_a_usage_error_then(self) -> None:
        """``twistd kwik --workers 2`` on such a kernel: a usage error, not one process."""
        self.refuseOption51()
        options = tap.Options()
        with self.assertRaises(usage.UsageError) as caught:
            options.parseOptions(["--workers", "2", "--listen", self.kwik, "--echo"])
        self.assertIn("SO_ATTACH_REUSEPORT_CBPF", str(caught.exception))

    def test_workers_refuse_tcp_listens_metrics_and_port_zero(self) -> None:
        """Only kwik: listens on fixed ports can be shared; --metrics cannot."""
        for arguments in (["--listen", "tcp:8080"], ["--listen", self.kwik.replace("4433", "0")],
                          ["--listen", self.kwik, "--metrics", "tcp:9464"]):
            with self.assertRaises(usage.UsageError):
                tap.Options().parseOptions(["--workers", "2", *arguments, "--echo"])

    def test_worker_arguments_drop_workers(self) -> None:
        """The workers run ``twistd kwik`` with the same --listen/--echo and no --workers."""
        options = tap.Options()
        options.parseOptions(["--workers", "2", "--listen", self.kwik, "--echo"])
        self.assertEqual(options.workerArguments(), ["--listen", self.kwik, "--echo"])
        self.assertEqual((options.workerPorts, options.routeOffset), ([(4433, "")], 1))


class EnvironmentTests(SynchronousTestCase):
    """What a worker learns from KWIK_WORKER_*."""

    def test_parsed(self) -> None:
        """Index, count, generation, rotation and the fd per port are read back."""
        env = workers.worker_environment({
            "KWIK_WORKER_INDEX": "1", "KWIK_WORKER_COUNT": "2", "KWIK_WORKER_GENERATION": "8",
            "KWIK_WORKER_FDS": "4433=3,4434=4"})
        self.assertEqual((env.index, env.count, env.generation, env.rotation, env.fds),
                         (1, 2, 8, 1, {4433: 3, 4434: 4}))
        self.assertIsNone(workers.worker_environment({}))

    def test_malformed_is_refused(self) -> None:
        """An index outside the count or a malformed fd list: ConfigurationError."""
        for index, fds in (("2", "4433=3"), ("0", "4433:3")):
            with self.assertRaises(ConfigurationError):
                workers.worker_environment({"KWIK_WORKER_INDEX": index,
                                            "KWIK_WORKER_COUNT": "2", "KWIK_WORKER_FDS": fds})

    def test_worker_config(self) -> None:
        """The worker's index, count and rotation (generation 10 -> 3) go into the config."""
        config = workerConfig(ConnectionConfig(), workers.WorkerEnvironment(1, 2, 10, {}))
        self.assertEqual((config.worker_index, config.worker_count, config.config_rotation),
                         (1, 2, 3))


class _FakePort:
    """A listening port with a settable connection count."""

    def __init__(self) -> None:
        self.count = 1

    def connectionCount(self) -> int:
        return self.count


class DrainTests(SynchronousTestCase):
    """A worker told to drain stops its reactor once its ports have no connection left."""

    def test_stops_only_when_the_last_connection_ended(self) -> None:
        """Connections open: the reactor runs on; none left: ``reactor.stop()``, once."""
        clock = task.Clock()
        stops = []
        clock.stop = lambda: stops.append(clock.seconds())
        drain = Drain()
        self.patch(signal, "signal", lambda *a: None)
        port = _FakePort()
        drain.add(clock, port)
        drain.start()
        clock.advance(5)
        self.assertEqual(stops, [])
        port.count = 0
        clock.advance(DRAIN_CHECK)
        clock.advance(5)
        self.assertEqual(stops, [5 + DRAIN_CHECK])


#: A worker for the supervision tests: answers each datagram with "index generation pid
#: draining" and the datagram's last 8 bytes (the question's number); SIGUSR2 marks it draining;
#: a datagram ending in "quit" ends it.
TINY_WORKER = textwrap.dedent("""
    import os, signal, socket
    fds = dict(item.split("=") for item in os.environ["KWIK_WORKER_FDS"].split(","))
    sock = socket.socket(fileno=int(next(iter(fds.values()))))
    sock.setblocking(True)
    draining = []
    signal.signal(signal.SIGUSR2, lambda *a: draining.append(1))
    me = "%s %s %d" % (os.environ["KWIK_WORKER_INDEX"], os.environ["KWIK_WORKER_GENERATION"],
                       os.getpid())
    while True:
        data, peer = sock.recvfrom(2048)
        if data.endswith(b"quit"):
            raise SystemExit(0)
        sock.sendto(("%s %d " % (me, len(draining))).encode() + data[-8:], peer)
""")


class _Asker(DatagramProtocol):
    """
    Asks questions: a datagram whose last 8 bytes number it; the answer with the same number
    (index, generation, pid, draining) fires the question's Deferred (stale answers are dropped).
    """

    def __init__(self) -> None:
        self.waiting: dict[bytes, defer.Deferred] = {}
        self.number = 0

    def question(self, datagram: bytes) -> tuple[bytes, defer.Deferred]:
        self.number += 1
        tag = b"%08d" % self.number
        d = self.waiting[tag] = defer.Deferred()
        return datagram[:-8] + tag, d

    def unanswered(self, tag: bytes) -> None:
        """Give up on question ``tag``: its Deferred fires with None."""
        d = self.waiting.pop(tag, None)
        if d is not None:
            d.callback(None)

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        d = self.waiting.pop(data[-8:], None)
        if d is not None:
            d.callback(tuple(int(x) for x in data[:-8].split()))


class SupervisorTests(ProcessTestCase):
    """``python -m kwik_twisted.workers`` over real processes, observed through UDP answers."""

    timeout = 90

    def setUp(self) -> None:
        if not sys.platform.startswith("linux"):
            raise SkipTest("worker processes are Linux only")
        super().setUp()
        self.script = self.directory / "tiny_worker.py"
        self.script.write_text(TINY_WORKER)
        self.asker = _Asker()
        self.client = reactor.listenUDP(0, self.asker, interface="127.0.0.1")
        self.addCleanup(self.client.stopListening)

    def startParent(self) -> processes.Collector:
        self.port = processes.free_port(socket.SOCK_DGRAM)
        argv = [sys.executable, "-m", "kwik_twisted.workers", "-n", "2", "--grace", "5",
                "--port", f"{self.port}@127.0.0.1", "--", sys.executable, str(self.script)]
        return self.spawn("workers", argv)

    @defer.inlineCallbacks
    def ask(self, datagram: bytes, deadline: float = STARTUP):
        """The answer to ``datagram`` (resent every 0.1 s until one comes or the deadline)."""
        end = reactor.seconds() + deadline
        while reactor.seconds() < end:
            question, d = self.asker.question(datagram)
            self.client.write(question, ("127.0.0.1", self.port))
            timer = reactor.callLater(0.1, self.asker.unanswered, question[-8:])
            answer = yield d
            if timer.active():
                timer.cancel()
            if answer is not None:
                return answer
        self.fail(f"no answer to {datagram[:3].hex()} within {deadline}s\n{self.outputs()}")

    @defer.inlineCallbacks
    def waitFor(self, datagram: bytes, predicate, what: str):
        """Ask until the answer satisfies ``predicate``."""
        end = reactor.seconds() + STARTUP
        while reactor.seconds() < end:
            answer = yield self.ask(datagram)
            if predicate(answer):
                return answer
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.fail(f"never saw {what}\n{self.outputs()}")

    @defer.inlineCallbacks
    def test_datagrams_reach_the_worker_of_their_route_byte(self) -> None:
        """Route byte r reaches worker r % 2, short or long header, always the same process."""
        self.startParent()
        seen = {}
        for route in (0, 1, 2, 3, 200, 201):
            for datagram in (short_datagram(route), long_datagram(route)):
                index, generation, pid, _ = yield self.ask(datagram)
                self.assertEqual((index, generation), (route % 2, 0))
                self.assertEqual(seen.setdefault(index, pid), pid)

    @defer.inlineCallbacks
    def test_a_killed_worker_is_restarted_and_the_other_goes_on(self) -> None:
        """
        SIGKILL worker 0: a new process takes index 0 on the same socket (the parent logs one
        restart) while worker 1 keeps answering from the same pid throughout.
        """
        parent = self.startParent()
        _, _, pid0, _ = yield self.ask(short_datagram(0))
        _, _, pid1, _ = yield self.ask(short_datagram(1))
        os.kill(pid0, signal.SIGKILL)
        self.assertEqual((yield self.ask(short_datagram(1)))[2], pid1)
        answer = yield self.waitFor(short_datagram(0), lambda a: a[2] != pid0, "a new worker 0")
        self.assertEqual(answer[:2], (0, 0))
        self.assertEqual((yield self.ask(short_datagram(1)))[2], pid1)
        self.assertIn(b"restarting worker 0", parent.stderr)

    @defer.inlineCallbacks
    def test_sighup_starts_a_generation_and_the_old_one_drains(self) -> None:
        """
        After SIGHUP: long headers (new connections) and CIDs of rotation 1 reach generation 1;
        short headers with rotation 0 (old connections) still reach the same generation-0
        workers, now told to drain (SIGUSR2).  Once they exit, rotation 0 goes to generation 1.
        """
        parent = self.startParent()
        old = {}
        for route in (0, 1):
            old[route] = (yield self.ask(short_datagram(route, 0)))[2]
        parent.transport.signalProcess("HUP")
        answer = yield self.waitFor(long_datagram(0), lambda a: a[1] == 1, "generation 1")
        self.assertEqual(answer[0], 0)
        for route in (0, 1):
            index, generation, pid, draining = yield self.waitFor(
                short_datagram(route, 0), lambda a: a[3] == 1, "a draining worker")
            self.assertEqual((index, generation, pid), (route, 0, old[route]))
            self.assertEqual((yield self.ask(short_datagram(route, 1)))[:2], (route, 1))
            self.assertEqual((yield self.ask(long_datagram(route, 0)))[:2], (route, 1))
        for route in (0, 1):
            self.client.write(short_datagram(route, 0)[:-4] + b"quit", ("127.0.0.1", self.port))
        for route in (0, 1):
            answer = yield self.waitFor(short_datagram(route, 0), lambda a: a[1] == 1,
                                        "rotation 0 routed to generation 1")
            self.assertEqual(answer[0], route)


def _cid_wiring_missing() -> str | None:
    """Why Kwik connections cannot yet be steered to their worker, or None."""
    try:
        from kwik_twisted.core import lb  # noqa: F401
    except ImportError:
        return "kwik_twisted.core.lb (route-byte CIDs, new_cid) does not exist yet"
    if not hasattr(ConnectionConfig(), "worker_index"):
        return "ConnectionConfig has no worker_index/worker_count yet"
    core = Path(workers.__file__).resolve().parents[1] / "core"
    source = "".join((core / name).read_text() for name in
                     ("connection.py", "dispatcher.py", "cids.py", "stateless.py"))
    if not re.search(r"\blb\.new_cid\b|from \.lb import|import lb\b", source):
        return ("the core does not issue CIDs with lb.new_cid yet (core/connection.py, "
                "dispatcher.py: the lead's CID wiring)")
    return None


class _Collect(Protocol):
    """A stream client: keeps what comes back; ``done`` fires once ``expected`` bytes came."""

    def connectionMade(self) -> None:
        self.received = bytearray()
        self.expected = 0
        self.done: defer.Deferred[bytes] = defer.Deferred()

        self.lost: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= self.expected and not self.done.called:
            self.done.callback(bytes(self.received))

    def connectionLost(self, reason: Any) -> None:
        self.lost.callback(None)

    def owner(self) -> int:
        """The worker the server's CIDs route to (route byte modulo 2)."""
        cids = self.transport.kwikConnection.core.cids.peer.values()
        return next(iter(cids))[workers.DEFAULT_ROUTE_OFFSET] % 2

    def rotation(self) -> int:
        """The config rotation (generation) of the server's CIDs."""
        return next(iter(self.transport.kwikConnection.core.cids.peer.values()))[0] >> 5

    @defer.inlineCallbacks
    def roundTrip(self, size: int):
        """Echo ``size`` more bytes; check they come back exactly."""
        payload = os.urandom(size)
        self.done = defer.Deferred()
        start = len(self.received)
        self.expected = start + size
        self.transport.write(payload)
        got = yield self.done
        if got[start:] != payload:
            raise AssertionError("echo differs")


class _Relay(DatagramProtocol):
    """
    A NAT in front of the server: each client address gets an outbound socket of its own;
    :meth:`rebind` replaces every outbound socket (a new source port, as a NAT rebinding).
    """

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.outbound: dict[tuple, Any] = {}
        self.closing: list[defer.Deferred] = []
        self.forwarded = 0

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        port = self.outbound.get(addr)
        if port is None:
            port = self.outbound[addr] = self._open(addr)
        port.write(data, self.server)
        self.forwarded += 1

    def _open(self, client: tuple):
        back = DatagramProtocol()
        back.datagramReceived = lambda data, _: self._back(data, client)
        return reactor.listenUDP(0, back, interface="127.0.0.1", maxPacketSize=65535)

    def _back(self, data: bytes, client: tuple) -> None:
        if self.transport is not None:
            self.transport.write(data, client)

    def rebind(self) -> None:
        """Every client's datagrams leave from a new port from now on."""
        for client, port in list(self.outbound.items()):
            self.outbound[client] = self._open(client)
            self.closing.append(defer.maybeDeferred(port.stopListening))

    def stop(self) -> defer.Deferred:
        ports = list(self.outbound.values())
        self.outbound.clear()
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports]
                                   + self.closing)


class _EchoingTests(ProcessTestCase):
    """Echo through a server on ``port`` with a new (unpooled) client connection."""

    @defer.inlineCallbacks
    def echo(self, port: int, size: int):
        """Echo ``size`` random bytes and check them; fire with the client protocol."""
        endpoint = clientFromString(reactor, self.clientKwik(port) + ":timeout=10:reuse=no")
        client = yield endpoint.connect(Factory.forProtocol(_Collect))
        payload = os.urandom(size)
        client.expected = size
        client.transport.write(payload)
        echoed = yield client.done
        self.assertEqual(hashlib.sha256(echoed).digest(), hashlib.sha256(payload).digest())
        return client


class TwistdWorkersTests(_EchoingTests):
    """``twistd kwik --workers 2 --echo``: real Kwik connections spread over two workers."""

    timeout = 120

    def setUp(self) -> None:
        if not sys.platform.startswith("linux"):
            raise SkipTest("worker processes are Linux only")
        missing = _cid_wiring_missing()
        if missing:
            raise SkipTest(f"needs CIDs that route to their worker: {missing}")
        super().setUp()

    @defer.inlineCallbacks
    def startServer(self):
        port = yield super().startServer(
            "twistd kwik --workers 2",
            lambda p: processes.twistd_argv("kwik", "--workers", "2", "--listen",
                                            self.serverKwik(p), "--echo"),
            lambda p: clientFromString(reactor, self.clientKwik(p) + ":timeout=2"),
            socket.SOCK_DGRAM,
        )
        self.addCleanup(closeClientConnections, reactor)
        return port


    def test_forty_two_path_connections_with_a_rebinding_stay_on_one_worker(self):
        """
        40 connections, each with path 0 through a NAT (rebound halfway through the transfer,
        so path 0's source port changes) and path 1 from 127.0.0.2, echo 64 KiB byte-exact;
        both workers own some of them (the route byte of the server's CIDs), each connection's
        server CIDs all name one worker, and when stopped each worker reports 0 misrouted
        datagrams.
        """

        @defer.inlineCallbacks
        def run():
            port = yield self.startServer()
            relay = _Relay(("127.0.0.1", port))
            listening = reactor.listenUDP(0, relay, interface="127.0.0.1", maxPacketSize=65535)
            self.addCleanup(listening.stopListening)
            self.addCleanup(relay.stop)
            arguments = parse_client_arguments(
                host="127.0.0.1", port=str(listening.getHost().port),
                trustRoots=str(self.certs.ca), hostname="localhost")
            endpoint = KwikClientEndpoint(
                reactor, "127.0.0.1", listening.getHost().port,
                config=arguments["config"],
                reuse=False, paths=[("127.0.0.2", "127.0.0.1", port)], timeout=20)
            size = 64 * 1024
            clients = []
            for _ in range(5):  # eight handshakes at a time
                clients += yield defer.gatherResults(
                    [endpoint.connect(Factory.forProtocol(_Collect)) for _ in range(8)])
            payloads = [os.urandom(size) for _ in clients]
            for client, payload in zip(clients, payloads, strict=True):
                client.expected = size
                client.transport.write(payload[: size // 2])
            yield task.deferLater(reactor, 0.2, lambda: None)
            relay.rebind()
            before = relay.forwarded
            for client, payload in zip(clients, payloads, strict=True):
                client.transport.write(payload[size // 2:])
            echoed = yield defer.gatherResults([client.done for client in clients])
            for got, payload in zip(echoed, payloads, strict=True):
                self.assertEqual(hashlib.sha256(got).digest(), hashlib.sha256(payload).digest())
            for client in clients:  # the NAT relays whole datagrams, PMTUD's large ones too
                core = client.transport.kwikConnection.core
                self.assertEqual(core.stats["dropped_MalformedPacket"], 0, dict(core.stats))
            self.assertGreater(relay.forwarded, before, "path 0 carried data after rebinding")
            end = reactor.seconds() + 10  # a path opened late may still be validating

            def answered(client) -> bool:
                paths = client.transport.kwikConnection.core.path_manager.paths
                return len(paths) >= 2 and all(p.packets_received for p in paths.values())

            while not all(answered(c) for c in clients) and reactor.seconds() < end:
                yield task.deferLater(reactor, 0.1, lambda: None)
            owners = set()
            for client in clients:
                core = client.transport.kwikConnection.core
                paths = core.path_manager.paths
                self.assertGreaterEqual(len(paths), 2, f"path 1 is open: {core.stats}")
                self.assertTrue(all(p.packets_received for p in paths.values()),
                                "the server answered on both paths")
                cids = core.cids.peer.values()
                routes = {cid[workers.DEFAULT_ROUTE_OFFSET] % 2 for cid in cids}
                self.assertEqual(len(routes), 1, "a connection's CIDs name one worker")
                owners |= routes
            self.assertEqual(owners, {0, 1})
            for client in clients:
                client.transport.loseConnection()
            yield closeClientConnections(reactor)
            parent = self.processes[-1]
            yield processes.stop(reactor, parent)
            reports = re.findall(rb"Kwik worker (\d) of 2 \(generation 0\) stops listening: "
                                 rb"(\d+) misrouted", parent.stdout + parent.stderr)
            self.assertEqual(sorted(reports), [(b"0", b"0"), (b"1", b"0")], parent.output())

        return self.withOutputs(run())

    @defer.inlineCallbacks
    def connectSome(self, port: int, count: int):
        endpoint = clientFromString(reactor, self.clientKwik(port) + ":timeout=10:reuse=no")
        clients = yield defer.gatherResults(
            [endpoint.connect(Factory.forProtocol(_Collect)) for _ in range(count)])
        yield defer.gatherResults([client.roundTrip(1000) for client in clients])
        return clients

    def workerPids(self, parent, generation: int = 0) -> dict[int, int]:
        """Worker index -> pid of the latest start the parent logged."""
        found = re.findall(rb"worker (\d+) of generation %d started \(pid (\d+)\)" % generation,
                           parent.stdout + parent.stderr)
        return {int(index): int(pid) for index, pid in found}

    def test_a_killed_worker_ends_its_connections_only(self):
        """
        SIGKILL worker 0: its connections end (the replacement resets them), worker 1's keep
        echoing byte-exact, the parent starts a new worker 0, and new connections work.
        """

        @defer.inlineCallbacks
        def run():
            port = yield self.startServer()
            parent = self.processes[-1]
            clients = yield self.connectSome(port, 12)
            owned = {0: [c for c in clients if c.owner() == 0],
                     1: [c for c in clients if c.owner() == 1]}
            self.assertTrue(owned[0] and owned[1], "both workers own connections")
            os.kill(self.workerPids(parent)[0], signal.SIGKILL)
            for client in owned[0]:
                client.transport.write(b"anyone there?")
            yield defer.gatherResults([client.roundTrip(64 * 1024) for client in owned[1]])
            yield defer.gatherResults([client.lost for client in owned[0]])
            self.assertFalse(any(client.lost.called for client in owned[1]))
            yield defer.gatherResults([client.roundTrip(64 * 1024) for client in owned[1]])
            fresh = yield self.connectSome(port, 8)
            self.assertEqual({c.owner() for c in fresh}, {0, 1})
            self.assertIn(b"restarting worker 0", parent.stdout + parent.stderr)
            for client in clients + fresh:
                client.transport.loseConnection()

        return self.withOutputs(run())

    def test_sighup_new_generation_while_old_connections_drain(self):
        """
        SIGHUP: connections made before keep echoing byte-exact on generation 0 (rotation 0);
        new ones get generation 1's CIDs (rotation 1); once the old connections close, the
        generation-0 workers exit on their own (drained).
        """

        @defer.inlineCallbacks
        def run():
            port = yield self.startServer()
            parent = self.processes[-1]
            old = yield self.connectSome(port, 6)
            self.assertEqual({c.rotation() for c in old}, {0})
            parent.transport.signalProcess("HUP")
            end = reactor.seconds() + STARTUP
            while len(self.workerPids(parent, 1)) < 2 and reactor.seconds() < end:
                yield task.deferLater(reactor, 0.1, lambda: None)
            new = yield self.connectSome(port, 6)
            self.assertEqual({c.rotation() for c in new}, {1})
            yield defer.gatherResults([client.roundTrip(64 * 1024) for client in old + new])
            self.assertEqual(re.findall(rb"generation 0 \(pid \d+\) ended",
                                        parent.stdout + parent.stderr), [])
            for client in old:
                client.transport.loseConnection()
            yield defer.gatherResults([client.lost for client in old])
            end = reactor.seconds() + STARTUP  # the connections linger (POOL_LINGER) first
            while reactor.seconds() < end:
                ended = re.findall(rb"generation 0 \(pid \d+\) ended: exit 0",
                                   parent.stdout + parent.stderr)
                if len(ended) == 2:
                    break
                yield task.deferLater(reactor, 0.1, lambda: None)
            else:
                self.fail("the generation-0 workers did not drain and exit")
            yield defer.gatherResults([client.roundTrip(1000) for client in new])

        return self.withOutputs(run())

    @defer.inlineCallbacks
    def test_port_in_use_is_one_clear_line(self):
        """``--workers 2`` on a UDP port another socket holds: non-zero exit, one message."""
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        process = yield processes.run(
            reactor, "twistd", processes.twistd_argv(
                "kwik", "--workers", "2", "--listen", self.serverKwik(port), "--echo"),
            timeout=30, cwd=str(self.directory))
        self.processes.append(process)
        text = self.expectExit(process)
        self.assertIn(f"Couldn't listen on 127.0.0.1:{port}", text)
        self.assertNotIn("Traceback", text)

    def test_several_connections_echo_byte_exact(self):
        """Eight concurrent connections each get 256 KiB back exactly."""

        @defer.inlineCallbacks
        def run():
            port = yield self.startServer()
            clients = yield defer.gatherResults([self.echo(port, 256 * 1024) for _ in range(8)])
            for client in clients:
                client.transport.loseConnection()

        return self.withOutputs(run())


class AdoptedSocketTests(_EchoingTests):
    """
    One worker (every route byte is its own, so no CID wiring is needed): an unmodified
    ``twistd kwik --echo`` started by ``python -m kwik_twisted.workers`` serves Kwik on the
    socket its parent bound, and is restarted on it when killed.
    """

    timeout = 120

    def setUp(self) -> None:
        if not sys.platform.startswith("linux"):
            raise SkipTest("worker processes are Linux only")
        super().setUp()

    def argv(self, port: int) -> list[str]:
        return [sys.executable, "-m", "kwik_twisted.workers", "-n", "1", "--grace", "5",
                "--port", f"{port}@127.0.0.1", "--",
                *processes.twistd_argv("kwik", "--listen", self.serverKwik(port), "--echo")]

    @defer.inlineCallbacks
    def echo(self, port: int, size: int):
        client = yield super().echo(port, size)
        client.transport.loseConnection()

    def test_worker_serves_on_the_inherited_socket_and_is_restarted(self):
        """
        Echo 256 KiB exactly through the worker; SIGKILL it (its pid from the parent's log);
        the parent starts another on the same socket, which echoes exactly again.
        """

        @defer.inlineCallbacks
        def run():
            port = yield self.startServer(
                "workers -n 1 twistd kwik", self.argv,
                lambda p: clientFromString(reactor, self.clientKwik(p) + ":timeout=2"),
                socket.SOCK_DGRAM)
            self.addCleanup(closeClientConnections, reactor)
            parent = self.processes[-1]
            yield self.echo(port, 256 * 1024)
            pids = re.findall(rb"worker 0 of generation 0 started \(pid (\d+)\)", parent.stderr)
            self.assertEqual(len(pids), 1, parent.output())
            os.kill(int(pids[0]), signal.SIGKILL)
            end = reactor.seconds() + STARTUP
            while b"restarting worker 0" not in parent.stderr and reactor.seconds() < end:
                yield task.deferLater(reactor, 0.1, lambda: None)
            yield processes.connect_until(
                reactor, clientFromString(reactor, self.clientKwik(port) + ":timeout=2"),
                reactor.seconds() + STARTUP)
            yield self.echo(port, 256 * 1024)
            pids = re.findall(rb"worker 0 of generation 0 started \(pid (\d+)\)", parent.stderr)
            self.assertEqual(len(pids), 2, parent.output())

        return self.withOutputs(run())
