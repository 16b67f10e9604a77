"""
Two Kwik core connections in one process exchanging datagrams in memory (no sockets).

One stream, 1350-byte datagrams, AES-128-GCM on every packet.  Prints MB/s of application data and
microseconds of CPU per datagram (all datagrams, both directions, ACKs included), the figure to
compare
with aioquic's ~57 us per datagram measured the same way.  ``--profile`` runs pyinstrument or
cProfile.

The options that price a feature (docs/performance.rst, "What the features cost"): ``--qlog``
has both sides write a qlog trace (to a temporary directory, removed after), ``--qos`` opens the
stream with a QoS policy (every field set, none of them binding in memory: the cost of the
enforcer's bookkeeping), ``--key-update N`` updates the application keys every N packets (the
default is 2**22, never in a run of this size).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kwik_twisted.core.connection import Connection  # noqa: E402
from kwik_twisted.core.entropy import SeededEntropy  # noqa: E402
from kwik_twisted.events import StreamDataReceived  # noqa: E402
from kwik_twisted.testing.pair import (  # noqa: E402
    CLIENT_ADDR,
    SERVER_ADDR,
    MemoryPair,
    client_config,
    server_config,
)
from kwik_twisted.wire import QosPolicy  # noqa: E402

#: ``--qos``: a policy with every field set, loose enough never to bind in memory.
BENCH_POLICY = QosPolicy(min_bandwidth_kbps=1000, max_latency_ms=200, max_jitter_ms=50,
                         loss_threshold_ppm=10000)


def make_pair(*, qlog: str | None = None, key_update: int | None = None) -> MemoryPair:
    """A :class:`MemoryPair` (not yet handshaken), with both sides tracing to ``qlog`` if given
    and updating their keys every ``key_update`` packets if given."""
    kw = {} if key_update is None else {"key_update_interval": key_update}
    pair = MemoryPair(client_config(**kw), server_config(**kw))
    if qlog is not None:
        from kwik_twisted.glue.qlog import tracer_factory

        pair.dispatcher.new_tracer = tracer_factory(qlog, is_client=False)
        pair.client = Connection.client(
            client_config(**kw), local_addr=CLIENT_ADDR, remote_addr=SERVER_ADDR,
            entropy=SeededEntropy(1), now=pair.now,
            new_tracer=tracer_factory(qlog, is_client=True))
    return pair


def run_once(size: int, *, qlog: bool = False, qos: bool = False,
             key_update: int | None = None) -> tuple[float, int, float, float, int]:
    """
    Transfer ``size`` bytes once (``qlog``, ``qos``, ``key_update``: see the module docstring).

    Returns (CPU seconds, datagrams, sender seconds, receiver seconds, datagrams the sender
    sent).  The sender's share is the client's calls (writes, building and sealing packets,
    taking ACKs); the receiver's is the server's (opening, reassembling, delivering, ACKing).
    """
    trace_dir = tempfile.mkdtemp(prefix="core-bulk-qlog-") if qlog else None
    try:
        return _transfer(make_pair(qlog=trace_dir, key_update=key_update).handshake(), size,
                         BENCH_POLICY if qos else None)
    finally:
        if trace_dir is not None:
            shutil.rmtree(trace_dir, ignore_errors=True)


def _transfer(pair: MemoryPair, size: int, policy) -> tuple[float, int, float, float, int]:
    """:func:`run_once` on a handshaken ``pair``; the stream gets QoS ``policy`` if not None."""
    client, dispatcher = pair.client, pair.dispatcher
    sid = client.open_stream(qos=policy)
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
    parser.add_argument("--qlog", action="store_true", help="both sides write a qlog trace")
    parser.add_argument("--qos", action="store_true", help="the stream has a QoS policy")
    parser.add_argument("--key-update", type=int, metavar="N",
                        help="update the keys every N packets (default 2**22)")
    args = parser.parse_args()
    if args.profile:
        return _profile(args.size)
    results = [run_once(args.size, qlog=args.qlog, qos=args.qos, key_update=args.key_update)
               for _ in range(args.runs)]
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
