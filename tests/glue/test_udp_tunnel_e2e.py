"""
UDP through ``twistd kwik`` with real processes on loopback: an unmodified ``twistd dns`` behind a
``twistd kwik --forward udp:`` exit, reached through a ``twistd kwik --listen udp:`` entrance by a
twisted.names resolver (``dig`` where installed too).  Process handling as in
:mod:`tests.glue.test_twistd_e2e`.
"""

from __future__ import annotations

import shutil
import socket

from twisted.internet import defer, error, reactor, utils
from twisted.internet.endpoints import TCP4ClientEndpoint, clientFromString
from twisted.names import client as names_client
from twisted.names import error as names_error

from kwik_twisted.endpoints import closeClientConnections
from tests.glue import processes
from tests.glue.test_twistd_e2e import STARTUP, ProcessTestCase

NAME = "tunnel.example"
ADDRESS = "10.9.8.7"


class UDPTunnelProcessTests(ProcessTestCase):
    """``twistd dns`` <- ``twistd kwik`` exit <- Kwik datagrams <- ``twistd kwik`` entrance."""

    @defer.inlineCallbacks
    def startTunnel(self):
        """Start the DNS server and both tunnel ends; return the entrance's UDP port once a
        query is answered through it."""
        hosts = self.directory / "hosts"
        hosts.write_text(f"{ADDRESS} {NAME}\n")
        dns_port = yield self.startServer(
            "twistd dns",
            lambda port: processes.twistd_argv(
                "dns", "--interface", "127.0.0.1", "--port", str(port),
                "--hosts-file", str(hosts),
            ),
            lambda port: TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=2),
            socket.SOCK_STREAM,  # twistd dns serves TCP on the same port: the readiness probe
        )
        kwik_port = yield self.startServer(
            "twistd kwik exit",
            lambda port: processes.twistd_argv(
                "kwik", "--listen", self.serverKwik(port),
                "--forward", f"udp:127.0.0.1:{dns_port}",
            ),
            lambda port: clientFromString(reactor, self.clientKwik(port) + ":timeout=2"),
            socket.SOCK_DGRAM,
        )
        self.addCleanup(closeClientConnections, reactor)  # the readiness probe's connection
        udp_port = processes.free_port(socket.SOCK_DGRAM)
        self.spawn("twistd kwik entrance", processes.twistd_argv(
            "kwik", "--listen", f"udp:{udp_port}:interface=127.0.0.1",
            "--forward", self.clientKwik(kwik_port),
        ))
        deadline = reactor.seconds() + STARTUP
        while True:
            try:
                answer = yield self.lookup(udp_port, timeout=1)
                return udp_port, answer
            except (names_error.DNSQueryTimeoutError, error.TimeoutError, defer.TimeoutError):
                if reactor.seconds() > deadline:
                    self.fail("no answer through the UDP tunnel")

    def lookup(self, port: int, timeout: int = 5) -> defer.Deferred:
        resolver = names_client.Resolver(servers=[("127.0.0.1", port)])
        d = resolver.lookupAddress(NAME, timeout=[timeout])
        return d.addCallback(lambda result: [a.payload.dottedQuad() for a in result[0]])

    @defer.inlineCallbacks
    def queries(self):
        udp_port, first = yield self.startTunnel()
        self.assertEqual(first, [ADDRESS])
        for _ in range(5):
            answer = yield self.lookup(udp_port)
            self.assertEqual(answer, [ADDRESS])
        if shutil.which("dig") is None:
            return  # dig is not installed here: the twisted.names queries are the check
        out = yield utils.getProcessOutput(
            "dig", ["+short", "+tries=3", "+time=3", "-p", str(udp_port), "@127.0.0.1", NAME],
            errortoo=True,
        )
        self.assertEqual(out.decode().split(), [ADDRESS])

    def test_dns_queries_through_twistd_kwik_udp_tunnel(self):
        """A twisted.names resolver (and dig, where installed) asks an unmodified ``twistd dns``
        through the two ``twistd kwik`` ends of a UDP tunnel and gets its A record each time."""
        return self.withOutputs(self.queries())
