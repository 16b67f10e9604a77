"""
The Python heap an idle established connection holds, per side (issue 18, "Memory").

Idle pairs are built in memory (:class:`~kwik_twisted.testing.pair.MemoryPair`): handshake, one
stream on which the client wrote one byte, then two simulated seconds so the ACKs and the
handshake confirmation are done.  ``tracemalloc`` attributes every block still live to the side
whose call allocated it (the first frame below the pair's own code: the dispatcher is the server
side, the client connection the client side); the rest (the pair's event lists) is the harness.
The figures are deterministic for a given CPython (seeded entropy, simulated time), and the bound
has a margin: it is far below what the connection held before the idle state was made lazy
(about 38 KiB a side: an empty deque alone holds a 1 KiB block, and there were fourteen).

:mod:`benchmarks.idle_memory` measures the same with real sockets and the Twisted glue.
"""

from __future__ import annotations

import gc
import tracemalloc

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.streams.budget import NO_MEMBERS, with_member
from kwik_twisted.testing.pair import MemoryPair, client_config, server_config

#: Pairs measured (after two warm-up pairs fill the caches every connection shares).
PAIRS = 8
#: The bound per side, bytes: the measured figure is about 28 KiB (client) and 27 KiB (server).
PER_SIDE_BOUND = 32 * 1024


def _idle_pair(client, server) -> MemoryPair:
    pair = MemoryPair(client, server).handshake()
    sid = pair.client.open_stream()
    pair.client.send_stream_data(sid, b"h")
    pair.advance(2.0)
    return pair


def _side(traceback: tracemalloc.Traceback) -> str:
    """Which side allocated a block: the frame the pair's (or this test's) code called into."""
    frames = list(traceback)[::-1]  # most recent call first
    for inner, outer in zip(frames, frames[1:]):
        if outer.filename.endswith(("testing/pair.py", "test_idle_memory.py")) and (
            "kwik_twisted/core/" in inner.filename
        ):
            return "server" if inner.filename.endswith("dispatcher.py") else "client"
    return "harness"


def idle_heap_per_side(pairs: int = PAIRS) -> dict[str, float]:
    """Bytes per idle pair held by each side (``client``, ``server``, ``harness``)."""
    client, server = client_config(idle_timeout=600.0), server_config(idle_timeout=600.0)
    for _ in range(2):
        _idle_pair(client, server)
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    tracemalloc.start(100)
    try:
        before = tracemalloc.take_snapshot()
        kept = [_idle_pair(client, server) for _ in range(pairs)]
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    sides = {"client": 0, "server": 0, "harness": 0}
    for stat in after.compare_to(before, "traceback"):
        sides[_side(stat.traceback)] += stat.size_diff
    del kept
    return {side: size / pairs for side, size in sides.items()}


class IdleMemoryTests(SynchronousTestCase):
    """An idle connection's Python heap, each side."""

    def test_idle_connection_heap_per_side_is_bounded(self) -> None:
        """Each side of an idle established pair holds at most PER_SIDE_BOUND bytes of Python
        heap (lazily created queues and sets, slots, initial opening keys freed once
        confirmed)."""
        sides = idle_heap_per_side()
        self.assertGreater(sides["client"], 4096)  # the attribution found the client side
        self.assertGreater(sides["server"], 4096)
        self.assertLessEqual(sides["client"], PER_SIDE_BOUND, sides)
        self.assertLessEqual(sides["server"], PER_SIDE_BOUND, sides)

    def test_with_member_replaces_the_shared_empty_set(self) -> None:
        """with_member never adds to the shared NO_MEMBERS (it returns a new set), and adds to
        a real set in place."""
        group = with_member(NO_MEMBERS, 1)
        self.assertEqual(group, {1})
        self.assertEqual(NO_MEMBERS, frozenset())
        self.assertIs(with_member(group, 2), group)
        self.assertEqual(group, {1, 2})
