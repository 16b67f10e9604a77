"""
``make demo``: a multipath Kwik transfer you can watch.

By default a Kwik server and client start in this process with development certificates, and the
client uploads 24 MiB through ``kwik:`` endpoints over real UDP on two paths: path 0 from 127.0.0.1
through an impairment relay with a 10 ms round trip, path 1 from 127.0.0.2 through a second relay
with 30 ms (30 Mbit/s each).  A live line shows each path's rate and state; a third of the way in,
path 1 is cut both ways for 1.5 s and then restored.  At the end: a per-path summary, a SHA-256
check of what arrived and, when the ``plots`` extra is installed and the endpoints write qlog, a
picture of the client's trace (``python -m kwik_twisted.qlog``).
``--single-path`` is the old demo: 32 MiB straight to the server on 127.0.0.1, no relay.
``--simulated`` runs the same core through the deterministic network simulator instead, over a link
you describe (20 Mbit/s, 30 ms RTT, 0.2% loss by default), in simulated time.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time

from ..testing import LinkConfig
from ..testing.transfer import make_payload, run_transfers

MiB = 1 << 20
#: The default size of the two-path transfer, in MiB.
MULTIPATH_MIB = 24
#: How long path 1 stays cut by default, in seconds.
OUTAGE = 1.5


def simulated(size: int, rate: float, rtt: float, loss: float, seed: int) -> int:
    """Run and report the simulated transfer; return a shell exit status."""
    link = LinkConfig(
        delay=rtt / 2, rate_bps=rate, queue_bytes=int(rate * rtt / 8), loss=loss, max_loss_burst=3
    )
    print(
        f"Kwik demo (simulated network): {size / MiB:.0f} MiB upload over {rate / 1e6:.0f} Mbit/s, "
        f"{rtt * 1000:.0f} ms RTT, {loss:.0%} loss; real TLS 1.3, AES-128-GCM, CUBIC"
    )
    started = time.perf_counter()
    clients = []

    def setup(network) -> None:
        def tick() -> None:
            done = sum(c.streams.sent_total for c in clients)
            bar = "#" * int(30 * done / size)
            print(
                f"\r  t={network.now:5.1f}s  [{bar:<30}] {done / MiB:5.1f} MiB sent",
                end="",
                flush=True,
            )
            if done < size:
                network.at(network.now + 0.5, tick)

        network.at(0.5, tick)

    result = run_transfers(size=size, link=link, seed=seed, setup=setup, on_start=clients.extend)
    wall = time.perf_counter() - started
    print()
    client = result.clients[0]
    path = client.paths[0]
    rtt_est = path.recovery.rtt
    print(
        f"  handshake + transfer finished at t={result.duration:.2f}s (simulated), "
        f"{wall:.1f}s of real time"
    )
    print(
        f"  goodput {result.goodput_bps() / 1e6:.2f} Mbit/s of {rate / 1e6:.0f} "
        f"({result.goodput_bps() / rate:.0%})"
    )
    print(
        f"  path 0: {path.packets_sent} packets sent, {path.packets_lost} declared lost and "
        f"re-sent, smoothed RTT {rtt_est.smoothed_rtt * 1000:.1f} ms "
        f"(min {rtt_est.min_rtt * 1000:.1f} ms), final cwnd {path.recovery.controller.cwnd} B"
    )
    stats = next(iter(result.network.stats().values()))
    print(
        f"  link: {stats.sent} datagrams, {stats.lost_random} lost at random, "
        f"{stats.lost_queue} dropped by the queue"
    )
    ok = result.all_intact
    digest = hashlib.sha256(make_payload(size, seed)).hexdigest()
    print(
        f"  sha256 {digest[:16]}... {'verified: every byte arrived intact' if ok else 'MISMATCH'}"
    )
    return 0 if ok else 1


def loopback(size: int) -> int:
    """A real transfer over UDP on 127.0.0.1 through the ``kwik:`` endpoints; return an exit
    status."""
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory, Protocol

    from ..endpoints import KwikClientEndpoint, KwikServerEndpoint, closeClientConnections
    from ..testing.pair import client_config, server_config

    payload = make_payload(size, 7)
    expected = hashlib.sha256(payload).digest()
    print(f"Kwik demo: {size / MiB:.0f} MiB from a client to a server over UDP on 127.0.0.1,")
    print("through kwik: endpoints (TLS 1.3, AES-128-GCM on every packet, CUBIC)")
    state = {"digest": hashlib.sha256(), "bytes": 0, "start": None, "status": 1}

    class Sink(Protocol):
        def dataReceived(self, data: bytes) -> None:
            if state["start"] is None:
                state["start"] = time.perf_counter()
            state["digest"].update(data)
            state["bytes"] += len(data)
            done = state["bytes"]
            if done == size or done // (size // 40 or 1) != (done - len(data)) // (size // 40 or 1):
                bar = "#" * int(30 * done / size)
                elapsed = time.perf_counter() - state["start"]
                rate = done / elapsed / 1e6 if elapsed else 0.0
                print(
                    f"\r  [{bar:<30}] {done / MiB:6.1f} MiB  {rate:6.1f} MB/s", end="", flush=True
                )

        def connectionLost(self, reason=None) -> None:
            elapsed = time.perf_counter() - (state["start"] or time.perf_counter())
            print()
            report(self.transport, elapsed)
            ok = state["digest"].digest() == expected and state["bytes"] == size
            print(
                f"  sha256 {expected.hex()[:16]}... "
                f"{'verified: every byte arrived intact' if ok else 'MISMATCH'}"
            )
            state["status"] = 0 if ok else 1
            reactor.callLater(0, shutdown)

    def report(transport, elapsed: float) -> None:
        core = transport.kwikConnection.core
        print(
            f"  {state['bytes']} bytes in {elapsed:.2f} s: "
            f"{state['bytes'] / elapsed / 1e6 if elapsed else 0:.1f} MB/s of application data"
        )
        for path in core.paths.values():
            rtt = path.recovery.rtt
            print(
                f"  path {path.id} {path.local_addr[0]}:{path.local_addr[1]} <- "
                f"{path.remote_addr[0]}:{path.remote_addr[1]}: {path.packets_received} packets "
                f"received; the receiver's RTT: smoothed {rtt.smoothed_rtt * 1000:.2f} ms, "
                f"min {rtt.min_rtt * 1000:.2f} ms"
            )

    class Source(Protocol):
        def connectionMade(self) -> None:
            self.transport.write(payload)
            self.transport.loseConnection()

        def connectionLost(self, reason=None) -> None:
            core = self.transport.kwikConnection.core
            for path in core.paths.values():
                rtt = path.recovery.rtt
                print(
                    f"  sender path {path.id}: {path.packets_sent} packets sent, "
                    f"{path.packets_lost} declared lost and re-sent, "
                    f"final cwnd {path.recovery.controller.cwnd} bytes; smoothed RTT "
                    f"{rtt.smoothed_rtt * 1000:.2f} ms, min {rtt.min_rtt * 1000:.2f} ms"
                )
            print(
                "  (a smoothed RTT far above the min RTT on a loopback is queueing, not the "
                "network: see docs/observability.rst)"
            )

    def shutdown() -> None:
        closeClientConnections(reactor).addBoth(
            lambda _: listening_port[0].stopListening()
        ).addBoth(lambda _: reactor.stop())

    listening_port = []

    def listening(port) -> None:
        listening_port.append(port)
        endpoint = KwikClientEndpoint(
            reactor, "127.0.0.1", port.getHost().port, config=client_config()
        )
        endpoint.connect(Factory.forProtocol(Source)).addErrback(fail)

    def fail(failure) -> None:
        print(f"  failed: {failure.getErrorMessage()}")
        reactor.stop()

    def too_slow() -> None:
        print("\n  gave up after 60 s")
        reactor.stop()

    server = KwikServerEndpoint(reactor, 0, config=server_config(), interface="127.0.0.1")
    server.listen(Factory.forProtocol(Sink)).addCallbacks(listening, fail)
    timeout = reactor.callLater(60, too_slow)
    reactor.run()
    if timeout.active():
        timeout.cancel()
    return state["status"]


#: One-way delay of each path's relay, in seconds: 10 ms and 30 ms round trips.
PATH_DELAYS = (0.005, 0.015)
#: The local address of path 1 (Linux routes all of 127/8 to the loopback).
SECOND_LOCAL = "127.0.0.2"
#: Seconds between two progress lines.
TICK = 0.25


def qlog_supported() -> bool:
    """Whether the client endpoint takes ``qlog=DIR``."""
    import inspect

    from ..endpoints import KwikClientEndpoint

    return "qlog" in inspect.signature(KwikClientEndpoint).parameters


def second_address_usable() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((SECOND_LOCAL, 0))
    except OSError:
        return False
    return True


def multipath(size: int, *, rate: float, outage: float, qlog_dir: str | None,
              picture: bool) -> int:
    """Upload ``size`` bytes over two relayed loopback paths, cutting path 1 for ``outage``
    seconds a third of the way in; return an exit status."""
    if not second_address_usable():
        print(f"cannot bind {SECOND_LOCAL}: running the single-path demo instead")
        return loopback(size)
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory, Protocol
    from zope.interface import implementer

    from ..endpoints import KwikClientEndpoint, KwikServerEndpoint, closeClientConnections
    from ..interfaces import IKwikConnectionObserver
    from ..testing.pair import client_config, server_config
    from ..testing.relay import Relay

    payload = make_payload(size, 7)
    expected = hashlib.sha256(payload).digest()
    record = picture and qlog_supported()
    if record:
        import tempfile

        qlog_dir = qlog_dir or tempfile.mkdtemp(prefix="kwik-demo-")
    print(
        f"Kwik demo: {size / MiB:.0f} MiB from a client to a server over two UDP paths on the "
        "loopback, each through an impairment relay"
    )
    rtts = [f"{2 * d * 1000:.0f} ms" for d in PATH_DELAYS]
    print(
        f"  path 0: 127.0.0.1 -> relay ({rtts[0]} RTT, {rate / 1e6:.0f} Mbit/s) -> server; "
        f"path 1: {SECOND_LOCAL} -> relay ({rtts[1]} RTT, {rate / 1e6:.0f} Mbit/s) -> server"
    )
    if outage > 0:
        print(f"  path 1 is cut both ways for {outage:g} s a third of the way in, then restored")
    state = {"digest": hashlib.sha256(), "bytes": 0, "start": None, "status": 1,
             "metrics": {}, "conn": None, "cut": None, "elapsed": 0.0}
    relays: list = []
    last = {"when": None, "carried": [0, 0]}

    def now() -> float:
        return reactor.seconds() - (state["start"] or reactor.seconds())

    def states() -> dict:
        conn = state["conn"]
        if conn is None:
            return {}
        try:
            state["metrics"] = dict(conn.pathMetrics())
        except Exception:  # the connection is gone: keep the last snapshot
            pass
        return {pid: getattr(m, "state", "active") for pid, m in state["metrics"].items()}

    def tick() -> None:
        carried = [r.to_server.stats.bytes_delivered for r in relays]
        when = reactor.seconds()
        if last["when"] is not None and state["start"] is not None:
            dt = when - last["when"] or TICK
            rates = [(c - p) * 8 / dt / 1e6 for c, p in zip(carried, last["carried"])]
            names = states()
            done = state["bytes"]
            bar = "#" * int(20 * done / size)
            paths = " | ".join(
                f"path {i}: {r:5.1f} Mbit/s {names.get(i, 'starting'):<10}"
                for i, r in enumerate(rates)
            )
            print(f"\r  {now():5.2f}s [{bar:<20}] {done / MiB:5.1f} MiB  {paths}", end="",
                  flush=True)
        last["when"], last["carried"] = when, carried

    def cut() -> None:
        if outage <= 0 or state["cut"] is not None:
            return
        state["cut"] = now()
        print(f"\n  {now():5.2f}s cutting path 1 (its relay drops everything both ways)")
        relays[1].set_up(False)

        def restore() -> None:
            print(f"\n  {now():5.2f}s restoring path 1")
            relays[1].set_up(True)

        reactor.callLater(outage, restore)

    class Sink(Protocol):
        def dataReceived(self, data: bytes) -> None:
            if state["start"] is None:
                state["start"] = reactor.seconds()
            state["digest"].update(data)
            state["bytes"] += len(data)
            if state["bytes"] >= size // 3:
                cut()

        def connectionLost(self, reason=None) -> None:
            state["elapsed"] = now()
            state["status"] = 0 if (
                state["digest"].digest() == expected and state["bytes"] == size
            ) else 1
            reactor.callLater(0, shutdown)

    @implementer(IKwikConnectionObserver)
    class Source(Protocol):
        def connectionMade(self) -> None:
            state["conn"] = self.transport.kwikConnection
            self.transport.write(payload)
            self.transport.loseConnection()

        def pathEvent(self, event) -> None:
            kind = type(event).__name__.replace("Path", "").lower()
            local, remote = event.local_addr, event.remote_addr
            where = f" ({local[0]}:{local[1]} -> {remote[0]}:{remote[1]})" if local else ""
            print(f"\n  {now():5.2f}s client: path {event.path_id} {kind}{where}")

        def connectionLost(self, reason=None) -> None:
            states()

    def shutdown() -> None:
        tick()
        loop.stop()
        closeClientConnections(reactor).addBoth(
            lambda _: listening_port[0].stopListening()
        ).addBoth(lambda _: reactor.stop())

    listening_port = []

    def listening(port) -> None:
        listening_port.append(port)
        server = ("127.0.0.1", port.getHost().port)
        for delay in PATH_DELAYS:
            link = LinkConfig(delay=delay, rate_bps=rate,
                              queue_bytes=max(64 * 1024, int(rate * 2 * delay / 8)))
            relays.append(Relay(reactor, server, to_server=link, to_client=link).start())
        second = relays[1].address
        kw = {"qlog": qlog_dir} if record else {}
        endpoint = KwikClientEndpoint(
            reactor, "127.0.0.1", relays[0].address[1], config=client_config(),
            paths=[(SECOND_LOCAL, second[0], second[1])], **kw,
        )
        endpoint.connect(Factory.forProtocol(Source)).addErrback(fail)

    def fail(failure) -> None:
        print(f"  failed: {failure.getErrorMessage()}")
        reactor.stop()

    def too_slow() -> None:
        print("\n  gave up after 60 s")
        reactor.stop()

    from twisted.internet.task import LoopingCall

    loop = LoopingCall(tick)
    server = KwikServerEndpoint(reactor, 0, config=server_config(), interface="127.0.0.1")
    server.listen(Factory.forProtocol(Sink)).addCallbacks(listening, fail)
    loop.start(TICK)
    timeout = reactor.callLater(60, too_slow)
    reactor.run()
    if timeout.active():
        timeout.cancel()
    print()
    _multipath_summary(state, relays, size, expected)
    if record and state["status"] == 0:
        _draw(qlog_dir)
    return state["status"]


def _multipath_summary(state: dict, relays: list, size: int, expected: bytes) -> None:
    elapsed = state["elapsed"] or 1e-9
    print(f"  {state['bytes']} bytes in {elapsed:.2f} s: "
          f"{state['bytes'] * 8 / elapsed / 1e6:.1f} Mbit/s of application data")
    carried = [r.to_server.stats.bytes_delivered for r in relays]
    total = sum(carried) or 1
    for i, relay in enumerate(relays):
        stats = relay.to_server.stats
        line = (f"  path {i} ({2 * PATH_DELAYS[i] * 1000:.0f} ms relay): carried "
                f"{carried[i] / MiB:5.1f} MiB ({carried[i] / total:4.0%}) to the server")
        if stats.lost_down:
            line += f", {stats.lost_down} datagrams dropped while cut"
        metrics = state["metrics"].get(i)
        if metrics is not None:
            line += (f"; sender: smoothed RTT {metrics.smoothed_rtt * 1000:.1f} ms, "
                     f"min {metrics.min_rtt * 1000:.1f} ms")
            if getattr(metrics, "packets_sent", 0):
                line += (f", {metrics.packets_sent} packets sent, "
                         f"{metrics.packets_lost} lost")
            line += f", {getattr(metrics, 'state', 'active')}"
        print(line)
    print("  (smoothed RTT above min RTT is queueing: the sender keeps up to a congestion window "
          "in the relays' queues; see docs/observability.rst)")
    ok = state["status"] == 0
    print(f"  sha256 {expected.hex()[:16]}... "
          f"{'verified: every byte arrived intact' if ok else 'MISMATCH'}")


def _draw(qlog_dir: str) -> None:
    """Draw the client's trace next to it, when matplotlib is installed."""
    import glob
    import os

    traces = sorted(glob.glob(os.path.join(qlog_dir, "*client*.sqlog")), key=os.path.getmtime)
    if not traces:
        return
    print(f"  qlog trace: {traces[-1]}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("  (pip install 'kwik_twisted[plots]' to get a picture of it)")
        return
    from ..qlog import plot, read_qlog

    output = os.path.splitext(traces[-1])[0] + ".png"
    _, events = read_qlog(traces[-1])
    plot(events, output, title="make demo: client's view, path 1 cut and restored")
    print(f"  picture: {output}")



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kwik_twisted.tools.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--size", type=float, default=None,
        help=f"MiB to transfer (default {MULTIPATH_MIB:g} over two paths, 32 otherwise)",
    )
    parser.add_argument("--rate", type=float, default=None,
                        help="link Mbit/s (default 20 simulated, 30 per path with two paths)")
    parser.add_argument("--rtt", type=float, default=30,
                        help="simulated round-trip ms (default 30)")
    parser.add_argument(
        "--loss", type=float, default=0.2, help="simulated random loss in percent (default 0.2)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--single-path",
        action="store_true",
        help="one path straight to the server on 127.0.0.1, no relay (the old demo)",
    )
    parser.add_argument(
        "--simulated",
        action="store_true",
        help="run through the deterministic network simulator (uses --rate, --rtt, --loss, --seed)",
    )
    parser.add_argument("--outage", type=float, default=OUTAGE,
                        help=f"seconds path 1 stays cut (default {OUTAGE:g}; 0: no cut)")
    parser.add_argument(
        "--qlog-dir", default=None,
        help="where the client's qlog trace and its picture go (default: a temporary directory)",
    )
    parser.add_argument("--no-picture", action="store_true",
                        help="do not record a qlog trace nor draw it")
    args = parser.parse_args(argv)
    if args.simulated:
        size = int((args.size or 32) * MiB)
        rate = (args.rate or 20) * 1e6
        return simulated(size, rate, args.rtt / 1000, args.loss / 100, args.seed)
    if args.single_path:
        return loopback(int((args.size or 32) * MiB))
    return multipath(
        int((args.size or MULTIPATH_MIB) * MiB),
        rate=(args.rate or 30) * 1e6,
        outage=args.outage,
        qlog_dir=args.qlog_dir,
        picture=not args.no_picture,
    )


if __name__ == "__main__":
    sys.exit(main())
