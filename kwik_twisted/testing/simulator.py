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
from kwik_twisted.testing.links import Address, Link, LinkConfig, LinkStats, TraceCallback

EPSILON = 1e-6
INFINITY = float("inf")


class StopReason(StrEnum):
    """Why :meth:`Network.run` returned."""

    IDLE = "idle"
    UNTIL = "until"
    STOP = "stop"
    MAX_EVENTS = "max_events"


class _Host:
    """A host's bound methods and deadline bookkeeping."""

    __slots__ = ("host", "receive", "to_send", "query_deadline", "handle_deadline",
                 "due", "last_fired", "deferred")

    def __init__(self, host: Any) -> None:
        self.host = host
        self.receive = host.receive_datagram
        self.to_send = host.datagrams_to_send
        self.query_deadline = host.next_deadline
        self.handle_deadline = host.handle_deadline
        self.due = INFINITY
        self.last_fired = -INFINITY
        self.deferred = False


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

    def add_link(self, a: Address, b: Address, ab: LinkConfig | None = None,
                 ba: LinkConfig | None = None) -> tuple[Link, Link]:
        """Join ``a`` and ``b`` with two one-way links, ``a -> b`` and ``b -> a``."""
        return (self._new_link(a, b, ab or LinkConfig()),
                self._new_link(b, a, ba or LinkConfig()))

    def _new_link(self, src: Address, dst: Address, config: LinkConfig) -> Link:
        key = (tuple(src), tuple(dst))
        if key in self._links:
            raise ConfigurationError(f"a link {src!r} -> {dst!r} already exists")
        link = Link(key[0], key[1], config, seed=self.seed, owner=self,
                    heap=self._heap, seq=self._seq)
        self._links[key] = link
        return link

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
                self._new_link(new, dst, link.config).up = link.up
            if dst == old and (src, new) not in self._links:
                self._new_link(src, new, link.config).up = link.up

    # -- the event loop --------------------------------------------------------------

    def run(self, until: float | None = None, *, stop: Callable[[], bool] | None = None,
            max_events: int = 10_000_000) -> StopReason:
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
        elif epoch != link.epoch:
            link.record_loss(when, len(data), "lost_down")
        else:
            self._deliver(link, data, when)

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
        links = self._links
        outbound = self._outbound
        for data, local, remote in state.to_send(now=now):
            src = outbound.get(local, local) if outbound else local
            link = links.get((src, remote))
            if link is None:
                self._unroutable(now, src, remote, len(data))
            else:
                link.transmit(data, now)
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
