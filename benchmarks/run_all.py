"""
Run the quick benchmark set, print one table, write ``benchmarks/results/latest.json``.

Each benchmark runs as a subprocess with ``--json`` (a fresh interpreter and reactor each), with
sizes cut down so the whole set takes a couple of minutes on two cores: codec micro-benchmarks
(``wire.py``), the in-memory core (``core_bulk.py``), loopback bulk for Kwik and its peers
(``bulk.py --peer all``, and Kwik with the server in a second process), echo round trips,
time to first byte, idle memory with fewer connections, UDP batching (GSO/GRO), as root on
Linux the multipath namespaces against kernel MPTCP (``--quick``; it skips itself elsewhere),
the server's CPU per attacker byte for hostile frame patterns, and the QoS scenarios in simulated
time with QoS on and off (12 simulated seconds each instead of 20), and full handshakes per second
and echoed goodput with 1 and 2 worker processes (``workers.py``: 3 s of handshakes, 2 MB per
connection).
``--full`` uses each script's own
defaults instead (50 MB transfers, 1000 idle connections: several minutes more).  A script that
fails or times out gets an error row; the others still run.  Every run (unless ``--only`` or
``--no-history``) appends its figures to ``benchmarks/results/history.jsonl`` (``history.py``),
which ``plot_history.py`` draws.

Loopback figures depend on what else the machine is doing: compare runs made on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import harness
import history

HERE = Path(__file__).resolve().parent

#: (name, script, quick arguments, full arguments)
SUITE = (
    ("wire", "wire.py", ["--number", "5000", "--repeat", "5"], []),
    ("core_bulk", "core_bulk.py", ["--size", str(8 << 20)], []),
    ("bulk", "bulk.py", ["--peer", "all", "--size", "10"], ["--peer", "all"]),
    ("bulk_2proc", "bulk.py", ["--two-process", "--size", "10"], ["--two-process"]),
    ("echo", "echo.py", ["--peer", "all", "--count", "1000"], ["--peer", "all"]),
    ("handshake", "handshake.py", ["--runs", "10"], []),
    ("idle_memory", "idle_memory.py", ["--connections", "200"], []),
    ("udp_batch", "udp_batch.py", ["--runs", "3"], []),
    ("multipath_netns", "multipath_netns.py", ["--quick"], []),
    ("hostile_cpu", "hostile_cpu.py", ["--scale", "1"], []),
    ("qos", "qos.py", ["--duration", "12"], []),
    ("workers", "workers.py", ["--duration", "3", "--size", "2"], []),
)

#: Units of the flat figures that wire.py and core_bulk.py print.
FLAT_UNITS = {"_us": "us", "_MBps": "MB/s", "_s": "s"}


def flat_rows(name: str, figures: dict) -> list[dict]:
    """Rows from a script that prints a flat ``{"metric": number}`` object."""
    rows = []
    for key, value in figures.items():
        unit = "us" if "_us_" in key else next(
            (u for suffix, u in FLAT_UNITS.items() if key.endswith(suffix)), "")
        rows.append({"name": f"{name}: {key}", "median": value, "spread": None, "unit": unit})
    return rows


def run(name: str, script: str, arguments: list[str], timeout: float) -> tuple[list[dict], dict]:
    """Run one script; its rows and its raw JSON (or an error row)."""
    cmd = [sys.executable, str(HERE / script), "--json", *arguments]
    harness.log(f"== {name}: {' '.join(cmd[1:])}")
    started = time.perf_counter()
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [{"name": name, "error": f"timed out after {timeout:.0f} s"}], {}
    harness.log(f"   {time.perf_counter() - started:.1f} s")
    lines = done.stdout.strip().splitlines()
    try:
        raw = json.loads(lines[-1]) if lines else None
    except ValueError:
        raw = None
    if not isinstance(raw, dict):
        return [{"name": name, "error": f"exit status {done.returncode}, no JSON"}], {}
    rows = raw["results"] if "results" in raw else flat_rows(name, raw)
    if done.returncode != 0 and not any(r.get("error") for r in rows):
        rows.append({"name": name, "error": f"exit status {done.returncode}"})
    return rows, raw


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="each script's full default sizes")
    parser.add_argument("--only", nargs="*", help="run only these (names: "
                        + ", ".join(s[0] for s in SUITE) + ")")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per script")
    parser.add_argument("--output", type=Path, default=harness.LATEST)
    parser.add_argument("--history", type=Path, default=history.HISTORY,
                        help="the history file a run appends to")
    parser.add_argument("--no-history", action="store_true", help="do not append to it")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows, raw = [], {}
    for name, script, quick, full in SUITE:
        if args.only and name not in args.only:
            continue
        got, raw[name] = run(name, script, full if args.full else quick, args.timeout)
        rows += got
    elapsed = time.perf_counter() - started
    print()
    harness.print_table(harness.table_of(rows), headers=harness.HEADERS,
                        title=f"kwik_twisted benchmarks ({'full' if args.full else 'quick'} set, "
                              f"{elapsed:.0f} s; loopback figures are noisy on a busy machine):")
    path = harness.write_json({"rows": rows, "raw": raw, "seconds": elapsed,
                               "set": "full" if args.full else "quick"}, args.output, merge=False)
    print(f"\nwritten to {path}")
    if not args.only and not args.no_history:
        entry = history.record(rows, set_name="full" if args.full else "quick")
        print(f"appended to {history.append(entry, args.history)}")
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
