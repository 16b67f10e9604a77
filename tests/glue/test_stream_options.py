"""
Stream options through the Twisted API, over the fake UDP reactor (real Kwik connections in fake
time): ``openStream(protocol, priority=, qos=, ordered=, compress=, paths=)``, the client
endpoint's ``priority``/``qos``, what the accepting side reads from its transport
(:class:`~kwik_twisted.interfaces.IKwikStreamTransport`), the setters, and ``progress()``.
"""

from __future__ import annotations

from twisted.internet import error
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.errors import ConfigurationError, KwikError
from kwik_twisted.streams import Priority, QoSPolicy, StreamProgress

from .fakes import FakeKwik, FakeStreamConnection, PieceRecorder, Recorder

POLICY = QoSPolicy(min_bandwidth=2_000_000, max_latency=0.05, max_jitter=0.01,
                   loss_threshold=0.01)
DATA = bytes(range(256)) * 400  # 100 KiB: many packets


class Harness(SynchronousTestCase):
    """A fake network with one client stream up; helpers to open more."""

    serverProtocol = Recorder

    def setUp(self) -> None:
        self.kwik = FakeKwik(serverProtocol=self.serverProtocol)
        self.first = self.kwik.connect(Recorder)[0]
        self.conn = self.first.transport.kwikConnection

    def open(self, protocol=None, payload: bytes = b"hello", **options):
        """Open a stream with ``options``, write ``payload``; return (client transport, the
        server's protocol for it)."""
        before = len(self.kwik.serverProtocols)
        transport = self.conn.openStream(protocol or Recorder(), **options)
        transport.write(payload)
        self.kwik.pump()
        self.assertEqual(len(self.kwik.serverProtocols), before + 1)
        return transport, self.kwik.serverProtocols[-1]


class OpenStreamTests(Harness):
    """What ``openStream`` asks for, the accepting side reads from its transport."""

    def test_each_priority_reaches_the_accepting_side(self) -> None:
        """A stream opened at each priority is read at that priority on both transports."""
        for priority in Priority:
            transport, server = self.open(priority=priority)
            self.assertIs(transport.priority, priority)
            self.assertIs(server.transport.priority, priority)

    def test_a_plain_int_priority_is_taken(self) -> None:
        """0, 1 and 2 are accepted too, and read back as Priority members."""
        transport, server = self.open(priority=2)
        self.assertIs(server.transport.priority, Priority.CRITICAL)

    def test_the_qos_policy_reaches_the_accepting_side(self) -> None:
        """The opener's QoSPolicy arrives with the stream and is read back equal."""
        transport, server = self.open(qos=POLICY)
        self.assertEqual(transport.qos, POLICY)
        self.assertEqual(server.transport.qos, POLICY)

    def test_no_policy_is_none_on_both_sides(self) -> None:
        """A stream opened without a policy has ``qos`` None on both sides, priority NORMAL."""
        transport, server = self.open()
        self.assertIsNone(transport.qos)
        self.assertIsNone(server.transport.qos)
        self.assertIs(server.transport.priority, Priority.NORMAL)

    def test_stream_ids_match(self) -> None:
        """Both transports of a stream report the same ``streamId``."""
        transport, server = self.open()
        self.assertEqual(transport.streamId, server.transport.streamId)

    def test_bad_options_are_refused_before_a_stream_opens(self) -> None:
        """A bad priority (ConfigurationError), a qos that is not a QoSPolicy or an unordered
        stream for a plain protocol (TypeError), or an unknown path (ConfigurationError):
        nothing is opened and the protocol is not connected."""
        live = set(self.conn.liveStreams)
        for options, exception in (({"priority": 3}, ConfigurationError),
                                   ({"priority": "high"}, ConfigurationError),
                                   ({"qos": {"max_latency": 1}}, TypeError),
                                   ({"ordered": False}, TypeError),
                                   ({"paths": [7]}, ConfigurationError),
                                   ({"paths": []}, ConfigurationError)):
            protocol = Recorder()
            self.assertRaises(exception, self.conn.openStream, protocol, **options)
            self.assertIsNone(protocol.transport)
        self.assertEqual(self.conn.liveStreams, live)

    def test_a_closed_connection_opens_no_stream(self) -> None:
        """After the connection closed, openStream raises a KwikError and connects nothing."""
        self.conn.close(0, "done")
        self.kwik.pump(1.0)
        protocol = Recorder()
        self.assertRaises(KwikError, self.conn.openStream, protocol)
        self.assertIsNone(protocol.transport)

    def test_unordered_stream_for_a_message_protocol(self) -> None:
        """``ordered=False`` with an IKwikMessageProtocol opens a stream whose transport says
        ``ordered`` False; a plain server reassembles it (its transport says True)."""
        transport, server = self.open(PieceRecorder(), ordered=False)
        self.assertFalse(transport.ordered)
        self.assertTrue(server.transport.ordered)
        self.assertTrue(self.first.transport.ordered)

    def test_compress_and_paths_are_taken(self) -> None:
        """``compress=True`` and ``paths=[0]`` open a working stream pinned to path 0."""
        transport, server = self.open(payload=DATA, compress=True, paths=[0])
        self.assertEqual(server.received, DATA)
        self.assertEqual(self.conn.core.stream(transport.streamId).paths, (0,))


