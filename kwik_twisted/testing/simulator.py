"""
A deterministic discrete-event network: sans-I/O hosts joined by simulated links.

A *host* is anything with the sans-I/O connection interface (addresses are
``(host, port)`` tuples, times are absolute simulated seconds)::

    receive_datagram(data, local_addr, remote_addr, *, now) -> None
    datagrams_to_send(*, now) -> Iterable[tuple[bytes, local_addr, remote_addr]]
    next_deadline() -> float | None
    handle_deadline(*, now) -> None

:meth:`Network.run` pops events from one heap ordered by ``(time, sequence number)`` --
datagram arrivals and callables scheduled with :meth:`Network.at` -- and compares the
earliest with the earliest host deadline (heap events win ties; hosts tie in attach
order).  After every call into a host the network drains ``datagrams_to_send`` onto the
links and re-reads ``next_deadline``, so a host never needs to be told anything else.
After a scheduled callable every host is polled, since the callable may have poked any.

A datagram sent from local address X to Y travels on the link ``(X', Y)`` where X' is
X as seen through the host's NAT (X itself unless :meth:`Network.rebind` moved it).
Without such a link, or when nobody owns the destination, it is counted ``unroutable``.

Shared bottlenecks (:meth:`Network.add_bottleneck`, :meth:`Network.share`): the datagrams
of every one-way link routed through a bottleneck first wait in its single drop-tail queue
and are serialized at its single rate, in the order they were sent, whichever link they
belong to; when one leaves the bottleneck it is *sent* on its own link (which then applies
its own delay and impairments, and counts it), by a heap event at that time.  A drop at
the bottleneck is counted in the bottleneck's stats and traced ``lost_bottleneck``.

Livelock guard: a host's deadline is handled at most once per distinct simulated time;
a host that asks again for a time already handled is deferred by :data:`EPSILON` and
counted in ``stalled_deadlines``.  Nothing here reads a real clock or the global random
generator: all randomness is per-link :class:`random.Random` seeded from ``seed``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from enum import StrEnum
from heapq import heappop, heappush
from itertools import count
from typing import Any

from kwik_twisted.errors import ConfigurationError
from kwik_twisted.testing.links import (
    Address,
    DropTailQueue,
    Link,
    LinkConfig,
    LinkStats,
    TraceCallback,
)

EPSILON = 1e-6
INFINITY = float("inf")
#: The ``epoch`` of a heap event that hands a datagram from a bottleneck to its link.
_HANDOFF = -1
_BOTTLENECK_FIELDS = ("rate_bps", "queue_bytes", "delay")


class StopReason(StrEnum):
    """Why :meth:`Network.run` returned."""

    IDLE = "idle"
    UNTIL = "until"
    STOP = "stop"
    MAX_EVENTS = "max_events"


class _Host:
    """A host's bound methods and deadline bookkeeping."""

    __slots__ = (
        "host",
        "receive",
        "to_send",
        "query_deadline",
        "handle_deadline",
        "due",
        "last_fired",
        "deferred",
    )

    def __init__(self, host: Any) -> None:
        self.host = host
        self.receive = host.receive_datagram
        self.to_send = host.datagrams_to_send
        self.query_deadline = host.next_deadline
        self.handle_deadline = host.handle_deadline
        self.due = INFINITY
        self.last_fired = -INFINITY
        self.deferred = False


