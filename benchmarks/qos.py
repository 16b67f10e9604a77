"""
QoS scenarios in simulated time: issue 15's six, each with QoS on and with the same traffic off.

Each scenario of :mod:`kwik_twisted.testing.qos.scenarios` runs twice on the deterministic
simulator: with the streams' QoS policies (QoS on), and without them on the ``lowest-rtt``
scheduler (QoS off, the behaviour before the QoS layer).  The table shows each headline figure
both ways next to its target: the bound of the stream's policy where the policy gives one, and
the issue's acceptance figure otherwise.  Figures are simulated, so they do not depend on the
machine; only the wall time does (about a minute for 20 simulated seconds per run).

The events of scenarios 2 and 6 (the 10 ms path dropping to 2 Mbit/s; the cheap path failing)
happen at half the ``--duration``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness  # noqa: E402

from kwik_twisted.testing.qos import SCENARIOS  # noqa: E402

#: (scenario, run name, extra arguments, [(figure key, label, unit, scale, target)]).
#: ``scale`` turns the figure into the unit shown; ``target`` is a short text.
TABLE = (
    ("latency", "latency", {}, [
        ("interactive_p99_ms", "interactive one-way p99", "ms", 1, "<= 40"),
        ("bulk_share_of_capacity", "bulk goodput / link sum", "%", 100, ">= 85"),
    ]),
    ("bufferbloat", "bufferbloat", {"event": "drop_at"}, [
        ("interactive_p99_after_drop_ms", "interactive p99 after the drop", "ms", 1, "<= 40"),
        ("violations", "QoSViolated events (client)", "", 1, "0 (path 1 meets it)"),
        ("detected_after_s", "congestion reported after", "ms", 1000, "<= 60 (3 RTT)"),
        ("congested_before_drop", "path congested before (1 yes)", "", 1, "-"),
    ]),
    ("guaranteed_rate", "guaranteed_rate", {}, [
        ("rate_mbps", "guaranteed flow's rate", "Mbit/s", 1, ">= 3.9"),
        ("bulk_mbps", "four bulk flows' sum", "Mbit/s", 1, "the rest"),
    ]),
    ("guaranteed_rate", "oversubscribed", {"guaranteed": 3}, [
        ("rate_min_mbps", "3 x 4 Mbit/s on 10: smallest rate", "Mbit/s", 1, "-"),
        ("violations", "QoSViolated events (client)", "", 1, ">= 1 (the unserved)"),
    ]),
    ("loss_threshold", "loss_threshold", {}, [
        ("late_fraction", "messages later than 80 ms", "%", 100, "<= 0.1"),
        ("redundancy", "resent bytes / message bytes", "%", 100, "<= 100"),
        ("bulk_share_of_clean", "bulk goodput / clean path", "%", 100, ">= 85"),
    ]),
    ("jitter", "jitter", {}, [
        ("std_ms", "one-way delay std", "ms", 1, "<= 5"),
        ("p99_ms", "one-way delay p99", "ms", 1, "-"),
    ]),
    ("cost", "cost", {"event": "fail_at"}, [
        ("costly_share", "share on the costly path", "%", 100, "< 2"),
        ("failover_s", "costly path carries it after", "ms", 1000, "<= 1 PTO"),
        ("gap_after_failure_ms", "longest delivery gap", "ms", 1, "-"),
    ]),
)


def value(figures: dict, key: str, scale: float) -> float | None:
    """A figure in its shown unit, ``None`` when the run has none (or it is nan)."""
    raw = figures.get(key)
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    return raw * scale


def run_one(scenario: str, extra: dict, qos: bool, duration: float, seed: int):
    """One run; the result and its wall time."""
    kwargs = {k: v for k, v in extra.items() if k != "event"}
    if "event" in extra:
        kwargs[extra["event"]] = duration / 2
    started = time.perf_counter()
    result = SCENARIOS[scenario](qos=qos, duration=duration, seed=seed, **kwargs)
    return result, time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0,
                        help="simulated seconds per run (default 20)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="run names: " + ", ".join(r[1] for r in TABLE))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows, table, scenarios = [], [], {}
    for scenario, name, extra, figures in TABLE:
        if args.only and name not in args.only:
            continue
        runs = {}
        for qos in (True, False):
            result, wall = run_one(scenario, extra, qos, args.duration, args.seed)
            harness.log(f"{name} qos={'on' if qos else 'off'}: {wall:.1f} s")
            runs[qos] = result
            scenarios.setdefault(name, {})["on" if qos else "off"] = {
                **result.summary(), "wall_s": wall}
        for key, label, unit, scale, target in figures:
            on, off = (value(runs[q].figures, key, scale) for q in (True, False))
            table.append((f"{name}: {label}", on, off, unit, target))
            for q, v in ((True, on), (False, off)):
                rows.append({"name": f"qos {name}: {label} ({'on' if q else 'off'})",
                             "median": v, "spread": None, "unit": unit, "target": target})
    elapsed = time.perf_counter() - started
    out = {"results": rows, "scenarios": scenarios, "duration": args.duration,
           "seconds": elapsed, "machine": harness.machine()}

    def text() -> None:
        harness.print_table(
            table, headers=("scenario: figure", "QoS on", "QoS off", "unit", "target"),
            title=f"QoS scenarios, {args.duration:.0f} simulated s each ({elapsed:.0f} s wall):")

    harness.emit(args, out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
