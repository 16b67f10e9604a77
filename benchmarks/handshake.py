"""
Time to first byte: ``connect`` to the first byte of the server's response, fresh connections.

Each sample opens a new connection to a server that is already listening, sends ``ping`` on one
stream and stops the clock at the first byte echoed back: the handshake (TLS 1.3 with the
development certificates, certificate verification included) plus one round trip.  Reported: the
median over ``--runs`` connections (default 20, after ``--warmup`` 2) with its spread, in
milliseconds.

Peers: ``kwik`` (``KwikClientEndpoint(..., reuse=False)``, so no pooled connection is reused),
``aioquic`` and ``qh3`` (their asyncio ``connect``), and ``twisted-tcp`` for reference (a TCP
connection, no TLS: the floor of the event loop itself).  Client and server share one process.
"""

from __future__ import annotations

import argparse
import asyncio

import harness
from peers import PeerMissing

PEERS = ("kwik", "aioquic", "qh3", "twisted-tcp")


def row(name: str, result: harness.Result, **extra) -> dict:
    """A result row in milliseconds."""
    ms = harness.Result.of([v * 1e3 for v in result.values])
    return harness.result_row(f"ttfb {name}", ms, "ms", **extra)


def run_twisted(peers, args) -> list[dict]:
    """Kwik and TCP on one reactor."""
    from peers import twisted_peers
    from twisted.internet.protocol import Factory

    async def main(reactor) -> list[dict]:
        rows = []
        for peer in peers:
            kind = "kwik" if peer == "kwik" else "tcp"
            port = await twisted_peers.listen(kind, Factory.forProtocol(twisted_peers.Echo))
            number = port.getHost().port
            result = await harness.measure_deferred(
                lambda kind=kind, number=number: twisted_peers.ttfb_once(kind, number),
                runs=args.runs, warmup=args.warmup)
            await port.stopListening()
            rows.append(row(peer if kind == "kwik" else "twisted-tcp (no TLS)", result))
        return rows

    return harness.run_reactor(main)


def run_quic(name: str, args) -> dict:
    """aioquic or qh3."""
    from peers import certs, quic_asyncio

    try:
        lib = quic_asyncio.library(name)
    except PeerMissing as e:
        return harness.missing_row(f"ttfb {name}", "ms", str(e))
    result = asyncio.run(quic_asyncio.ttfb(name, certs.write(), runs=args.runs,
                                           warmup=args.warmup))
    return row(name, result, version=lib.version)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", default="all", choices=("all", *PEERS))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args(argv)
    peers = PEERS if args.peer == "all" else (args.peer,)
    twisted = [p for p in peers if p in ("kwik", "twisted-tcp")]
    rows = run_twisted(twisted, args) if twisted else []
    rows += [run_quic(p, args) for p in peers if p in ("aioquic", "qh3")]
    order = {f"ttfb {p}": i for i, p in enumerate(PEERS)}
    rows.sort(key=lambda r: order.get(r["name"], len(order)))
    out = {"results": rows}
    harness.emit(args, out, lambda: harness.print_table(
        harness.table_of(rows), headers=harness.HEADERS,
        title=f"time to first byte on a fresh connection, median of {args.runs}:"))
    return out


if __name__ == "__main__":
    main()
