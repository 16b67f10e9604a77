"""
Compare variants of a benchmark on a noisy machine: interleaved rounds, best of N.

Each variant is ``NAME=COMMAND`` (a shell command printing one JSON object: a script run with
``--json``).  Every round runs each variant once, in turn, so that whatever else the machine does
falls on all of them alike; after ``--rounds`` rounds the table gives, per variant and figure,
the best value (the run least disturbed), the median, and the best as a ratio to the first
variant's best.  ``--figure`` picks the figures: a key of a flat JSON object (``core_bulk_MBps``)
or the name of a row in ``"results"`` (``bulk kwik``); ``--lower`` names those where lower is
better (microseconds, milliseconds).  ``--json`` prints everything, raw values included.

::

    python benchmarks/interleave.py --rounds 8 --figure core_bulk_MBps \\
        off="python benchmarks/core_bulk.py --json --size 16777216 --runs 1" \\
        qlog="python benchmarks/core_bulk.py --json --size 16777216 --runs 1 --qlog"
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

import harness


def figures_of(raw: dict, wanted: list[str]) -> dict[str, float | None]:
    """The ``wanted`` figures of one script's JSON output (flat keys or result row names)."""
    rows = {r.get("name"): r.get("median") for r in raw.get("results", ())}
    return {name: raw.get(name, rows.get(name)) for name in wanted}


def run_variant(command: str, wanted: list[str], timeout: float) -> dict[str, float | None]:
    """Run one variant once; its figures (``None`` where it failed)."""
    done = subprocess.run(command, shell=True, stdout=subprocess.PIPE, text=True,
                          timeout=timeout)
    lines = done.stdout.strip().splitlines()
    try:
        return figures_of(json.loads(lines[-1]), wanted)
    except (IndexError, ValueError):
        harness.log(f"no JSON from {command!r} (exit status {done.returncode})")
        return dict.fromkeys(wanted)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", metavar="NAME=COMMAND")
    parser.add_argument("--figure", action="append", required=True, help="repeatable")
    parser.add_argument("--lower", action="append", default=[],
                        help="a figure where lower is better (repeatable)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per command")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    variants = [v.partition("=")[::2] for v in args.variants]
    values = {name: {f: [] for f in args.figure} for name, _ in variants}
    for round_ in range(args.rounds):
        for name, command in variants:
            got = run_variant(command, args.figure, args.timeout)
            harness.log(f"round {round_ + 1} {name}: {got}")
            for figure, value in got.items():
                if value is not None:
                    values[name][figure].append(float(value))
    summary = {}
    for figure in args.figure:
        pick = min if figure in args.lower else max
        bests = {name: pick(v[figure]) if v[figure] else None for name, v in values.items()}
        first = bests[variants[0][0]]
        for name, v in values.items():
            best = bests[name]
            summary.setdefault(name, {})[figure] = {
                "best": best,
                "median": statistics.median(v[figure]) if v[figure] else None,
                "ratio": best / first if best is not None and first else None,
                "values": v[figure],
            }
    out = {"rounds": args.rounds, "variants": dict(variants), "summary": summary,
           "machine": harness.machine()}
    if args.json:
        print(json.dumps(out))
    else:
        rows = [(f"{name}: {figure}", s["best"], s["median"], s["ratio"])
                for name, figures in summary.items() for figure, s in figures.items()]
        harness.print_table(rows, headers=("", "best", "median", "ratio"),
                            title=f"interleaved, {args.rounds} rounds:")
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)
