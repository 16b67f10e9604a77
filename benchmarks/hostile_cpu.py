"""
Server CPU per attacker byte: hostile traffic patterns against bulk transfer, in memory.

An established :class:`~kwik_twisted.testing.pair.MemoryPair`; the attacker's datagrams are
sealed first with the client's real keys (:func:`~kwik_twisted.testing.pair.forge`), then only the
server's work is timed: ``receive_datagram`` for each, and ``datagrams_to_send`` every 32 datagrams
as a server answering would.  Figures: nanoseconds of server CPU per wire byte, microseconds per
frame, and the ratio to bulk (in-order 1,200-byte frames, one per packet).

The cost of peer input is per *frame* (decode, dispatch, bookkeeping), so the patterns that pack
many tiny frames into a packet cost the most per byte; the Frame Count limit (63 per packet) bounds
the work one datagram can ask for.  docs/performance.rst has the figures.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness  # noqa: E402

from kwik_twisted.testing.pair import (  # noqa: E402
    CLIENT_ADDR,
    SERVER_ADDR,
    MemoryPair,
    forge,
    server_config,
)
from kwik_twisted.wire import MaxStreamDataFrame, StreamFrame  # noqa: E402

#: Frames per packet in the tiny-frame patterns (what fits in one datagram with their headers).
PER_PACKET = 40


def _packets(pair: MemoryPair, frames: list, per_packet: int) -> list[bytes]:
    return [
        forge(pair.client, frames[i : i + per_packet]) for i in range(0, len(frames), per_packet)
    ]


def bulk(pair: MemoryPair, scale: int) -> tuple[list[bytes], int]:
    """In-order 1,200-byte frames, one per packet, on three streams (the honest baseline)."""
    data = bytes(1200)
    frames = [
        [StreamFrame(sid, offset, data)]
        for sid in range(0, 12, 4)
        for offset in range(0, 850 * scale * 1200, 1200)
    ]
    return [forge(pair.client, f) for f in frames], len(frames)


def alternate_pieces(pair: MemoryPair, scale: int) -> tuple[list[bytes], int]:
    """One-byte pieces at every other offset over 8 streams: held, never delivered."""
    frames = [StreamFrame(4 * s, 1 + 2 * k, b"x") for s in range(8) for k in range(2000)]
    return _packets(pair, frames, PER_PACKET), len(frames)


def tiny_in_order(pair: MemoryPair, scale: int) -> tuple[list[bytes], int]:
    """In-order one-byte frames (what an honest peer with tiny writes would cost too)."""
    frames = [StreamFrame(0, k, b"z") for k in range(25_000 * scale)]
    return _packets(pair, frames, PER_PACKET), len(frames)


def control_flood(pair: MemoryPair, scale: int) -> tuple[list[bytes], int]:
    """60 MAX_STREAM_DATA frames per packet."""
    frames = [MaxStreamDataFrame(0, 1 << 20)] * 60
    return [forge(pair.client, frames) for _ in range(400 * scale)], 60 * 400 * scale


def compressed_duplicates(pair: MemoryPair, scale: int) -> tuple[list[bytes], int]:
    """The same lz4 frame of 16 KiB at offset 0, four per packet (64 KiB expanded each)."""
    frame = StreamFrame(0, 0, bytes(16384), compress=True)
    return [forge(pair.client, [frame] * 4) for _ in range(400 * scale)], 4 * 400 * scale


PATTERNS = (bulk, alternate_pieces, tiny_in_order, control_flood, compressed_duplicates)


def run(pattern, scale: int) -> dict:
    """Time the server on one pattern; return its figures."""
    pair = MemoryPair(server=server_config()).handshake()
    datagrams, frames = pattern(pair, scale)
    server = pair.server
    wire = sum(len(d) for d in datagrams)
    gc.collect()
    started = time.process_time()
    for i, datagram in enumerate(datagrams):
        server.receive_datagram(datagram, SERVER_ADDR, CLIENT_ADDR, now=pair.now)
        if i % 32 == 31:
            server.datagrams_to_send(now=pair.now)
            while server.next_event() is not None:
                pass
    cpu = time.process_time() - started
    return {
        "name": f"server cpu, {pattern.__name__}",
        "median": cpu / wire * 1e9,  # run_all's column: ns of server CPU per wire byte
        "spread": None,
        "unit": "ns/B",
        "us_per_frame": cpu / frames * 1e6,
        "us_per_datagram": cpu / len(datagrams) * 1e6,
        "closed": server.state.name != "ESTABLISHED",
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=2, help="size multiplier (default 2)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = [run(pattern, args.scale) for pattern in PATTERNS]
    base = rows[0]["median"]
    for row in rows:
        row["x_bulk"] = row["median"] / base
    results = {"results": rows, "machine": harness.machine()}

    def text() -> None:
        harness.print_table(
            [
                (r["name"], f"{r['median']:.1f}", f"{r['us_per_frame']:.2f}",
                 f"{r['us_per_datagram']:.1f}", f"{r['x_bulk']:.1f}",
                 "yes" if r["closed"] else "no")
                for r in rows
            ],
            title="server CPU per attacker byte (in memory)",
            headers=("pattern", "ns/byte", "us/frame", "us/datagram", "x bulk", "closed"),
        )

    harness.emit(args, results, text)


if __name__ == "__main__":
    main()
