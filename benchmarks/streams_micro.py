"""
Micro-benchmark of the per-stream primitives on their hot paths.

Prints microseconds per operation for 1300-byte frames:

* in-order ``Reassembler.insert`` + ``read``;
* out-of-order ``Reassembler.insert`` (pairs swapped) + ``read``;
* ``SendBuffer.next_frame`` + ``on_acked``, with 64 KiB writes.

Run: ``PYTHONPATH=. python benchmarks/streams_micro.py``.
"""

from __future__ import annotations

import timeit

from kwik_twisted.core.streams import Reassembler, SendBuffer

FRAME = 1300
COUNT = 20_000


def reassembly_in_order() -> None:
    """Insert COUNT in-order frames, reading after each."""
    r = Reassembler(1 << 20)
    payload = b"x" * FRAME
    offset = 0
    for _ in range(COUNT):
        r.insert(offset, payload, False)
        r.read()
        offset += FRAME


def reassembly_swapped() -> None:
    """Insert COUNT frames with each pair swapped (one held, then released)."""
    r = Reassembler(1 << 20)
    payload = b"x" * FRAME
    for i in range(0, COUNT, 2):
        base = i * FRAME
        r.insert(base + FRAME, payload, False)
        r.insert(base, payload, False)
        r.read()


def send_and_ack() -> None:
    """Write COUNT frames' worth in 64 KiB writes, send and ack each frame."""
    buf = SendBuffer(1 << 20)
    chunk = b"y" * 65536
    remaining = COUNT
    while remaining:
        buf.write(chunk)
        while remaining and (frame := buf.next_frame(FRAME)) is not None:
            offset, data, fin, _ = frame
            buf.on_acked(offset, len(data), fin)
            remaining -= 1


def measure(name: str, func: object) -> None:
    """Print the best per-frame time over a few repetitions."""
    best = min(timeit.repeat(func, number=1, repeat=5))  # type: ignore[arg-type]
    print(f"{name:40s} {best / COUNT * 1e6:6.2f} µs per {FRAME}-byte frame")


def main() -> None:
    """Run every measurement."""
    measure("reassembly insert+read, in order", reassembly_in_order)
    measure("reassembly insert+read, pairs swapped", reassembly_swapped)
    measure("send buffer next_frame+on_acked", send_and_ack)


if __name__ == "__main__":
    main()