class SetterTests(Harness):
    """setPriority, setQoS and setPaths change the stream from then on, on either side."""

    def test_the_accepting_side_changes_its_own_priority_and_policy(self) -> None:
        """The server's setPriority/setQoS change what its transport reports; the opener's
        request stays what the opener reports."""
        transport, server = self.open(priority=Priority.HIGH, qos=POLICY)
        server.transport.setPriority(Priority.CRITICAL)
        server.transport.setQoS(QoSPolicy(max_latency=0.2))
        self.assertIs(server.transport.priority, Priority.CRITICAL)
        self.assertEqual(server.transport.qos, QoSPolicy(max_latency=0.2))
        self.assertIs(transport.priority, Priority.HIGH)
        self.assertEqual(transport.qos, POLICY)

    def test_the_opener_changes_its_stream(self) -> None:
        """The opener's setters change its transport's values; ``setQoS(None)`` withdraws."""
        transport, _ = self.open(qos=POLICY)
        transport.setPriority(1)
        self.assertIs(transport.priority, Priority.HIGH)
        transport.setQoS(None)
        self.assertIsNone(transport.qos)

    def test_bad_setter_values_are_refused(self) -> None:
        """A bad priority is a ConfigurationError, a qos of the wrong type a TypeError, an
        unknown path a ConfigurationError; the stream keeps its values."""
        transport, _ = self.open(priority=Priority.HIGH)
        self.assertRaises(ConfigurationError, transport.setPriority, 9)
        self.assertRaises(TypeError, transport.setQoS, 0.05)
        self.assertRaises(ConfigurationError, transport.setPaths, [5])
        self.assertIs(transport.priority, Priority.HIGH)

    def test_set_paths_pins_and_unpins(self) -> None:
        """setPaths([0]) pins the stream to path 0, setPaths(None) lets it use any path."""
        transport, _ = self.open()
        transport.setPaths([0])
        self.assertEqual(self.conn.core.stream(transport.streamId).paths, (0,))
        transport.setPaths(None)
        self.assertIsNone(self.conn.core.stream(transport.streamId).paths)


