"""
End to end through real processes on loopback: an *unmodified* ``twistd web`` served with a
``kwik:`` endpoint string, reached through a ``twistd kwik`` TCP-to-Kwik tunnel by Twisted's
``Agent`` and by ``curl``; a ``twistd kwik --echo`` server reached from this process with a
``kwik:`` client string; and the messages a user gets for a missing key file, a port in use and
a malformed endpoint string.

Processes are spawned with ``reactor.spawnProcess`` (see :mod:`tests.glue.processes`), readiness
is polled by connecting until a deadline, and every process is stopped with SIGTERM and waited
for, so nothing outlives a test.  A failure message carries the processes' output.  Ports are
chosen free just before use; if a server still loses the race for its port it is started again
on another one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, clientFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone

from kwik_twisted.endpoints import closeClientConnections
from kwik_twisted.tools import devcerts
from tests.glue import processes

#: Seconds a server gets to start answering.
STARTUP = 20.0
#: How often a server is restarted on another port when it lost its port to another program.
PORT_ATTEMPTS = 3
IN_USE = b"Address already in use"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Body(Protocol):
    """Collects a response body; ``done`` fires with it, or fails if it was cut short."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any) -> None:
        if reason.check(ResponseDone):
            self.done.callback(bytes(self.data))
        else:
            self.done.errback(reason)


def readWholeBody(response: Any) -> defer.Deferred[bytes]:
    """
    The body of ``response`` (like ``readBody``, which warns about Agent's own transport proxy
    lacking ``abortConnection``).
    """
    body = _Body()
    response.deliverBody(body)
    return body.done


class ProcessTestCase(TestCase):
    """Spawns processes, stops them at cleanup, and puts their output into failure messages."""

    timeout = 60

    def setUp(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="kwik-e2e-"))
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.processes: list[processes.Collector] = []
        self.certs = devcerts.write_pem_files(self.directory / "certs")

    def spawn(self, name: str, argv: list[str]) -> processes.Collector:
        """Start a process that the test's cleanup stops."""
        process = processes.spawn(reactor, name, argv, cwd=str(self.directory))
        self.processes.append(process)
        self.addCleanup(processes.stop, reactor, process)
        return process

    def outputs(self) -> str:
        """Everything every process wrote so far."""
        return "\n".join(process.output() for process in self.processes)

    def withOutputs(self, d: defer.Deferred) -> defer.Deferred:
        """Turn a failure of ``d`` into a test failure that shows the processes' output."""

        def failed(failure: Any) -> Any:
            if failure.check(SkipTest):
                return failure
            if failure.check(self.failureException):
                self.fail(f"{failure.value}\n{self.outputs()}")
            self.fail(f"{failure.getTraceback()}\n{self.outputs()}")

        return d.addErrback(failed)

    def serverKwik(self, port: int) -> str:
        """A ``kwik:`` server string on loopback with the development certificate."""
        files = f"privateKey={self.certs.key}:certKey={self.certs.chain}"
        return f"kwik:{port}:interface=127.0.0.1:{files}"

    def clientKwik(self, port: int) -> str:
        """A ``kwik:`` client string towards loopback, trusting the development CA."""
        return f"kwik:host=127.0.0.1:port={port}:trustRoots={self.certs.ca}:hostname=localhost"

    @defer.inlineCallbacks
    def startServer(self, name: str, argv_for_port, endpoint_for_port, kind: int):
        """
        Start ``argv_for_port(port)`` on a free port of ``kind`` and wait until
        ``endpoint_for_port(port)`` connects; retry on another port if the port was taken.
        Run it under :meth:`withOutputs`, which adds the processes' output to a failure.
        """
        for _ in range(PORT_ATTEMPTS):
            port = processes.free_port(kind)
            process = self.spawn(name, argv_for_port(port))
            try:
                yield processes.connect_until(
                    reactor, endpoint_for_port(port), reactor.seconds() + STARTUP,
                    lambda process=process: f"{name} exited" if process.finished else None,
                )  # fmt: skip
            except RuntimeError as e:
                yield processes.stop(reactor, process)
                if IN_USE in process.stdout + process.stderr:
                    continue
                self.fail(f"{name} did not start: {e}")
            return port
        self.fail(f"{name}: no free port after {PORT_ATTEMPTS} attempts")

    def expectExit(self, process: processes.Collector) -> str:
        """The process's whole output, once checked that it exited with a non-zero code."""
        text = (process.stdout + process.stderr).decode("utf-8", "replace")
        self.assertNotIn(process.exitCode, (0, None), process.output())
        return text


