"""
Small-message echo round trips over loopback: Kwik vs Twisted TCP vs raw Twisted UDP.

The client sends ``--bytes`` (default 64), waits for all of them to come back, and sends again,
``--count`` times (default 2000) on one connection; the first ``--discard`` round trips (default
100) warm up and are not counted.  Reported: the p50 and p99 round trip in microseconds, each the
median over ``--runs`` runs (fresh connection each) with its spread.

Peers: ``kwik`` (one Kwik stream through the endpoints, encrypted), ``twisted-tcp`` (TCP_NODELAY,
no encryption), ``twisted-udp`` (one datagram each way, no encryption, no reliability: the floor),
and with ``--peer all`` also ``aioquic`` and ``qh3`` (one stream, their asyncio API).  Client and
server share one process and one event loop, as in the other benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio

import harness
from peers import PeerMissing

TWISTED = ("kwik", "twisted-tcp", "twisted-udp")
QUIC = ("aioquic", "qh3")


def summarise(name: str, runs: list[list[float]], discard: int) -> list[dict]:
    """Rows for p50 and p99 (microseconds) over the runs."""
    rows = []
    for p in (50, 99):
        values = [harness.percentile(samples[discard:], p) * 1e6 for samples in runs]
        result = harness.Result.of(values)
        rows.append(harness.result_row(f"echo {name} p{p}", result, "us"))
    return rows


def run_twisted(peers, args) -> list[dict]:
    """The Twisted peers, one reactor."""
    from peers import twisted_peers
    from twisted.internet.protocol import Factory

    count = args.count + args.discard

    async def main(reactor) -> dict:
        samples = {}
        for peer in peers:
            runs = []
            if peer == "twisted-udp":
                for _ in range(args.runs):
                    runs.append(await twisted_peers.udp_echo_rounds(count, args.bytes))
            else:
                kind = "kwik" if peer == "kwik" else "tcp"
                port = await twisted_peers.listen(kind, Factory.forProtocol(twisted_peers.Echo))
                for _ in range(args.runs):
                    runs.append(await twisted_peers.echo_rounds(kind, port.getHost().port, count,
                                                                args.bytes))
                await port.stopListening()
            samples[peer] = runs
        return samples

    samples = harness.run_reactor(main)
    rows = []
    for peer in peers:
        rows += summarise(peer, samples[peer], args.discard)
    return rows


def run_quic(name: str, args) -> list[dict]:
    """aioquic or qh3 on asyncio."""
    from peers import certs, quic_asyncio

    try:
        quic_asyncio.library(name)
    except PeerMissing as e:
        return [harness.missing_row(f"echo {name}", "us", str(e))]
    certdir = certs.write()
    runs = [asyncio.run(quic_asyncio.echo(name, certdir, count=args.count + args.discard,
                                          size=args.bytes)) for _ in range(args.runs)]
    return summarise(name, runs, args.discard)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", default="default",
                        choices=("default", "all", *TWISTED, *QUIC),
                        help="default: kwik, twisted-tcp, twisted-udp; all: also aioquic, qh3")
    parser.add_argument("--count", type=int, default=2000, help="round trips counted per run")
    parser.add_argument("--discard", type=int, default=100, help="warm-up round trips per run")
    parser.add_argument("--bytes", type=int, default=64, help="message size")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args(argv)
    peers = {"default": TWISTED, "all": TWISTED + QUIC}.get(args.peer, (args.peer,))
    rows = []
    twisted = [p for p in peers if p in TWISTED]
    if twisted:
        rows += run_twisted(twisted, args)
    for name in (p for p in peers if p in QUIC):
        rows += run_quic(name, args)
    out = {"results": rows}
    harness.emit(args, out, lambda: harness.print_table(
        harness.table_of(rows), headers=harness.HEADERS,
        title=f"echo, {args.bytes}-byte messages, {args.count} round trips, median of "
              f"{args.runs} runs:"))
    return out


if __name__ == "__main__":
    main()
