"""
One-way simulated links: the impairment model of :mod:`kwik_twisted.testing.simulator`.

A :class:`Link` carries datagrams from one address to another in simulated time.  What
happens to a datagram handed to :meth:`Link.transmit` at time ``now``, in this order:

1. it is counted as ``sent``; it is dropped (and counted) if the link is down, if ``now``
   falls in a blackhole window ``[start, end)``, or if it is larger than the ``mtu``;
2. *serialization*: with a finite ``rate_bps`` the link sends one datagram after another
   (``size * 8 / rate_bps`` seconds each).  A datagram that cannot start at once waits in
   a drop-tail queue of ``queue_bytes``; the datagram being serialized is not in the queue;
3. *random loss* (Bernoulli ``loss`` and/or a Gilbert-Elliott chain), decided after the
   bottleneck, so a lost datagram still used its share of the capacity.  At most
   ``max_loss_burst`` consecutive datagrams are lost this way;
4. *propagation*: ``delay`` plus a uniform ``0..jitter``.  A link is FIFO: jitter (or a
   smaller ``delay`` set mid-run) never lets a datagram overtake an earlier one, it only
   holds it back to the earlier one's arrival.  The only reordering is ``reorder``: with
   that probability a datagram gets ``reorder_delay`` extra delay outside the FIFO order
   (counted ``reordered`` even if nothing happens to overtake it);
5. ``corrupt``: one byte among the first 50 gets a different value, the datagram is still
   delivered; ``duplicate``: a second copy arrives at the same time, right after the first.

Taking a link down drops what it has in flight too (counted ``lost_down`` on arrival).
Randomness comes from one :class:`random.Random` per link, seeded from the network seed
and the link's addresses, so adding a link never changes the draws of the others.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from heapq import heappush
from itertools import count

from kwik_twisted.errors import ConfigurationError

Address = tuple[str, int]
#: ``(time, src, dst, size, event)``: called for every send, loss and delivery.
TraceCallback = Callable[[float, Address, Address, int, str], None]

CORRUPT_WINDOW = 50


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigurationError(f"LinkConfig.{name} must be a probability, got {value!r}")


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """The impairments of one direction of a link; immutable, swap it with ``replace``."""

    delay: float = 0.010
    rate_bps: float | None = None
    queue_bytes: int | None = None
    loss: float = 0.0
    max_loss_burst: int | None = None
    ge_p_good_to_bad: float = 0.0
    ge_p_bad_to_good: float = 1.0
    ge_loss_bad: float = 1.0
    ge_loss_good: float = 0.0
    reorder: float = 0.0
    reorder_delay: float | None = None
    duplicate: float = 0.0
    corrupt: float = 0.0
    jitter: float = 0.0
    blackholes: Sequence[tuple[float, float]] = field(default=())
    mtu: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "loss",
            "ge_p_good_to_bad",
            "ge_p_bad_to_good",
            "ge_loss_bad",
            "ge_loss_good",
            "reorder",
            "duplicate",
            "corrupt",
        ):
            _check_probability(name, getattr(self, name))
        if self.delay < 0 or self.jitter < 0 or (self.reorder_delay or 0) < 0:
            raise ConfigurationError("LinkConfig delays must not be negative")
        if self.rate_bps is not None and self.rate_bps <= 0:
            raise ConfigurationError("LinkConfig.rate_bps must be positive or None")
        windows = tuple((float(start), float(end)) for start, end in self.blackholes)
        object.__setattr__(self, "blackholes", windows)

    def effective_queue_bytes(self) -> int:
        """The drop-tail bound: ``queue_bytes``, else about two bandwidth-delay products."""
        if self.queue_bytes is not None:
            return self.queue_bytes
        rate = self.rate_bps or 0.0
        return max(30000, int(rate * self.delay * 2 / 8))

    def effective_reorder_delay(self) -> float:
        """Extra delay of a reordered datagram: ``reorder_delay``, else max(delay/2, 5 ms)."""
        if self.reorder_delay is not None:
            return self.reorder_delay
        return max(self.delay / 2, 0.005)


@dataclass(slots=True)
class LinkStats:
    """Counters of one one-way link; every ``sent`` datagram ends in exactly one bucket
    (``delivered`` or a ``lost_*``/``too_big``), except that duplicates add deliveries."""

    sent: int = 0
    delivered: int = 0
    bytes_delivered: int = 0
    lost_random: int = 0
    lost_queue: int = 0
    lost_blackhole: int = 0
    lost_down: int = 0
    corrupted: int = 0
    duplicated: int = 0
    reordered: int = 0
    too_big: int = 0


def corrupt_one_byte(data: bytes, rng: random.Random) -> bytes:
    """Return ``data`` with one byte among the first 50 replaced by a different value."""
    index = rng.randrange(min(CORRUPT_WINDOW, len(data)))
    value = (data[index] + rng.randrange(1, 256)) & 0xFF
    return b"".join((data[:index], bytes((value,)), data[index + 1 :]))


#: ``emit(arrival, data, tag)``: deliver ``data`` at time ``arrival``; ``tag`` is what the caller
#: passed to :meth:`Impairment.apply` (a route, say), handed back untouched.
Emit = Callable[[float, bytes, object], None]


class DropTailQueue:
    """
    A transmitter at ``rate_bps`` with a drop-tail queue of ``limit`` bytes (the datagram being
    serialized does not count): the links' and the shared bottlenecks' one serializer.
    """

    __slots__ = ("rate", "limit", "_waiting", "_queued", "_busy_until")

    def __init__(self, rate_bps: float, limit: int) -> None:
        self.rate = rate_bps
        self.limit = limit
        self._waiting: deque[tuple[float, int]] = deque()
        self._queued = 0
        self._busy_until = 0.0

    def reset(self, now: float) -> None:
        """Forget everything queued (the link went down at ``now``)."""
        self._waiting.clear()
        self._queued = 0
        self._busy_until = now

    def serialize(self, now: float, size: int) -> float:
        """When a datagram offered at ``now`` leaves the transmitter, or -1 if the queue is full."""
        waiting = self._waiting
        while waiting and waiting[0][0] <= now:
            self._queued -= waiting.popleft()[1]
        start = self._busy_until
        if start > now:
            if self._queued + size > self.limit:
                return -1.0
            waiting.append((start, size))
            self._queued += size
        else:
            start = now
        depart = self._busy_until = start + size * 8.0 / self.rate
        return depart


class Impairment:
    """
    The per-datagram decisions of one direction, clock-agnostic: :meth:`apply` takes a datagram
    sent at ``now`` on any clock and either names the counter of its loss or hands its arrival
    time(s) on that same clock to ``emit``.  Steps 1 (except "down") to 5 of the module docstring;
    the simulator's :class:`Link` and the loopback relay both drive one.
    """

    __slots__ = (
        "stats",
        "_config",
        "_rng",
        "_emit",
        "_queue",
        "_last_arrival",
        "_burst",
        "_ge_bad",
        "_delay",
        "_lossy",
        "_loss",
        "_max_burst",
        "_ge",
        "_jitter",
        "_reorder",
        "_reorder_delay",
        "_duplicate",
        "_corrupt",
        "_blackholes",
        "_mtu",
    )

    def __init__(
        self, config: LinkConfig, rng: random.Random, emit: Emit, stats: LinkStats | None = None
    ) -> None:
        self.stats = stats if stats is not None else LinkStats()
        self._rng = rng
        self._emit = emit
        self._queue: DropTailQueue | None = None
        self._last_arrival = 0.0
        self._burst = 0
        self._ge_bad = False
        self.config = config

    @property
    def config(self) -> LinkConfig:
        """The current impairments; assigning applies to datagrams sent from then on."""
        return self._config

    @config.setter
    def config(self, config: LinkConfig) -> None:
        self._config = config
        self._delay = config.delay
        if config.rate_bps is None:
            self._queue = None
        elif self._queue is None:
            self._queue = DropTailQueue(config.rate_bps, config.effective_queue_bytes())
        else:  # keep what is queued; new rate and limit apply from now on
            self._queue.rate = config.rate_bps
            self._queue.limit = config.effective_queue_bytes()
        self._ge = config.ge_p_good_to_bad > 0 or config.ge_loss_good > 0
        self._loss = config.loss
        self._lossy = self._ge or config.loss > 0
        self._max_burst = config.max_loss_burst
        self._jitter = config.jitter
        self._reorder = config.reorder
        self._reorder_delay = config.effective_reorder_delay()
        self._duplicate = config.duplicate
        self._corrupt = config.corrupt
        self._blackholes = config.blackholes
        self._mtu = config.mtu

    def reset(self, now: float) -> None:
        """Forget the queue and the FIFO order (the link went down at ``now``)."""
        if self._queue is not None:
            self._queue.reset(now)
        self._last_arrival = now

    def apply(self, data: bytes, now: float, tag: object = None) -> str | None:
        """Decide the fate of one datagram sent at ``now``: return the ``LinkStats`` counter
        of its loss (not counted here), or ``None`` once ``emit`` has been called for it."""
        size = len(data)
        if self._blackholes and self._in_blackhole(now):
            return "lost_blackhole"
        if self._mtu is not None and size > self._mtu:
            return "too_big"
        depart = now if self._queue is None else self._queue.serialize(now, size)
        if depart < 0:
            return "lost_queue"
        if self._lossy and self._lose():
            return "lost_random"
        self._propagate(data, size, depart, tag)
        return None

    def _in_blackhole(self, now: float) -> bool:
        for start, end in self._blackholes:
            if start <= now < end:
                return True
        return False

    def _lose(self) -> bool:
        """Draw the random loss of one datagram, honouring ``max_loss_burst``."""
        rng = self._rng
        config = self._config
        lost = False
        if self._ge:
            if self._ge_bad:
                self._ge_bad = rng.random() >= config.ge_p_bad_to_good
            else:
                self._ge_bad = rng.random() < config.ge_p_good_to_bad
            p = config.ge_loss_bad if self._ge_bad else config.ge_loss_good
            lost = p > 0 and rng.random() < p
        if not lost and self._loss > 0:
            lost = rng.random() < self._loss
        if lost and (self._max_burst is None or self._burst < self._max_burst):
            self._burst += 1
            return True
        self._burst = 0
        return False

    def _propagate(self, data: bytes, size: int, depart: float, tag: object) -> None:
        rng = self._rng
        arrival = depart + self._delay
        if self._jitter:
            arrival += rng.random() * self._jitter
        if self._reorder and rng.random() < self._reorder:
            arrival += self._reorder_delay
            self.stats.reordered += 1
        else:
            if arrival < self._last_arrival:
                arrival = self._last_arrival
            self._last_arrival = arrival
        if self._corrupt and size and rng.random() < self._corrupt:
            data = corrupt_one_byte(data, rng)
            self.stats.corrupted += 1
        self._emit(arrival, data, tag)
        if self._duplicate and rng.random() < self._duplicate:
            self.stats.duplicated += 1
            self._emit(arrival, data, tag)


class Link:
    """One direction ``src -> dst``; schedules arrivals on the simulator's event heap."""

    __slots__ = ("src", "dst", "stats", "up", "epoch", "impairment", "_owner", "_heap", "_seq")

    def __init__(
        self,
        src: Address,
        dst: Address,
        config: LinkConfig,
        *,
        seed: int,
        owner: object,
        heap: list,
        seq: count,
    ) -> None:
        self.src = src
        self.dst = dst
        self.up = True
        self.epoch = 0
        self._owner = owner  # anything with a ``trace`` attribute
        self._heap = heap
        self._seq = seq
        rng = random.Random(f"{seed}|{src!r}|{dst!r}")
        self.impairment = Impairment(config, rng, self._arrive)
        self.stats = self.impairment.stats

    @property
    def config(self) -> LinkConfig:
        """The current impairments; assigning applies to datagrams sent from then on."""
        return self.impairment.config

    @config.setter
    def config(self, config: LinkConfig) -> None:
        self.impairment.config = config

    def set_up(self, up: bool, now: float) -> None:
        """Bring the link up or down; going down drops the queue and what is in flight."""
        if self.up and not up:
            self.epoch += 1
            self.impairment.reset(now)
        self.up = up

    def record_loss(self, now: float, size: int, event: str) -> None:
        """Count (and trace) one datagram dropped for reason ``event``, a counter name."""
        stats = self.stats
        setattr(stats, event, getattr(stats, event) + 1)
        trace = self._owner.trace
        if trace is not None:
            trace(now, self.src, self.dst, size, event)

    def transmit(self, data: bytes, now: float) -> None:
        """Take one datagram sent at ``now``: drop it or schedule its arrival(s)."""
        self.stats.sent += 1
        trace = self._owner.trace
        if trace is not None:
            trace(now, self.src, self.dst, len(data), "sent")
        event = self.impairment.apply(data, now) if self.up else "lost_down"
        if event is not None:
            self.record_loss(now, len(data), event)

    def _arrive(self, arrival: float, data: bytes, tag: object) -> None:
        heappush(self._heap, (arrival, next(self._seq), self, data, self.epoch))