class Bottleneck:
    """
    A rate and a drop-tail queue that several one-way links share (see :meth:`Network.share`).

    Only ``rate_bps`` and ``queue_bytes`` of its :class:`LinkConfig` are used (``delay``
    only through :meth:`LinkConfig.effective_queue_bytes`): propagation and the other
    impairments belong to the links.  ``stats`` counts every datagram offered (``sent``),
    handed on (``delivered``, ``bytes_delivered``) or dropped (``lost_queue``);
    ``per_link`` the same per ``(src, dst)``.
    """

    __slots__ = ("name", "config", "stats", "per_link", "_heap", "_seq", "_owner", "_queue")

    def __init__(
        self, name: str, config: LinkConfig, *, owner: Any, heap: list, seq: count
    ) -> None:
        if config.rate_bps is None:
            raise ConfigurationError(f"bottleneck {name!r} needs a rate_bps")
        unused = {f.name for f in dataclasses.fields(config)} - set(_BOTTLENECK_FIELDS)
        default = LinkConfig()
        changed = sorted(n for n in unused if getattr(config, n) != getattr(default, n))
        if changed:
            raise ConfigurationError(
                f"bottleneck {name!r} only has a rate and a queue; put {changed} on its links"
            )
        self.name = name
        self.config = config
        self.stats = LinkStats()
        self.per_link: dict[tuple[Address, Address], LinkStats] = {}
        self._owner = owner
        self._heap = heap
        self._seq = seq
        self._queue = DropTailQueue(config.rate_bps, config.effective_queue_bytes())

    def enter(self, link: Link, data: bytes, now: float) -> None:
        """Queue ``data``, bound for ``link``, at ``now``; schedule its handoff or drop it."""
        size = len(data)
        stats = self.stats
        flow = self.per_link[(link.src, link.dst)]
        stats.sent += 1
        flow.sent += 1
        depart = self._queue.serialize(now, size)
        if depart < 0:
            stats.lost_queue += 1
            flow.lost_queue += 1
            trace = self._owner.trace
            if trace is not None:
                trace(now, link.src, link.dst, size, "lost_bottleneck")
            return
        stats.delivered += 1
        stats.bytes_delivered += size
        flow.delivered += 1
        flow.bytes_delivered += size
        heappush(self._heap, (depart, next(self._seq), link, data, _HANDOFF))


class _Shared:
    """What :meth:`Network._poll` sends on for a link routed through a bottleneck."""

    __slots__ = ("link", "bottleneck")

    def __init__(self, link: Link, bottleneck: Bottleneck) -> None:
        self.link = link
        self.bottleneck = bottleneck

    def transmit(self, data: bytes, now: float) -> None:
        self.bottleneck.enter(self.link, data, now)


