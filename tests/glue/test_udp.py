"""
Tests for kwik_twisted.glue.udp: batched UDP reads (GRO) and writes (GSO) on loopback sockets.

Each test listens with :func:`listenBatchingUDP` on 127.0.0.1 (or ::1) on the running reactor and
checks what a receiving protocol got, in order, plus the ports' counters, which tell whether the
kernel really coalesced (GRO) or segmented (GSO).  Tests needing a kernel feature skip without it.
"""

from __future__ import annotations

import socket

from twisted.internet import defer, error, reactor, task
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from kwik_twisted.glue.interfaces import IReadBatchObserver
from kwik_twisted.glue.udp import (
    BatchingPort,
    gro_supported,
    gso_supported,
    listenBatchingUDP,
    send_batch,
)

SO_NO_CHECK = 11  # Linux: no UDP checksums on this socket (GSO refuses to send with EINVAL)
BUFFER = 4 * 1024 * 1024


def ipv6_available() -> bool:
    """Whether ::1 can be bound."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def datagrams(sizes) -> list[bytes]:
    """Distinct datagrams of the given sizes (each byte is its index, modulo 256)."""
    return [bytes([i % 256]) * size for i, size in enumerate(sizes)]


@implementer(IReadBatchObserver)
class Collector(DatagramProtocol):
    """Records datagrams, batch ends and refusals; fires a Deferred when enough arrived."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.senders: list[tuple] = []
        self.log: list[str] = []
        self.refused = defer.Deferred()
        self._wait: tuple[int, defer.Deferred] | None = None

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        self.received.append(data)
        self.senders.append(addr)
        self.log.append("datagram")
        if self._wait is not None and len(self.received) >= self._wait[0]:
            d, self._wait = self._wait[1], None
            d.callback(self.received)

    def readBatchEnded(self) -> None:
        self.log.append("end")

    def stopProtocol(self) -> None:
        self.log.append("stopped")

    def connectionRefused(self) -> None:
        self.log.append("refused")
        if not self.refused.called:
            self.refused.callback(None)

    def waitFor(self, count: int) -> defer.Deferred:
        """A Deferred firing with the received list once ``count`` datagrams arrived."""
        if len(self.received) >= count:
            return defer.succeed(self.received)
        d = defer.Deferred()
        self._wait = (count, d)
        return d


class RecordingPort(BatchingPort):
    """A BatchingPort noting each ``doRead`` in its protocol's log."""

    def doRead(self) -> None:
        self.protocol.log.append("doRead")
        super().doRead()


class UDPTestCase(TestCase):
    """Listening helpers with cleanup."""

    timeout = 10
    host = "127.0.0.1"

    def listen(self, protocol=None, **kw) -> BatchingPort:
        port = listenBatchingUDP(reactor, 0, protocol or Collector(), interface=self.host, **kw)
        port.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
        self.addCleanup(port.stopListening)
        return port

    def address(self, port) -> tuple:
        host = port.getHost()
        return (host.host, host.port)

    def requireGSO(self) -> None:
        if not (gso_supported() and gro_supported()):
            self.skipTest("this kernel lacks UDP GSO or GRO")

    @defer.inlineCallbacks
    def roundTrip(self, sizes, *, gso=True, gro=True):
        """Send datagrams of ``sizes`` in one batch; the receiver, sender and what arrived."""
        receiver = self.listen(gro=gro)
        sender = self.listen(gso=gso)
        sent = datagrams(sizes)
        self.assertEqual(sender.sendBatch(sent, self.address(receiver)), len(sent))
        got = yield receiver.protocol.waitFor(len(sent))
        self.assertEqual(got, sent)
        return receiver, sender


class GROTests(UDPTestCase):
    """Coalesced reads are split back into the datagrams that were sent."""

    @defer.inlineCallbacks
    def test_gro_splits_a_gso_batch_back_into_the_datagrams_in_order(self) -> None:
        """20 equal datagrams and a short last one, one GSO send: the same 21, in order."""
        self.requireGSO()
        receiver, sender = yield self.roundTrip([1350] * 20 + [300])
        self.assertEqual((sender.stats.sendmsgCalls, sender.stats.gsoSegments), (1, 21))
        self.assertTrue(receiver.groEnabled)
        self.assertEqual(receiver.stats.coalescedReads, 1)
        self.assertEqual(receiver.stats.datagramsRead, 21)

    @defer.inlineCallbacks
    def test_senders_address_is_reported_for_every_segment(self) -> None:
        """Every datagram split from a coalesced read carries the sender's (host, port)."""
        self.requireGSO()
        receiver, sender = yield self.roundTrip([1000] * 5)
        self.assertEqual(receiver.protocol.senders, [self.address(sender)] * 5)

    @defer.inlineCallbacks
    def test_read_batch_ended_follows_the_datagrams_of_each_read(self) -> None:
        """Each doRead that delivered datagrams ends with exactly one readBatchEnded call."""
        collector = Collector()
        port = RecordingPort(0, collector, self.host, 65535, reactor)
        port.startListening()
        self.addCleanup(port.stopListening)
        sender = self.listen()
        target = self.address(port)
        for n in (3, 1, 7):
            count = len(collector.received) + n
            sender.sendBatch(datagrams([200] * n), target)
            yield collector.waitFor(count)
        yield task.deferLater(reactor, 0, lambda: None)  # let the last doRead finish
        reads = "|".join(collector.log).split("doRead")[1:]
        for read in reads:
            events = [e for e in read.split("|") if e]
            if events:
                self.assertEqual(events[-1], "end")
                self.assertEqual(events.count("end"), 1)
                self.assertGreater(len(events), 1)
        self.assertEqual(collector.log.count("end"), port.stats.readBatches)
        self.assertEqual(collector.log.count("datagram"), 11)
        self.assertGreater(port.stats.readBatches, 0)

    @defer.inlineCallbacks
    def test_plain_reads_without_gro(self) -> None:
        """gro=False: each datagram is read on its own; none coalesced; all delivered."""
        self.requireGSO()
        receiver, _ = yield self.roundTrip([1350] * 10, gro=False)
        self.assertFalse(receiver.groEnabled)
        self.assertEqual(receiver.stats.coalescedReads, 0)
        self.assertEqual(receiver.stats.datagramsRead, 10)


