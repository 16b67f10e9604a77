"""
TLS 1.3 session resumption through the endpoints, over real loopback UDP
(:mod:`kwik_twisted.glue.tickets`, protocol.rst "Resumption").

A client endpoint keeps the server's session ticket and its next connection to the same server
resumes: both TLS sessions report it, and the client verified no certificate.  A server whose
ticket key changed (a new listening port, so a new TLS context) does a full handshake instead;
``resumption=False`` never offers a ticket.
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.endpoints import KwikServerEndpoint
from kwik_twisted.glue.client import KwikClientProtocol
from kwik_twisted.glue.tickets import MAX_LIFETIME, MAX_TICKETS, TicketStore
from kwik_twisted.testing.pair import client_config

from .fakes import Collect
from .test_endpoints import CountingFactory, EndpointTestCase


def clientTls(proto):
    """The client TLS session under a connected client protocol."""
    return proto.transport.kwikConnection.core.handshake.tls


def serverTls(factory, index: int):
    """The server TLS session under the ``index``-th stream the server factory built."""
    server, _ = factory.built[index]
    return server.transport.kwikConnection.core.handshake.tls


class ResumptionTests(EndpointTestCase):
    """A client endpoint resumes its later connections with a session ticket."""

    @defer.inlineCallbacks
    def connectOnce(self, endpoint):
        """Connect a new stream (on a new connection: reuse=False), round-trip, return it."""
        proto = yield endpoint.connect(Factory.forProtocol(Collect))
        yield self.roundTrip(proto)
        return proto

    @defer.inlineCallbacks
    def test_second_connection_resumes_without_verifying_the_certificate(self) -> None:
        """
        The first connection is a full handshake that verified the chain and left a ticket in
        the endpoint's store; the second resumes on both ends and verifies no certificate.
        """
        factory = CountingFactory()
        port = yield self.listen(factory)
        endpoint = self.client(port, reuse=False)
        first = yield self.connectOnce(endpoint)
        self.assertFalse(clientTls(first).resumed)
        self.assertFalse(serverTls(factory, 0).resumed)
        self.assertGreater(clientTls(first).verifications, 0)
        self.assertEqual(len(endpoint._tickets), 1)
        second = yield self.connectOnce(endpoint)
        self.assertNotEqual(first.transport.getHost(), second.transport.getHost())
        self.assertTrue(clientTls(second).resumed)
        self.assertTrue(serverTls(factory, 1).resumed)
        self.assertEqual(clientTls(second).verifications, 0)
        self.assertIsNotNone(clientTls(second).peer_certificate)  # the identity stays known

    @defer.inlineCallbacks
    def test_resumption_off_never_resumes(self) -> None:
        """With resumption=False the endpoint keeps no tickets: every handshake is full."""
        factory = CountingFactory()
        port = yield self.listen(factory)
        endpoint = self.client(port, reuse=False, resumption=False)
        yield self.connectOnce(endpoint)
        second = yield self.connectOnce(endpoint)
        self.assertIsNone(endpoint._tickets)
        self.assertFalse(clientTls(second).resumed)
        self.assertGreater(clientTls(second).verifications, 0)

    @defer.inlineCallbacks
    def test_other_endpoint_does_not_share_tickets(self) -> None:
        """Tickets are per endpoint: another endpoint to the same server does a full handshake."""
        factory = CountingFactory()
        port = yield self.listen(factory)
        yield self.connectOnce(self.client(port, reuse=False))
        other = yield self.connectOnce(self.client(port, reuse=False))
        self.assertFalse(clientTls(other).resumed)

    @defer.inlineCallbacks
    def test_expired_ticket_gives_a_full_handshake(self) -> None:
        """A ticket past the store's lifetime is dropped: the next handshake is full."""
        factory = CountingFactory()
        port = yield self.listen(factory)
        endpoint = self.client(port, reuse=False)
        endpoint._tickets = TicketStore(lifetime=1e-9)
        yield self.connectOnce(endpoint)
        second = yield self.connectOnce(endpoint)
        self.assertFalse(clientTls(second).resumed)
        self.assertFalse(serverTls(factory, 1).resumed)

    @defer.inlineCallbacks
    def test_server_with_a_new_ticket_key_completes_a_full_handshake(self) -> None:
        """
        The server restarts on the same port (a new TLS context, so a new ticket key): the
        offered ticket is refused and the connection completes with a full handshake.
        """
        factory = CountingFactory()
        port = yield self.listen(factory)
        number = port.getHost().port
        endpoint = self.client(port, reuse=False)
        yield self.connectOnce(endpoint)
        self.assertEqual(len(endpoint._tickets), 1)
        yield port.stopListening()
        restarted = CountingFactory()
        server = KwikServerEndpoint(reactor, number, config=self.kwik.serverConfig(),
                                    interface="127.0.0.1")
        yield self.kwik.listen(restarted, endpoint=server)
        second = yield self.connectOnce(endpoint)
        self.assertFalse(clientTls(second).resumed)
        self.assertFalse(serverTls(restarted, 0).resumed)
        self.assertGreater(clientTls(second).verifications, 0)