class Network:
    """Hosts, one-way links between their addresses, and a simulated clock ``now``."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.now = 0.0
        self.trace: TraceCallback | None = None
        self.unroutable = 0
        self.stalled_deadlines = 0
        self._heap: list[tuple] = []
        self._seq = count()
        self._hosts: list[_Host] = []
        self._inbound: dict[Address, tuple[_Host, Address]] = {}  # external -> (host, local)
        self._outbound: dict[Address, Address] = {}  # local -> external, rebound ones only
        self._links: dict[tuple[Address, Address], Link] = {}
        # what a datagram for (src, dst) is handed to: the link, or its bottleneck's _Shared
        self._senders: dict[tuple[Address, Address], Link | _Shared] = {}
        self._bottlenecks: dict[str, Bottleneck] = {}
        self._next_host: _Host | None = None
        self._deadlines_dirty = True

    # -- topology ----------------------------------------------------------------------

    def attach(self, host: Any, addresses: Iterable[Address]) -> None:
        """Give ``host`` the local ``addresses``; datagrams to them reach it."""
        state = _Host(host)
        addresses = [tuple(a) for a in addresses]
        for address in addresses:
            if address in self._inbound or address in self._outbound:
                raise ConfigurationError(f"address {address!r} is already attached")
        for address in addresses:
            self._inbound[address] = (state, address)
        self._hosts.append(state)
        self._deadlines_dirty = True

    def add_link(
        self, a: Address, b: Address, ab: LinkConfig | None = None, ba: LinkConfig | None = None
    ) -> tuple[Link, Link]:
        """Join ``a`` and ``b`` with two one-way links, ``a -> b`` and ``b -> a``."""
        return (self._new_link(a, b, ab or LinkConfig()), self._new_link(b, a, ba or LinkConfig()))

    def _new_link(self, src: Address, dst: Address, config: LinkConfig) -> Link:
        key = (tuple(src), tuple(dst))
        if key in self._links:
            raise ConfigurationError(f"a link {src!r} -> {dst!r} already exists")
        link = Link(
            key[0], key[1], config, seed=self.seed, owner=self, heap=self._heap, seq=self._seq
        )
        self._links[key] = link
        self._senders[key] = link
        return link

    def add_bottleneck(self, name: str, config: LinkConfig) -> Bottleneck:
        """Create the shared bottleneck ``name`` (a rate and a drop-tail queue)."""
        if name in self._bottlenecks:
            raise ConfigurationError(f"a bottleneck {name!r} already exists")
        bottleneck = Bottleneck(name, config, owner=self, heap=self._heap, seq=self._seq)
        self._bottlenecks[name] = bottleneck
        return bottleneck

    def share(self, src: Address, dst: Address, name: str) -> None:
        """Route the one-way link ``src -> dst`` through the bottleneck ``name``: its
        datagrams queue there (with those of every other link routed through it) before
        the link carries them.  A link goes through at most one bottleneck."""
        link = self.link(src, dst)
        key = (link.src, link.dst)
        if isinstance(self._senders[key], _Shared):
            raise ConfigurationError(f"the link {src!r} -> {dst!r} is already shared")
        bottleneck = self.bottleneck(name)
        bottleneck.per_link[key] = LinkStats()
        self._senders[key] = _Shared(link, bottleneck)

    def bottleneck(self, name: str) -> Bottleneck:
        """The shared bottleneck called ``name``."""
        try:
            return self._bottlenecks[name]
        except KeyError:
            raise ConfigurationError(f"no bottleneck {name!r}") from None

    def bottleneck_stats(self) -> dict[str, LinkStats]:
        """A snapshot of every bottleneck's counters, keyed by name."""
        return {name: dataclasses.replace(b.stats) for name, b in self._bottlenecks.items()}

    def link(self, src: Address, dst: Address) -> Link:
        """The one-way link ``src -> dst`` (assign its ``config`` to change it)."""
        try:
            return self._links[(tuple(src), tuple(dst))]
        except KeyError:
            raise ConfigurationError(f"no link {src!r} -> {dst!r}") from None

    def set_link_up(self, a: Address, b: Address, up: bool, both_directions: bool = True) -> None:
        """Cut or restore ``a -> b`` (and ``b -> a``); a cut drops what is in flight."""
        self.link(a, b).set_up(up, self.now)
        if both_directions:
            self.link(b, a).set_up(up, self.now)

    def stats(self) -> dict[tuple[Address, Address], LinkStats]:
        """A snapshot of every link's counters, keyed by ``(src, dst)``."""
        return {key: dataclasses.replace(link.stats) for key, link in self._links.items()}

    # -- scheduling ----------------------------------------------------------------------

    def at(self, time: float, function: Callable[[], object]) -> None:
        """Call ``function()`` at simulated ``time``; every host is polled afterwards."""
        if time < self.now:
            raise ConfigurationError(f"cannot schedule at {time} before now ({self.now})")
        heappush(self._heap, (time, next(self._seq), None, function, 0))

    def rebind(self, old_addr: Address, new_addr: Address, *, at: float | None = None) -> None:
        """From ``at`` (default now), the NAT in front of the host owning ``old_addr``
        shows it as ``new_addr``: its datagrams come from ``new_addr``, datagrams to
        ``new_addr`` reach it, and those still sent to ``old_addr`` are unroutable.
        Links of ``new_addr`` are created with the configs of ``old_addr``'s links."""
        old_addr, new_addr = tuple(old_addr), tuple(new_addr)
        if at is None:
            self._rebind_now(old_addr, new_addr)
        else:
            self.at(at, lambda: self._rebind_now(old_addr, new_addr))

    def _rebind_now(self, old: Address, new: Address) -> None:
        entry = self._inbound.get(old)
        if entry is None:
            raise ConfigurationError(f"{old!r} is not an address any host is reachable at")
        if new in self._inbound:
            raise ConfigurationError(f"{new!r} is already in use")
        del self._inbound[old]
        self._inbound[new] = entry
        self._outbound[entry[1]] = new
        for (src, dst), link in list(self._links.items()):
            if src == old and (new, dst) not in self._links:
                self._copy_link(link, new, dst)
            if dst == old and (src, new) not in self._links:
                self._copy_link(link, src, new)

    def _copy_link(self, link: Link, src: Address, dst: Address) -> None:
        """A new link like ``link`` (config, state, bottleneck) for a rebound address."""
        self._new_link(src, dst, link.config).up = link.up
        sender = self._senders[(link.src, link.dst)]
        if isinstance(sender, _Shared):
            self.share(src, dst, sender.bottleneck.name)

    # -- the event loop --------------------------------------------------------------

    def run(
        self,
        until: float | None = None,
        *,
        stop: Callable[[], bool] | None = None,
        max_events: int = 10_000_000,
    ) -> StopReason:
        """Process events in time order until ``until`` (then ``now == until``), until
        ``stop()`` is true (checked after each event), until nothing is left to do, or
        after ``max_events`` events.  Returns the reason."""
        for state in self._hosts:
            self._poll(state)
        if stop is not None and stop():
            return StopReason.STOP
        limit = INFINITY if until is None else until
        heap = self._heap
        for _ in range(max_events):
            if self._deadlines_dirty:
                self._find_next_host()
            host = self._next_host
            due = INFINITY if host is None else host.due
            when = heap[0][0] if heap and heap[0][0] <= due else due
            if when > limit or when == INFINITY:
                if until is not None:
                    self.now = max(self.now, until)
                return StopReason.UNTIL if when > limit else StopReason.IDLE
            if heap and heap[0][0] <= due:
                self._process(heappop(heap))
            else:
                self._fire(host)
            if stop is not None and stop():
                return StopReason.STOP
        return StopReason.MAX_EVENTS

    def _process(self, event: tuple) -> None:
        when, _, link, data, epoch = event
        self.now = when
        if link is None:
            data()
            for state in self._hosts:
                self._poll(state)
        elif epoch == link.epoch:
            self._deliver(link, data, when)
        elif epoch == _HANDOFF:
            link.transmit(data, when)
        else:
            link.record_loss(when, len(data), "lost_down")

    def _deliver(self, link: Link, data: bytes, now: float) -> None:
        entry = self._inbound.get(link.dst)
        if entry is None:
            self._unroutable(now, link.src, link.dst, len(data))
            return
        stats = link.stats
        stats.delivered += 1
        stats.bytes_delivered += len(data)
        if self.trace is not None:
            self.trace(now, link.src, link.dst, len(data), "delivered")
        state, local = entry
        state.receive(data, local, link.src, now=now)
        self._poll(state)

    def _fire(self, state: _Host) -> None:
        now = self.now = state.due
        state.last_fired = now
        if state.deferred:
            self.stalled_deadlines += 1
        state.handle_deadline(now=now)
        self._poll(state)

    def _poll(self, state: _Host) -> None:
        """Drain the host's datagrams onto the links, then re-read its deadline."""
        now = self.now
        senders = self._senders
        outbound = self._outbound
        for data, local, remote in state.to_send(now=now):
            src = outbound.get(local, local) if outbound else local
            sender = senders.get((src, remote))
            if sender is None:
                self._unroutable(now, src, remote, len(data))
            else:
                sender.transmit(data, now)
        deadline = state.query_deadline()
        due = INFINITY if deadline is None else (deadline if deadline > now else now)
        state.deferred = due <= state.last_fired
        if state.deferred:
            due = state.last_fired + EPSILON
        if due != state.due:
            state.due = due
            self._deadlines_dirty = True

    def _find_next_host(self) -> None:
        best = None
        for state in self._hosts:
            if state.due != INFINITY and (best is None or state.due < best.due):
                best = state
        self._next_host = best
        self._deadlines_dirty = False

    def _unroutable(self, now: float, src: Address, dst: Address, size: int) -> None:
        self.unroutable += 1
        if self.trace is not None:
            self.trace(now, src, dst, size, "unroutable")
