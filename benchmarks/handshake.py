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

Resumption (``kwik`` only): ``kwik full`` and ``kwik resumed`` connect ``--runs`` times through
*one* client endpoint (``reuse=False``), with ``resumption=False`` and with TLS session tickets
(each connection offers the ticket the previous one left; the row counts how many resumed).
``server cpu`` rows: the server's TLS CPU per handshake (``time.process_time`` around its
``TlsSession.receive`` calls, sans-I/O, ``--cpu-runs`` handshakes), full and resumed; ``client cpu``
rows the same for the client (``start`` and ``receive``: certificate verification included).
"""

from __future__ import annotations

import argparse
import asyncio
import time

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
            if peer == "kwik":
                rows += await resumption_rows(args)
        return rows

    return harness.run_reactor(main)


def ttfb_shared(endpoint, port: int):
    """One connection through ``endpoint``: a Deferred firing with (seconds, resumed)."""
    from peers import twisted_peers
    from twisted.internet import defer, reactor
    from twisted.internet.protocol import Factory

    from kwik_twisted.endpoints import closeClientConnections

    @defer.inlineCallbacks
    def once():
        pinger = twisted_peers.Pinger(b"ping", 1, first_byte=True)
        pinger.started = time.perf_counter()
        proto = yield endpoint.connect(Factory.forProtocol(lambda: pinger))
        resumed = proto.transport.kwikConnection.core.handshake.tls.resumed
        samples = yield pinger.done
        yield closeClientConnections(reactor)
        return samples[0], resumed

    return once()


async def resumption_rows(args) -> list[dict]:
    """TTFB through one endpoint, full handshakes versus resumed ones (on the running reactor)."""
    from peers import twisted_peers
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory

    from kwik_twisted.endpoints import KwikClientEndpoint
    from kwik_twisted.testing.pair import client_config

    port = await twisted_peers.listen("kwik", Factory.forProtocol(twisted_peers.Echo))
    number = port.getHost().port
    rows = []
    for name, resumption in (("kwik full", False), ("kwik resumed", True)):
        endpoint = KwikClientEndpoint(reactor, "127.0.0.1", number, config=client_config(),
                                      reuse=False, resumption=resumption)
        values, resumed = [], 0
        for index in range(args.warmup + args.runs):
            seconds, was = await ttfb_shared(endpoint, number)
            if index >= args.warmup:
                values.append(seconds)
                resumed += was
        rows.append(row(name, harness.Result.of(values), resumed=f"{resumed}/{args.runs}"))
    await port.stopListening()
    return rows


def run_server_cpu(args) -> list[dict]:
    """The server's and the client's TLS CPU per handshake, full and resumed (sans-I/O)."""
    from kwik_twisted.core.crypto.handshake import TlsSession, make_context
    from kwik_twisted.testing.pair import client_config, server_config

    server_tls, client_tls = server_config().tls, client_config().tls
    server_ctx = make_context(server_tls, is_client=False)
    client_ctx = make_context(client_tls, is_client=True)

    clock = time.process_time

    def handshake(session):
        spent = [0.0, 0.0]  # server, client

        def timed(side: int, call, *data):
            started = clock()
            out = call(*data)
            spent[side] += clock() - started
            return out

        client = TlsSession(client_tls, is_client=True, context=client_ctx, session=session)
        server = TlsSession(server_tls, is_client=False, context=server_ctx)
        flight = timed(0, server.receive, timed(1, client.start))
        tickets = timed(0, server.receive, timed(1, client.receive, flight))
        timed(1, client.receive, tickets)
        assert server.resumed == (session is not None)
        return spent, client.session

    rows = []
    for name, resume in (("full", False), ("resumed", True)):
        session, servers, clients = handshake(None)[1], [], []
        for _ in range(args.cpu_runs):
            (server_s, client_s), fresh = handshake(session if resume else None)
            servers.append(server_s * 1e3)
            clients.append(client_s * 1e3)
            session = fresh
        rows.append(harness.result_row(f"server cpu {name}", harness.Result.of(servers), "ms"))
        rows.append(harness.result_row(f"client cpu {name}", harness.Result.of(clients), "ms"))
    return rows


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
    parser.add_argument("--cpu-runs", type=int, default=200,
                        help="handshakes timed for the server cpu rows")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args(argv)
    peers = PEERS if args.peer == "all" else (args.peer,)
    twisted = [p for p in peers if p in ("kwik", "twisted-tcp")]
    rows = run_twisted(twisted, args) if twisted else []
    if "kwik" in peers:
        rows += run_server_cpu(args)
    rows += [run_quic(p, args) for p in peers if p in ("aioquic", "qh3")]
    names = ("kwik", "kwik full", "kwik resumed", *PEERS[1:])
    order = {f"ttfb {p}": i for i, p in enumerate(names)}
    rows.sort(key=lambda r: order.get(r["name"], len(order)))
    out = {"results": rows}
    harness.emit(args, out, lambda: harness.print_table(
        harness.table_of(rows), headers=harness.HEADERS,
        title=f"time to first byte on a fresh connection, median of {args.runs}:"))
    return out


if __name__ == "__main__":
    main()
