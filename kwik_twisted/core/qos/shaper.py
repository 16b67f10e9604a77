"""
The bandwidth shaper of a connection's send queue: guaranteed rates served before fair sharing,
per-stream rate caps, and the admission of the guarantees against what the paths deliver.

Theory of operation.  One :class:`BandwidthShaper` per connection, owned by the
:class:`~kwik_twisted.core.streams.sendqueue.SendQueue` (``send_queue.shaper``), which asks it, for
the streams it *tracks*, which may send now and which go first.  A stream is tracked while it has
a QoS policy (``stream.qos``, ours or the peer's) or a cap (``stream.max_rate``); the state of a
tracked stream is one :class:`Shaping` (``stream.shaping``), O(1) fields, dropped when the stream
closes or loses both (a policy without ``min_bandwidth_kbps``, and no cap: the stream is only
measured).  While no stream is tracked the send queue takes its fast path and the shaper costs
nothing per frame.

* **Buckets.**  Two token buckets per stream, in bytes, refilled lazily from the time that passed
  (``SendQueue.now``, set by the sender before each send round).  A *guarantee* (the policy's
  ``min_bandwidth_kbps * 1000 / 8`` bytes per second) refills the stream's ``credit``; a *cap*
  (``max_rate`` bits per second, local only, never on the wire) refills its ``tokens``.  A bucket
  holds at most its burst, ``max(BURST_MIN, rate * BURST_TIME)`` (16 KiB, or 50 ms of the rate):
  enough for a few datagrams after a quiet spell, too little to let a stream that was idle for
  seconds flood the path.  Every frame taken from a tracked stream is charged its data length to
  both buckets, new data and retransmissions alike: the guarantee and the cap are of the rate on
  the wire, which is what the paths' capacity is spent on (a stream losing 2 % of its packets gets
  2 % less goodput than its guarantee).  ``credit`` may go down to minus its burst: a stream that
  fair sharing serves above its guarantee is not owed anything later: one that got less is served
  first again once its rate refilled a burst at most (``BURST_TIME``, longer for small rates).
* **Guarantees first.**  Within a priority level, a stream with a guarantee, data and positive
  credit is *ready*: ready streams are served before the level's round-robin, in deficit round
  robin among themselves (each turn is worth ``max(QUANTUM_MIN, rate * QUANTUM_TIME)`` bytes, so
  over-subscribed guarantees share in proportion to their rates; a frame is never split).  A ready
  stream stays in its level's round-robin too, and every frame it sends, by either way, spends its
  credit: it gets its guarantee or its fair share, whichever is more.  A stream whose credit ran
  out waits (a heap by the time its credit is back to ``min(WAKE_BYTES, burst)``) and is ready
  again at the first send round after that.  Strict priority stays above it all: a higher level's
  data, guaranteed or not, always goes first.
* **Caps.**  A capped stream whose tokens ran out is *parked*: it leaves its level's queue (still
  counted queued, so writes do not queue it twice) for a heap by the time its bucket holds
  ``min(WAKE_BYTES, burst)`` again; it does not hold the others back, and while every stream with
  data is parked the queue has no data (``has_data`` is ``False``: the sender does not spin and
  marks the paths application-limited).  :meth:`BandwidthShaper.next_refill` is the earliest
  wake-up (``TimerKind.SHAPER``); the send round at or after it puts the stream back at the end
  of its level.
* **Admission.**  :meth:`BandwidthShaper.admission` takes the guarantees in order of priority
  (high first) then of registration (the order in which the shaper first saw each stream: its
  opening, for a stream opened with its policy) while their sum stays within
  ``ADMISSION_SHARE`` (95 %) of the capacity given (the sum of the usable paths' delivery-rate
  estimates); the first guarantee that does not fit and every one after it are returned, with the
  rate the stream is getting.  That *measured* rate (:meth:`BandwidthShaper.rate`) is the bytes
  charged to the stream over the last ``RATE_WINDOW`` (1 s), estimated from two consecutive
  windows (the previous one weighted by its share still inside the last second), in bits per
  second; a stream tracked for less than a second reads low.
* **Bounds.**  Each heap and ready queue holds at most one live entry per tracked stream; entries
  of streams that were dropped stay until they reach a head (they are skipped there) or, when they
  outnumber the live ones, the structures are rebuilt (amortised O(1) per drop).  Every operation
  per frame is O(1) (O(log n) for a heap push), but one: parking a stream served as ready, or
  taking out of its round-robin a ready stream that has nothing more to send, removes it from the
  middle of its level's queue, O(streams queued at that level), as a priority change already does.
"""

