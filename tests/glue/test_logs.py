"""
Log lines a person can use (issue 14), over the fake UDP reactor in fake time.

One info-level line per thing that happened, through twisted.logger: a connection's start and end
(peer address, duration, bytes each way, the per-path split, the close reason), path events with
their addresses, and a failed handshake with the peer's address and the TLS reason.
"""

from __future__ import annotations

import re

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.glue.registry import LIVE
from kwik_twisted.testing.pair import client_config, server_config

from .fakes import SERVER_PORT, FakeKwik

SERVER = f"('127.0.0.1', {SERVER_PORT})"


class Echo(Protocol):
    """Sends back what it receives."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class Keeper(Protocol):
    """Keeps what comes back."""

    def connectionMade(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data


class LogTestCase(SynchronousTestCase):
    """Captures every log event while a test runs."""

    def setUp(self) -> None:
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def infoLines(self, fragment: str) -> list[str]:
        """The formatted info-level lines containing ``fragment``."""
        lines = [formatEvent(e) for e in self.events if e.get("log_level") == LogLevel.info]
        return [line for line in lines if fragment in line]


class ConnectionLinesTests(LogTestCase):
    """An echo exchange, then the client closes its connection."""

    def setUp(self) -> None:
        super().setUp()
        kwik = FakeKwik(serverProtocol=Echo)
        client = kwik.connect(Keeper)[0]
        client.transport.write(b"x" * 5000)
        kwik.pump()
        self.assertEqual(len(client.received), 5000)
        self.conn = client.transport.kwikConnection
        self.startLines = self.infoLines(" started (")
        self.conn.close(0, "done here")
        kwik.pump(5.0)
        self.assertNotIn(self.conn, LIVE.connections())

    def test_start_is_logged_on_both_sides_with_the_peer(self) -> None:
        """Each side logs one line when its handshake completes, naming its peer and side."""
        self.assertEqual(len(self.startLines), 2, self.startLines)
        client = [line for line in self.startLines if "(client," in line]
        self.assertEqual(len(client), 1, self.startLines)
        self.assertTrue(client[0].startswith(f"Kwik connection with {SERVER} started"), client)

    def test_end_line_has_peer_duration_bytes_split_and_reason(self) -> None:
        """Each side logs one end line: the peer, the reason (who closed, the code, the
        application's reason), the duration, the bytes each way and the per-path split."""
        lines = self.infoLines(" ended: ")
        self.assertEqual(len(lines), 2, lines)
        client = [line for line in lines if line.startswith(f"Kwik connection with {SERVER}")]
        self.assertEqual(len(client), 1, lines)
        line = client[0]
        self.assertIn("closed by us", line)
        self.assertIn("done here", line)
        self.assertRegex(line, r" after \d+\.\d{3} s; ")
        self.assertRegex(line, r"; (\d+) bytes sent, (\d+) received; path 0 ")
        figures = re.search(r"(\d+) bytes sent, (\d+) received", line)
        sent, received = int(figures.group(1)), int(figures.group(2))
        self.assertGreater(sent, 5000)
        self.assertGreater(received, 5000)
        self.assertIn(f"<-> {SERVER}) [active] {sent} sent / {received} received", line)
        server = [line for line in lines if line not in client][0]
        self.assertIn("closed by the peer", server)

    def test_the_end_event_carries_its_fields(self) -> None:
        """The end line's event has the figures as fields too (for a structured observer)."""
        ends = [e for e in self.events if "ended:" in (e.get("log_format") or "")]
        self.assertEqual(len(ends), 2)
        for event in ends:
            for key in ("peer", "reason", "duration", "sent", "received", "split", "code"):
                self.assertIn(key, event)
            self.assertGreaterEqual(event["duration"], 0.0)


class HandshakeFailureTests(LogTestCase):
    """A client expecting another server name than the certificate's."""

    def test_failed_handshake_is_logged_with_peer_and_tls_reason(self) -> None:
        """The client logs one info line naming the server's address, the TLS alert label and
        the reason (the server one naming the client's); each side's failure is counted under
        that label in the live registry."""
        before = dict(LIVE.handshakesFailed)
        kwik = FakeKwik(serverProtocol=Echo, serverConfig=server_config(),
                        config=client_config(server_name="wrong.example"))
        results = kwik.connect(Keeper)
        kwik.pump(5.0)
        self.assertEqual(len(results), 1)
        lines = self.infoLines("Kwik handshake with ")
        client = [line for line in lines if line.startswith(f"Kwik handshake with {SERVER}")]
        self.assertEqual(len(client), 1, lines)
        self.assertIn(" failed after ", client[0])
        self.assertIn("(tls_", client[0])
        self.assertIn("mismatch", client[0])
        label = re.search(r"\((tls_[a-z_]+)\)", client[0]).group(1)
        self.assertEqual(len(lines), 2, lines)
        self.assertTrue(all(f"({label})" in line for line in lines), lines)
        self.assertEqual(LIVE.handshakesFailed[label], before.get(label, 0) + 2, lines)
        self.assertEqual(self.infoLines(" ended: "), [])


class GivenUpHandshakeTests(LogTestCase):
    """A handshake we give up (a cancelled connect, a lost address race) is not a failure."""

    def test_a_cancelled_connect_is_neither_logged_nor_counted_as_a_failure(self) -> None:
        """Cancelling ``connect()`` before the handshake completes abandons the attempt: no
        "handshake ... failed" line and no failure in the live registry's counts."""
        before = dict(LIVE.handshakesFailed)
        kwik = FakeKwik(serverProtocol=Echo)
        results: list = []
        d = kwik.client.connect(Factory.forProtocol(Keeper))
        d.addBoth(results.append)
        d.cancel()
        kwik.pump(5.0)
        self.assertEqual(len(results), 1)
        self.assertEqual(self.infoLines("Kwik handshake with "), [])
        self.assertEqual(dict(LIVE.handshakesFailed), before)


class PathLinesTests(LogTestCase):
    """Path events are logged with the event, the peer and both addresses."""

    def test_path_validated_line(self) -> None:
        """A client opening a second path logs its addition and validation at info, with the
        local and remote addresses."""
        kwik = FakeKwik(serverProtocol=Echo)
        client = kwik.connect(Keeper)[0]
        conn = client.transport.kwikConnection
        conn.openPath("127.0.0.2")
        kwik.pump()
        added = self.infoLines("Kwik path 1 added with ")
        validated = self.infoLines("Kwik path 1 validated with ")
        self.assertTrue(added, self.infoLines("Kwik path"))
        self.assertTrue(validated, self.infoLines("Kwik path"))
        self.assertTrue(any("'127.0.0.2'" in line and SERVER in line for line in validated),
                        validated)
