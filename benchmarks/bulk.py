"""
Bulk transfer over real loopback UDP: Kwik through its Twisted endpoints, and the same with peers.

One stream, client to server, ``--size`` MB (default 50) of the same pseudo-random bytes, 1350-byte
datagrams (path MTU discovery off, except in the ``kwik-pmtud`` row), encryption on, client and
server in one process, a fresh connection per run.  The sample is the time from the first byte
written to the last byte received; the figure is MB/s (10^6 bytes), the median of ``--runs`` runs
after ``--warmup`` discarded ones.

``--peer`` picks what runs:

* ``kwik`` (default): Kwik endpoints on the Twisted reactor, the sender a streaming producer writing
  64 KiB chunks.  ``--two-process`` puts the server in a child process (it acks the last byte with
  one byte back, so the time includes half a round trip more).
* ``kwik-pmtud``: the same with path MTU discovery on (``pmtud=yes``; ``kwik`` runs with it off):
  each fresh connection probes its way up to ``max_udp_payload`` (16384 bytes) on loopback
  within a few round trips.
* ``aioquic`` / ``qh3``: the same transfer with those QUIC libraries on asyncio (their own API:
  one ``send_stream_data`` of the whole payload), same certificates and datagram size.
* ``twisted-tcp``: the ceiling of a Twisted TCP connection on loopback (no encryption).
* ``twisted-udp``: raw 1350-byte datagrams blasted through Twisted UDP ports, no flow control, no
  encryption: MB/s that arrived, and the loss.
* ``all``: each of the above in its own subprocess, side by side.

``--config FIELD=VALUE`` (repeatable) sets a :class:`~kwik_twisted.config.ConnectionConfig` field
on both Kwik sides of the one-process rows (``--config key_update_interval=1000``); a qlog trace
of both sides is ``QLOGDIR=DIR`` in the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
from pathlib import Path

import harness
from peers import PeerMissing, Stalled

PEERS = ("kwik", "kwik-pmtud", "aioquic", "qh3", "twisted-tcp", "twisted-udp")
#: What each row's note says.  qh3 (1.6 on) has client-only MTU discovery, on by default
#: (``QuicConfiguration.probe_datagram_size``, in its Rust core); its row keeps that default with
#: the 1350-byte ``max_datagram_size`` every QUIC peer here gets.
NOTES = {
    "kwik": "1350-byte datagrams (pmtud off)",
    "kwik-pmtud": "path MTU discovery on, up to 16384-byte datagrams",
    "qh3": "probe_datagram_size=True (its default, client only), max_datagram_size 1350",
}
HERE = Path(__file__).resolve()


def payload_of(size: int) -> bytes:
    """The bytes every peer sends (the same for every run and peer)."""
    return random.Random(7).randbytes(size)


def to_mbps(result: harness.Result, size: int) -> harness.Result:
    """Seconds per transfer to MB/s."""
    return harness.Result.of([size / s / 1e6 for s in result.values])


# -- the peers -------------------------------------------------------------------------------


def run_twisted(kind: str, size: int, args) -> dict:
    """Kwik or TCP on the Twisted reactor (in this process, or Kwik's server in a child)."""
    from peers import certs, twisted_peers

    certdir = certs.write()
    dev = certs.load(certdir)
    payload = payload_of(size)
    child = _start_child(certdir, size) if args.two_process else None

    async def main(reactor) -> harness.Result:
        if child is not None:
            port, state, listening = child[1], None, None
        else:
            factory, state = twisted_peers.sink_factory(size)
            listening = await twisted_peers.listen(kind, factory, dev)
            port = listening.getHost().port
        try:
            return await harness.measure_deferred(
                lambda: twisted_peers.bulk_once(kind, port, payload, state, dev,
                                                remote=child is not None,
                                                timeout=args.stall_timeout),
                runs=args.runs, warmup=args.warmup)
        finally:
            if listening is not None:
                await listening.stopListening()

    try:
        result = harness.run_reactor(main)
    finally:
        if child is not None:
            child[0].terminate()
            child[0].wait()
    name = kind if kind.startswith("kwik") else "twisted-tcp"
    if args.two_process:
        name += " (2 processes)"
    extra = {"note": NOTES[kind]} if kind in NOTES else {}
    if args.config and kind.startswith("kwik"):
        extra["config"] = config_fields(args.config)
    return harness.result_row(f"bulk {name}", to_mbps(result, size), "MB/s", size=size, **extra)


def run_quic(name: str, size: int, args) -> dict:
    """aioquic or qh3 on asyncio."""
    from peers import certs, quic_asyncio

    quic_asyncio.library(name)  # PeerMissing before any work
    certdir = certs.write()
    result = asyncio.run(quic_asyncio.bulk(name, certdir, payload_of(size), runs=args.runs,
                                           warmup=args.warmup, timeout=args.stall_timeout))
    version = quic_asyncio.library(name).version
    extra = {"note": NOTES[name]} if name in NOTES else {}
    return harness.result_row(f"bulk {name}", to_mbps(result, size), "MB/s", size=size,
                              version=version, **extra)


def run_udp(size: int, args) -> dict:
    """The raw UDP blast."""
    from peers import twisted_peers

    blasts = []

    async def main(reactor):
        for i in range(args.warmup + args.runs):
            blast = await twisted_peers.udp_blast(size)
            if i >= args.warmup:
                blasts.append(blast)

    harness.run_reactor(main)
    result = harness.Result.of([b["received_bytes"] / b["seconds"] / 1e6 for b in blasts])
    loss = sorted(b["loss"] for b in blasts)[len(blasts) // 2]
    return harness.result_row("bulk twisted-udp (raw, delivered)", result, "MB/s", size=size,
                              loss=loss)


def config_fields(pairs: list[str]) -> dict:
    """``["key_update_interval=1000", "pmtud=false"]`` as config fields (ints, floats, booleans
    and strings)."""
    fields = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        value: object = text
        if text.lower() in ("true", "false"):
            value = text.lower() == "true"
        else:
            for kind in (int, float):
                try:
                    value = kind(text)
                    break
                except ValueError:
                    pass
        fields[key.strip()] = value
    return fields


def run_one(peer: str, args) -> dict:
    """Run ``peer`` in this process; its result row."""
    size = int(args.size * 1e6)
    if args.config:
        from peers import twisted_peers

        twisted_peers.KWIK_CONFIG.update(config_fields(args.config))
    try:
        if peer in ("kwik", "kwik-pmtud"):
            return run_twisted(peer, size, args)
        if peer == "twisted-tcp":
            return run_twisted("tcp", size, args)
        if peer == "twisted-udp":
            return run_udp(size, args)
        return run_quic(peer, size, args)
    except PeerMissing as e:
        return harness.missing_row(f"bulk {peer}", "MB/s", str(e))
    except (Stalled, TimeoutError) as e:
        return {"name": f"bulk {peer}", "median": None, "spread": None, "unit": "MB/s",
                "error": "stalled", "detail": str(e)}


# -- process plumbing ------------------------------------------------------------------------


def _start_child(certdir: Path, size: int):
    """Start the Kwik server in a child process; (process, port)."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE), "--serve-child", str(certdir), "--size", str(size / 1e6)],
        stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.terminate()
        raise SystemExit(f"the server child did not start: {line!r}")
    return proc, int(line)


def serve_child(certdir: str, size: int) -> None:
    """The child: a Kwik sink that acks the last byte, until its parent terminates it."""
    from peers import certs, twisted_peers
    from twisted.internet import reactor

    factory, _ = twisted_peers.sink_factory(size, ack=True)

    def listening(port) -> None:
        print(port.getHost().port, flush=True)

    twisted_peers.listen("kwik", factory, certs.load(certdir)).addCallback(listening)
    reactor.run()


def run_subprocesses(peers, args) -> list[dict]:
    """Each peer in its own process (a fresh reactor or event loop each)."""
    rows = []
    for peer in peers:
        cmd = [sys.executable, str(HERE), "--peer", peer, "--json", "--size", str(args.size),
               "--runs", str(args.runs), "--warmup", str(args.warmup)]
        cmd += [f"--config={pair}" for pair in args.config]
        harness.log(f"bulk: {peer} ...")
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=args.timeout)
        if done.returncode != 0:
            rows.append({"name": f"bulk {peer}", "median": None, "spread": None, "unit": "MB/s",
                         "error": f"exit status {done.returncode}"})
            continue
        rows.extend(json.loads(done.stdout.strip().splitlines()[-1])["results"])
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", default="kwik", choices=(*PEERS, "all"))
    parser.add_argument("--size", type=float, default=50, help="MB to send (default 50)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--two-process", action="store_true", help="Kwik server in a child")
    parser.add_argument("--timeout", type=float, default=600, help="per subprocess (--peer all)")
    parser.add_argument("--stall-timeout", type=float, default=120,
                        help="seconds one transfer may take before it counts as stalled")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--config", action="append", default=[], metavar="FIELD=VALUE",
                        help="a ConnectionConfig field for both Kwik sides (repeatable)")
    parser.add_argument("--serve-child", metavar="CERTDIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_child:
        serve_child(args.serve_child, int(args.size * 1e6))
        return {}
    if args.two_process and not args.peer.startswith("kwik"):
        parser.error("--two-process is for --peer kwik or kwik-pmtud")
    if args.peer == "all":
        rows = run_subprocesses(PEERS, args)
    else:
        rows = [run_one(args.peer, args)]
    out = {"results": rows}
    harness.emit(args, out, lambda: harness.print_table(
        harness.table_of(rows), headers=harness.HEADERS,
        title=f"bulk, one stream, {args.size:g} MB over 127.0.0.1, median of {args.runs} runs "
              f"(after {args.warmup} warm-up):"))
    return out


if __name__ == "__main__":
    sys.exit(1 if any(r.get("error") for r in main().get("results", ())) else 0)
