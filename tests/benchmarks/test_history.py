"""
The benchmark history and its helpers: ``benchmarks/history.py`` (records appended and read
back), ``plot_history.py`` (a figure's series over the runs, the PNGs), ``interleave.py`` (the
figures of one script's JSON) and ``bulk.py --config`` parsing.  Nothing here runs a benchmark.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:  # the scripts import harness and peers as top-level modules
    sys.path.insert(0, str(BENCHMARKS))

import bulk  # noqa: E402
import history  # noqa: E402
import interleave  # noqa: E402
import plot_history  # noqa: E402

ROWS = [
    {"name": "bulk kwik", "median": 41.5, "spread": 2.0, "unit": "MB/s"},
    {"name": "bulk qh3", "median": None, "missing": "not installed", "unit": "MB/s"},
    {"name": "echo kwik p50", "median": 180, "unit": "us"},
    {"name": "handshake", "error": "timed out after 300 s"},
]


class HistoryTests(SynchronousTestCase):
    """One JSON line per run, with the figures of every row that has a number."""

    def test_record_keeps_numeric_medians_only(self) -> None:
        """Missing and error rows leave no figure; the date, set, source and commit are kept."""
        entry = history.record(ROWS, set_name="quick", commit="abc1234", date="2026-12-07")
        self.assertEqual(entry["figures"], {"bulk kwik": 41.5, "echo kwik p50": 180})
        self.assertEqual((entry["date"], entry["commit"], entry["set"], entry["source"]),
                         ("2026-12-07", "abc1234", "quick", "make bench"))

    def test_append_then_load_in_order(self) -> None:
        """Each append adds one line; load returns the records oldest first."""
        path = Path(self.mktemp())
        for i in range(3):
            history.append({"date": f"d{i}", "figures": {"x": i}}, path)
        self.assertEqual(len(path.read_text().splitlines()), 3)
        self.assertEqual([e["figures"]["x"] for e in history.load(path)], [0, 1, 2])

    def test_load_missing_file_is_empty(self) -> None:
        """No history yet: no records, no error."""
        self.assertEqual(history.load(Path(self.mktemp())), [])

    def test_tracked_history_parses(self) -> None:
        """The project's history file is valid: every record has a date, source and figures."""
        entries = history.load()
        self.assertTrue(entries)
        for entry in entries:
            self.assertIn("date", entry)
            self.assertIn("source", entry)
            self.assertIsInstance(entry["figures"], dict)


class PlotTests(SynchronousTestCase):
    """A figure's series skips runs without it and marks hand-entered runs."""

    ENTRIES = [
        {"date": "2026-11-24", "commit": "aa37b31", "source": "seeded by hand",
         "figures": {"bulk kwik": 42.1}},
        {"date": "2026-12-06", "commit": None, "source": "make bench", "figures": {"x": 1}},
        {"date": "2026-12-07", "commit": "f00", "source": "make bench",
         "figures": {"bulk kwik": 40.0}},
    ]

    def test_series(self) -> None:
        """Indices follow the history; only runs made by make bench count as measured."""
        xs, ys, measured = plot_history.series(self.ENTRIES, "bulk kwik")
        self.assertEqual((xs, ys, measured), ([0, 2], [42.1, 40.0], [False, True]))

    def test_plot_writes_png_or_nothing(self) -> None:
        """A figure some run has becomes a PNG; one no run has gives None."""
        out = Path(self.mktemp())
        path = plot_history.plot(self.ENTRIES, "bulk", out)
        self.assertEqual(path.read_bytes()[:8], b"\x89PNG\r\n\x1a\n")
        self.assertIsNone(plot_history.plot(self.ENTRIES, "workers", out))


class HelperTests(SynchronousTestCase):
    """interleave.py's figure lookup and bulk.py's --config parsing."""

    def test_figures_of_flat_and_rows(self) -> None:
        """A flat key or a result row's name; an absent one is None."""
        flat = {"core_bulk_MBps": 50.0}
        self.assertEqual(interleave.figures_of(flat, ["core_bulk_MBps", "nope"]),
                         {"core_bulk_MBps": 50.0, "nope": None})
        rows = json.loads(json.dumps({"results": ROWS}))
        self.assertEqual(interleave.figures_of(rows, ["bulk kwik"]), {"bulk kwik": 41.5})

    def test_config_fields(self) -> None:
        """Integers, floats, booleans and strings, by their text."""
        self.assertEqual(
            bulk.config_fields(["key_update_interval=1000", "pmtud=False", "initial_rtt=0.1",
                                "congestion_control=newreno"]),
            {"key_update_interval": 1000, "pmtud": False, "initial_rtt": 0.1,
             "congestion_control": "newreno"})
