"""
A loopback UDP impairment relay: the link model of :mod:`kwik_twisted.testing.links` in real time.

Where ``tc netem`` is not available, a :class:`Relay` stands between a client and a server on
real sockets.  It listens on one UDP port facing the clients; the datagrams of each client
address (a *session*) leave for the server from a UDP port of their own, so the server sees the
relay, as behind a NAT, and the server's replies to that port go back to that client from the
listening port.  Each direction is one :class:`Direction` driving a
:class:`~kwik_twisted.testing.links.Impairment`, the very object the simulator's links use: the
same delay, jitter, rate with a drop-tail queue, random and Gilbert-Elliott loss with a cap on
bursts, reordering, duplication, corruption (delivered) and MTU, on the *relay clock*
(``reactor.seconds()`` minus the time of :meth:`Relay.start`).  A direction is one bottleneck
shared by every session, as in the QUIC interop runner's simulated link.

Arrivals wait in one heap per direction behind one ``callLater``; datagrams due within
:data:`TOLERANCE` of each other leave together.  Randomness is one ``random.Random`` per
direction seeded from ``seed``; the draws follow the order datagrams arrive, which real time does
not fix, so a seed makes rates reproducible, not individual fates.

Scripting: assign a direction's ``config``; ``set_up(False)`` (drops what is in flight);
:meth:`Relay.blackhole` for an up/down schedule; a direction's ``filter``; and
:meth:`Relay.rebind` (NAT rebinding: new source ports, optionally a new source address).
``python -m kwik_twisted.testing.relay --help`` runs one from the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import re
import sys
from collections.abc import Callable, Sequence
from heapq import heappop, heappush
from itertools import count

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol

from kwik_twisted.errors import ConfigurationError
from kwik_twisted.glue.udp import enlarge_buffers
from kwik_twisted.testing.links import Address, Impairment, LinkConfig, LinkStats

#: Datagrams due within this many seconds of the timer leave together.
TOLERANCE = 0.0005
#: The largest datagram the relay reads.
MAX_DATAGRAM = 65535
#: Bytes of one packet when a queue is given in packets (``--queue 25``).
PACKET_BYTES = 1500
#: Socket buffers asked of the kernel for the relay's ports.


class Direction:
    """
    One direction through the relay (``to_server`` or ``to_client``).

    :ivar stats: what it did (:class:`~kwik_twisted.testing.links.LinkStats`): every datagram
        received is ``sent``, then ``delivered`` or counted in one ``lost_*``/``too_big``
        bucket; a duplicate adds a delivery.
    :ivar up: ``False`` drops everything (``lost_down``).
    :ivar blackholed: set by :meth:`Relay.blackhole` schedules (``lost_blackhole``).
    :ivar filter: ``None``, or a callable given each datagram; ``False`` drops it (``lost_down``).
    """

    def __init__(self, relay: Relay, name: str, config: LinkConfig, seed: int) -> None:
        self.name = name
        self.up = True
        self.blackholed = False
        self.filter: Callable[[bytes], bool] | None = None
        self._relay = relay
        rng = random.Random(f"{seed}|relay|{name}")
        self._impairment = Impairment(config, rng, self._emit)
        self.stats = self._impairment.stats
        self._pending: list[tuple] = []
        self._seq = count()
        self._timer = None
        self._due = 0.0

    @property
    def config(self) -> LinkConfig:
        """The impairments; assigning applies to datagrams received from then on."""
        return self._impairment.config

    @config.setter
    def config(self, config: LinkConfig) -> None:
        self._impairment.config = config

    def set_up(self, up: bool) -> None:
        """Bring the direction up or down; going down drops what is queued and in flight."""
        if self.up and not up:
            self._impairment.reset(self._relay.now())
            self._dropPending()
        self.up = up

    def receive(self, data: bytes, route: object) -> None:
        """Take one datagram that arrived at the relay; ``route`` says where it goes."""
        self.stats.sent += 1
        if not self.up or (self.filter is not None and not self.filter(data)):
            self.stats.lost_down += 1
            return
        if self.blackholed:
            self.stats.lost_blackhole += 1
            return
        event = self._impairment.apply(data, self._relay.now(), route)
        if event is not None:
            setattr(self.stats, event, getattr(self.stats, event) + 1)

    def _emit(self, arrival: float, data: bytes, route: object) -> None:
        heappush(self._pending, (arrival, next(self._seq), data, route))
        if self._timer is None or arrival < self._due - TOLERANCE:
            self._arm(arrival)

    def _arm(self, arrival: float) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._due = arrival
        delay = max(0.0, arrival - self._relay.now())
        self._timer = self._relay.reactor.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        pending = self._pending
        limit = self._relay.now() + TOLERANCE
        stats = self.stats
        while pending and pending[0][0] <= limit:
            _, _, data, route = heappop(pending)
            stats.delivered += 1
            stats.bytes_delivered += len(data)
            self._relay.deliver(self, data, route)
        if pending:
            self._arm(pending[0][0])

    def _dropPending(self) -> None:
        self.stats.lost_down += len(self._pending)
        self._pending.clear()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def stop(self) -> None:
        """Drop what is in flight (``lost_down``) and cancel the timer."""
        self._dropPending()


class _ClientSide(DatagramProtocol):
    """The listening port: datagrams from clients."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        self.relay.fromClient(data, (addr[0], addr[1]))