from __future__ import annotations

import math
from collections import deque
from heapq import heapify, heappop, heappush
from itertools import count
from typing import TYPE_CHECKING

from ...errors import ConfigurationError

if TYPE_CHECKING:  # pragma: no cover
    from ..streams.stream import Stream

#: The smallest burst of a bucket, bytes.
BURST_MIN = 16384
#: A bucket's burst is at least this many seconds of its rate.
BURST_TIME = 0.050
#: A parked or credit-less stream comes back once its bucket holds this much (or its burst).
WAKE_BYTES = 1200

#: The ready queues of a shaper no guaranteed stream was ready in yet: empty, shared.
_NO_READY: tuple = ((), (), ())
#: A ready stream's deficit round-robin turn is worth this many seconds of its guarantee...
QUANTUM_TIME = 0.010
#: ... and at least this many bytes.
QUANTUM_MIN = 1500
#: The span of the measured rate, seconds.
RATE_WINDOW = 1.0
#: The share of the capacity the admitted guarantees may take.
ADMISSION_SHARE = 0.95
#: Dropped entries tolerated beyond twice the live ones before the structures are rebuilt.
_STALE_SLACK = 32

_NO_STREAMS: tuple = ()


def check_rate(max_rate) -> float | None:
    """
    ``max_rate`` (bits per second, or ``None``: no cap) as a cap is kept.

    :raises ConfigurationError: neither ``None`` nor a finite number above zero.
    """
    if max_rate is None:
        return None
    if (
        isinstance(max_rate, bool)
        or not isinstance(max_rate, (int, float))
        or not math.isfinite(max_rate)
        or max_rate <= 0
    ):
        raise ConfigurationError(
            f"max_rate must be a positive number of bits per second, or None; not {max_rate!r}"
        )
    return float(max_rate)


def burst_of(rate: float) -> float:
    """The burst of a bucket filled at ``rate`` bytes per second."""
    return max(BURST_MIN, rate * BURST_TIME)


class Shaping:
    """
    The shaper's state of one tracked stream.

    :ivar guarantee: the guaranteed rate, bytes per second (0: none).
    :ivar cap: the cap, bytes per second (0: none).
    :ivar credit: the guarantee's bucket, bytes (may be negative, down to minus its burst).
    :ivar tokens: the cap's bucket, bytes.
    :ivar ready: the level whose ready queue holds this entry, or -1.
    :ivar waiting: whether an entry of the credit heap is live for it (at ``wait_at``).
    :ivar parked: whether the stream is out of its queue for its cap (until ``wake``).
    :ivar order: the registration order (admission serves older registrations first).
    """

    __slots__ = (
        "stream",
        "tracked",
        "guarantee",
        "cap",
        "credit_burst",
        "cap_burst",
        "credit",
        "tokens",
        "stamp",
        "quantum",
        "deficit",
        "ready",
        "waiting",
        "wait_at",
        "parked",
        "wake",
        "order",
        "window_start",
        "window_bytes",
        "previous_bytes",
    )

    def __init__(self, stream: Stream, order: int, now: float) -> None:
        self.stream = stream
        self.tracked = True
        self.guarantee = 0.0
        self.cap = 0.0
        self.credit_burst = self.cap_burst = float(BURST_MIN)
        self.credit = self.tokens = 0.0
        self.stamp = now
        self.quantum = float(QUANTUM_MIN)
        self.deficit = 0.0
        self.ready = -1
        self.waiting = False
        self.wait_at = 0.0
        self.parked = False
        self.wake = 0.0
        self.order = order
        self.window_start = now
        self.window_bytes = 0
        self.previous_bytes = 0

    def __repr__(self) -> str:
        return (
            f"<Shaping stream={self.stream.id} guarantee={self.guarantee:.0f} cap={self.cap:.0f}"
            f" credit={self.credit:.0f} tokens={self.tokens:.0f}>"
        )


