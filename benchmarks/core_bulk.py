"""
Two Kwik core connections in one process exchanging datagrams in memory (no sockets).

One stream, 1350-byte datagrams, AES-128-GCM on every packet.  Prints MB/s of application data and
microseconds of CPU per datagram (all datagrams, both directions, ACKs included), the figure to
compare
with aioquic's ~57 us per datagram measured the same way.  ``--profile`` runs pyinstrument or
cProfile.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kwik_twisted.events import StreamDataReceived  # noqa: E402
from kwik_twisted.testing.pair import MemoryPair  # noqa: E402


def run_once(size: int) -> tuple[float, int]:
    """Transfer ``size`` bytes once; return (seconds, datagrams)."""
    pair = MemoryPair().handshake()
    sid = pair.client.open_stream()
    chunk = bytes(range(256)) * 256
    start = time.process_time()
    written = 0
    while written < size:
        pair.client.send_stream_data(sid, chunk)
        written += len(chunk)
        if pair.client.stream_writable(sid):
            continue
        pair.pump()
    pair.client.send_stream_data(sid, b"", end_stream=True)
    pair.pump()
    elapsed = time.process_time() - start
    received = sum(len(e.data) for e in pair.server_events if isinstance(e, StreamDataReceived))
    if received != written:
        raise SystemExit(f"transfer incomplete: {received} of {written} bytes")
    return elapsed, pair.datagrams


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=32 << 20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.profile:
        return _profile(args.size)
    results = [run_once(args.size) for _ in range(args.runs)]
    seconds = statistics.median(r[0] for r in results)
    datagrams = statistics.median(r[1] for r in results)
    out = {
        "core_bulk_MBps": args.size / seconds / 1e6,
        "core_us_per_datagram": seconds / datagrams * 1e6,
        "datagrams": datagrams,
        "spread_s": max(r[0] for r in results) - min(r[0] for r in results),
    }
    if args.json:
        print(json.dumps(out))
    else:
        size = args.size >> 20
        print(f"in-memory core, {size} MiB, one stream, AES-128-GCM, median of {args.runs}:")
        print(
            f"  {out['core_bulk_MBps']:.1f} MB/s, {out['core_us_per_datagram']:.1f} us CPU per "
            f"datagram ({int(datagrams)} datagrams, spread {out['spread_s']:.2f} s)"
        )
    return out


def _profile(size: int) -> dict:
    try:
        from pyinstrument import Profiler
    except ImportError:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(run_once, size)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return {}
    profiler = Profiler()
    profiler.start()
    run_once(size)
    profiler.stop()
    print(profiler.output_text(unicode=True, color=False))
    return {}


if __name__ == "__main__":
    main()
