"""Read qlog traces written by kwik_twisted.

A connection run with ``qlog=DIR`` (endpoint strings), ``twistd kwik --qlog-dir DIR`` or the
``QLOGDIR`` environment variable writes one file per connection and vantage point, named
``<original destination connection ID in hex>_<client|server>.sqlog``.  The file is JSON text
sequences (RFC 7464, ``application/qlog+json-seq``): every record is the byte 0x1E, one JSON
object, and a line feed.  The first record is the qlog file header (``file_schema``,
``serialization_format``, ``trace`` with ``vantage_point`` and ``common_fields``: ``group_id`` is
the ODCID, ``reference_time`` gives the wall-clock time of the trace's start as its ``epoch``);
every later record is one event ``{"time": ms, "name": "quic:packet_sent", "data": {...}}`` whose
``time`` is in milliseconds relative to the reference time.

QUIC events follow the qlog QUIC event definitions (``quic:connection_started``,
``quic:packet_sent``, ``quic:packet_lost``, ``quic:recovery_metrics_updated``, ...); multipath
events use the ``kwik:`` namespace (``kwik:path_added``, ``kwik:path_failed``,
``kwik:scheduler_decision``, ...).  Every packet and recovery event carries ``path_id`` in its
data.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["main", "path_series", "plot", "read_qlog"]

RECORD_SEPARATOR = b"\x1e"


def read_qlog(path: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read the JSON-SEQ qlog file at *path* and return ``(header, events)``.

    *header* is the first record (the qlog file header); *events* the later records in file
    order.  A truncated last record (a trace cut off while being written) is skipped; any other
    malformed record raises ``ValueError``.
    """
    with open(path, "rb") as f:
        data = f.read()
    records: list[dict[str, Any]] = []
    chunks = data.split(RECORD_SEPARATOR)
    if chunks and chunks[0].strip():
        raise ValueError(f"{path}: not a JSON text sequence (no leading 0x1E)")
    last = len(chunks) - 1
    for index, chunk in enumerate(chunks[1:], start=1):
        if not chunk.strip():
            continue
        try:
            records.append(json.loads(chunk))
        except ValueError:
            if index == last and not chunk.endswith(b"\n"):
                break  # truncated tail, RFC 7464 section 2.3
            raise
    if not records:
        raise ValueError(f"{path}: empty qlog file")
    return records[0], records[1:]


# -- pictures --------------------------------------------------------------------------------

#: Width of one goodput bin, in seconds.
GOODPUT_BIN = 0.1
#: Which ``packet_type`` values share a packet number space (qlog's ``packet_number_space`` names).
_SPACES = {"initial": "initial", "handshake": "handshake"}
#: Event names drawn as vertical lines (path state changes), and their colours.
_MARKS = {
    "kwik:path_added": "tab:green",
    "kwik:path_validated": "tab:green",
    "kwik:path_failed": "tab:red",
    "kwik:path_recovered": "tab:blue",
    "kwik:path_abandoned": "black",
    "kwik:path_backup": "tab:purple",
}


def _space(data: dict[str, Any]) -> str:
    header = data.get("header") or {}
    return _SPACES.get(str(header.get("packet_type", "1RTT")).lower(), "application_data")


def _numbers(data: dict[str, Any]) -> list[int]:
    """The packet numbers of a ``packets_acked`` event: numbers, or ``[first, last]`` ranges."""
    numbers: list[int] = []
    for item in data.get("packet_numbers") or ():
        if isinstance(item, list):
            numbers.extend(range(item[0], item[-1] + 1))
        else:
            numbers.append(item)
    return numbers


