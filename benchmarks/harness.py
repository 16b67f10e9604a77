"""
The common benchmark harness: warm-up, several runs, median and spread, a table, JSON output.

Every benchmark script measures with :func:`measure` (plain functions), :func:`measure_deferred`
(Twisted: a function returning a Deferred) or :func:`measure_async` (asyncio: a coroutine function).
Each runs ``warmup`` discarded calls, then ``runs`` measured ones.  A call returns its own sample (a
number: MB/s, seconds, ...); a call returning ``None`` is timed instead (wall seconds).  The
:class:`Result` keeps the median, the spread (max - min) and the raw values.

:func:`print_table` prints rows of label / value / spread / unit; :func:`write_json` merges results
into ``benchmarks/results/latest.json`` (git-ignored) together with a description of the machine,
so runs can be compared later.  Every script accepts ``--json`` and then prints one JSON object on
stdout and nothing else there (diagnostics go to stderr).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
LATEST = RESULTS / "latest.json"

if str(ROOT) not in sys.path:  # the scripts run from a checkout, installed or not
    sys.path.insert(0, str(ROOT))


@dataclass(frozen=True, slots=True)
class Result:
    """The summary of one measurement: median, spread (max - min) and every measured value."""

    median: float
    spread: float
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Result:
        """Summarise ``values`` (at least one)."""
        values = tuple(float(v) for v in values)
        if not values:
            raise ValueError("no values to summarise")
        return cls(statistics.median(values), max(values) - min(values), values)

    def as_dict(self) -> dict:
        """A JSON-friendly dict."""
        d = asdict(self)
        d["values"] = list(self.values)
        return d


def _sample(value, started: float) -> float:
    return time.perf_counter() - started if value is None else float(value)


def measure(fn: Callable[[], float | None], *, runs: int = 3, warmup: int = 1) -> Result:
    """Call ``fn`` ``warmup`` times (discarded), then ``runs`` times; summarise the samples."""
    for _ in range(warmup):
        fn()
    values = []
    for _ in range(runs):
        started = time.perf_counter()
        values.append(_sample(fn(), started))
    return Result.of(values)


def measure_deferred(fn: Callable, *, runs: int = 3, warmup: int = 1):
    """:func:`measure` for a ``fn`` returning a Deferred; returns a Deferred firing a Result."""
    from twisted.internet import defer

    @defer.inlineCallbacks
    def go():
        for _ in range(warmup):
            yield fn()
        values = []
        for _ in range(runs):
            started = time.perf_counter()
            value = yield fn()
            values.append(_sample(value, started))
        return Result.of(values)

    return go()


async def measure_async(fn: Callable, *, runs: int = 3, warmup: int = 1) -> Result:
    """:func:`measure` for a coroutine function ``fn``."""
    for _ in range(warmup):
        await fn()
    values = []
    for _ in range(runs):
        started = time.perf_counter()
        values.append(_sample(await fn(), started))
    return Result.of(values)


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) of ``values``, nearest-rank on the sorted list."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def machine() -> dict:
    """What the numbers were measured on."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_table(rows: Iterable[Sequence], *, title: str = "", headers: Sequence[str] = (),
                file=None) -> None:
    """
    Print rows (label, value, spread, unit, ...) as aligned columns.

    Numbers are formatted to three significant-ish digits; ``None`` prints as ``-``.
    """
    file = file or sys.stdout
    cells = [[_fmt(c) for c in row] for row in rows]
    if headers:
        cells.insert(0, list(headers))
    if title:
        print(title, file=file)
    if not cells:
        return
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(max(map(len, cells)))]
    for row in cells:
        parts = [row[0].ljust(widths[0])]
        parts += [c.rjust(widths[i + 1]) for i, c in enumerate(row[1:])]
        print("  " + "  ".join(parts).rstrip(), file=file)


def result_row(name: str, result: Result, unit: str, **extra) -> dict:
    """A result row, as every script's ``--json`` output lists them under ``"results"``."""
    return {"name": name, "median": result.median, "spread": result.spread,
            "values": list(result.values), "unit": unit, **extra}


def missing_row(name: str, unit: str, why: str) -> dict:
    """The row of a peer whose library is not installed."""
    return {"name": name, "median": None, "spread": None, "unit": unit,
            "missing": "not installed", "detail": why}


def table_of(rows: Iterable[dict]) -> list[tuple]:
    """Result rows as (label, median, spread, unit, note) for :func:`print_table`."""
    out = []
    for r in rows:
        problem = r.get("error") or r.get("missing")
        if problem:
            out.append((r["name"], problem, "", r.get("unit", ""), r.get("detail", "")))
            continue
        note = f"loss {r['loss']:.1%}" if "loss" in r else r.get("version", "")
        if r.get("note"):
            note = f"{note} {r['note']}".strip()
        out.append((r["name"], r["median"], r.get("spread"), r.get("unit", ""), note))
    return out


HEADERS = ("", "median", "spread", "unit", "")


def write_json(results: dict, path: Path = LATEST, *, merge: bool = True) -> Path:
    """Write ``results`` (plus the machine's description) to ``path``; merge into what is there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {}
    if merge and path.exists():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
    data.update(results)
    data["machine"] = machine()
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def emit(args, results: dict, text: Callable[[], None]) -> None:
    """Print ``results`` as one JSON line when ``args.json``, else call ``text`` to print them."""
    if getattr(args, "json", False):
        print(json.dumps(results))
    else:
        text()


def log(*parts) -> None:
    """Diagnostics: to stderr, so ``--json`` output stays clean."""
    print(*parts, file=sys.stderr, flush=True)


def run_reactor(main: Callable):
    """
    Run the Twisted reactor until ``main(reactor)`` (a coroutine function) finishes; its value.

    Unlike ``task.react`` this returns (the process goes on to print), and re-raises a failure.
    The reactor can run once per process: one call per process.
    """
    from twisted.internet import defer, reactor
    from twisted.python.failure import Failure

    out = []

    def start() -> None:
        defer.ensureDeferred(main(reactor)).addBoth(finish)

    def finish(result) -> None:
        out.append(result)
        reactor.stop()

    reactor.callWhenRunning(start)
    reactor.run()
    if not out:
        raise RuntimeError("the reactor stopped before the benchmark finished")
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]