class TunnelledWebTests(ProcessTestCase):
    """``twistd web --listen kwik:...`` behind ``twistd kwik --listen tcp:... --forward kwik:``."""

    def setUp(self) -> None:
        super().setUp()
        www = self.directory / "www"
        www.mkdir()
        self.payload = os.urandom(4 * 1024 * 1024)
        (www / "big.bin").write_bytes(self.payload)
        self.www = www

    @defer.inlineCallbacks
    def startTunnel(self):
        """Start the web server and the tunnel; return the tunnel's TCP port."""
        kwik_port = yield self.startServer(
            "twistd web",
            lambda port: processes.twistd_argv(
                "web", "--path", str(self.www), "--listen", self.serverKwik(port)
            ),
            lambda port: clientFromString(reactor, self.clientKwik(port) + ":timeout=2"),
            socket.SOCK_DGRAM,
        )
        self.addCleanup(closeClientConnections, reactor)  # the readiness probe's connection
        tcp_port = yield self.startServer(
            "twistd kwik",
            lambda port: processes.twistd_argv(
                "kwik",
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
                "--forward",
                self.clientKwik(kwik_port),
            ),
            lambda port: TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=2),
            socket.SOCK_STREAM,
        )
        return tcp_port

    @defer.inlineCallbacks
    def fetchWithAgent(self):
        tcp_port = yield self.startTunnel()
        pool = HTTPConnectionPool(reactor)
        self.addCleanup(pool.closeCachedConnections)
        agent = Agent(reactor, pool=pool)
        url = b"http://127.0.0.1:%d/big.bin" % tcp_port
        response = yield agent.request(b"GET", url)
        self.assertEqual(response.code, 200)
        body = yield readWholeBody(response)
        self.assertEqual(len(body), len(self.payload))
        self.assertEqual(_sha256(body), _sha256(self.payload))

    def test_agent_fetches_a_file_served_by_twistd_web_over_kwik(self):
        """
        A 4 MiB file served by an unmodified ``twistd web --listen kwik:...`` arrives through a
        ``twistd kwik`` TCP tunnel, fetched with Agent over plain TCP, with the right SHA-256.
        """
        return self.withOutputs(self.fetchWithAgent())

    @defer.inlineCallbacks
    def fetchWithCurl(self, curl: str):
        tcp_port = yield self.startTunnel()
        out = self.directory / "curl.out"
        url = f"http://127.0.0.1:{tcp_port}/big.bin"
        argv = [curl, "-s", "-S", "--fail", "--max-time", "20", "-o", str(out), url]
        result = yield processes.run(reactor, "curl", argv, timeout=25)
        self.processes.append(result)
        self.assertEqual(result.exitCode, 0, result.output())
        self.assertEqual(_sha256(out.read_bytes()), _sha256(self.payload))

    def test_curl_fetches_a_file_served_by_twistd_web_over_kwik(self):
        """The same 4 MiB file fetched through the tunnel by ``curl`` has the right SHA-256."""
        curl = shutil.which("curl")
        if curl is None:
            raise SkipTest("curl is not installed: the curl fetch is skipped (Agent's is not)")
        return self.withOutputs(self.fetchWithCurl(curl))


