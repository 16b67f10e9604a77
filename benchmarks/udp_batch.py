"""
Datagrams per second of 1350-byte UDP datagrams over loopback: plain sendto vs GSO, with and
without GRO, on raw sockets and through Twisted ports.

Raw sockets (one thread): the sender sends a burst of ``--batch`` datagrams (plain ``sendto`` each,
or ``sendmsg`` with ``UDP_SEGMENT`` in chunks of 10, 32 or 64 segments, at most 65507 bytes each),
then the receiver drains its socket (``recvfrom`` each, or ``recvmsg`` with ``UDP_GRO`` and the
split into datagrams); the two phases are timed apart.  Loopback delivery happens inside the send
call, so the send figure includes the kernel's receive path, and the receive figure is what reading
costs.  Reported per mode: send, receive and overall datagrams/s, and datagrams per receive call.

Twisted (``--twisted``, on by default): a sender port writes bursts of 64 datagrams to a receiver
port on the same reactor, the next burst once the last one arrived: Twisted's own ``Port``
(``write`` each), :class:`kwik_twisted.glue.udp.BatchingPort` with GSO/GRO off, and with them on
(``sendBatch``).  Run: ``python benchmarks/udp_batch.py [--json]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import time

import harness
from twisted.internet.protocol import DatagramProtocol

from kwik_twisted.glue.udp import (
    MAX_GSO_PAYLOAD,
    SOL_UDP,
    UDP_GRO,
    UDP_SEGMENT,
    gro_supported,
    gso_supported,
    listenBatchingUDP,
)

DATAGRAM = 1350
BUFFER = 4 * 1024 * 1024
BURST = 64


def _chunks(payloads: list[bytes], per_call: int) -> list[list[bytes]]:
    per_call = min(per_call, MAX_GSO_PAYLOAD[socket.AF_INET] // DATAGRAM)
    return [payloads[i : i + per_call] for i in range(0, len(payloads), per_call)]


def _pair(gro: bool) -> tuple[socket.socket, socket.socket, tuple]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    if gro:
        rx.setsockopt(SOL_UDP, UDP_GRO, 1)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
    return rx, tx, rx.getsockname()


def _drain(rx: socket.socket, gro: bool) -> tuple[int, int]:
    """Read everything queued; (datagrams, receive calls)."""
    got = calls = 0
    space = socket.CMSG_SPACE(4)
    while True:
        try:
            if gro:
                data, anc, _, _ = rx.recvmsg(65535, space)
                size = int.from_bytes(anc[0][2][:4], "little") if anc else 0
                segments = (
                    [data[i : i + size] for i in range(0, len(data), size)] if size else [data]
                )
                got += len(segments)
            else:
                rx.recvfrom(65535)
                got += 1
            calls += 1
        except BlockingIOError:
            return got, calls


def raw_run(gso: int, gro: bool, count: int) -> dict:
    """One run: ``count`` datagrams in bursts of BURST; ``gso`` segments per sendmsg (0: sendto)."""
    rx, tx, addr = _pair(gro)
    payloads = [os.urandom(DATAGRAM) for _ in range(BURST)]
    chunks = _chunks(payloads, gso) if gso else []
    cmsg = [(SOL_UDP, UDP_SEGMENT, struct.pack("H", DATAGRAM))]
    send_t = recv_t = 0.0
    got = calls = 0
    try:
        for _ in range(count // BURST):
            t0 = time.perf_counter()
            if gso:
                for chunk in chunks:
                    tx.sendmsg(chunk, cmsg, 0, addr)
            else:
                for p in payloads:
                    tx.sendto(p, addr)
            t1 = time.perf_counter()
            n, c = _drain(rx, gro)
            recv_t += time.perf_counter() - t1
            send_t += t1 - t0
            got, calls = got + n, calls + c
    finally:
        rx.close()
        tx.close()
    sent = count // BURST * BURST
    return {
        "send": sent / send_t,
        "recv": got / recv_t,
        "total": got / (send_t + recv_t),
        "per_read": got / max(calls, 1),
        "loss": 1 - got / sent,
    }


def raw_rows(args) -> list[dict]:
    modes = [("sendto", 0)] + [(f"gso x{n}", n) for n in (10, 32, 64)]
    rows = []
    for gro in (False, True):
        if gro and not gro_supported():
            rows.append(harness.missing_row("raw recv gro", "dgram/s", "no UDP_GRO"))
            continue
        for name, gso in modes:
            if gso and not gso_supported():
                rows.append(harness.missing_row(f"raw {name}", "dgram/s", "no UDP_SEGMENT"))
                continue
            raw_run(gso, gro, args.count // 10)  # warm-up
            runs = [raw_run(gso, gro, args.count) for _ in range(args.runs)]
            label = f"raw {name:<7} -> {'gro' if gro else 'recvfrom'}"
            for key in ("send", "recv", "total"):
                result = harness.Result.of([r[key] for r in runs])
                rows.append(
                    harness.result_row(
                        f"{label} {key}", result, "dgram/s", per_read=runs[0]["per_read"]
                    )
                )
    return rows


class Sink(DatagramProtocol):
    """Counts datagrams; calls ``done`` once ``expected`` arrived (on the next reactor turn)."""

    def __init__(self, reactor) -> None:
        self.reactor = reactor
        self.count = 0
        self.expected = 0
        self.done = None

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        self.count += 1
        if self.count == self.expected and self.done is not None:
            done, self.done = self.done, None
            self.reactor.callLater(0, done)


def twisted_rows(args) -> list[dict]:
    from twisted.internet import defer

    async def main(reactor) -> list[dict]:
        rows = []
        payloads = [os.urandom(DATAGRAM) for _ in range(BURST)]
        for name, batching, gso, gro in (
            ("twisted Port.write -> Port", False, False, False),
            ("BatchingPort plain -> plain", True, False, False),
            ("BatchingPort gso -> recvfrom", True, True, False),
            ("BatchingPort gso -> gro", True, True, True),
        ):
            sink = Sink(reactor)
            if batching:
                rx = listenBatchingUDP(reactor, 0, sink, "127.0.0.1", gro=gro)
                tx = listenBatchingUDP(reactor, 0, DatagramProtocol(), "127.0.0.1", gso=gso)
            else:
                rx = reactor.listenUDP(0, sink, "127.0.0.1", maxPacketSize=65535)
                tx = reactor.listenUDP(0, DatagramProtocol(), "127.0.0.1")
            for port in (rx, tx):
                port.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
                port.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
            addr = (rx.getHost().host, rx.getHost().port)

            def run(tx=tx, sink=sink, addr=addr, batching=batching):
                finished = defer.Deferred()
                bursts = args.count // BURST
                started = time.perf_counter()
                sink.count = 0

                def burst(left=bursts):
                    if not left:
                        finished.callback(sink.count / (time.perf_counter() - started))
                        return
                    sink.expected = sink.count + BURST
                    sink.done = lambda: burst(left - 1)
                    if batching:
                        tx.sendBatch(payloads, addr)
                    else:
                        for p in payloads:
                            tx.write(p, addr)

                burst()
                return finished

            result = await harness.measure_deferred(run, runs=args.runs)
            extra = {}
            if batching:  # datagrams per doRead (each ends with one readBatchEnded)
                extra["per_read"] = rx.stats.datagramsRead / max(rx.stats.readBatches, 1)
            rows.append(harness.result_row(name, result, "dgram/s", **extra))
            await rx.stopListening()
            await tx.stopListening()
        return rows

    return harness.run_reactor(main)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=64000, help="datagrams per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-twisted", dest="twisted", action="store_false")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args(argv)
    rows = raw_rows(args)
    if args.twisted:
        rows += twisted_rows(args)
    out = {
        "results": rows,
        "gso": gso_supported(),
        "gro": gro_supported(),
        "kernel": os.uname().release,
    }
    harness.emit(args, out, lambda: text(rows, args, out["kernel"]))
    return out


def text(rows: list[dict], args, kernel: str) -> None:
    """The table; the last column is datagrams per receive call (raw) or per doRead (ports)."""
    table = []
    for r in rows:
        per_read = f"{r['per_read']:.3g}" if "per_read" in r else ""
        table.append((r["name"], r["median"], r.get("spread"), r["unit"], per_read))
    title = f"{DATAGRAM}-byte datagrams over loopback, bursts of {BURST}, median of {args.runs}"
    harness.print_table(
        table,
        headers=("", "median", "spread", "unit", "dgrams/read"),
        title=f"{title} runs (kernel {kernel}):",
    )


if __name__ == "__main__":
    main()