class _Session:
    """One client address and the port its datagrams leave from (the NAT mapping)."""

    def __init__(self, relay: Relay, client: Address) -> None:
        self.relay = relay
        self.client = client
        self.port = None

    def bind(self, host: str) -> None:
        """Leave from a new port on ``host`` from now on; close the previous one."""
        old = self.port
        self.port = self.relay.reactor.listenUDP(0, _ServerSide(self), interface=host,
                                                 maxPacketSize=MAX_DATAGRAM)
        enlarge_buffers(self.port)
        if old is not None:
            old.stopListening()

    def source(self) -> Address:
        """The address the server sees this client at."""
        host = self.port.getHost()
        return (host.host, host.port)


class _ServerSide(DatagramProtocol):
    """One server-facing port of a session: the server's replies."""

    def __init__(self, session: _Session) -> None:
        self.session = session

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        relay = self.session.relay
        if (addr[0], addr[1]) == relay.server and self.transport is self.session.port:
            relay.to_client.receive(data, self.session.client)



class Relay:
    """
    A UDP relay between clients and ``server`` applying ``to_server`` and ``to_client``.

    :param reactor: provides ``IReactorUDP`` and ``IReactorTime``; every timer is on it.
    :param server: ``(host, port)`` of the server.
    :param source: the address the relay's server-facing ports bind to (default: the
        listening interface).
    :ivar to_server: the :class:`Direction` client → server.
    :ivar to_client: the :class:`Direction` server → client.
    """

    def __init__(self, reactor, server: Address, *, to_server: LinkConfig | None = None,
                 to_client: LinkConfig | None = None, seed: int = 0,
                 source: str | None = None) -> None:
        self.reactor = reactor
        self.server = (server[0], server[1])
        self.source = source
        self.to_server = Direction(self, "to_server", to_server or LinkConfig(delay=0.0), seed)
        self.to_client = Direction(self, "to_client", to_client or LinkConfig(delay=0.0), seed)
        self.sessions: dict[Address, _Session] = {}
        self._origin = 0.0
        self._port = None
        self._calls: list = []
        self._schedule = None

    # -- life cycle --------------------------------------------------------------------

    def start(self, port: int = 0, interface: str = "127.0.0.1") -> Relay:
        """Listen for clients on ``interface``:``port`` (0: any free port); start the clock."""
        self._origin = self.reactor.seconds()
        self.source = self.source or interface
        self._port = self.reactor.listenUDP(port, _ClientSide(self), interface=interface,
                                            maxPacketSize=MAX_DATAGRAM)
        enlarge_buffers(self._port)
        return self

    @property
    def address(self) -> Address:
        """``(host, port)`` the clients send to."""
        host = self._port.getHost()
        return (host.host, host.port)

    def now(self) -> float:
        """The relay clock: seconds since :meth:`start` (blackhole windows use it)."""
        return self.reactor.seconds() - self._origin

    def stop(self) -> defer.Deferred:
        """Close every port and cancel every timer; fires when the ports are closed."""
        for call in self._calls:
            if call.active():
                call.cancel()
        self._calls.clear()
        self.to_server.stop()
        self.to_client.stop()
        ports = [s.port for s in self.sessions.values()] + [self._port]
        self.sessions.clear()
        self._port = None
        return defer.gatherResults([defer.maybeDeferred(p.stopListening)
                                    for p in ports if p is not None])

    # -- forwarding --------------------------------------------------------------------

    def fromClient(self, data: bytes, client: Address) -> None:
        """A datagram from ``client``: on to the server through ``to_server``."""
        session = self.sessions.get(client)
        if session is None:
            if self._port is None:
                return  # stopped
            session = self.sessions[client] = _Session(self, client)
            session.bind(self.source)
        self.to_server.receive(data, session)

    def deliver(self, direction: Direction, data: bytes, route) -> None:
        """Send a datagram that made it through ``direction``."""
        try:
            if direction is self.to_server:
                if route.port is not None:
                    route.port.write(data, self.server)
            elif self._port is not None:
                self._port.write(data, route)
        except OSError:
            pass  # a full socket buffer or an ICMP error: the datagram is lost, as on a link

    # -- scripting ---------------------------------------------------------------------

    def configure(self, config: LinkConfig) -> None:
        """Give both directions ``config``."""
        self.to_server.config = config
        self.to_client.config = config

    def set_up(self, up: bool) -> None:
        """Bring both directions up or down."""
        self.to_server.set_up(up)
        self.to_client.set_up(up)

    def at(self, when: float, function: Callable[[], object]) -> None:
        """Call ``function()`` at relay time ``when`` (at once if that has passed)."""
        call = self.reactor.callLater(max(0.0, when - self.now()), function)
        self._calls = [c for c in self._calls if c.active()]
        self._calls.append(call)

    def blackhole(self, up: float, down: float, *, start: float | None = None,
                  cycles: int | None = None) -> None:
        """From relay time ``start`` (default now), repeat: both directions pass for ``up``
        seconds, then drop everything new (``lost_blackhole``) for ``down`` seconds; ``cycles``
        times, or for ever.  In-flight datagrams are not touched.  Replaces any earlier
        schedule."""
        if up < 0 or down <= 0:
            raise ConfigurationError("blackhole: up must be >= 0 and down > 0 seconds")
        begin = self.now() if start is None else start
        schedule = self._schedule = (up, down, cycles)
        self.at(begin + up, lambda: self._hole(schedule, begin + up, 1))

    def stop_blackholes(self) -> None:
        """End the blackhole schedule now: both directions pass again."""
        self._schedule = None
        self.to_server.blackholed = self.to_client.blackholed = False

    def _hole(self, schedule: tuple, when: float, cycle: int) -> None:
        if schedule is not self._schedule:
            return
        self.to_server.blackholed = self.to_client.blackholed = True
        self.at(when + schedule[1], lambda: self._unhole(schedule, when + schedule[1], cycle))

    def _unhole(self, schedule: tuple, when: float, cycle: int) -> None:
        if schedule is not self._schedule:
            return
        up, _, cycles = schedule
        self.to_server.blackholed = self.to_client.blackholed = False
        if cycles is None or cycle < cycles:
            self.at(when + up, lambda: self._hole(schedule, when + up, cycle + 1))

    def rebind(self, *, at: float | None = None, new_address: str | None = None) -> None:
        """NAT rebinding: at relay time ``at`` (default now) every session leaves from a new
        port, on ``new_address`` if given (e.g. ``'127.0.0.3'``, any 127/8 address works on
        Linux), and so do later sessions.  The old ports close: replies sent to them are
        lost, as when a NAT forgets a mapping."""
        if at is None:
            self._rebindNow(new_address)
        else:
            self.at(at, lambda: self._rebindNow(new_address))

    def _rebindNow(self, new_address: str | None) -> None:
        if new_address is not None:
            self.source = new_address
        for session in self.sessions.values():
            session.bind(self.source)

    def source_addresses(self) -> list[Address]:
        """The addresses the server sees the sessions at, in order of arrival."""
        return [session.source() for session in self.sessions.values()]

    def stats(self) -> dict[str, LinkStats]:
        """Snapshots of both directions' counters, keyed ``to_server`` and ``to_client``."""
        return {"to_server": dataclasses.replace(self.to_server.stats),
                "to_client": dataclasses.replace(self.to_client.stats)}


