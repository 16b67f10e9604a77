"""
TLS 1.3 session resumption in the sans-I/O handshake (``TlsSession(session=...)``).

Sessions are wired back to back in memory, as in ``test_handshake``; the server contexts are shared
across handshakes as a server endpoint shares one (its ticket key lives in it).
"""

from __future__ import annotations

import gc

from cryptography.hazmat.primitives.serialization import Encoding
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.crypto.handshake import TlsSession, make_context

from ...certs import fixtures
from .test_handshake import CONTEXT, client_config, server_config


class Endpoints:
    """A client and a server context, and handshakes between them recording the server's bytes."""

    def __init__(self, server_cfg=None, client_cfg=None) -> None:
        self.server_cfg = server_cfg or server_config()
        self.client_cfg = client_cfg or client_config()
        self.server_ctx = make_context(self.server_cfg, is_client=False)
        self.client_ctx = make_context(self.client_cfg, is_client=True)

    def handshake(self, session=None, server_ctx=None):
        """
        Run one handshake offering ``session``; return (client, server, bytes of the server's
        first flight: ServerHello up to its Finished).
        """
        client = TlsSession(self.client_cfg, is_client=True, context=self.client_ctx,
                            session=session)
        server = TlsSession(self.server_cfg, is_client=False,
                            context=server_ctx or self.server_ctx)
        flight = server.receive(client.start())
        tickets = server.receive(client.receive(flight))
        client.receive(tickets)
        return client, server, flight


class ResumptionTests(SynchronousTestCase):
    """A ticket from one handshake resumes the next, with the server that issued it."""

    def test_ticket_resumes_without_certificate(self) -> None:
        """
        The resumed handshake: both sides say so, the client's verify callback never ran, and
        the server's flight is shorter than the full one by more than its certificate (no
        Certificate message; both carry the same key share);
        the keys still work and the peer's identity is still known.
        """
        ends = Endpoints()
        first, _, full_flight = ends.handshake()
        self.assertFalse(first.resumed)
        self.assertGreater(first.verifications, 0)
        self.assertEqual(first.tickets, 1)
        client, server, flight = ends.handshake(first.session)
        self.assertTrue(client.complete and server.complete)
        self.assertTrue(client.resumed)
        self.assertTrue(server.resumed)
        self.assertEqual(client.verifications, 0)
        leaf = first.peer_certificate.public_bytes(Encoding.DER)
        self.assertGreaterEqual(len(full_flight) - len(flight), len(leaf))
        self.assertEqual(client.peer_certificate, first.peer_certificate)
        c_send, c_recv = client.application_protections(CONTEXT)
        s_send, s_recv = server.application_protections(CONTEXT)
        self.assertEqual((c_send.secret, c_recv.secret), (s_recv.secret, s_send.secret))

    def test_resumed_handshake_issues_a_new_ticket(self) -> None:
        """Each resumed connection leaves a fresh ticket, which resumes the one after."""
        ends = Endpoints()
        session = ends.handshake()[0].session
        for _ in range(3):
            client, _, _ = ends.handshake(session)
            self.assertTrue(client.resumed)
            session = client.session

    def test_server_with_another_ticket_key_does_a_full_handshake(self) -> None:
        """A new server context (a restarted server) refuses the ticket: a full handshake."""
        ends = Endpoints()
        first, _, _ = ends.handshake()
        restarted = make_context(ends.server_cfg, is_client=False)
        client, server, _ = ends.handshake(first.session, server_ctx=restarted)
        self.assertTrue(client.complete and server.complete)
        self.assertFalse(client.resumed or server.resumed)
        self.assertGreater(client.verifications, 0)

    def test_no_session_before_completion(self) -> None:
        """``session`` is None until the handshake completed; ``resumed`` is False."""
        ends = Endpoints()
        client = TlsSession(ends.client_cfg, is_client=True, context=ends.client_ctx)
        client.start()
        self.assertIsNone(client.session)
        self.assertFalse(client.resumed)

    def test_client_certificate_session_resumes(self) -> None:
        """
        With a required client certificate the ticket resumes too, and the server still knows
        the client's certificate (it is kept in the ticket).
        """
        identity = fixtures().client
        ends = Endpoints(
            server_config(trust_roots=fixtures().ca_pem, require_client_certificate=True),
            client_config(client_certificate=identity.chain_pem,
                          client_private_key=identity.key_pem),
        )
        first, first_server, _ = ends.handshake()
        client, server, _ = ends.handshake(first.session)
        self.assertTrue(server.resumed)
        self.assertEqual(server.verifications, 0)
        self.assertEqual(server.peer_certificate, first_server.peer_certificate)

    def test_ticket_survives_its_connection(self) -> None:
        """
        A kept ticket still resumes once the connection it came from is freed (OpenSSL marks
        the session of a connection freed without close_notify unresumable unless told the
        shutdown was sent).
        """
        ends = Endpoints()
        first, server, _ = ends.handshake()
        ticket = first.session
        del first, server
        gc.collect()
        client, server, _ = ends.handshake(ticket)
        self.assertTrue(client.resumed and server.resumed)