class TicketStoreTests(SynchronousTestCase):
    """The store: keyed by (server name, port), single-use, expiring, bounded."""

    def test_take_is_single_use(self) -> None:
        """A ticket is returned once; the next take finds nothing."""
        store = TicketStore()
        store.put(("localhost", 443), "ticket", now=0)
        self.assertEqual(store.take(("localhost", 443), now=1), "ticket")
        self.assertIsNone(store.take(("localhost", 443), now=1))

    def test_other_server_name_or_port_finds_nothing(self) -> None:
        """A ticket filed for one server name and port is not offered to another."""
        store = TicketStore()
        store.put(("localhost", 443), "ticket", now=0)
        self.assertIsNone(store.take(("example.com", 443), now=0))
        self.assertIsNone(store.take(("localhost", 444), now=0))
        self.assertEqual(store.take(("localhost", 443), now=0), "ticket")

    def test_expired_ticket_is_dropped(self) -> None:
        """At its lifetime the ticket is gone (and removed from the store)."""
        store = TicketStore(lifetime=10)
        store.put(("a", 1), "ticket", now=100)
        self.assertIsNone(store.take(("a", 1), now=110))
        self.assertEqual(len(store), 0)
        store.put(("a", 1), "fresh", now=100)
        self.assertEqual(store.take(("a", 1), now=109.9), "fresh")

    def test_lifetime_capped_at_a_day(self) -> None:
        """No ticket is kept beyond 24 hours, whatever lifetime is asked for."""
        store = TicketStore(lifetime=10 * 86400)
        self.assertEqual(store.lifetime, MAX_LIFETIME)
        store.put(("a", 1), "ticket", now=0)
        self.assertIsNone(store.take(("a", 1), now=MAX_LIFETIME))

    def test_bounded_evicts_least_recently_filed(self) -> None:
        """Past its capacity the store drops the server whose ticket was filed longest ago."""
        store = TicketStore(capacity=MAX_TICKETS)
        for port in range(MAX_TICKETS + 5):
            store.put(("a", port), port, now=0)
        self.assertEqual(len(store), MAX_TICKETS)
        self.assertNotIn(("a", 4), store)
        self.assertIn(("a", 5), store)
        store.put(("a", 5), "newer", now=0)  # refiling moves it to the young end
        store.put(("a", 999), "one more", now=0)
        self.assertIn(("a", 5), store)
        self.assertNotIn(("a", 6), store)

    def test_new_ticket_replaces_the_old(self) -> None:
        """One ticket per server: the latest filed wins."""
        store = TicketStore()
        store.put(("a", 1), "old", now=0)
        store.put(("a", 1), "new", now=0)
        self.assertEqual(store.take(("a", 1), now=0), "new")

    def test_bad_settings_refused(self) -> None:
        """A store with no room or no lifetime is a configuration mistake."""
        self.assertRaises(ValueError, TicketStore, capacity=0)
        self.assertRaises(ValueError, TicketStore, lifetime=0)

    def test_ticket_key_is_server_name_and_port(self) -> None:
        """
        A client port files tickets under (TLS server name, port), the address standing in
        when there is no name: two names on one address do not share tickets.
        """
        named = KwikClientProtocol(None, client_config(server_name="a.example"),
                                   ("127.0.0.1", 4433), entropy=None, owner=None)
        other = KwikClientProtocol(None, client_config(server_name="b.example"),
                                   ("127.0.0.1", 4433), entropy=None, owner=None)
        self.assertEqual(named.ticketKey(), ("a.example", 4433))
        self.assertNotEqual(named.ticketKey(), other.ticketKey())
