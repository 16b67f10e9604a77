"""
qlog files: the JSON-SEQ writer (kwik_twisted/glue/qlog.py), the reader (kwik_twisted.qlog), the
``qlog=DIR`` option, ``twistd kwik --qlog-dir`` and ``QLOGDIR``, and a real two-path loopback
transfer written to files and read back.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.endpoints import KwikClientEndpoint, KwikServerEndpoint, closeClientConnections
from kwik_twisted.errors import ConfigurationError
from kwik_twisted.glue.qlog import (
    FILE_SCHEMA,
    FLUSH_BYTES,
    SERIALIZATION_FORMAT,
    QlogWriter,
    qlog_directory,
    trace_path,
    tracer_factory,
)
from kwik_twisted.parsers import parse_client_arguments, parse_server_arguments
from kwik_twisted.qlog import read_qlog
from kwik_twisted.tap import Options
from kwik_twisted.testing.pair import client_config, dev_certificates, server_config

from .test_multipath_glue import LoopbackTestCase, Sink, payload

ODCID = bytes.fromhex("0011223344556677")


def wall_clock() -> float:
    """A fixed wall-clock reading: 2026-01-02T03:04:05.678Z."""
    return 1767323045.678


class WriterTests(SynchronousTestCase):
    """:class:`QlogWriter`: the records, the header, buffering."""

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = trace_path(self.directory, ODCID, True)

    def writer(self) -> QlogWriter:
        writer = QlogWriter(self.path, odcid=ODCID, is_client=True, wall_clock=wall_clock)
        self.addCleanup(writer.close)
        return writer

    def test_file_is_named_after_odcid_and_vantage_point(self) -> None:
        """``trace_path`` is ``DIR/<odcid hex>_<client|server>.sqlog``."""
        self.assertEqual(os.path.basename(self.path), "0011223344556677_client.sqlog")
        server = trace_path(self.directory, ODCID, False)
        self.assertEqual(os.path.basename(server), "0011223344556677_server.sqlog")

    def test_records_are_json_text_sequences(self) -> None:
        """Every record is 0x1E, one JSON value and a line feed (RFC 7464)."""
        writer = self.writer()
        writer.event(10.0, "quic:connection_started", {})
        writer.event(10.5, "quic:packet_sent", {"path_id": 1})
        writer.close()
        with open(self.path, "rb") as f:
            data = f.read()
        records = data.split(b"\x1e")
        self.assertEqual(records[0], b"")
        self.assertEqual(len(records), 4)
        for record in records[1:]:
            self.assertTrue(record.endswith(b"\n"))
            self.assertEqual(record.count(b"\n"), 1)

    def test_header_follows_the_qlog_main_schema(self) -> None:
        """The first record is the file header: schema, serialization format, vantage point,
        the ODCID as group_id and the reference time."""
        writer = self.writer()
        writer.close()
        header, events = read_qlog(self.path)
        self.assertEqual(events, [])
        self.assertEqual(header["file_schema"], FILE_SCHEMA)
        self.assertEqual(header["serialization_format"], SERIALIZATION_FORMAT)
        self.assertEqual(header["serialization_format"], "application/qlog+json-seq")
        trace = header["trace"]
        self.assertEqual(trace["vantage_point"]["type"], "client")
        common = trace["common_fields"]
        self.assertEqual(common["group_id"], ODCID.hex())
        self.assertEqual(
            common["reference_time"], {"clock_type": "system", "epoch": "2026-01-02T03:04:05.678Z"}
        )

    def test_event_times_are_milliseconds_from_the_first_event(self) -> None:
        """Event times are milliseconds relative to the trace's start (its first event)."""
        writer = self.writer()
        writer.event(100.0, "quic:connection_started", {"odcid": "x"})
        writer.event(100.0125, "quic:packet_sent", {"path_id": 0})
        writer.close()
        _header, events = read_qlog(self.path)
        self.assertEqual(
            events,
            [
                {"time": 0.0, "name": "quic:connection_started", "data": {"odcid": "x"}},
                {"time": 12.5, "name": "quic:packet_sent", "data": {"path_id": 0}},
            ],
        )

    def test_packet_events_read_back_unchanged(self) -> None:
        """Packet events, whatever their frames (one STREAM frame is formatted without the JSON
        encoder), read back as the data that was traced."""
        stream = {
            "frame_type": "stream",
            "stream_id": 4,
            "offset": 1 << 40,
            "length": 1200,
            "fin": True,
        }
        ack = {"frame_type": "ack", "path_id": 1, "ack_delay": 0.5, "acked_ranges": [[0, 9]]}
        packets = [
            {
                "header": {"packet_type": "1RTT", "packet_number": n, "path_id": 1},
                "raw": {"length": 1350},
                "frames": frames,
                "path_id": 1,
            }
            for n, frames in enumerate([[stream], [ack], [ack, stream], []])
        ]
        writer = self.writer()
        for packet in packets:
            writer.event(2.0, "quic:packet_sent", packet)
            writer.event(2.0, "quic:packet_received", packet)
        writer.close()
        _header, events = read_qlog(self.path)
        self.assertEqual([e["data"] for e in events], [p for p in packets for _ in (1, 2)])
        self.assertEqual(
            [e["name"] for e in events][:2], ["quic:packet_sent", "quic:packet_received"]
        )

    def test_buffered_until_64_kib(self) -> None:
        """Small traces stay in memory; the file is written once the buffer passes 64 KiB."""
        writer = self.writer()
        writer.event(0.0, "quic:packet_sent", {"path_id": 0})
        self.assertEqual(os.path.getsize(self.path), 0)
        filler = {"padding": "x" * 1000}
        for i in range(FLUSH_BYTES // 1000 + 1):
            writer.event(i * 0.001, "quic:packet_sent", filler)
        self.assertGreaterEqual(os.path.getsize(self.path), FLUSH_BYTES)

    def test_connection_closed_flushes(self) -> None:
        """``quic:connection_closed`` writes the buffer out at once."""
        writer = self.writer()
        writer.event(0.0, "quic:connection_started", {})
        writer.event(1.0, "quic:connection_closed", {"owner": "local"})
        _header, events = read_qlog(self.path)
        self.assertEqual(
            [e["name"] for e in events], ["quic:connection_started", "quic:connection_closed"]
        )

    def test_events_after_close_are_ignored(self) -> None:
        """A closed writer drops later events instead of failing."""
        writer = self.writer()
        writer.close()
        writer.event(0.0, "quic:packet_sent", {})
        _header, events = read_qlog(self.path)
        self.assertEqual(events, [])


class ReaderTests(SynchronousTestCase):
    """:func:`kwik_twisted.qlog.read_qlog`."""

    def write(self, data: bytes) -> str:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_truncated_last_record_is_skipped(self) -> None:
        """A trace cut off mid-record (a crash) still reads, without its partial record."""
        path = self.write(
            b'\x1e{"file_schema": "s"}\n\x1e{"time": 1, "name": "a", "data": {}}\n\x1e{"ti'
        )
        header, events = read_qlog(path)
        self.assertEqual(header, {"file_schema": "s"})
        self.assertEqual([e["name"] for e in events], ["a"])

    def test_plain_json_is_refused(self) -> None:
        """A file that is not a JSON text sequence raises ValueError."""
        self.assertRaises(ValueError, read_qlog, self.write(b'{"qlog_version": "0.3"}'))

    def test_empty_file_is_refused(self) -> None:
        """An empty file has no header: ValueError."""
        self.assertRaises(ValueError, read_qlog, self.write(b""))


class DirectoryTests(SynchronousTestCase):
    """Where traces go: ``qlog=DIR`` first, then ``QLOGDIR``."""

    def test_explicit_directory_wins(self) -> None:
        """An explicit directory is used even when QLOGDIR is set."""
        self.assertEqual(qlog_directory("/a", {"QLOGDIR": "/b"}), "/a")

    def test_environment_variable_is_the_default(self) -> None:
        """Without an explicit directory, QLOGDIR says where traces go."""
        self.assertEqual(qlog_directory(None, {"QLOGDIR": "/b"}), "/b")

    def test_neither_means_no_traces(self) -> None:
        """No directory and no (or an empty) QLOGDIR: no traces, no tracer factory."""
        self.assertIsNone(qlog_directory(None, {}))
        self.assertIsNone(qlog_directory(None, {"QLOGDIR": ""}))
        self.assertIsNone(tracer_factory(None, is_client=True))

    def test_factory_creates_the_directory_and_the_file(self) -> None:
        """``tracer_factory`` makes the directory if needed and one file per ODCID."""
        directory = os.path.join(self.mktemp(), "traces")
        writer = tracer_factory(directory, is_client=False)(ODCID)
        writer.close()
        self.assertEqual(os.listdir(directory), ["0011223344556677_server.sqlog"])

    def test_unwritable_directory_means_untraced(self) -> None:
        """A directory that cannot be created gives no tracer (the connection runs untraced)."""
        blocker = self.mktemp()
        with open(blocker, "w"):
            pass
        new_tracer = tracer_factory(os.path.join(blocker, "sub"), is_client=True)
        self.assertIsNone(new_tracer(ODCID))
        self.flushLoggedErrors()


class OptionTests(SynchronousTestCase):
    """``qlog=DIR`` in endpoint strings and ``twistd kwik --qlog-dir``."""

    def test_server_and_client_strings_accept_qlog(self) -> None:
        """Both endpoint kinds take ``qlog=DIR`` and pass it on as ``qlog``."""
        certs = FilePath(self.mktemp())
        certs.makedirs()
        pem = dev_certificates()
        certs.child("key.pem").setContent(pem.key)
        certs.child("chain.pem").setContent(pem.chain)
        server = parse_server_arguments(
            "4433",
            privateKey=certs.child("key.pem").path,
            certKey=certs.child("chain.pem").path,
            qlog="/tmp/q",
        )
        self.assertEqual(server["qlog"], "/tmp/q")
        client = parse_client_arguments(
            host="localhost", port="4433", insecure="yes", qlog="/tmp/q"
        )
        self.assertEqual(client["qlog"], "/tmp/q")
        self.assertNotIn(
            "qlog", parse_client_arguments(host="localhost", port="4433", insecure="yes")
        )

    def test_empty_qlog_is_refused(self) -> None:
        """``qlog=`` with no directory is a configuration error."""
        self.assertRaises(
            ConfigurationError, parse_client_arguments, host="h", port="1", insecure="yes", qlog=""
        )

    def test_qlog_dir_reaches_every_kwik_endpoint(self) -> None:
        """``--qlog-dir`` adds ``qlog=DIR`` to kwik: endpoints (not to TCP ones, nor to one that
        has its own)."""
        options = Options(reactor=reactor)
        options.parseOptions(
            [
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--forward",
                "kwik:host=127.0.0.1:port=4433:insecure=yes",
                "--qlog-dir",
                "/tmp/tr:aces",
            ]
        )
        self.assertEqual(options["listen"], ["tcp:0:interface=127.0.0.1"])
        self.assertEqual(
            options["forward"], "kwik:host=127.0.0.1:port=4433:insecure=yes:qlog=/tmp/tr\\:aces"
        )
        options = Options(reactor=reactor)
        options.parseOptions(
            [
                "--listen",
                "tcp:0",
                "--forward",
                "kwik:host=h:port=1:insecure=yes:qlog=/x",
                "--qlog-dir",
                "/y",
            ]
        )
        self.assertEqual(options["forward"], "kwik:host=h:port=1:insecure=yes:qlog=/x")


class LoopbackTraceTests(LoopbackTestCase):
    """A real two-path transfer on loopback with ``qlog=DIR`` on both sides."""

    @defer.inlineCallbacks
    def test_two_path_transfer_writes_both_traces(self) -> Any:
        """
        Client and server each write ``<odcid>_<side>.sqlog`` with the same ODCID; read back,
        each has the qlog header for its vantage point, starts with connection_started, ends with
        connection_closed, and has packets on both path IDs.
        """
        directory = self.mktemp()
        self.sinks: list[Sink] = []
        server = KwikServerEndpoint(
            reactor, 0, config=server_config(), interface="127.0.0.1", qlog=directory
        )

        def build() -> Sink:
            sink = Sink()
            self.sinks.append(sink)
            return sink

        listening = yield server.listen(Factory.forProtocol(build))
        self.addCleanup(listening.stopListening)
        endpoint = KwikClientEndpoint(
            reactor,
            "127.0.0.1",
            listening.getHost().port,
            config=client_config(scheduler="wrr"),
            reuse=False,
            paths=["127.0.0.2"],
            qlog=directory,
        )
        yield self.send(endpoint, payload(1 << 20))
        yield closeClientConnections(reactor)
        yield listening.stopListening()
        names = sorted(os.listdir(directory))
        self.assertEqual(len(names), 2, names)
        odcid = names[0].split("_")[0]
        self.assertEqual(names, [f"{odcid}_client.sqlog", f"{odcid}_server.sqlog"])
        for name, side in zip(names, ("client", "server")):
            header, events = read_qlog(os.path.join(directory, name))
            self.assertEqual(header["file_schema"], FILE_SCHEMA)
            self.assertEqual(header["trace"]["vantage_point"]["type"], side)
            self.assertEqual(header["trace"]["common_fields"]["group_id"], odcid)
            self.assertEqual(events[0]["name"], "quic:connection_started")
            self.assertIn("quic:connection_closed", [e["name"] for e in events])
            for kind in ("quic:packet_sent", "quic:packet_received"):
                paths = {e["data"]["path_id"] for e in events if e["name"] == kind}
                self.assertEqual(paths, {0, 1}, (side, kind))
            validated = [e["data"]["path_id"] for e in events if e["name"] == "kwik:path_validated"]
            self.assertIn(1, validated)
