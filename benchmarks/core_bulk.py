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


def run_once(size: int) -> tuple[float, int, float, float, int]:
    """
    Transfer ``size`` bytes once.

    Returns (CPU seconds, datagrams, sender seconds, receiver seconds, datagrams the sender
    sent).  The sender's share is the client's calls (writes, building and sealing packets,
    taking ACKs); the receiver's is the server's (opening, reassembling, delivering, ACKing).
    """
    pair = MemoryPair().handshake()
    client, dispatcher = pair.client, pair.dispatcher
    sid = client.open_stream()
    chunk = bytes(range(256)) * 256
    clock = time.process_time
    sender = receiver = 0.0
    datagrams = sent = 0
    received = 0

    def pump() -> None:
        nonlocal sender, receiver, datagrams, received, sent
        now = pair.now
        while True:
            t0 = clock()
            out = client.datagrams_to_send(now=now)
            t1 = clock()
            for data, local, remote in out:
                dispatcher.receive_datagram(data, remote, local, now=now)
            back = dispatcher.datagrams_to_send(now=now)
            server = pair.server
            while (event := server.next_event()) is not None:
                if type(event) is StreamDataReceived:
                    received += len(event.data)
            t2 = clock()
            for data, local, remote in back:
                client.receive_datagram(data, remote, local, now=now)
            while client.next_event() is not None:
                pass
            t3 = clock()
            sender += (t1 - t0) + (t3 - t2)
            receiver += t2 - t1
            datagrams += len(out) + len(back)
            sent += len(out)
            if not out and not back:
                return

    start = clock()
    written = 0
    while written < size:
        t0 = clock()
        client.send_stream_data(sid, chunk)
        sender += clock() - t0
        written += len(chunk)
        if client.stream_writable(sid):
            continue
        pump()
    client.send_stream_data(sid, b"", end_stream=True)
    pump()
    elapsed = clock() - start
    if received != written:
        raise SystemExit(f"transfer incomplete: {received} of {written} bytes")
    return elapsed, datagrams, sender, receiver, sent


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
    packets = statistics.median(r[4] for r in results)  # the sender's datagrams
    out = {
        "core_bulk_MBps": args.size / seconds / 1e6,
        "core_us_per_datagram": seconds / datagrams * 1e6,
        "sender_us_per_packet": statistics.median(r[2] for r in results) / packets * 1e6,
        "receiver_us_per_packet": statistics.median(r[3] for r in results) / packets * 1e6,
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
        print(
            f"  sender {out['sender_us_per_packet']:.1f} us, receiver "
            f"{out['receiver_us_per_packet']:.1f} us of CPU per data packet (ACKs included)"
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