# -- the command line ----------------------------------------------------------------------

_NUMBER = r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*"
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_RATE_UNITS = {"": 1.0, "bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9,
               "bps": 1.0, "kbps": 1e3, "mbps": 1e6, "gbps": 1e9}
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000 ** 2, "mib": 1024 ** 2}


def _split(text: str, units: dict, what: str) -> float:
    match = re.fullmatch(_NUMBER + r"([A-Za-z%]*)\s*", text)
    unit = match and match.group(2).lower()
    if not match or unit not in units:
        names = ", ".join(u for u in units if u) or "none"
        raise argparse.ArgumentTypeError(f"{what} {text!r}: a number with one of: {names}")
    return float(match.group(1)) * units[unit]


def parse_time(text: str) -> float:
    """``'15ms'`` → 0.015; units s, ms, us are required."""
    return _split(text, _TIME_UNITS, "time")


def parse_rate(text: str) -> float:
    """``'10mbit'`` → 1e7 bit/s; bit, kbit, mbit, gbit (or bps, kbps...), bare = bit/s."""
    return _split(text, _RATE_UNITS, "rate")


def parse_probability(text: str) -> float:
    """``'2%'`` → 0.02; ``'0.02'`` → 0.02."""
    value = _split(text, {"%": 0.01, "": 1.0}, "probability")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"probability {text!r} is not within 0..1 (0%..100%)")
    return value


