"""
The benchmark history: one JSON object per recorded run in ``benchmarks/results/history.jsonl``.

``run_all.py`` (``make bench``) appends a record after every run: the date, the git commit (with
``+dirty`` when the tree had uncommitted changes), the set (quick or full), where it came from,
and ``figures``: every numeric median of the run's rows by row name (``"bulk kwik"``,
``"echo kwik p50"``, ``"core_bulk: core_bulk_MBps"``...), the same names the table prints.
``plot_history.py`` draws the key figures over the recorded runs (docs/performance.rst).

The first records were not made by ``run_all.py``: they are the figures the earlier sessions
wrote down (docs/performance.rst, the README, issue 18's table), entered by hand with their
dates and, where known, their commits; their ``source`` says so.  The file is tracked: it is the
project's memory of how fast it was.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

HISTORY = Path(__file__).resolve().parent / "results" / "history.jsonl"
ROOT = Path(__file__).resolve().parents[1]


def git_commit(root: Path = ROOT) -> str | None:
    """The checkout's commit (short), ``+dirty`` if it has uncommitted changes; ``None`` outside
    git."""
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def figures_of(rows: list[dict]) -> dict[str, float]:
    """Every row's numeric median by row name (error and missing rows are left out)."""
    return {r["name"]: r["median"] for r in rows
            if isinstance(r.get("median"), (int, float)) and not r.get("error")}


def record(rows: list[dict], *, set_name: str, source: str = "make bench",
           commit: str | None = None, date: str | None = None) -> dict:
    """The history record of one run."""
    return {
        "date": date or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": commit if commit is not None else git_commit(),
        "set": set_name,
        "source": source,
        "figures": figures_of(rows),
    }


def append(entry: dict, path: Path = HISTORY) -> Path:
    """Append one record (one line) to the history."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
    return path


def load(path: Path = HISTORY) -> list[dict]:
    """Every record, oldest first (blank lines skipped)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
