"""
Plots of goodput per link over time from ``multipath_netns.py --json`` output (matplotlib needed:
``pip install -e '.[plots]'``).

For each scenario the first run's time series (bytes sent by each client veth every 100 ms) becomes
Mbit/s per link; Kwik and MPTCP share an axis.  Two PNGs come out: ``multipath-aggregation.png``
(40+40 and 40+10 Mbit/s) and ``multipath-failover.png`` (link 1 cut 2 s in).

    python benchmarks/multipath_netns.py --json > mp.json
    python benchmarks/plot_multipath.py mp.json --out docs/_static
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def link_rates(series: list[dict]) -> tuple[list[float], list[list[float]]]:
    """Times (midpoints) and Mbit/s of each link between consecutive samples."""
    times: list[float] = []
    rates: list[list[float]] = [[] for _ in series[0]["tx"]] if series else []
    for before, after in zip(series, series[1:]):
        dt = after["t"] - before["t"]
        if dt <= 0:
            continue
        times.append((before["t"] + after["t"]) / 2)
        for link, (a, b) in enumerate(zip(before["tx"], after["tx"])):
            rates[link].append((b - a) * 8 / dt / 1e6)
    return times, rates


def cut_time(events: list[dict]) -> float | None:
    """When the benchmark took a link down, if it did."""
    for event in events:
        if "down" in event.get("event", ""):
            return event["t"]
    return None


def plot(details: list[dict], scenarios: list[str], title: str, path: Path) -> None:
    """One row per scenario, Kwik and MPTCP side by side, Mbit/s per link over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peers = ["kwik", "mptcp"]
    fig, axes = plt.subplots(
        len(scenarios), len(peers), figsize=(10, 3 * len(scenarios)), squeeze=False, sharey=True
    )
    for row, scenario in enumerate(scenarios):
        for col, peer in enumerate(peers):
            ax = axes[row][col]
            found = [d for d in details if d["peer"] == peer and d["scenario"] == scenario]
            ax.set_title(f"{'Kwik' if peer == 'kwik' else 'kernel MPTCP'}, {scenario} Mbit/s")
            if not found or not found[0]["runs"]:
                ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
                continue
            run = found[0]["runs"][0]
            times, rates = link_rates(run["series"])
            for link, values in enumerate(rates, start=1):
                ax.plot(times, values, label=f"link {link}")
            ax.plot(times, [sum(v) for v in zip(*rates)], label="sum", linestyle="--")
            cut = cut_time(run.get("events", []))
            if cut is not None:
                ax.axvline(cut, color="grey", linestyle=":", label="link 1 cut")
            ax.set_xlabel("seconds")
            ax.set_ylabel("Mbit/s sent")
            ax.grid(alpha=0.3)
            ax.legend(loc="lower right", fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", type=Path, help="multipath_netns.py --json output")
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for the PNGs")
    args = parser.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[plots]')", file=sys.stderr)
        return 1
    data = json.loads(args.json.read_text())
    details = data.get("details", [])
    args.out.mkdir(parents=True, exist_ok=True)
    aggregation = args.out / "multipath-aggregation.png"
    failover = args.out / "multipath-failover.png"
    plot(details, ["40+40", "40+10"], "Aggregation: Mbit/s per link", aggregation)
    plot(details, ["failover 40+40"], "Failover: link 1 cut 2 s in", failover)
    print(aggregation)
    print(failover)
    return 0


if __name__ == "__main__":
    sys.exit(main())
