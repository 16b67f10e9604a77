"""
TLS failures end to end: what each side of a :class:`~kwik_twisted.testing.pair.MemoryPair`
sees when certificate verification fails.

A TLS failure closes the connection with a code in 0x100..0x1FF (HANDSHAKE_FAILED, the low byte
the TLS alert; ``docs/protocol.rst``, "Handshake") and a reason naming the cause; no stream data
may ever cross a failed handshake.
"""

from __future__ import annotations

import datetime

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.config import ConnectionConfig
from kwik_twisted.core.connection import State
from kwik_twisted.core.crypto.handshake import TlsConfig
from kwik_twisted.events import HandshakeCompleted, StreamDataReceived
from kwik_twisted.testing.pair import MemoryPair, client_config, dev_certificates
from kwik_twisted.tools import devcerts
from tests.certs import fixtures

from .test_connection import of_type, settle, terminations


def server_with(chain: bytes, key: bytes, **tls) -> ConnectionConfig:
    """A server configuration presenting ``chain``."""
    return ConnectionConfig(tls=TlsConfig(certificate_chain=chain, private_key=key, **tls))


def client_trusting(ca: bytes, server_name: str = "localhost", **tls) -> ConnectionConfig:
    """A client configuration trusting ``ca``."""
    return ConnectionConfig(tls=TlsConfig(trust_roots=ca, server_name=server_name, **tls))


class HandshakeFailureMixin:
    """Runs a pair that is expected to fail and checks the failure."""

    def assertHandshakeFails(self, pair: MemoryPair, *words: str):
        """
        Both sides end with one ConnectionTerminated whose code is in 0x100..0x1FF and whose
        reason contains every word of ``words``; the client never sends stream data through.
        """
        sid = pair.client.open_stream()
        pair.client.send_stream_data(sid, b"secret", end_stream=True)
        settle(pair, 3.0)
        client_end = terminations(pair.client_events)
        self.assertEqual(len(client_end), 1, pair.client_events)
        code = client_end[0].error_code
        self.assertTrue(0x100 <= code <= 0x1FF, hex(code))
        for word in words:
            self.assertIn(word, client_end[0].reason)
        server_end = terminations(pair.server_events)
        self.assertEqual(len(server_end), 1, pair.server_events)
        self.assertTrue(0x100 <= server_end[0].error_code <= 0x1FF)
        self.assertTrue(server_end[0].by_peer or client_end[0].by_peer)
        self.assertEqual(of_type(pair.server_events, StreamDataReceived), [])
        self.assertIs(pair.client.state, State.CLOSED)
        return client_end[0]


class CertificateFailureTests(HandshakeFailureMixin, SynchronousTestCase):
    """The client refuses a server certificate it cannot verify."""

    def test_wrong_host_name_fails_the_handshake(self):
        """A localhost certificate does not do for wrong.example: HANDSHAKE_FAILED, 'mismatch'."""
        pair = MemoryPair(client_config(server_name="wrong.example"))
        end = self.assertHandshakeFails(pair, "wrong.example")
        self.assertFalse(end.by_peer)
        self.assertIn("mismatch", end.reason.lower())
        self.assertEqual(of_type(pair.client_events, HandshakeCompleted), [])

    def test_untrusted_ca_fails_the_handshake(self):
        """A server certificate from a CA the client does not trust fails verification."""
        other_ca = devcerts.certificate_pem(devcerts.make_ca("not the one you trust").certificate)
        certs = dev_certificates()
        pair = MemoryPair(client_trusting(other_ca), server_with(certs.chain, certs.key))
        end = self.assertHandshakeFails(pair, "verify")
        self.assertFalse(end.by_peer)
        self.assertEqual(of_type(pair.client_events, HandshakeCompleted), [])

    def test_expired_certificate_fails_the_handshake(self):
        """A certificate that expired (dated in the past, no clock touched) fails with 'expired'."""
        ca = devcerts.make_ca("expiry CA")
        long_ago = datetime.datetime(2019, 1, 1, tzinfo=datetime.UTC)
        leaf = devcerts.make_certificate(
            ca, not_before=long_ago, not_after=long_ago + datetime.timedelta(days=10)
        )
        chain = devcerts.certificate_pem(leaf.certificate, ca.certificate)
        pair = MemoryPair(
            client_trusting(devcerts.certificate_pem(ca.certificate)),
            server_with(chain, devcerts.key_pem(leaf.key)),
        )
        end = self.assertHandshakeFails(pair, "expired")
        self.assertFalse(end.by_peer)

    def test_server_learns_why_the_client_refused(self):
        """The server's termination is by the peer and carries the client's code."""
        pair = MemoryPair(client_config(server_name="wrong.example"))
        settle(pair, 3.0)
        client_end = terminations(pair.client_events)[0]
        server_end = terminations(pair.server_events)[0]
        self.assertTrue(server_end.by_peer)
        self.assertEqual(server_end.error_code, client_end.error_code)


class ClientCertificateTests(HandshakeFailureMixin, SynchronousTestCase):
    """A server that requires a client certificate."""

    def requiring_server(self) -> ConnectionConfig:
        f = fixtures()
        return server_with(
            f.server.chain_pem, f.server.key_pem, trust_roots=f.ca_pem,
            require_client_certificate=True,
        )

    def test_missing_client_certificate_fails_the_handshake(self):
        """Without a client certificate the server refuses: HANDSHAKE_FAILED on both sides."""
        pair = MemoryPair(client_trusting(fixtures().ca_pem), self.requiring_server())
        self.assertHandshakeFails(pair, "certificate")
        server_end = terminations(pair.server_events)[0]
        self.assertFalse(server_end.by_peer)
        self.assertIsNot(pair.client.state, State.ESTABLISHED)

    def test_client_certificate_is_accepted_and_reported(self):
        """
        With a client certificate the handshake succeeds, and each side's HandshakeCompleted names
        the subject of the certificate its peer presented.
        """
        f = fixtures()
        client = client_trusting(
            f.ca_pem, client_certificate=f.client.chain_pem, client_private_key=f.client.key_pem
        )
        pair = MemoryPair(client, self.requiring_server())
        settle(pair, 1.0)
        self.assertEqual(terminations(pair.client_events + pair.server_events), [])
        server_done = of_type(pair.server_events, HandshakeCompleted)
        client_done = of_type(pair.client_events, HandshakeCompleted)
        self.assertEqual(len(server_done), 1)
        self.assertIn("client.example", server_done[0].peer_certificate_subject or "")
        self.assertIn("localhost", client_done[0].peer_certificate_subject or "")

    def test_client_certificate_from_an_untrusted_ca_fails(self):
        """A client certificate signed by a CA the server does not trust is refused."""
        other = devcerts.make_ca("rogue CA")
        leaf = devcerts.make_certificate(other, ("client.example",), ())
        client = client_trusting(
            fixtures().ca_pem,
            client_certificate=devcerts.certificate_pem(leaf.certificate, other.certificate),
            client_private_key=devcerts.key_pem(leaf.key),
        )
        pair = MemoryPair(client, self.requiring_server())
        self.assertHandshakeFails(pair)