class Collect(Protocol):
    """Collects what comes back until ``expected`` bytes arrived."""

    def connectionMade(self) -> None:
        self.received = bytearray()
        self.expected = 0
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= self.expected and not self.done.called:
            self.done.callback(bytes(self.received))


class EchoServerTests(ProcessTestCase):
    """``twistd kwik --listen kwik:... --echo`` reached with a ``kwik:`` client endpoint."""

    @defer.inlineCallbacks
    def echoOneMegabyte(self):
        kwik_port = yield self.startServer(
            "twistd kwik --echo",
            lambda port: processes.twistd_argv("kwik", "--listen", self.serverKwik(port), "--echo"),
            lambda port: clientFromString(reactor, self.clientKwik(port) + ":timeout=2"),
            socket.SOCK_DGRAM,
        )
        self.addCleanup(closeClientConnections, reactor)  # before the server is stopped
        endpoint = clientFromString(reactor, self.clientKwik(kwik_port) + ":timeout=10")
        client = yield endpoint.connect(Factory.forProtocol(Collect))
        payload = os.urandom(1024 * 1024)
        client.expected = len(payload)
        client.transport.write(payload)
        echoed = yield client.done
        client.transport.loseConnection()
        self.assertEqual(len(echoed), len(payload))
        self.assertEqual(_sha256(echoed), _sha256(payload))

    def test_echo_server_returns_one_megabyte_exactly(self):
        """1 MiB written on a Kwik stream to ``twistd kwik --echo`` comes back byte for byte."""
        return self.withOutputs(self.echoOneMegabyte())


class UserErrorTests(ProcessTestCase):
    """Mistakes on the command line end ``twistd`` with one clear message."""

    @defer.inlineCallbacks
    def twistd(self, *arguments: str):
        process = yield processes.run(
            reactor, "twistd", processes.twistd_argv(*arguments), timeout=20,
            cwd=str(self.directory),
        )  # fmt: skip
        self.processes.append(process)
        return process

    def assertNoTraceback(self, process: processes.Collector) -> None:
        self.assertNotIn(b"Traceback", process.stdout + process.stderr, process.output())

    @defer.inlineCallbacks
    def test_missing_private_key_names_the_file(self):
        """A missing privateKey file: non-zero exit, a message naming the file, no traceback."""
        missing = self.directory / "nonexistent.key"
        process = yield self.twistd("kwik", "--listen", f"kwik:0:privateKey={missing}", "--echo")
        text = self.expectExit(process)
        self.assertIn(f"privateKey='{missing}'", text)
        self.assertIn("No such file", text)
        self.assertNoTraceback(process)

    @defer.inlineCallbacks
    def test_malformed_forward_string_is_a_usage_error_naming_port(self):
        """``--forward kwik:...:port=notaport``: non-zero exit, the message names ``port``."""
        process = yield self.twistd(
            "kwik", "--listen", "tcp:0:interface=127.0.0.1",
            "--forward", "kwik:host=127.0.0.1:port=notaport",
        )  # fmt: skip
        text = self.expectExit(process)
        self.assertIn("--forward 'kwik:host=127.0.0.1:port=notaport'", text)
        self.assertIn("port='notaport': expected an integer", text)
        self.assertNoTraceback(process)

    @defer.inlineCallbacks
    def test_port_in_use_stops_twistd_with_a_message(self):
        """
        A UDP port that another socket holds: ``twistd kwik`` does not run without its
        listener; it exits non-zero saying which address could not be bound and why, in one
        message rather than a traceback.
        """
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        process = yield self.twistd("kwik", "--listen", self.serverKwik(port), "--echo")
        text = self.expectExit(process)
        self.assertIn(f"Couldn't listen on 127.0.0.1:{port}", text)
        self.assertIn("Address already in use", text)
        self.assertNoTraceback(process)


