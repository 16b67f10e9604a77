"""
``make demo``: a Kwik transfer you can watch.

By default a Kwik server and client start in this process on 127.0.0.1 with development
certificates, and the client uploads 32 MiB through ``kwik:`` endpoints over real UDP: a live
progress line, then what happened (rate, RTT, packets re-sent) and a SHA-256 check of what arrived.
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
                f"received, smoothed RTT {rtt.smoothed_rtt * 1000:.2f} ms"
            )

    class Source(Protocol):
        def connectionMade(self) -> None:
            self.transport.write(payload)
            self.transport.loseConnection()

        def connectionLost(self, reason=None) -> None:
            core = self.transport.kwikConnection.core
            for path in core.paths.values():
                print(
                    f"  sender path {path.id}: {path.packets_sent} packets sent, "
                    f"{path.packets_lost} declared lost and re-sent, "
                    f"final cwnd {path.recovery.controller.cwnd} bytes"
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kwik_twisted.tools.demo", description=__doc__)
    parser.add_argument("--size", type=float, default=32, help="MiB to transfer (default 32)")
    parser.add_argument("--rate", type=float, default=20, help="link Mbit/s (default 20)")
    parser.add_argument("--rtt", type=float, default=30, help="round-trip ms (default 30)")
    parser.add_argument(
        "--loss", type=float, default=0.2, help="random loss in percent (default 0.2)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--simulated",
        action="store_true",
        help="run through the deterministic network simulator (uses --rate, --rtt, --loss, --seed)",
    )
    args = parser.parse_args(argv)
    size = int(args.size * MiB)
    if args.simulated:
        return simulated(size, args.rate * 1e6, args.rtt / 1000, args.loss / 100, args.seed)
    return loopback(size)


if __name__ == "__main__":
    sys.exit(main())