class ProgressTests(Harness):
    """progress() adds up, and survives the stream."""

    def test_a_finished_transfer_adds_up(self) -> None:
        """After a transfer both sides finished, the sender's acked == sent == written, and the
        receiver's delivered == received == the bytes; both report it after the stream is
        gone."""
        client = Recorder()
        transport = self.conn.openStream(client)
        self.assertEqual(transport.progress(), StreamProgress(0, 0, 0, 0, 0))
        transport.write(DATA)
        transport.loseConnection()
        self.kwik.pump(1.0)
        server = self.kwik.serverProtocols[-1]
        self.assertEqual(server.received, DATA)
        self.assertTrue(client.lost[0].check(error.ConnectionDone))
        mine = transport.progress()
        self.assertIsInstance(mine, StreamProgress)
        self.assertEqual((mine.written, mine.sent, mine.acked), (len(DATA),) * 3)
        theirs = server.transport.progress()
        self.assertEqual((theirs.received, theirs.delivered), (len(DATA),) * 2)
        self.assertEqual(theirs.written, 0)

    def test_values_stay_readable_after_the_stream_closed(self) -> None:
        """Once the stream is gone its transport still reports its priority and policy, and
        the setters do nothing (no error)."""
        transport, server = self.open(priority=Priority.CRITICAL, qos=POLICY)
        transport.loseConnection()
        self.kwik.pump(1.0)
        self.assertTrue(transport.disconnected)
        transport.setPriority(Priority.NORMAL)
        transport.setQoS(None)
        transport.setPaths(None)
        self.assertIs(transport.priority, Priority.CRITICAL)
        self.assertEqual(transport.qos, POLICY)


class EndpointOptionTests(SynchronousTestCase):
    """A client endpoint's ``priority`` and ``qos`` go with every stream its connect() opens."""

    def test_endpoint_stream_options(self) -> None:
        """Each connect() of an endpoint given priority and qos opens its stream with them; the
        server reads them from its transports."""
        kwik = FakeKwik(serverProtocol=Recorder, priority=Priority.HIGH, qos=POLICY)
        for _ in range(2):
            client = kwik.connect(Recorder)[0]
            client.transport.write(b"x")
            kwik.pump()
            server = kwik.serverProtocols[-1]
            self.assertIs(client.transport.priority, Priority.HIGH)
            self.assertIs(server.transport.priority, Priority.HIGH)
            self.assertEqual(server.transport.qos, POLICY)

    def test_bad_endpoint_options_are_refused(self) -> None:
        """A bad priority or qos is refused when the endpoint is made."""
        self.assertRaises(ConfigurationError, FakeKwik, priority=7)
        self.assertRaises(TypeError, FakeKwik, qos="50ms")


class FakeConnectionTests(SynchronousTestCase):
    """The transport's Kwik side against a recording IStreamConnection."""

    def test_setters_pass_wire_values_to_the_connection(self) -> None:
        """setPriority, setQoS and setPaths hand the connection integers, the wire policy and a
        tuple of path IDs."""
        from kwik_twisted.glue.transport import KwikStreamTransport

        conn = FakeStreamConnection()
        transport = KwikStreamTransport(conn, 4, None, None, Recorder())
        transport.setPriority(Priority.HIGH)
        transport.setQoS(POLICY)
        transport.setPaths([1, 0])
        updates = [args for name, args in conn.calls if name == "updateStream"]
        self.assertEqual(updates, [(4, {"priority": 1}), (4, {"qos": POLICY.to_wire()}),
                                   (4, {"paths": (1, 0)})])
        self.assertEqual(transport.qos, POLICY)


class PinnedRedundancyTests(SynchronousTestCase):
    """The redundant scheduler and pinned streams (found by review: each pinned stream went
    twice over its own path)."""

    def test_pinned_streams_are_not_duplicated_onto_their_own_path(self) -> None:
        """Two critical streams pinned to paths 1 and 2, with ``scheduler=redundant``: each
        path carries its stream's 300 kB once (within 10% of overhead), not twice."""
        from kwik_twisted.testing.pair import client_config

        kwik = FakeKwik(serverProtocol=Recorder, paths=["127.0.0.2", "127.0.0.3"],
                        config=client_config(scheduler="redundant"))
        (proto,) = kwik.connect(Protocol)
        conn = proto.transport.kwikConnection
        kwik.pump(1)
        before = {pid: path.bytes_sent for pid, path in conn.core.paths.items()}
        size = 300_000
        for pin in ([1], [2]):
            conn.openStream(Protocol(), priority=Priority.CRITICAL, paths=pin).write(b"x" * size)
        kwik.pump(20)
        for pid in (1, 2):
            sent = conn.core.paths[pid].bytes_sent - before[pid]
            self.assertGreater(sent, size)
            self.assertLess(sent, size * 1.1)
