"""
Idle connections in the Twisted glue (issue 11, finding 8), over the fake UDP reactor in fake time.

By default (``keepAlive`` auto) a connection with an open stream keeps itself alive, so a quiet
stream is not cut by the idle timeout; with ``keepAlive=no`` it is, and the glue says so at info
level with the peer's address and the reason, since that is what the user of a tunnel needs to
see.  The same through real ``twistd kwik`` processes is in test_twistd_e2e.py.
"""

from __future__ import annotations

from twisted.internet import error
from twisted.internet.protocol import Protocol
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.testing.pair import client_config, server_config

from .fakes import SERVER_PORT, FakeKwik

IDLE = 1.0


class Echo(Protocol):
    """Sends back what it receives."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class Keeper(Protocol):
    """Keeps what comes back and why its connection was lost."""

    def connectionMade(self) -> None:
        self.received = b""
        self.lost: list = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason) -> None:
        self.lost.append(reason)


class IdleTests(SynchronousTestCase):
    """A stream left quiet for ten idle timeouts."""

    def quietStream(self, **settings) -> Keeper:
        """Connect with ``idle_timeout=IDLE`` and ``settings`` on both sides, echo once, then
        let ten idle timeouts of fake time pass; return the client's protocol."""
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        kwik = FakeKwik(
            serverProtocol=Echo,
            serverConfig=server_config(idle_timeout=IDLE, **settings),
            config=client_config(idle_timeout=IDLE, **settings),
        )
        client = kwik.connect(Keeper)[0]
        client.transport.write(b"hello")
        kwik.pump()
        self.assertEqual(client.received, b"hello")
        kwik.pump(10 * IDLE)
        self.kwik = kwik
        return client

    def idleEnds(self) -> list[str]:
        """The formatted info-level log lines about idle-timeout ends."""
        return [
            formatEvent(event)
            for event in self.events
            if event.get("log_level") == LogLevel.info and "idle timeout" in formatEvent(event)
        ]

    def test_default_keep_alive_keeps_a_quiet_stream_open(self) -> None:
        """
        With the default keep-alive, a stream quiet for ten idle timeouts is still connected
        and still echoes; nothing was logged about an idle end.
        """
        client = self.quietStream()
        self.assertEqual(client.lost, [])
        client.transport.write(b" again")
        self.kwik.pump()
        self.assertEqual(client.received, b"hello again")
        self.assertEqual(self.idleEnds(), [])

    def test_idle_end_is_logged_at_info_with_the_peer_and_reason(self) -> None:
        """
        With ``keep_alive=None`` the quiet stream ends (ConnectionLost saying "idle timeout"),
        and each side logs at info level that its connection with the peer's address ended on
        the idle timeout.
        """
        client = self.quietStream(keep_alive=None)
        self.assertEqual(len(client.lost), 1)
        self.assertTrue(client.lost[0].check(error.ConnectionLost))
        self.assertIn("idle timeout", client.lost[0].getErrorMessage())
        lines = self.idleEnds()
        self.assertEqual(len(lines), 2, lines)
        self.assertTrue(any(f"('127.0.0.1', {SERVER_PORT})" in line for line in lines), lines)
        for line in lines:
            self.assertTrue(line.startswith("Kwik connection with ('127.0.0.1', "), line)
