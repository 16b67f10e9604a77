"""
``useAdvertised``: a Twisted client opens a path to the address its server advertises (issue 11,
finding 10), on the real loopback interface.

The server listens on 127.0.0.1 and 127.0.0.3 (one port number) and advertises 127.0.0.3 with
ADD_ADDRESS; the client, connected to 127.0.0.1, must reach 127.0.0.3 from a socket of its own:
its main socket is connected to 127.0.0.1 and cannot send anywhere else.  Both sides are built
from endpoint strings, as a user would write them.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from kwik_twisted.endpoints import closeClientConnections
from kwik_twisted.events import PathValidated
from kwik_twisted.tools import devcerts
from tests.polling import until

from .processes import free_port
from .test_multipath_glue import Observer, Sink, payload

MiB = 1 << 20


class AdvertisedAddressTests(TestCase):
    """A server advertising its second address; a client with ``useAdvertised=yes``."""

    timeout = 30

    @defer.inlineCallbacks
    def listen(self) -> Any:
        """Listen on 127.0.0.1 and 127.0.0.3, advertising 127.0.0.3; return the port number."""
        certs = devcerts.write_pem_files(Path(self.mktemp()))
        self.certs = certs
        self.sinks: list[Sink] = []

        def build() -> Sink:
            self.sinks.append(Sink())
            return self.sinks[-1]

        port = free_port(socket.SOCK_DGRAM)
        description = (
            f"kwik:{port}:interface=127.0.0.1,127.0.0.3:advertise=127.0.0.3"
            f":privateKey={certs.key}:certKey={certs.chain}"
        )
        listening = yield serverFromString(reactor, description).listen(Factory.forProtocol(build))
        self.addCleanup(listening.stopListening)
        self.addCleanup(closeClientConnections, reactor)
        return port

    @defer.inlineCallbacks
    def test_client_opens_a_working_path_to_the_advertised_address(self) -> Any:
        """
        The client's path 1 goes from a socket of its own to 127.0.0.3, validates, and carries
        a share of a 2 MiB upload that arrives byte-exact; the server sees path 1 arrive on
        127.0.0.3 from that socket.
        """
        port = yield self.listen()
        client = clientFromString(
            reactor,
            f"kwik:host=127.0.0.1:port={port}:trustRoots={self.certs.ca}:hostname=localhost"
            ":reuse=no:useAdvertised=yes:scheduler=wrr",
        )
        proto = yield client.connect(Factory.forProtocol(Observer))
        validated = yield proto.waitFor(PathValidated, 1).addTimeout(10, reactor)
        self.assertEqual(validated.remote_addr, ("127.0.0.3", port))
        data = payload(2 * MiB)
        proto.transport.write(data)
        proto.transport.loseConnection()
        yield until(lambda: self.sinks, 10)
        count, digest, sink = yield self.sinks[0].done
        self.assertEqual((count, digest), (len(data), hashlib.sha256(data).digest()))
        paths = proto.transport.kwikConnection.core.paths
        self.assertEqual(sorted(paths), [0, 1])
        self.assertTrue(paths[1].usable)
        self.assertNotEqual(paths[1].local_addr, paths[0].local_addr)
        total = paths[0].packets_sent + paths[1].packets_sent
        for path in paths.values():
            self.assertGreater(path.packets_sent, total // 50)
        server_paths = sink.transport.kwikConnection.core.paths
        self.assertEqual(server_paths[1].local_addr, ("127.0.0.3", port))
        self.assertEqual(server_paths[1].remote_addr[1], paths[1].local_addr[1])
        self.assertGreater(server_paths[1].packets_received, total // 50)