def path_series(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-path time series from a trace: delivered and received bytes per bin, recovery metrics
    (forward-filled: ``recovery_metrics_updated`` carries only what changed) and path marks."""
    sizes: dict[tuple, int] = {}
    acked: dict[int, dict[int, int]] = {}
    received: dict[int, dict[int, int]] = {}
    metrics: dict[int, dict[str, list[tuple[float, float]]]] = {}
    last: dict[int, dict[str, float]] = {}
    marks: list[tuple[float, str, Any]] = []
    for event in events:
        name = event.get("name", "")
        data = event.get("data") or {}
        t = float(event.get("time", 0.0)) / 1000.0
        path = int(data.get("path_id", 0))
        if name == "quic:packet_sent":
            number = (data.get("header") or {}).get("packet_number")
            length = (data.get("raw") or {}).get("length", 0)
            if number is not None:
                sizes[(path, _space(data), number)] = length
        elif name == "quic:packet_received":
            bins = received.setdefault(path, {})
            index = int(t / GOODPUT_BIN + 1e-9)
            bins[index] = bins.get(index, 0) + (data.get("raw") or {}).get("length", 0)
        elif name == "quic:packets_acked":
            space = data.get("packet_number_space", "application_data")
            bins = acked.setdefault(path, {})
            index = int(t / GOODPUT_BIN + 1e-9)
            for number in _numbers(data):
                bins[index] = bins.get(index, 0) + sizes.pop((path, space, number), 0)
        elif name == "quic:recovery_metrics_updated":
            now = last.setdefault(path, {})
            now.update((k, float(v)) for k, v in data.items() if isinstance(v, (int, float)))
            series = metrics.setdefault(path, {})
            for key, value in now.items():
                series.setdefault(key, []).append((t, value))
        elif name in _MARKS:
            marks.append((t, name, data.get("path_id")))
    # Goodput: what the peer acknowledged (a sender's trace), else what arrived (a receiver's).
    chosen = acked if sum(sum(b.values()) for b in acked.values()) >= sum(
        sum(b.values()) for b in received.values()
    ) else received
    end = max((max(bins) for bins in chosen.values() if bins), default=-1) + 1
    goodput = {
        path: [(i * GOODPUT_BIN, bins.get(i, 0) * 8 / GOODPUT_BIN / 1e6) for i in range(end + 1)]
        for path, bins in chosen.items()
    }
    return {
        "goodput": goodput,
        "goodput_kind": "acknowledged" if chosen is acked else "received",
        "metrics": metrics,
        "marks": marks,
    }


def plot(events: list[dict[str, Any]], output: str, *, title: str | None = None) -> None:
    """Draw a trace's events (as :func:`read_qlog` returns them) into the image file *output*.

    Four panels share the time axis, one line per path: goodput in Mbit/s (bytes acknowledged per
    100 ms bin, or received for a receiver's trace), RTT in ms (smoothed solid, minimum dashed),
    congestion window and bytes in flight in KB.  Path state changes (``kwik:path_failed``,
    ``kwik:path_recovered``, ...) are vertical lines labelled with the event and path.  The format
    follows *output*'s extension (PNG, SVG, PDF).

    :raises ImportError: matplotlib is not installed (``pip install kwik_twisted[plots]``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(
            "plotting a qlog trace needs matplotlib: pip install 'kwik_twisted[plots]'"
        ) from e
    series = path_series(events)
    metrics = series["metrics"]
    paths = sorted(set(series["goodput"]) | set(metrics))
    colours = {p: f"C{i % 10}" for i, p in enumerate(paths)}
    figure, axes = plt.subplots(4, 1, sharex=True, figsize=(9, 9), dpi=80)
    goodput, rtt, cwnd, flight = axes
    for path in paths:
        colour = colours[path]
        points = series["goodput"].get(path, [])
        if points:
            goodput.step(*zip(*points), where="post", color=colour, label=f"path {path}")
        for key, axis, style, scale in (
            ("smoothed_rtt", rtt, "-", 1.0),
            ("min_rtt", rtt, "--", 1.0),
            ("congestion_window", cwnd, "-", 1e-3),
            ("bytes_in_flight", flight, "-", 1e-3),
        ):
            values = metrics.get(path, {}).get(key)
            if values:
                times, numbers = zip(*values)
                axis.step(
                    times, [n * scale for n in numbers], style, where="post", color=colour,
                    label=f"path {path} {key.replace('_', ' ')}" if axis is rtt else f"path {path}",
                )
    goodput.set_ylabel(f"goodput, Mbit/s\n({series['goodput_kind']})")
    rtt.set_ylabel("RTT, ms")
    cwnd.set_ylabel("cwnd, KB")
    flight.set_ylabel("in flight, KB")
    flight.set_xlabel("time since the trace started, s")
    for axis in axes:
        axis.set_ylim(bottom=0)
        for t, name, _path in series["marks"]:
            axis.axvline(t, color=_MARKS[name], linestyle=":", linewidth=1)
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="upper right", fontsize="small")
    for t, name, path in series["marks"]:
        label = name.split(":", 1)[1].replace("path_", "") + ("" if path is None else f" {path}")
        goodput.annotate(
            label, (t, 1.0), xycoords=("data", "axes fraction"), rotation=90, fontsize="small",
            va="top", ha="right", color=_MARKS[name],
        )
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(output)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    """``python -m kwik_twisted.qlog TRACE -o FILE.png``: draw a trace (see :func:`plot`)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m kwik_twisted.qlog",
        description="Draw goodput, RTT, congestion window and bytes in flight per path from a "
        "kwik qlog trace (.sqlog), with path state changes marked.",
    )
    parser.add_argument("trace", help="a .sqlog file written with qlog=DIR / QLOGDIR")
    parser.add_argument(
        "-o", "--output", required=True, help="the image to write (.png, .svg, .pdf)"
    )
    parser.add_argument("--title", help="a title (default: the trace's vantage point and file)")
    args = parser.parse_args(argv)
    try:
        header, events = read_qlog(args.trace)
    except (OSError, ValueError) as e:
        print(f"cannot read {args.trace}: {e}", file=sys.stderr)
        return 1
    vantage = ((header.get("trace") or {}).get("vantage_point") or {}).get("type", "")
    title = args.title or (f"{args.trace} ({vantage})" if vantage else args.trace)
    try:
        plot(events, args.output, title=title)
    except ImportError as e:
        print(str(e), file=sys.stderr)
        return 2
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
