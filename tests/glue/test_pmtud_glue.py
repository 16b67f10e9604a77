"""
Path MTU discovery over real sockets (loopback): the path's datagram size rises to
``max_udp_payload``; the kernel's EMSGSIZE bounds the search; sockets never fragment; and the
``pmtud=`` / ``maxUdpPayload=`` endpoint arguments.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from kwik_twisted.core.paths.pmtud import MIN_STEP, MtuState
from kwik_twisted.endpoints import KwikClientEndpoint, KwikServerEndpoint, closeClientConnections
from kwik_twisted.glue import udp
from kwik_twisted.glue.registry import LIVE
from kwik_twisted.testing.pair import client_config, server_config
from tests.glue.test_multipath_glue import LoopbackTestCase, payload
from tests.glue.test_parsers import Assertions
from tests.polling import until

MiB = 1 << 20


class LoopbackPmtudTests(LoopbackTestCase):
    """A client uploads to a server on 127.0.0.1, both with path MTU discovery on."""

    timeout = 60

    @defer.inlineCallbacks
    def upload(self, size: int, **config: Any) -> Any:
        """Listen, connect, send ``size`` bytes byte-exact; return (client core, server core)
        once both paths' searches completed."""
        before = set(LIVE.connections())
        self.sinks = []

        def build():
            from tests.glue.test_multipath_glue import Sink

            sink = Sink()
            self.sinks.append(sink)
            return sink

        endpoint = KwikServerEndpoint(
            reactor, 0, config=server_config(pmtud=True, **config), interface="127.0.0.1"
        )
        port = yield endpoint.listen(Factory.forProtocol(build))
        self.addCleanup(port.stopListening)
        self.addCleanup(closeClientConnections, reactor)
        client = KwikClientEndpoint(
            reactor, "127.0.0.1", port.getHost().port,
            config=client_config(pmtud=True, **config), reuse=False,
        )
        data = payload(size)
        yield self.send(client, data)
        mine = [c for c in set(LIVE.connections()) - before]
        cores = {c.core.is_client: c for c in mine}
        self.assertEqual(set(cores), {True, False})

        def complete() -> bool:
            return all(
                c.core.paths[0].mtu.state is MtuState.SEARCH_COMPLETE for c in cores.values()
            )

        yield until(complete, 20)
        return cores[True], cores[False]

    @defer.inlineCallbacks
    def test_loopback_rises_to_max_udp_payload(self) -> Any:
        """Over loopback (MTU 65536) both sides' paths reach the default max_udp_payload
        (16384) within the search's last step; pathMetrics() reports the size."""
        client, server = yield self.upload(8 * MiB)
        for conn in (client, server):
            size = conn.core.paths[0].max_datagram_size
            self.assertGreater(size, 16384 - 2 * MIN_STEP)
            self.assertLessEqual(size, 16384)
            self.assertEqual(conn.pathMetrics()[0].datagram_size, size)
        self.assertGreater(client.core.stats["pmtud_probes_acked"], 5)

    @defer.inlineCallbacks
    def test_emsgsize_bounds_the_search(self) -> Any:
        """With max_udp_payload=65527 over IPv4 (at most 65507 bytes of UDP payload) the kernel
        refuses the biggest probes with EMSGSIZE: the glue reports it and the search settles
        just below 65507, no bigger datagram ever leaving."""
        if not sys.platform.startswith("linux"):
            raise SkipTest("EMSGSIZE reporting is checked on Linux")
        client, _ = yield self.upload(8 * MiB, max_udp_payload=65527)
        size = client.core.paths[0].max_datagram_size
        self.assertLessEqual(size, 65507)
        self.assertGreater(size, 65507 - 2 * MIN_STEP)
        self.assertGreaterEqual(client.core.stats["pmtud_too_big"], 1)


class SocketOptionTests(SynchronousTestCase):
    """The sockets forbid fragmentation."""

    def test_df_is_set(self) -> None:
        """forbid_fragmentation sets IP_PMTUDISC_DO on an IPv4 socket (Linux), and a datagram
        bigger than the UDP limit is then refused with EMSGSIZE and recorded by the port."""
        if not sys.platform.startswith("linux"):
            raise SkipTest("Linux socket options")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            self.assertTrue(udp.forbid_fragmentation(sock))
            self.assertEqual(
                sock.getsockopt(socket.IPPROTO_IP, udp.IP_MTU_DISCOVER), udp.IP_PMTUDISC_DO
            )

    def test_take_too_big(self) -> None:
        """take_too_big hands over the sizes a port recorded once, and [] for other
        transports."""
        port = udp.BatchingPort(0, Protocol())
        port.tooBig.extend([9000, 8000])
        self.assertEqual(udp.take_too_big(port), [9000, 8000])
        self.assertEqual(udp.take_too_big(port), [])
        self.assertEqual(udp.take_too_big(object()), [])


class ArgumentTests(Assertions):
    """``pmtud=yes|no`` and ``maxUdpPayload=N`` on both endpoint kinds."""

    def both(self, **kwargs: str) -> list:
        return [
            self.server("1", **kwargs)["config"],
            self.client(host="h", port="1", **kwargs)["config"],
        ]

    def test_pmtud(self) -> None:
        """``pmtud`` is a boolean, on by default."""
        for config in self.both():
            self.assertTrue(config.pmtud)
        for word, value in (("no", False), ("yes", True), ("off", False)):
            for config in self.both(pmtud=word):
                self.assertIs(config.pmtud, value)
        self.assertRefused("pmtud", self.server, "1", pmtud="maybe")
        self.assertRefused("pmtud", self.client, host="h", port="1", pmtud="maybe")

    def test_max_udp_payload(self) -> None:
        """``maxUdpPayload`` is 1200..65527 bytes, 16384 by default; a ``maxDatagramSize``
        above the default raises it along."""
        for config in self.both():
            self.assertEqual(config.max_udp_payload, 16384)
        for config in self.both(maxUdpPayload="9000"):
            self.assertEqual(config.max_udp_payload, 9000)
        for config in self.both(maxDatagramSize="20000"):
            self.assertEqual(config.max_udp_payload, 20000)
        for bad in ("1199", "65528", "big"):
            self.assertRefused("maxUdpPayload", self.server, "1", maxUdpPayload=bad)
            self.assertRefused("maxUdpPayload", self.client, host="h", port="1",
                               maxUdpPayload=bad)