class GSOTests(UDPTestCase):
    """sendBatch segments equal runs with GSO, and falls back where it must."""

    @defer.inlineCallbacks
    def test_gso_and_plain_sending_deliver_the_same_datagrams(self) -> None:
        """The same batch sent with and without GSO arrives identical, in order."""
        self.requireGSO()
        sizes = [1350] * 30 + [17] + [700] * 3
        with_gso, sender = yield self.roundTrip(sizes)
        without, plain = yield self.roundTrip(sizes, gso=False, gro=False)
        self.assertEqual(with_gso.protocol.received, without.protocol.received)
        self.assertEqual(sender.stats.sendmsgCalls, 2)
        self.assertEqual(plain.stats.sendmsgCalls, 0)
        self.assertEqual(plain.stats.plainSends, len(sizes))

    @defer.inlineCallbacks
    def test_mixed_sizes_are_grouped_into_equal_runs(self) -> None:
        """Runs of equal sizes (with a shorter tail) go by GSO; a lone datagram goes plain."""
        self.requireGSO()
        sizes = [1000, 1000, 1000, 500, 1200, 1200, 1300, 10, 10]
        _, sender = yield self.roundTrip(sizes)
        stats = sender.stats
        self.assertEqual((stats.sendmsgCalls, stats.gsoSegments, stats.plainSends), (3, 8, 1))

    @defer.inlineCallbacks
    def test_large_batches_are_cut_to_the_segment_and_payload_limits(self) -> None:
        """100 datagrams of 1350 bytes: three sends (48 + 48 + 4, under 65507 bytes each)."""
        self.requireGSO()
        _, sender = yield self.roundTrip([1350] * 100)
        self.assertEqual((sender.stats.sendmsgCalls, sender.stats.gsoSegments), (3, 100))

    @defer.inlineCallbacks
    def test_forced_fallback_uses_one_send_per_datagram(self) -> None:
        """gso=False and gro=False: plain sends and reads only, everything delivered."""
        receiver, sender = yield self.roundTrip([1350] * 12 + [40], gso=False, gro=False)
        self.assertFalse(sender.gsoEnabled)
        self.assertEqual((sender.stats.sendmsgCalls, sender.stats.plainSends), (0, 13))
        self.assertEqual(receiver.stats.coalescedReads, 0)

    @defer.inlineCallbacks
    def test_refused_gso_is_disabled_and_the_batch_still_delivered(self) -> None:
        """Kernel refuses GSO (checksums off): resent unsegmented, GSO off for good."""
        self.requireGSO()
        receiver = self.listen()
        sender = self.listen()
        sender.getHandle().setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        first, second = datagrams([1000] * 6), datagrams([900] * 4)
        self.assertEqual(sender.sendBatch(first, self.address(receiver)), 6)
        self.assertFalse(sender.gsoEnabled)
        self.assertEqual(sender.sendBatch(second, self.address(receiver)), 4)
        got = yield receiver.protocol.waitFor(10)
        self.assertEqual(got, first + second)
        self.assertEqual((sender.stats.fallbacks, sender.stats.sendmsgCalls), (1, 0))
        self.assertEqual(sender.stats.plainSends, 10)

    @defer.inlineCallbacks
    def test_refused_large_segments_only_stop_gso_for_that_size_and_above(self) -> None:
        """EINVAL on segments over SAFE_SEGMENT (the MTU may be why): smaller ones still try."""
        self.requireGSO()
        receiver = self.listen()
        sender = self.listen()
        sender.getHandle().setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        target = self.address(receiver)
        sender.sendBatch(datagrams([1350] * 3), target)
        self.assertTrue(sender.gsoEnabled)
        sender.sendBatch(datagrams([1400] * 3), target)
        self.assertEqual(sender.stats.fallbacks, 1)  # 1400 >= 1350: not tried again
        sender.sendBatch(datagrams([500] * 3), target)
        self.assertEqual(sender.stats.fallbacks, 2)
        self.assertFalse(sender.gsoEnabled)
        got = yield receiver.protocol.waitFor(9)
        self.assertEqual([len(d) for d in got], [1350] * 3 + [1400] * 3 + [500] * 3)


