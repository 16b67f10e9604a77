"""
``make demo`` (``python -m kwik_twisted.tools.demo``), run as a separate program with small sizes:
the two-path demo through two relays with path 1 cut and restored, and the old single-path demo.

Each run is a few seconds of real UDP on the loopback; the demo checks the SHA-256 of what arrived
and exits 0 only when it matches.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from kwik_twisted.tools.demo import qlog_supported, second_address_usable
from tests.glue.processes import ROOT, child_environment


def demo(*arguments: str) -> str:
    """Run the demo with ``arguments``; return what it printed (with ``\\r`` as newlines), after
    checking that it exited 0."""
    done = subprocess.run(
        [sys.executable, "-m", "kwik_twisted.tools.demo", *arguments],
        capture_output=True, text=True, timeout=90, cwd=ROOT, env=child_environment(),
    )
    out = done.stdout.replace("\r", "\n")
    assert done.returncode == 0, out + done.stderr
    return out


@pytest.mark.skipif(not second_address_usable(), reason="cannot bind 127.0.0.2")
def test_two_path_demo_cuts_a_path_and_reports_each(tmp_path):
    """By default the demo uploads over two relayed paths, shows per-path rates while it runs,
    cuts path 1 and restores it, then prints one summary line per path with what it carried,
    and verifies the SHA-256.  With the plots extra and qlog it also leaves the client's trace
    and a PNG picture of it in ``--qlog-dir``."""
    out = demo("--size", "6", "--outage", "0.3", "--qlog-dir", str(tmp_path))
    assert "path 0:" in out and "path 1:" in out and "Mbit/s" in out
    assert "cutting path 1" in out and "restoring path 1" in out
    for path in (0, 1):
        (line,) = [x for x in out.splitlines() if x.startswith(f"  path {path} (")]
        assert "MiB" in line and "carried" in line, line
    assert "verified: every byte arrived intact" in out
    if qlog_supported():
        assert list(tmp_path.glob("*client*.sqlog")), out
        if importlib.util.find_spec("matplotlib") is not None:
            (picture,) = tmp_path.glob("*client*.png")
            assert picture.read_bytes().startswith(b"\x89PNG"), out


def test_single_path_demo_still_runs():
    """``--single-path`` keeps the old demo: one path straight to the server, a report with the
    sender's smoothed and minimum RTT, and a verified SHA-256."""
    out = demo("--single-path", "--size", "2")
    assert "sender path 0" in out and "min" in out
    assert "verified: every byte arrived intact" in out