class BandwidthShaper:
    """
    The guarantees, caps and measured rates of one connection's streams.

    :ivar entries: the tracked streams' state by stream ID.
    :ivar ready: per priority level (0 normal, 1 high, 2 critical), the streams served before the
        level's round-robin.
    :ivar guaranteed: how many tracked streams have a guarantee (none: no ready queue to look at).
    :ivar now: the latest time the shaper was told.
    """

    __slots__ = ("entries", "ready", "guaranteed", "now", "_parked", "_waits", "_seq", "_stale")

    def __init__(self) -> None:
        self.entries: dict[int, Shaping] = {}
        # made for the first guaranteed entry (an empty deque holds a 1 KiB block)
        self.ready: tuple[deque[Shaping], ...] = _NO_READY
        self.guaranteed = 0
        self.now = 0.0
        self._parked: list[tuple[float, int, Shaping]] = []
        self._waits: list[tuple[float, int, Shaping]] = []
        self._seq = count()
        self._stale = 0

    @property
    def active(self) -> bool:
        """Whether any stream is tracked (otherwise the send queue never asks)."""
        return bool(self.entries)

    # -- configuration -----------------------------------------------------------------

    def configure(self, stream: Stream, guarantee: float, cap: float, track: bool, *, now: float):
        """
        Give ``stream`` a guarantee and a cap (bytes per second, 0 for none), tracked if
        ``track`` (else its state is dropped).

        Returns whether ``stream`` was parked and must go back into its queue now (a new cap is
        applied from there: the stream is parked again if it has no tokens).
        """
        entry = stream.shaping
        unparked = entry is not None and entry.parked
        if not track:
            if entry is not None:
                self._drop(entry)
            return unparked
        if entry is None:
            entry = stream.shaping = Shaping(stream, next(self._seq), now)
            self.entries[stream.id] = entry
        self._refill(entry, now)
        entry.parked = False
        had = entry.guarantee > 0
        if guarantee != entry.guarantee:
            if not had:
                entry.credit = burst_of(guarantee)  # a new guarantee starts with its burst
            entry.guarantee = guarantee
            entry.credit_burst = burst_of(guarantee)
            entry.credit = min(entry.credit, entry.credit_burst)
            entry.quantum = max(QUANTUM_MIN, guarantee * QUANTUM_TIME)
            self.guaranteed += (guarantee > 0) - had
        if cap != entry.cap:
            if not entry.cap:
                entry.tokens = burst_of(cap)
            entry.cap = cap
            entry.cap_burst = burst_of(cap)
            entry.tokens = min(entry.tokens, entry.cap_burst)
        if not unparked:
            self.enqueue(entry, now)
        return unparked

    def forget(self, stream: Stream) -> None:
        """``stream`` closed: drop its state."""
        if stream.shaping is not None:
            self._drop(stream.shaping)

    def _drop(self, entry: Shaping) -> None:
        """Stop tracking ``entry``'s stream; its queue and heap entries are skipped from now."""
        entry.stream.shaping = None
        self.entries.pop(entry.stream.id, None)
        if entry.guarantee > 0:
            self.guaranteed -= 1
        entry.tracked = entry.parked = entry.waiting = False
        if entry.ready >= 0:
            self._stale += 1
            self._check_stale()

    def _check_stale(self) -> None:
        """Rebuild the queues and heaps when dropped or outdated entries may outnumber the live
        ones (each tracked stream has at most one live entry in each)."""
        held = self._stale + len(self._parked) + len(self._waits)
        if held > 4 * len(self.entries) + _STALE_SLACK:
            self._compact()

    def _compact(self) -> None:
        """Rebuild the ready queues and the heaps from their live entries only."""
        for level, ready in enumerate(self.ready if self.ready is not _NO_READY else ()):
            live = [e for e in ready if e.tracked and e.ready == level]
            for e in ready:
                if not e.tracked:
                    e.ready = -1
            ready.clear()
            ready.extend(live)
        self._parked = [item for item in self._parked if item[2].parked and item[2].wake == item[0]]
        self._waits = [i for i in self._waits if i[2].waiting and i[2].wait_at == i[0]]
        heapify(self._parked)
        heapify(self._waits)
        self._stale = 0

    # -- buckets -----------------------------------------------------------------------

    @staticmethod
    def _refill(entry: Shaping, now: float) -> None:
        """Add to both buckets what ``now - entry.stamp`` seconds of their rates bring."""
        elapsed = now - entry.stamp
        if elapsed <= 0:
            return
        entry.stamp = now
        if entry.guarantee:
            credit = entry.credit + entry.guarantee * elapsed
            entry.credit = credit if credit < entry.credit_burst else entry.credit_burst
        if entry.cap:
            tokens = entry.tokens + entry.cap * elapsed
            entry.tokens = tokens if tokens < entry.cap_burst else entry.cap_burst

    def charge(self, entry: Shaping, size: int, now: float) -> None:
        """A frame of ``size`` data bytes was taken from ``entry``'s stream at ``now``."""
        self._refill(entry, now)
        if entry.guarantee:
            credit = entry.credit - size
            entry.credit = credit if credit > -entry.credit_burst else -entry.credit_burst
        if entry.cap:
            tokens = entry.tokens - size
            entry.tokens = tokens if tokens > -entry.cap_burst else -entry.cap_burst
        if now - entry.window_start >= RATE_WINDOW:
            windows = (now - entry.window_start) // RATE_WINDOW
            entry.previous_bytes = entry.window_bytes if windows == 1 else 0
            entry.window_start += windows * RATE_WINDOW
            entry.window_bytes = 0
        entry.window_bytes += size

    def may_send(self, entry: Shaping, now: float) -> bool:
        """Whether ``entry``'s cap lets its stream send a frame now."""
        if not entry.cap:
            return True
        self._refill(entry, now)
        return entry.tokens > 0

    # -- parking and waiting -----------------------------------------------------------

    def park(self, entry: Shaping) -> None:
        """``entry``'s stream left its queue for its cap: wake it when its bucket refilled."""
        entry.parked = True
        target = min(WAKE_BYTES, entry.cap_burst)
        entry.wake = at = entry.stamp + (target - entry.tokens) / entry.cap
        heappush(self._parked, (at, next(self._seq), entry))
        self._check_stale()

    def _wait(self, entry: Shaping) -> None:
        """``entry`` has no credit: it is ready again when its credit is back."""
        entry.waiting = True
        target = min(WAKE_BYTES, entry.credit_burst)
        entry.wait_at = at = entry.stamp + (target - entry.credit) / entry.guarantee
        heappush(self._waits, (at, next(self._seq), entry))
        self._check_stale()

    def next_refill(self) -> float | None:
        """When the earliest parked stream may send again, or ``None``."""
        parked = self._parked
        while parked:
            at, _seq, entry = parked[0]
            if entry.parked and entry.wake == at:
                return at
            heappop(parked)
        return None

    def release(self, now: float):
        """
        Time moved to ``now``: the streams whose credit is back become ready, and the parked
        streams whose wake-up came are returned, unparked (the caller queues them again).
        """
        self.now = now
        waits = self._waits
        while waits and waits[0][0] <= now:
            at, _seq, entry = heappop(waits)
            if entry.waiting and entry.wait_at == at:
                entry.waiting = False
                self.enqueue(entry, now)
        parked = self._parked
        if not parked or parked[0][0] > now:
            return _NO_STREAMS
        out = []
        while parked and parked[0][0] <= now:
            at, _seq, entry = heappop(parked)
            if entry.parked and entry.wake == at:
                entry.parked = False
                out.append(entry.stream)
        return out

    # -- the ready queues --------------------------------------------------------------

    def enqueue(self, entry: Shaping, now: float) -> None:
        """``entry``'s stream is queued: make it ready if it has a guarantee and credit (else
        have it wait for its credit)."""
        if not entry.guarantee or entry.ready >= 0 or entry.waiting or entry.parked:
            return
        stream = entry.stream
        if not stream.queued or not entry.tracked:
            return
        self._refill(entry, now)
        if entry.credit > 0:
            entry.ready = stream.priority
            entry.deficit = entry.quantum
            if self.ready is _NO_READY:
                self.ready = (deque(), deque(), deque())
            self.ready[stream.priority].append(entry)
        else:
            self._wait(entry)

    def unready(self, entry: Shaping) -> None:
        """Take ``entry`` out of its ready queue at once (a priority change)."""
        if entry.ready >= 0:
            self.ready[entry.ready].remove(entry)
            entry.ready = -1

    def servable(self, entry: Shaping, level: int, now: float) -> bool:
        """
        Whether ``entry``, the head of ``level``'s ready queue, may be served as ready now; if
        not it leaves the queue (to wait for its credit, when that is what it lacks).
        """
        stream = entry.stream
        if (
            entry.tracked
            and entry.guarantee
            and stream.queued
            and not entry.parked
            and stream.priority == level
        ):
            self._refill(entry, now)
            if entry.credit > 0:
                return True
            self.ready[level].popleft()
            entry.ready = -1
            self._wait(entry)
            return False
        self.ready[level].popleft()
        entry.ready = -1
        if entry.tracked and stream.queued and not entry.parked:
            self.enqueue(entry, now)  # moved to another level
        return False

    def served(self, entry: Shaping, level: int, size: int, now: float) -> bool:
        """
        ``entry``, the head of ``level``'s ready queue, sent a frame of ``size`` data bytes:
        charge it and move it along.  Returns whether its stream must leave its level's
        round-robin (nothing left to send, or parked for its cap).
        """
        self.charge(entry, size, now)
        ready = self.ready[level]
        if not entry.stream.send.pending:
            ready.popleft()
            entry.ready = -1
            return True
        if entry.cap and entry.tokens <= 0:
            ready.popleft()
            entry.ready = -1
            self.park(entry)
            return True
        if entry.credit <= 0:
            ready.popleft()
            entry.ready = -1
            self._wait(entry)
            return False
        entry.deficit -= size
        if entry.deficit <= 0:
            entry.deficit += entry.quantum
            ready.rotate(-1)
        return False

    # -- reports -----------------------------------------------------------------------

    def rate(self, stream_id: int, *, now: float | None = None) -> float:
        """The rate stream ``stream_id`` got over the last :data:`RATE_WINDOW`, bits per
        second (0 for a stream not tracked); ``now`` defaults to the latest time seen."""
        entry = self.entries.get(stream_id)
        return 0.0 if entry is None else _measured(entry, self.now if now is None else now)

    def admission(self, capacity: float, *, now: float) -> list[tuple[int, float, float]]:
        """
        The guarantees ``capacity`` (bytes per second) cannot serve, as ``(stream ID, measured
        bits per second, guaranteed bits per second)``: taken by priority (high first) then
        registration while their sum stays within :data:`ADMISSION_SHARE` of ``capacity``, the
        first that does not fit and all after it.
        """
        budget = ADMISSION_SHARE * capacity
        total = 0.0
        out: list[tuple[int, float, float]] = []
        guaranteed = [e for e in self.entries.values() if e.guarantee > 0]
        guaranteed.sort(key=_admission_order)
        for entry in guaranteed:
            if not out and total + entry.guarantee <= budget:
                total += entry.guarantee
                continue
            out.append((entry.stream.id, _measured(entry, now), entry.guarantee * 8))
        return out


def _admission_order(entry: Shaping) -> tuple[int, int]:
    return -entry.stream.priority, entry.order


def _measured(entry: Shaping, now: float) -> float:
    """The bits per second charged to ``entry`` over the :data:`RATE_WINDOW` before ``now``."""
    elapsed = now - entry.window_start
    if elapsed >= 2 * RATE_WINDOW:
        return 0.0
    if elapsed >= RATE_WINDOW:
        previous, current, elapsed = entry.window_bytes, 0, elapsed - RATE_WINDOW
    else:
        previous, current = entry.previous_bytes, entry.window_bytes
    share = 1.0 - max(elapsed, 0.0) / RATE_WINDOW
    return (previous * share + current) * 8 / RATE_WINDOW


__all__ = [
    "ADMISSION_SHARE",
    "BURST_MIN",
    "BURST_TIME",
    "QUANTUM_MIN",
    "QUANTUM_TIME",
    "RATE_WINDOW",
    "WAKE_BYTES",
    "BandwidthShaper",
    "Shaping",
    "burst_of",
    "check_rate",
]
