"""
Stateless reset and Retry over real sockets, with real processes: a ``twistd kwik --echo`` server
killed and started again on the same port resets its old connections at once (its static secret
comes from its private key, so the new process computes the old tokens), and a server with
``retry=yes`` serves clients through a Retry.
"""

from __future__ import annotations

import signal
import socket
import time
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory, Protocol

from kwik_twisted.endpoints import closeClientConnections
from tests.glue import processes
from tests.glue.test_twistd_e2e import STARTUP, ProcessTestCase


class Echoed(Protocol):
    """Collects what comes back; ``lost`` fires with the reason the stream ended."""

    def connectionMade(self) -> None:
        self.received = bytearray()
        self.waiting: tuple[int, defer.Deferred] | None = None
        self.lost: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.waiting is not None and len(self.received) >= self.waiting[0]:
            _, d = self.waiting
            self.waiting = None
            d.callback(bytes(self.received))

    def until(self, size: int) -> defer.Deferred:
        """Fires once ``size`` bytes in all came back."""
        d: defer.Deferred = defer.Deferred()
        self.waiting = (size, d)
        self.dataReceived(b"")
        return d

    def connectionLost(self, reason: Any) -> None:
        self.lost.callback(reason.value)


class StatelessE2ETests(ProcessTestCase):
    """What the server's stateless answers do for a real client."""

    def echoServer(self, port: int, settings: str = "") -> list[str]:
        """``twistd kwik --echo`` on ``port`` with extra endpoint ``settings``."""
        return processes.twistd_argv("kwik", "--listen", self.serverKwik(port) + settings, "--echo")

    def startEcho(self, settings: str = "") -> defer.Deferred:
        """Start the echo server on a free port; fire with the port."""
        return self.startServer(
            "twistd kwik --echo",
            lambda port: self.echoServer(port, settings),
            lambda port: clientFromString(reactor, self.clientKwik(port) + ":timeout=2"),
            socket.SOCK_DGRAM,
        )

    @defer.inlineCallbacks
    def restartResets(self):
        port = yield self.startEcho()
        self.addCleanup(closeClientConnections, reactor)
        endpoint = clientFromString(reactor, self.clientKwik(port) + ":timeout=10")
        client = yield endpoint.connect(Factory.forProtocol(Echoed))
        client.transport.write(b"hello")
        yield client.until(5)
        first = self.processes[-1]
        processes._signal(first, signal.SIGKILL)  # a crash: nothing is said to the client
        yield first.ended
        again = self.spawn("twistd kwik --echo (restarted)", self.echoServer(port))
        yield processes.connect_until(
            reactor, clientFromString(reactor, self.clientKwik(port) + ":timeout=2"),
            reactor.seconds() + STARTUP,
            lambda: "the restarted server exited" if again.finished else None,
        )  # fmt: skip
        started = time.monotonic()
        client.transport.write(b"are you there?")
        reason = yield client.lost
        waited = time.monotonic() - started
        self.assertIn("stateless reset", str(reason))
        self.assertLess(waited, 5.0)  # far below the 30 s idle timeout it would wait for

    def test_a_restarted_server_resets_its_old_connections(self):
        """After the server is killed and started again on its port, the client's next write
        ends its connection with a stateless reset, not an idle timeout."""
        return self.withOutputs(self.restartResets())

    @defer.inlineCallbacks
    def echoThroughRetry(self):
        port = yield self.startEcho(":retry=yes")
        self.addCleanup(closeClientConnections, reactor)
        endpoint = clientFromString(reactor, self.clientKwik(port) + ":timeout=10")
        client = yield endpoint.connect(Factory.forProtocol(Echoed))
        payload = b"retry " * 10000
        client.transport.write(payload)
        echoed = yield client.until(len(payload))
        self.assertEqual(echoed, payload)
        core = client.transport.kwikConnection.core
        self.assertEqual(core.stats["retry_received"], 1)
        yield task.deferLater(reactor, 0, lambda: None)

    def test_a_retry_server_serves_clients_through_a_retry(self):
        """With retry=yes the client is sent a Retry, proves its address and is served."""
        return self.withOutputs(self.echoThroughRetry())
