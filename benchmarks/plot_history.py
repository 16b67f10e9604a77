"""
Plots of the key benchmark figures over the recorded runs (``benchmarks/results/history.jsonl``).

One PNG per key figure in ``--out`` (``docs/_static/performance``), Kwik and the peers measured
in the same run on one axis, one point per recorded run that has the figure, in the order of the
history (the x axis labels each run with its date and commit).  Hollow markers are runs entered
by hand from earlier sessions' notes (their ``source`` is not ``make bench``).  A regression
shows as a Kwik line going the wrong way while its peers stay level.  Needs matplotlib
(``pip install -e '.[plots]'`` or ``.[bench]``).

    python benchmarks/plot_history.py                      # docs/_static/performance/*.png
    python benchmarks/plot_history.py --history other.jsonl --out /tmp/plots
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import history

OUT = Path(__file__).resolve().parents[1] / "docs" / "_static" / "performance"

#: file stem -> (title, unit, [(row name, label)], True where higher is better)
PLOTS: dict[str, tuple[str, str, list[tuple[str, str]], bool]] = {
    "bulk": ("Bulk over loopback, one stream, one process", "MB/s", [
        ("bulk kwik", "Kwik"), ("bulk kwik-pmtud", "Kwik, PMTUD on"),
        ("bulk qh3", "qh3"), ("bulk aioquic", "aioquic")], True),
    "bulk-2proc": ("Bulk over loopback, server in a second process", "MB/s", [
        ("bulk kwik (2 processes)", "Kwik")], True),
    "core": ("In-memory core, two connections, no sockets", "MB/s", [
        ("core_bulk: core_bulk_MBps", "Kwik")], True),
    "echo": ("Echo round trip p50, 64 bytes, loopback", "µs", [
        ("echo kwik p50", "Kwik"), ("echo qh3 p50", "qh3"), ("echo aioquic p50", "aioquic"),
        ("echo twisted-tcp p50", "Twisted TCP")], False),
    "echo-p99": ("Echo round trip p99, 64 bytes, loopback", "µs", [
        ("echo kwik p99", "Kwik"), ("echo qh3 p99", "qh3"), ("echo aioquic p99", "aioquic"),
        ("echo twisted-tcp p99", "Twisted TCP")], False),
    "handshake": ("Time to first byte, TLS handshake included", "ms", [
        ("ttfb kwik", "Kwik"), ("ttfb kwik resumed", "Kwik resumed"),
        ("ttfb qh3", "qh3"), ("ttfb aioquic", "aioquic")], False),
    "wire": ("Codec, one 1350-byte packet, AES-128-GCM", "µs", [
        ("wire: encode_aes-gcm_us", "encode"), ("wire: decode_aes-gcm_us", "decode")], False),
    "memory": ("Python heap per idle connection", "KiB", [
        ("idle client traced", "client"), ("idle server traced", "server")], False),
    "multipath": ("Two tbf links, goodput as % of the link sum", "%", [
        ("kwik 40+40 Mbit/s", "Kwik 40+40"), ("kwik 40+10 Mbit/s", "Kwik 40+10"),
        ("mptcp 40+40 Mbit/s", "MPTCP 40+40"), ("mptcp 40+10 Mbit/s", "MPTCP 40+10")], True),
    "workers": ("Full handshakes per second, worker processes", "handshakes/s", [
        ("handshakes 1 workers", "1 worker"), ("handshakes 2 workers", "2 workers")], True),
}


def run_label(entry: dict) -> str:
    """The x-axis label of one run: its date and commit."""
    commit = entry.get("commit") or "commit ?"
    return f"{entry.get('date', '?')[:10]}\n{commit[:14]}"


def series(entries: list[dict], name: str) -> tuple[list[int], list[float], list[bool]]:
    """(run indices, values, made by ``make bench``) of one figure over the history."""
    xs, ys, measured = [], [], []
    for i, entry in enumerate(entries):
        value = entry.get("figures", {}).get(name)
        if isinstance(value, (int, float)):
            xs.append(i)
            ys.append(value)
            measured.append(entry.get("source") == "make bench")
    return xs, ys, measured


def plot(entries: list[dict], stem: str, out: Path) -> Path | None:
    """Draw one key figure; the PNG's path, or ``None`` when no run has it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title, unit, names, higher = PLOTS[stem]
    drawn = [(label, *series(entries, name)) for name, label in names]
    drawn = [d for d in drawn if d[1]]
    if not drawn:
        return None
    used = sorted({x for d in drawn for x in d[1]})
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=80)
    for label, xs, ys, measured in drawn:
        (line,) = ax.plot(xs, ys, "-", label=label, linewidth=1.2)
        colour = line.get_color()
        for x, y, m in zip(xs, ys, measured):
            ax.plot([x], [y], "o", color=colour, markersize=5,
                    markerfacecolor=colour if m else "white")
    ax.set_xticks(used, [run_label(entries[i]) for i in used], fontsize=6)
    ax.set_ylabel(unit)
    ax.set_ylim(bottom=0)
    ax.set_title(f"{title} ({'higher' if higher else 'lower'} is better)", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=Path, default=history.HISTORY)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed: pip install -e '.[plots]'", file=sys.stderr)
        return 1
    entries = history.load(args.history)
    if not entries:
        print(f"no runs recorded in {args.history}", file=sys.stderr)
        return 1
    for stem in PLOTS:
        path = plot(entries, stem, args.out)
        print(f"{stem}: {path or 'no run has it'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