class Line(Protocol):
    """A TCP client: keeps what comes back; ``lost`` fires when the connection ends."""

    def connectionMade(self) -> None:
        self.received = bytearray()
        self.waiting: tuple[int, defer.Deferred] | None = None
        self.lost: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.waiting is not None and len(self.received) >= self.waiting[0]:
            _, d = self.waiting
            self.waiting = None
            d.callback(bytes(self.received))

    def echo(self, data: bytes) -> defer.Deferred[bytes]:
        """Write ``data``; fire with everything received once it came back."""
        d: defer.Deferred[bytes] = defer.Deferred()
        self.waiting = (len(self.received) + len(data), d)
        self.transport.write(data)
        return d.addTimeout(STARTUP, reactor)

    def connectionLost(self, reason: Any) -> None:
        self.lost.callback(None)


class IdleTunnelTests(ProcessTestCase):
    """
    A TCP session through ``twistd kwik`` tunnels to ``twistd kwik --echo``, both with
    ``idleTimeout=1``, stays quiet for more than twice the idle timeout (issue 11, finding 8).
    """

    #: The idle timeout of both ``kwik:`` strings, in seconds.
    IDLE = 1

    @defer.inlineCallbacks
    def startTunnel(self, settings: str):
        """Start the echo server and the TCP-to-Kwik tunnel, both with ``settings``; return the
        tunnel's process and its TCP port."""
        kwik_port = yield self.startServer(
            "twistd kwik --echo",
            lambda port: processes.twistd_argv(
                "kwik", "--listen", self.serverKwik(port) + settings, "--echo"
            ),
            lambda port: clientFromString(reactor, self.clientKwik(port) + ":timeout=2"),
            socket.SOCK_DGRAM,
        )
        self.addCleanup(closeClientConnections, reactor)  # the readiness probe's connection
        tcp_port = yield self.startServer(
            "twistd kwik tunnel",
            lambda port: processes.twistd_argv(
                "kwik",
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
                "--forward",
                self.clientKwik(kwik_port) + settings,
            ),
            lambda port: TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=2),
            socket.SOCK_STREAM,
        )
        return self.processes[-1], tcp_port

    @defer.inlineCallbacks
    def idleSession(self, settings: str):
        """Open a TCP session through the tunnel, check it echoes, leave it idle for 2.5 idle
        timeouts; return the tunnel process and the session."""
        tunnel, tcp_port = yield self.startTunnel(f":idleTimeout={self.IDLE}{settings}")
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", tcp_port, timeout=5)
        session = yield endpoint.connect(Factory.forProtocol(Line))
        self.addCleanup(session.transport.loseConnection)
        echoed = yield session.echo(b"hello\n")
        self.assertEqual(echoed, b"hello\n")
        yield task.deferLater(reactor, 2.5 * self.IDLE, lambda: None)
        return tunnel, session

    @defer.inlineCallbacks
    def keptAlive(self):
        _, session = yield self.idleSession("")
        self.assertFalse(session.lost.called, "the idle tunnel was closed")
        echoed = yield session.echo(b"still there\n")
        self.assertEqual(echoed, b"hello\nstill there\n")

    def test_idle_tunnel_with_default_settings_stays_open(self):
        """
        With the default ``keepAlive`` (auto), the session is still open after 2.5 idle timeouts
        of silence, and bytes written then still come back.
        """
        return self.withOutputs(self.keptAlive())

    @defer.inlineCallbacks
    def endedWithoutKeepAlive(self):
        tunnel, session = yield self.idleSession(":keepAlive=no")
        yield session.lost.addTimeout(STARTUP, reactor)
        text = tunnel.output()
        self.assertIn("ended: idle timeout", text)
        self.assertIn("127.0.0.1", text[text.index("ended: idle timeout") - 200 :])

    def test_idle_tunnel_without_keep_alive_ends_and_says_why(self):
        """
        With ``keepAlive=no`` the same idle session ends (the tunnel closes its TCP side), and
        the tunnel's log says, at the default log level, that the Kwik connection with the
        server ended on its idle timeout.
        """
        return self.withOutputs(self.endedWithoutKeepAlive())
