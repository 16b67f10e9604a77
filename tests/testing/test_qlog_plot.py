"""
``python -m kwik_twisted.qlog TRACE -o FILE.png`` (:func:`kwik_twisted.qlog.main` and
:func:`~kwik_twisted.qlog.plot`): a picture per path from a qlog trace.

The trace here is synthetic, written in the shape kwik's qlog writer uses (JSON-SEQ records: a
header, then events with ``time`` in ms and ``path_id`` in every packet and recovery event), so
the test does not depend on a network run.  The tests that render need matplotlib, which the
``test`` extra installs (so CI renders); elsewhere they skip.
"""

from __future__ import annotations

import json
import struct

import pytest

from kwik_twisted import qlog


def record(obj: dict) -> bytes:
    """One RFC 7464 record."""
    return b"\x1e" + json.dumps(obj).encode() + b"\n"


def two_path_trace(path) -> str:
    """Write a sender's two-path trace to ``path``: 1200-byte packets on paths 0 and 1 every
    10 ms for 2 s, each acknowledged 20 ms later; path 1 fails at 0.8 s (its packets stop) and
    recovers at 1.4 s; recovery metrics every 50 ms.  Returns the file name."""
    records = [
        {
            "file_schema": "urn:ietf:params:qlog:file:sequential",
            "serialization_format": "application/qlog+json-seq",
            "trace": {"vantage_point": {"type": "client"}, "common_fields": {}},
        },
        {"time": 0.0, "name": "kwik:path_added", "data": {"path_id": 1}},
    ]
    events = []
    for tick in range(200):
        t = tick * 10.0
        for path_id in (0, 1):
            if path_id == 1 and 800 <= t < 1400:
                continue
            header = {"packet_type": "1RTT", "packet_number": tick}
            sent = {"header": header, "raw": {"length": 1200}}
            events.append((t, "quic:packet_sent", dict(sent, path_id=path_id)))
            acked = {"packet_number_space": "application_data", "packet_numbers": [tick]}
            events.append((t + 20, "quic:packets_acked", dict(acked, path_id=path_id)))
        if tick % 5 == 0:
            for path_id, rtt in ((0, 10.0), (1, 30.0)):
                metrics = {"smoothed_rtt": rtt + tick % 3, "min_rtt": rtt,
                           "congestion_window": 40000 + 100 * tick, "bytes_in_flight": 2400}
                events.append((t, "quic:recovery_metrics_updated", dict(metrics, path_id=path_id)))
    events += [(800.0, "kwik:path_failed", {"path_id": 1}),
               (1400.0, "kwik:path_recovered", {"path_id": 1})]
    events.sort(key=lambda e: e[0])
    records += [{"time": t, "name": name, "data": data} for t, name, data in events]
    name = str(path / "trace_client.sqlog")
    with open(name, "wb") as f:
        f.write(b"".join(record(r) for r in records))
    return name


def png_size(name: str) -> tuple[int, int]:
    """The width and height of a PNG file (from its IHDR chunk)."""
    with open(name, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", head
    return struct.unpack(">II", head[16:24])


def test_series_per_path(tmp_path):
    """The series behind the picture: goodput per path from acknowledged packet sizes (two
    1200-byte packets per 100 ms bin, ten per bin: 0.96 Mbit/s), none on path 1 while it was
    down, forward-filled RTTs per path, and the failure and recovery as marks."""
    _, events = qlog.read_qlog(two_path_trace(tmp_path))
    series = qlog.path_series(events)
    assert series["goodput_kind"] == "acknowledged"
    # One value per 100 ms bin: index i is the bin starting at i / 10 s.
    goodput = {path: [v for _, v in points] for path, points in series["goodput"].items()}
    assert goodput[0][5] == pytest.approx(10 * 1200 * 8 / 0.1 / 1e6)
    assert goodput[1][5] == pytest.approx(goodput[0][5])
    assert goodput[1][9:14] == [0.0] * 5
    assert min(v for _, v in series["metrics"][1]["min_rtt"]) == 30.0
    assert [(t, name, p) for t, name, p in series["marks"]] == [
        (0.0, "kwik:path_added", 1), (0.8, "kwik:path_failed", 1),
        (1.4, "kwik:path_recovered", 1),
    ]


def test_command_draws_a_png(tmp_path, capsys):
    """``python -m kwik_twisted.qlog TRACE -o FILE.png`` writes a PNG picture of the trace and
    says so; exit status 0."""
    pytest.importorskip("matplotlib", reason="the plots extra (matplotlib) is not installed")
    trace = two_path_trace(tmp_path)
    output = str(tmp_path / "trace.png")
    assert qlog.main([trace, "-o", output]) == 0
    width, height = png_size(output)
    assert width > 300 and height > 300
    assert "wrote" in capsys.readouterr().out


def test_command_reports_an_unreadable_trace(tmp_path, capsys):
    """A file that is not JSON-SEQ gives exit status 1 and a message naming it, no traceback."""
    bad = tmp_path / "bad.sqlog"
    bad.write_bytes(b'{"not": "json-seq"}\n')
    assert qlog.main([str(bad), "-o", str(tmp_path / "x.png")]) == 1
    assert "bad.sqlog" in capsys.readouterr().err