def parse_queue(text: str) -> int:
    """``'25'`` → 25 packets of 1500 bytes; ``'37500B'``, ``'37.5kB'``, ``'64KiB'`` → bytes."""
    if re.fullmatch(_NUMBER, text):
        return int(float(text) * PACKET_BYTES)
    return int(_split(text, _SIZE_UNITS, "queue"))


def parse_address(text: str) -> Address:
    """``'127.0.0.1:4433'`` or ``'[::1]:4433'``."""
    match = re.fullmatch(r"\[?([^\[\]]+?)\]?:(\d+)", text)
    if not match or int(match.group(2)) > 65535:
        raise argparse.ArgumentTypeError(f"address {text!r}: expected HOST:PORT or [V6]:PORT")
    return (match.group(1), int(match.group(2)))


def parse_schedule(text: str) -> tuple[float, float]:
    """``'5s/2s'`` → (5.0, 2.0): up for 5 s, then down for 2 s, repeated."""
    up, sep, down = text.partition("/")
    if not sep:
        raise argparse.ArgumentTypeError(f"blackhole {text!r}: expected UP/DOWN, e.g. 5s/2s")
    return parse_time(up), parse_time(down)


def parse_gilbert(text: str) -> tuple[float, ...]:
    """``'1%/30%'`` or ``'1%/30%/80%/0%'``: P(good→bad)/P(bad→good)[/loss bad[/loss good]]."""
    parts = text.split("/")
    if not 2 <= len(parts) <= 4:
        raise argparse.ArgumentTypeError(f"gilbert {text!r}: expected 2 to 4 values split by /")
    return tuple(parse_probability(p) for p in parts)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m kwik_twisted.testing.relay``."""
    p = argparse.ArgumentParser(
        prog="python -m kwik_twisted.testing.relay",
        description="A UDP relay that impairs traffic between clients and one server, in both "
                    "directions alike (the link model of kwik_twisted.testing.links).",
        epilog="Example (the QUIC interop runner's default link, plus 2% loss): "
               "--listen 127.0.0.1:5000 --server 127.0.0.1:4433 --delay 15ms --rate 10mbit "
               "--queue 25 --loss 2% --burst 3")
    add = p.add_argument
    add("--listen", type=parse_address, default=("127.0.0.1", 5000), metavar="HOST:PORT",
        help="address clients send to (default 127.0.0.1:5000)")
    add("--server", type=parse_address, required=True, metavar="HOST:PORT",
        help="the server's address")
    add("--source", metavar="HOST", help="address the server sees the relay at "
        "(default: the --listen host)")
    add("--delay", type=parse_time, default=0.0, metavar="TIME",
        help="one-way propagation delay, e.g. 15ms (units s, ms, us; default 0)")
    add("--jitter", type=parse_time, default=0.0, metavar="TIME",
        help="extra delay drawn uniformly in 0..TIME; never reorders (default 0)")
    add("--rate", type=parse_rate, metavar="RATE",
        help="bottleneck rate, e.g. 10mbit (bit, kbit, mbit, gbit; default unlimited)")
    add("--queue", type=parse_queue, metavar="SIZE",
        help="drop-tail queue: packets of 1500 bytes (25) or bytes (37500B, 37.5kB, 64KiB); "
             "default two bandwidth-delay products, at least 30 kB")
    add("--loss", type=parse_probability, default=0.0, metavar="P",
        help="random loss probability, e.g. 2%% or 0.02 (default 0)")
    add("--burst", type=int, metavar="N",
        help="at most N consecutive datagrams lost at random (default: no cap)")
    add("--gilbert", type=parse_gilbert, metavar="G2B/B2G[/BAD[/GOOD]]",
        help="Gilbert-Elliott loss: P(good to bad), P(bad to good), loss in the bad state "
             "(default 100%%) and in the good state (default 0%%), e.g. 1%%/30%%")
    add("--reorder", type=parse_probability, default=0.0, metavar="P",
        help="probability that a datagram is held back by --reorder-delay (default 0)")
    add("--reorder-delay", type=parse_time, metavar="TIME",
        help="extra delay of a reordered datagram (default max(delay/2, 5ms))")
    add("--duplicate", type=parse_probability, default=0.0, metavar="P",
        help="probability that a datagram is delivered twice (default 0)")
    add("--corrupt", type=parse_probability, default=0.0, metavar="P",
        help="probability that one byte among the first 50 is changed; the datagram is "
             "still delivered (default 0)")
    add("--mtu", type=int, metavar="BYTES", help="drop datagrams larger than BYTES (UDP "
        "payload; default: no limit)")
    add("--blackhole", type=parse_schedule, metavar="UP/DOWN",
        help="repeat: pass for UP, then drop everything for DOWN, e.g. 5s/2s")
    add("--rebind-every", type=parse_time, metavar="TIME",
        help="NAT rebinding: move every client to a new source port every TIME")
    add("--seed", type=int, default=0, help="seed of the random draws (default 0)")
    add("--stats", type=parse_time, metavar="TIME",
        help="print the counters every TIME (they are always printed at exit)")
    return p


def config_from_args(args: argparse.Namespace) -> LinkConfig:
    """The :class:`LinkConfig` (both directions) that parsed options describe."""
    settings = dict(delay=args.delay, jitter=args.jitter, rate_bps=args.rate,
                    queue_bytes=args.queue, loss=args.loss, max_loss_burst=args.burst,
                    reorder=args.reorder, reorder_delay=args.reorder_delay,
                    duplicate=args.duplicate, corrupt=args.corrupt, mtu=args.mtu)
    if args.gilbert:
        g = args.gilbert + (1.0, 0.0)[len(args.gilbert) - 2:]
        settings.update(ge_p_good_to_bad=g[0], ge_p_bad_to_good=g[1], ge_loss_bad=g[2],
                        ge_loss_good=g[3])
    return LinkConfig(**settings)


def _print_stats(relay: Relay, out) -> None:
    for name, stats in relay.stats().items():
        fields = " ".join(f"{k}={v}" for k, v in dataclasses.asdict(stats).items())
        print(f"{relay.now():9.3f} {name:9} {fields}", file=out, flush=True)


def main(argv: Sequence[str] | None = None, reactor=None, out=sys.stdout) -> Relay:
    """Parse ``argv``, start a relay on ``reactor`` and return it (the caller runs the
    reactor; run as a module, this runs the global reactor until interrupted)."""
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    if reactor is None:
        from twisted.internet import reactor
    relay = Relay(reactor, args.server, to_server=config, to_client=config, seed=args.seed,
                  source=args.source)
    relay.start(args.listen[1], args.listen[0])
    if args.blackhole:
        relay.blackhole(*args.blackhole)
    if args.rebind_every:
        _every(relay, args.rebind_every, relay.rebind)
    if args.stats:
        _every(relay, args.stats, lambda: _print_stats(relay, out))
    print(f"relaying {relay.address[0]}:{relay.address[1]} -> {args.server[0]}:"
          f"{args.server[1]} with {config}", file=out, flush=True)
    return relay


def _every(relay: Relay, period: float, function: Callable[[], object]) -> None:
    def tick(when: float) -> None:
        function()
        relay.at(when + period, lambda: tick(when + period))

    first = relay.now() + period
    relay.at(first, lambda: tick(first))


if __name__ == "__main__":  # pragma: no cover - the command line
    from twisted.internet import reactor as _reactor

    try:
        _relay = main(reactor=_reactor)
    except ConfigurationError as e:
        sys.exit(f"error: {e}")
    _reactor.addSystemEventTrigger("before", "shutdown", _print_stats, _relay, sys.stdout)
    _reactor.run()