class AddressTests(UDPTestCase):
    """Connected and unconnected ports, address checks, refusals."""

    @defer.inlineCallbacks
    def test_connected_port_sends_batches_without_an_address(self) -> None:
        """A connected port sends to its peer with addr None or the peer's address."""
        receiver = self.listen()
        sender = self.listen()
        sender.connect(*self.address(receiver))
        sent = datagrams([1200] * 5 + [20])
        self.assertEqual(sender.sendBatch(sent[:3]), 3)
        self.assertEqual(sender.sendBatch(sent[3:], self.address(receiver)), 3)
        got = yield receiver.protocol.waitFor(6)
        self.assertEqual(got, sent)

    def test_connected_port_refuses_another_address(self) -> None:
        """sendBatch to an address other than the connected one raises InvalidAddressError."""
        sender = self.listen()
        sender.connect("127.0.0.1", 9)
        self.assertRaises(error.InvalidAddressError, sender.sendBatch, [b"x"], ("127.0.0.1", 10))

    def test_unconnected_port_needs_an_ip_address(self) -> None:
        """Hostnames, a missing address and the other family's addresses are refused."""
        sender = self.listen()
        for addr in (("localhost", 9), None, ("::1", 9)):
            self.assertRaises(error.InvalidAddressError, sender.sendBatch, [b"x", b"y"], addr)

    @defer.inlineCallbacks
    def test_refused_destination_reaches_connection_refused_and_port_stays(self) -> None:
        """ICMP port unreachable on a connected port: connectionRefused, and the port lives on."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
            closed.bind((self.host, 0))
            dead = closed.getsockname()
        sender = self.listen()
        sender.connect(*dead)
        sender.sendBatch(datagrams([100] * 3))
        yield sender.protocol.refused
        yield task.deferLater(reactor, 0, lambda: None)
        self.assertNotIn("stopped", sender.protocol.log)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as revived:
            revived.bind(dead)
            revived.settimeout(5)
            self.assertEqual(sender.sendBatch([b"again"]), 1)
            self.assertEqual(revived.recv(100), b"again")
            revived.sendto(b"back", self.address(sender))
            got = yield sender.protocol.waitFor(1)
        self.assertEqual(got, [b"back"])

    @defer.inlineCallbacks
    def test_send_batch_works_on_a_plain_twisted_port(self) -> None:
        """send_batch falls back to write() on a port without sendBatch."""
        receiver = self.listen()
        plain = reactor.listenUDP(0, DatagramProtocol(), interface=self.host)
        self.addCleanup(plain.stopListening)
        sent = datagrams([300] * 4)
        self.assertEqual(send_batch(plain, sent, self.address(receiver)), 4)
        got = yield receiver.protocol.waitFor(4)
        self.assertEqual(got, sent)

    def test_reactor_without_file_descriptors_gets_its_own_port(self) -> None:
        """listenBatchingUDP on a reactor lacking IReactorFDSet calls its listenUDP."""
        calls = []

        class Other:
            def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
                calls.append((port, interface, maxPacketSize))
                return "port"

        self.assertEqual(listenBatchingUDP(Other(), 5, Collector(), "::1"), "port")
        self.assertEqual(calls, [(5, "::1", 65535)])


class IPv6Tests(GROTests):
    """The GRO tests again, over ::1."""

    host = "::1"

    def setUp(self) -> None:
        if not ipv6_available():
            self.skipTest("IPv6 loopback unavailable")

    @defer.inlineCallbacks
    def test_big_segments_and_a_short_tail_fit_one_send(self) -> None:
        """Path MTU discovery's sizes: four 16000-byte datagrams and a 1000-byte one make one
        GSO send (65000 bytes, within the UDP limit) and arrive whole, in order; one more big
        datagram would not fit and goes in a second send."""
        self.requireGSO()
        _, sender = yield self.roundTrip([16000] * 4 + [1000])
        self.assertEqual(sender.stats.sendmsgCalls, 1)
        _, sender = yield self.roundTrip([16000] * 5 + [1000])
        self.assertEqual(sender.stats.sendmsgCalls, 2)

    @defer.inlineCallbacks
    def test_gso_sends_over_ipv6(self) -> None:
        """A GSO batch over IPv6 (payload limit 65527) arrives whole, in order."""
        self.requireGSO()
        _, sender = yield self.roundTrip([1350] * 50 + [1])
        self.assertEqual(sender.stats.sendmsgCalls, 2)


class ClosedSocketTests(SynchronousTestCase):
    """Sending through a path socket that already stopped."""

    def test_writing_to_a_stopped_socket_drops_quietly(self) -> None:
        """A connection still flushing after its path's socket stopped (transport ``None``)
        loses the datagrams, as UDP would, instead of raising into the reactor."""
        from kwik_twisted.glue.ports import _write

        self.assertEqual(_write(None, None, [b"late"], ("127.0.0.1", 9)), [])
