"""
Version Negotiation over a real socket: a QUIC v1 client's first datagram (20-byte CIDs, another
version) sent to a Kwik server gets an RFC 8999 Version Negotiation listing Kwik v3, with its own
CIDs echoed, whatever their length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.trial.unittest import TestCase

from kwik_twisted.tools import devcerts
from kwik_twisted.wire import VERSION


class Probe(DatagramProtocol):
    """Sends one datagram; ``answer`` fires with the first datagram that comes back."""

    def __init__(self) -> None:
        self.answer: defer.Deferred[bytes] = defer.Deferred()

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if not self.answer.called:
            self.answer.callback(data)


class VersionNegotiationTests(TestCase):
    """What a client of another QUIC version hears from a Kwik server."""

    timeout = 20

    @defer.inlineCallbacks
    def test_a_quic_v1_initial_gets_kwik_v3_listed(self) -> Any:
        """A 1200-byte long header of version 1 with a 20-byte DCID and a 5-byte SCID gets back
        version 0, the two CIDs swapped, and 0x4b574b03 as the only supported version."""
        certs = devcerts.write_pem_files(Path(self.mktemp()))
        description = f"kwik:0:interface=127.0.0.1:privateKey={certs.key}:certKey={certs.chain}"
        endpoint = serverFromString(reactor, description)
        listening = yield endpoint.listen(Factory.forProtocol(Protocol))
        self.addCleanup(listening.stopListening)
        port = listening.getHost().port
        probe = Probe()
        udp = reactor.listenUDP(0, probe, interface="127.0.0.1")
        self.addCleanup(udp.stopListening)
        dcid, scid = b"d" * 20, b"s" * 5
        initial = b"\xc0" + (1).to_bytes(4, "big") + b"\x14" + dcid + b"\x05" + scid
        udp.write(initial + bytes(1200), ("127.0.0.1", port))
        answer = yield probe.answer.addTimeout(10, reactor)
        self.assertTrue(answer[0] & 0x80)
        self.assertEqual(answer[1:5], bytes(4))
        self.assertEqual(answer[5], 5)
        self.assertEqual(answer[6:11], scid)
        self.assertEqual(answer[11], 20)
        self.assertEqual(answer[12:32], dcid)
        self.assertEqual(answer[32:], VERSION.to_bytes(4, "big"))
