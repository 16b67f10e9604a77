"""
Worker processes sharing one UDP port, steered by destination connection ID.

Theory of operation.  A parent process (:class:`WorkerSupervisor`, run by
``python -m kwik_twisted.workers -n N -- CMD ...`` or by ``twistd kwik --workers N``) binds,
for every UDP port it is told of, a ``SO_REUSEPORT`` group of ``2 * N`` sockets in a fixed order
(their *indices* in the group), and attaches to the group a classic-BPF program
(``SO_ATTACH_REUSEPORT_CBPF``, :func:`steering_program`) that picks a socket from the datagram's
destination CID: the *route byte* (CID offset ``route_offset``, QUIC-LB's first "server use"
byte, ``1 + len(server_id)``) modulo ``N``, plus the base of the generation's half of the group.
It then starts ``N`` workers, each inheriting one socket of each group (``childFDs``) and told
who it is in its environment (``KWIK_WORKER_INDEX``, ``KWIK_WORKER_COUNT``,
``KWIK_WORKER_FDS`` = ``PORT=FD[,PORT=FD...]``, ``KWIK_WORKER_GENERATION``).  A ``kwik:`` server
endpoint in a worker adopts the inherited socket instead of binding (see
:func:`worker_environment` and :mod:`kwik_twisted.endpoints`) and issues CIDs whose route byte
is its index modulo ``N``, so every datagram of its connections, on every path and after any
NAT rebinding, reaches it.  The parent keeps its own copies of the sockets open: closing a
socket would make the kernel move the group's last socket into its place, changing indices.

Supervision.  A worker that dies is started again on the same sockets after a back-off
(:data:`BACKOFF_FIRST` seconds, doubling up to :data:`BACKOFF_MAX` while it keeps dying within
:data:`STABLE` seconds of its start); ``restarts`` counts them.  SIGTERM/SIGINT (stopping the
service) sends SIGTERM to every worker and SIGKILL to those still alive after ``grace`` seconds.

Graceful restart (SIGHUP).  Generation ``g`` uses half ``g % 2`` of each group and config
rotation ``g % 7`` (the top three bits of its CIDs).  On SIGHUP the parent starts generation
``g + 1`` on the other half, replaces the program (atomically, for the whole group) by one that
sends every long-header datagram (new connections) to the new generation and short-header
datagrams whose CID carries the old rotation to the old generation, and sends the old workers
SIGUSR2: no new connection reaches them any more, and they exit once their connections have
ended (the ``kwik:`` endpoint does so, :mod:`kwik_twisted.glue.workerport`); after
``drain_timeout`` seconds the parent stops them as above.  Once the old generation is gone the
program forgets its rotation.  ``docs/deployment.rst`` says what this guarantees.

Linux only: elsewhere, or when the kernel refuses option 51, :func:`bind_group` and
:func:`attach_program` raise :class:`~kwik_twisted.errors.ConfigurationError`; nothing falls back
to one process silently.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from twisted.application.service import Service
from twisted.internet import defer, error
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

from ..errors import ConfigurationError

#: Linux's ``SO_ATTACH_REUSEPORT_CBPF`` (Python 3.11's socket module has no name for it).
SO_ATTACH_REUSEPORT_CBPF = 51
#: The route byte's CID offset when the server ID is empty (byte 0 is the config rotation byte).
DEFAULT_ROUTE_OFFSET = 1
#: Where the DCID starts in a short-header (first bit 0) and a long-header (first bit 1) datagram.
SHORT_CID_OFFSET = 1
LONG_CID_OFFSET = 6
#: Generations cycle through the config rotations 0..6 (7, ``0b111``, means "unroutable").
ROTATIONS = 7
#: Seconds before a dead worker is started again; doubles on each quick death, up to the maximum.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
#: A worker that ran this many seconds resets its back-off.
STABLE = 10.0
#: Seconds workers get to exit after SIGTERM before SIGKILL.
GRACE = 10.0
#: Seconds an old generation may drain after a graceful restart before it is stopped.
DRAIN_TIMEOUT = 300.0
#: The signal that tells a worker to drain (finish its connections, then exit).
DRAIN_SIGNAL = signal.SIGUSR2
#: The most workers: the route byte has 256 values.
MAX_WORKERS = 255
#: ``python -c`` program that behaves like the ``twistd`` script (``twistd kwik --workers``).
TWISTD_PROGRAM = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
#: The first file descriptor number the inherited sockets get in a worker.
FIRST_CHILD_FD = 3

ENV_INDEX = "KWIK_WORKER_INDEX"
ENV_COUNT = "KWIK_WORKER_COUNT"
ENV_FDS = "KWIK_WORKER_FDS"
ENV_GENERATION = "KWIK_WORKER_GENERATION"

log = Logger()

# Classic BPF opcodes (linux/filter.h).
_LDB_ABS = 0x30  # BPF_LD | BPF_B | BPF_ABS: A = packet[k]
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K: if A & k
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K: if A == k
_JA = 0x05  # BPF_JMP | BPF_JA: jump k
_RSH = 0x74  # BPF_ALU | BPF_RSH | BPF_K
_MOD = 0x94  # BPF_ALU | BPF_MOD | BPF_K
_ADD = 0x04  # BPF_ALU | BPF_ADD | BPF_K
_RET_A = 0x16  # BPF_RET | BPF_A
_INSN = struct.Struct("HBBI")  # struct sock_filter {u16 code; u8 jt; u8 jf; u32 k;}


def steering_program(workers: int, route_offset: int = DEFAULT_ROUTE_OFFSET, *, base: int = 0,
                     draining: tuple[int, int] | None = None) -> bytes:
    """
    The classic-BPF program that picks a socket of a reuseport group from the destination CID.

    With neither ``base`` nor ``draining`` it is::

        ldb [0]; jset #0x80 (long header) ? ldb [6 + route_offset] : ldb [1 + route_offset]
        mod #workers; ret a

    ``base`` is added before ``ret`` (the current generation's half of the group).
    ``draining=(rotation, old_base)``: a short-header datagram whose CID's top three bits are
    ``rotation`` goes to ``route byte % workers + old_base`` instead (long headers never do).

    :returns: the ``struct sock_filter`` array, native byte order.
    :raises ConfigurationError: ``workers`` is not 1..255 or the offset is not 1..19.
    """
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigurationError(f"workers must be 1..{MAX_WORKERS}, not {workers}")
    if not 1 <= route_offset <= 19:
        raise ConfigurationError(f"route offset must be 1..19, not {route_offset}")
    long_at, short_at = LONG_CID_OFFSET + route_offset, SHORT_CID_OFFSET + route_offset
    tail = [(_MOD, 0, 0, workers)] + ([(_ADD, 0, 0, base)] if base else []) + [(_RET_A, 0, 0, 0)]
    if draining is None:
        program = [
            (_LDB_ABS, 0, 0, 0),
            (_JSET, 0, 2, 0x80),
            (_LDB_ABS, 0, 0, long_at),
            (_JA, 0, 0, 1),
            (_LDB_ABS, 0, 0, short_at),
            *tail,
        ]
    else:
        rotation, old_base = draining
        old_tail = [(_MOD, 0, 0, workers)] + ([(_ADD, 0, 0, old_base)] if old_base else [])
        old_tail.append((_RET_A, 0, 0, 0))
        program = [
            (_LDB_ABS, 0, 0, 0),
            (_JSET, 0, 2, 0x80),  # 1: long -> 2, short -> 4
            (_LDB_ABS, 0, 0, long_at),  # 2
            (_JA, 0, 0, 6),  # 3 -> 10 (current tail)
            (_LDB_ABS, 0, 0, SHORT_CID_OFFSET),  # 4: the CID's first byte
            (_RSH, 0, 0, 5),  # 5: its config rotation
            (_JEQ, 0, 2, rotation),  # 6: old -> 7, else -> 9
            (_LDB_ABS, 0, 0, short_at),  # 7
            (_JA, 0, 0, len(tail) + 1),  # 8 -> old tail
            (_LDB_ABS, 0, 0, short_at),  # 9
            *tail,
            *old_tail,
        ]
    return b"".join(_INSN.pack(*insn) for insn in program)


def run_program(program: bytes, datagram: bytes) -> int:
    """
    Interpret ``program`` (the instructions :func:`steering_program` emits) on ``datagram``.

    What the kernel computes, for tests and for explaining a routing decision; a load beyond the
    datagram ends the program with 0, as classic BPF does.
    """
    insns = [_INSN.unpack_from(program, i) for i in range(0, len(program), _INSN.size)]
    a = pc = 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == _LDB_ABS:
            if k >= len(datagram):
                return 0
            a = datagram[k]
        elif code in (_JSET, _JEQ):
            taken = bool(a & k) if code == _JSET else a == k
            pc += jt if taken else jf
        elif code == _JA:
            pc += k
        elif code == _RSH:
            a >>= k
        elif code == _MOD:
            a %= k
        elif code == _ADD:
            a = (a + k) & 0xFFFFFFFF
        elif code == _RET_A:
            return a
        else:
            raise ValueError(f"opcode {code:#x} is not one steering_program emits")


def _require_linux() -> None:
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigurationError(
            f"worker processes need Linux (SO_REUSEPORT with SO_ATTACH_REUSEPORT_CBPF); "
            f"this is {sys.platform}: run one process (no --workers)")


def attach_program(sock: socket.socket, program: bytes) -> None:
    """
    Attach (or atomically replace) the reuseport group's classic-BPF program through ``sock``.

    :raises ConfigurationError: not Linux, or the kernel refused ``SO_ATTACH_REUSEPORT_CBPF``.
    """
    _require_linux()
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HL", len(program) // _INSN.size, ctypes.addressof(buffer))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError as e:
        raise ConfigurationError(
            f"the kernel refused SO_ATTACH_REUSEPORT_CBPF ({e}): worker processes cannot be "
            f"steered by connection ID here; run one process (no --workers)") from None


def bind_group(count: int, port: int, interface: str = "") -> list[socket.socket]:
    """
    Bind ``count`` non-blocking UDP sockets with ``SO_REUSEPORT`` to ``interface``:``port``, in
    order (list index = index in the kernel's group).  Port 0 binds the first to a free port and
    the others to the same.

    :raises ConfigurationError: not Linux.
    :raises CannotListenError: the address cannot be bound (none stays open).
    """
    _require_linux()
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    host = interface or ("::" if family == socket.AF_INET6 else "0.0.0.0")
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setblocking(False)
            sock.bind((host, port))
            port = sock.getsockname()[1]
    except OSError as e:
        for sock in sockets:
            sock.close()
        raise error.CannotListenError(interface, port, e) from None
    return sockets


def check_supported() -> None:
    """
    Probe that this system can steer a reuseport group by program (a throw-away group of two
    loopback sockets on a free port).

    :raises ConfigurationError: not Linux, or the kernel refuses ``SO_ATTACH_REUSEPORT_CBPF``.
    """
    try:
        group = bind_group(2, 0, "127.0.0.1")
    except error.CannotListenError as e:
        raise ConfigurationError(f"cannot probe SO_REUSEPORT groups: {e}") from None
    try:
        attach_program(group[0], steering_program(2))
    finally:
        for sock in group:
            sock.close()


# -- the worker side ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerEnvironment:
    """What the parent told a worker (:func:`worker_environment`)."""

    index: int
    count: int
    generation: int
    #: port number -> inherited file descriptor of the bound UDP socket.
    fds: dict

    @property
    def rotation(self) -> int:
        """The config rotation of the CIDs this worker issues."""
        return self.generation % ROTATIONS


def worker_environment(environ=None) -> WorkerEnvironment | None:
    """
    The worker identity in ``environ`` (default ``os.environ``), or ``None`` outside a worker.

    :raises ConfigurationError: the variables are present but malformed.
    """
    environ = os.environ if environ is None else environ
    if ENV_FDS not in environ:
        return None
    try:
        index = int(environ[ENV_INDEX])
        count = int(environ[ENV_COUNT])
        generation = int(environ.get(ENV_GENERATION, "0"))
        fds = {}
        for item in filter(None, environ[ENV_FDS].split(",")):
            port, fd = item.split("=")
            fds[int(port)] = int(fd)
    except (KeyError, ValueError) as e:
        raise ConfigurationError(f"malformed KWIK_WORKER_* environment: {e!r}") from None
    if not (1 <= count <= MAX_WORKERS and 0 <= index < count and generation >= 0):
        raise ConfigurationError(f"KWIK_WORKER_INDEX {index} / KWIK_WORKER_COUNT {count}")
    return WorkerEnvironment(index, count, generation, fds)


# -- the parent -----------------------------------------------------------------------------


class _Worker(ProcessProtocol):
    """One worker process (an index of a generation); tells the supervisor when it ends."""

    def __init__(self, supervisor: WorkerSupervisor, index: int, generation: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.generation = generation
        self.started = 0.0
        self.ended: defer.Deferred = defer.Deferred()
        self.alive = False
        self.pid: int | None = None

    def connectionMade(self) -> None:
        self.alive = True
        self.pid = self.transport.pid

    def processEnded(self, reason) -> None:
        self.alive = False
        self.supervisor._ended(self, reason.value)
        self.ended.callback(None)

    def signal(self, number: int) -> None:
        """Send ``number`` unless the process has gone."""
        if self.alive:
            try:
                self.transport.signalProcess(number)
            except (error.ProcessExitedAlready, OSError):
                pass


class WorkerSupervisor(Service):
    """
    Runs ``workers`` copies of ``argv`` sharing the UDP ``ports`` (see the module docstring).

    :param argv: the worker command; ``argv[0]`` is looked up on ``PATH`` if it has no slash.
    :param ports: ``(port, interface)`` pairs to pre-bind; each worker's ``kwik:`` endpoint must
        name the same port number.
    :param route_offset: the route byte's CID offset, ``1 + len(serverId)``.
    :param env: the workers' environment besides ``KWIK_WORKER_*`` (default ``os.environ``).
    :ivar restarts: how many times a dead worker was started again.
    :ivar generation: the current generation (0, then one more per graceful restart).
    :ivar workers: the current generation's :class:`_Worker` by index.
    """

    def __init__(self, reactor, argv: Sequence[str], workers: int, ports: Sequence[tuple],
                 *, route_offset: int = DEFAULT_ROUTE_OFFSET, env=None, grace: float = GRACE,
                 drain_timeout: float = DRAIN_TIMEOUT, backoff: float = BACKOFF_FIRST) -> None:
        steering_program(workers, route_offset)  # validates both
        if not argv:
            raise ConfigurationError("no worker command given")
        if not ports:
            raise ConfigurationError("no UDP port to share: give at least one --port")
        self.reactor = reactor
        self.argv = list(argv)
        self.count = workers
        self.ports = [(int(port), interface) for port, interface in ports]
        self.routeOffset = route_offset
        self.env = dict(os.environ if env is None else env)
        self.grace = grace
        self.drainTimeout = drain_timeout
        self.backoff = backoff
        self.restarts = 0
        self.generation = 0
        self.groups: list[list[socket.socket]] = []
        self.workers: list[_Worker | None] = []
        self.draining: list[_Worker] = []
        self._drainingGeneration: int | None = None
        self._delays: dict[int, float] = {}
        self._pending: dict[int, object] = {}
        self._stopping = False
        self._previousHup = None
        self._drainTimer = None

    # -- starting ----------------------------------------------------------------------

    def bind(self) -> None:
        """Bind every group and attach the program (also done by ``startService``)."""
        if self.groups:
            return
        try:
            for port, interface in self.ports:
                self.groups.append(bind_group(2 * self.count, port, interface))
            self._program()
        except BaseException:
            self._closeSockets()
            raise
        self.ports = [(group[0].getsockname()[1], interface)
                      for group, (_, interface) in zip(self.groups, self.ports, strict=True)]

    def startService(self) -> None:
        """Bind, attach, start generation 0; SIGHUP does a graceful restart from now on."""
        self.bind()
        super().startService()
        self.workers = [self._spawn(i, self.generation) for i in range(self.count)]
        try:
            self._previousHup = signal.signal(signal.SIGHUP, self._onHup)
        except ValueError:  # not the main thread
            self._previousHup = None

    def _onHup(self, number, frame) -> None:
        self.reactor.callFromThread(self.reload)

    def _base(self, generation: int) -> int:
        return (generation % 2) * self.count

    def _program(self) -> None:
        draining = None
        if self._drainingGeneration is not None:
            old = self._drainingGeneration
            draining = (old % ROTATIONS, self._base(old))
        program = steering_program(self.count, self.routeOffset,
                                   base=self._base(self.generation), draining=draining)
        for group in self.groups:
            attach_program(group[0], program)

    def _spawn(self, index: int, generation: int) -> _Worker:
        worker = _Worker(self, index, generation)
        slot = self._base(generation) + index
        child_fds: dict[int, object] = {0: "w", 1: 1, 2: 2}
        names = []
        for k, group in enumerate(self.groups):
            child_fds[FIRST_CHILD_FD + k] = group[slot].fileno()
            names.append(f"{self.ports[k][0]}={FIRST_CHILD_FD + k}")
        env = dict(self.env)
        env.update({ENV_INDEX: str(index), ENV_COUNT: str(self.count),
                    ENV_FDS: ",".join(names), ENV_GENERATION: str(generation)})
        executable = self.argv[0]
        if os.sep not in executable:
            from twisted.python.procutils import which

            found = which(executable)
            executable = found[0] if found else executable
        worker.started = self.reactor.seconds()
        self.reactor.spawnProcess(worker, executable, self.argv, env=env, childFDs=child_fds)
        log.info("worker {index} of generation {generation} started (pid {pid})",
                 index=index, generation=generation, pid=worker.pid)
        return worker

    # -- supervision -------------------------------------------------------------------

    def _ended(self, worker: _Worker, reason) -> None:
        code = getattr(reason, "exitCode", None)
        sig = getattr(reason, "signal", None)
        log.info("worker {index} of generation {generation} (pid {pid}) ended: exit {code}, "
                 "signal {sig}", index=worker.index, generation=worker.generation,
                 pid=worker.pid, code=code, sig=sig)
        if worker in self.draining:
            self.draining.remove(worker)
            if not self.draining and self._drainingGeneration == worker.generation:
                self._drainingGeneration = None
                if not self._stopping and self.groups:
                    self._program()
            return
        if self._stopping or worker.generation != self.generation:
            return
        if self.workers[worker.index] is not worker:
            return
        self.workers[worker.index] = None
        ran = self.reactor.seconds() - worker.started
        delay = self.backoff if ran >= STABLE else self._delays.get(worker.index, self.backoff)
        self._delays[worker.index] = min(delay * 2, BACKOFF_MAX)
        log.info("restarting worker {index} in {delay:.1f}s", index=worker.index, delay=delay)
        self._pending[worker.index] = self.reactor.callLater(delay, self._restart, worker.index)

    def _restart(self, index: int) -> None:
        self._pending.pop(index, None)
        if self._stopping:
            return
        self.restarts += 1
        self.workers[index] = self._spawn(index, self.generation)

    # -- graceful restart --------------------------------------------------------------

    @defer.inlineCallbacks
    def reload(self):
        """
        Start a new generation of workers for new connections; let the current one drain.

        A generation still draining from an earlier reload is stopped first (its half of the
        groups is needed).
        """
        if self._stopping or not self.running:
            return
        if self.draining:
            log.info("stopping generation {g}, still draining", g=self._drainingGeneration)
            yield self._terminate(list(self.draining))
        old, self.generation = self.generation, self.generation + 1
        for pending in self._pending.values():
            pending.cancel()
        self._pending.clear()
        self.draining = [w for w in self.workers if w is not None and w.alive]
        self._drainingGeneration = old if self.draining else None
        self._program()
        self.workers = [self._spawn(i, self.generation) for i in range(self.count)]
        log.info("graceful restart: generation {new} takes new connections, {n} workers of "
                 "generation {old} drain", new=self.generation, n=len(self.draining), old=old)
        for worker in self.draining:
            worker.signal(DRAIN_SIGNAL)
        if self.draining:
            self._drainTimer = self.reactor.callLater(self.drainTimeout, self._drainExpired,
                                                      list(self.draining))

    def _drainExpired(self, workers: list[_Worker]) -> None:
        late = [w for w in workers if w.alive and w in self.draining]
        if late:
            log.info("{n} draining workers still alive after {t}s: stopping them", n=len(late),
                     t=self.drainTimeout)
            self._terminate(late)

    # -- stopping ----------------------------------------------------------------------

    def _terminate(self, workers: list[_Worker]) -> defer.Deferred:
        """SIGTERM ``workers``, SIGKILL those alive after ``grace``; fire when all ended."""
        alive = [w for w in workers if w.alive]
        for worker in alive:
            worker.signal(signal.SIGTERM)
        killer = self.reactor.callLater(self.grace, self._kill, alive)
        d = defer.gatherResults([w.ended for w in alive])

        def done(result):
            if killer.active():
                killer.cancel()
            return None

        return d.addBoth(done)

    def _kill(self, workers: list[_Worker]) -> None:
        for worker in workers:
            worker.signal(signal.SIGKILL)

    def stopService(self) -> defer.Deferred:
        """Stop every worker (SIGTERM, SIGKILL after ``grace``), then close the sockets."""
        super().stopService()
        self._stopping = True
        if self._previousHup is not None:
            try:
                signal.signal(signal.SIGHUP, self._previousHup)
            except ValueError:
                pass
            self._previousHup = None
        for pending in self._pending.values():
            pending.cancel()
        self._pending.clear()
        if self._drainTimer is not None and self._drainTimer.active():
            self._drainTimer.cancel()
        workers = [w for w in self.workers if w is not None] + list(self.draining)
        d = self._terminate(workers)
        d.addBoth(lambda _: self._closeSockets())
        return d

    def _closeSockets(self) -> None:
        for group in self.groups:
            for sock in group:
                sock.close()
        self.groups = []


def parse_port(text: str) -> tuple[int, str]:
    """``PORT`` or ``PORT@INTERFACE`` -> ``(port, interface)``."""
    port, _, interface = text.partition("@")
    try:
        number = int(port)
    except ValueError:
        raise ConfigurationError(f"--port {text!r}: expected PORT or PORT@INTERFACE") from None
    if not 1 <= number <= 65535:
        raise ConfigurationError(f"--port {text!r}: the port must be 1..65535")
    return number, interface.strip("[]")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kwik_twisted.workers``: parse the command line, supervise until a signal."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m kwik_twisted.workers",
        description="Run N copies of a Twisted application listening on kwik: endpoints, "
                    "sharing each UDP port; datagrams are steered to workers by connection ID.",
        epilog="Each --port must be the port number of a kwik: server endpoint in CMD "
               "(e.g. --port 4433 -- twistd -n web --listen kwik:4433:...).  SIGHUP: graceful "
               "restart; SIGTERM/SIGINT: stop.  Linux only.")
    parser.add_argument("-n", "--workers", type=int, required=True, help="worker processes")
    parser.add_argument("--port", action="append", default=[], metavar="PORT[@INTERFACE]",
                        help="UDP port to pre-bind and share (repeatable)")
    parser.add_argument("--route-offset", type=int, default=DEFAULT_ROUTE_OFFSET,
                        help="the route byte's CID offset: 1 + the server ID's length")
    parser.add_argument("--grace", type=float, default=GRACE,
                        help="seconds between SIGTERM and SIGKILL when stopping workers")
    parser.add_argument("--drain-timeout", type=float, default=DRAIN_TIMEOUT,
                        help="seconds an old generation may drain after SIGHUP")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    options = parser.parse_args(argv)
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    try:
        supervisor = WorkerSupervisor(
            reactor, command, options.workers, [parse_port(p) for p in options.port],
            route_offset=options.route_offset, grace=options.grace,
            drain_timeout=options.drain_timeout)
        supervisor.bind()
    except (ConfigurationError, error.CannotListenError) as e:
        parser.error(str(e))
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    reactor.callWhenRunning(supervisor.startService)
    reactor.addSystemEventTrigger("before", "shutdown", supervisor.stopService)
    reactor.run()
    return 0


__all__ = [
    "DEFAULT_ROUTE_OFFSET", "DRAIN_SIGNAL", "SO_ATTACH_REUSEPORT_CBPF", "WorkerEnvironment",
    "WorkerSupervisor", "attach_program", "bind_group", "check_supported", "main", "parse_port",
    "run_program", "steering_program", "worker_environment",
]
