"""
Helpers for tests that run real programs (``twistd``, ``curl``) next to the test's reactor.

:func:`spawn` starts a program with ``reactor.spawnProcess`` and a :class:`Collector` that keeps
everything it writes; :func:`stop` sends SIGTERM, waits for ``processEnded`` (SIGKILL after a
grace period) so that no process or pipe outlives the test; :func:`run` spawns and waits for the
exit with a deadline.  :func:`twistd_argv` runs the ``twistd`` of *this* interpreter, and
:func:`child_environment` puts the checkout first on ``PYTHONPATH`` so the child finds
``kwik_twisted`` and its ``twisted/plugins`` whatever its working directory.  Readiness is polled,
never slept for: :func:`connect_until` retries an endpoint's ``connect()`` until a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet import defer, error, task
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.python.failure import Failure

ROOT = Path(__file__).resolve().parents[2]
#: ``python -c`` program that behaves like the ``twistd`` script (``python -m twisted`` is twist).
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
#: Seconds a process gets to exit after SIGTERM before it is killed.
GRACE = 10.0


def twistd_argv(*arguments: str) -> list[str]:
    """``twistd -n --pidfile= ARGUMENTS`` with this interpreter, in the foreground, no pid file."""
    return [sys.executable, "-c", TWISTD, "-n", "--pidfile=", *arguments]


def child_environment() -> dict[str, str]:
    """``os.environ`` with the checkout prepended to ``PYTHONPATH`` (as an absolute path)."""
    env = dict(os.environ)
    paths = [str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port the system calls free right now (another program may take it before we do)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class Collector(ProcessProtocol):
    """Keeps a process's stdout and stderr; ``ended`` fires with its exit code."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.ended: defer.Deferred[int | None] = defer.Deferred()
        self.exitCode: int | None = None
        self.finished = False

    def outReceived(self, data: bytes) -> None:
        self.stdout += data

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Failure) -> None:
        self.finished = True
        self.exitCode = getattr(reason.value, "exitCode", None)
        self.ended.callback(self.exitCode)

    def output(self) -> str:
        """Both streams as text, for failure messages."""
        out = self.stdout.decode("utf-8", "replace")
        err = self.stderr.decode("utf-8", "replace")
        state = f"exit {self.exitCode}" if self.finished else "still running"
        return f"--- {self.name} ({state})\n[stdout]\n{out}[stderr]\n{err}"


def spawn(reactor: Any, name: str, argv: Sequence[str], cwd: str | None = None) -> Collector:
    """Start ``argv`` (``argv[0]`` is an executable path) with :func:`child_environment`."""
    collector = Collector(name)
    reactor.spawnProcess(collector, argv[0], list(argv), env=child_environment(), path=cwd)
    return collector


def stop(reactor: Any, process: Collector, grace: float = GRACE) -> defer.Deferred[int | None]:
    """SIGTERM the process (SIGKILL after ``grace`` seconds); fire once it has ended."""
    if process.finished:
        return defer.succeed(process.exitCode)
    _signal(process, signal.SIGTERM)
    killer = reactor.callLater(grace, _signal, process, signal.SIGKILL)

    def ended(result: Any) -> Any:
        if killer.active():
            killer.cancel()
        return result

    return process.ended.addBoth(ended)


def _signal(process: Collector, number: int) -> None:
    try:
        process.transport.signalProcess(number)
    except error.ProcessExitedAlready:
        pass


@defer.inlineCallbacks
def run(reactor: Any, name: str, argv: Sequence[str], timeout: float, cwd: str | None = None):
    """Run ``argv`` to its end (killed after ``timeout`` seconds); return its :class:`Collector`."""
    process = spawn(reactor, name, argv, cwd)
    killer = reactor.callLater(timeout, _signal, process, signal.SIGKILL)
    try:
        yield process.ended
    finally:
        if killer.active():
            killer.cancel()
    return process


class _Probe(Protocol):
    """Connected means ready; then close and report when closed."""

    def connectionMade(self) -> None:
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure) -> None:
        self.lost.callback(None)


@defer.inlineCallbacks
def connect_until(
    reactor: Any,
    endpoint: Any,
    deadline: float,
    give_up: Callable[[], str | None] = lambda: None,
    interval: float = 0.1,
):
    """
    Retry ``endpoint.connect()`` while it is refused or times out (nobody listens yet) until
    it succeeds (then close that connection) or ``reactor.seconds()`` passes ``deadline``.
    ``give_up()`` returning a text stops early (for example when the server process exited).
    Any other failure (a TLS handshake error, say) is not going to go away: it is raised at once.

    :raises RuntimeError: with the last refusal or ``give_up``'s text.
    """
    last: Any = None
    while reactor.seconds() < deadline:
        reason = give_up()
        if reason is not None:
            raise RuntimeError(reason)
        try:
            probe = yield endpoint.connect(Factory.forProtocol(_Probe))
        except (error.ConnectionRefusedError, error.TimeoutError) as e:
            last = e
            yield task.deferLater(reactor, interval, lambda: None)
            continue
        yield probe.lost
        return
    raise RuntimeError(f"{endpoint!r} did not accept a connection in time: {last!r}")


__all__ = [
    "GRACE",
    "ROOT",
    "TWISTD",
    "Collector",
    "child_environment",
    "connect_until",
    "free_port",
    "run",
    "spawn",
    "stop",
    "twistd_argv",
]
