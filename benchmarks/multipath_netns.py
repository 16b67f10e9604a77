"""
Multipath over two real, rate-limited links: Kwik side by side with the kernel's MPTCP.

Linux and root only (it skips with a one-line reason elsewhere).  It builds two network
namespaces joined by two veth links, each limited in both directions by ``tc tbf`` (no added
delay: netem is not available on this kernel; see ``peers/netns.py`` for the tbf burst and
latency), and runs one bulk transfer of ``--size`` MB (30) client to server over both links:

* **kwik**: the server listens on both of its addresses
  (``kwik:4433:interface=10.231.1.2,10.231.2.2:...``), the client connects to the first with
  ``bindAddress=10.231.1.1:paths=10.231.2.1>10.231.2.2`` (a second path over link 2), one stream,
  the default scheduler and congestion control unless ``--kwik-opts`` adds endpoint arguments
  (``--kwik-opts scheduler=wrr:congestion=olia``).  The sender is ``bulk.py``'s producer.
* **mptcp**: an ``IPPROTO_MPTCP`` socket; the in-kernel path manager, told by a ``signal``
  endpoint of the server, opens the second subflow over link 2 (``peers/mptcp.py``).

The sample is the time from the client's first write to the one-byte answer the server sends on
receiving the last byte (half an RTT more than the last byte's arrival: well under 1 ms here).
The figure is the goodput in percent of the sum of the link rates (the rates count every byte on
the wire, headers included, so about 95% is the ceiling for 1500-byte frames).  Each run also
records, every 100 ms, the bytes each client veth has sent (and, for Kwik, every path's
``pathMetrics()``: RTT, congestion window, bytes in flight, bandwidth estimate, loss rate; for
MPTCP the number of extra subflows), and the bytes each veth sent during the run: the proof that
both links carried data.  ``--json`` prints all of it.

**Failover**: the same transfer on ``--failover-rates`` (40,40); ``--cut-at`` (2) seconds after
the first write the client takes link ``--cut-link`` (1: Kwik's handshake path, MPTCP's first
subflow) down.  Time lost = measured - ideal, where the ideal moves ``cut_at x (r1 + r2)`` bits
before the cut and the rest at the surviving link's rate (:func:`ideal_failover_seconds`; line
rates, so header overhead counts as loss too: about 5% of the time after the cut).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import harness
from peers import netns

HERE = Path(__file__).resolve()
KWIK_PORT = 4433
PEERS = ("kwik", "mptcp")


# -- pure helpers ----------------------------------------------------------------------------


def parse_rates(text: str) -> tuple[float, float]:
    """``"40,10"`` -> (40.0, 10.0): the two links' rates in Mbit/s."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"two comma-separated rates in Mbit/s, not {text!r}")
    try:
        rates = (float(parts[0]), float(parts[1]))
    except ValueError:
        raise argparse.ArgumentTypeError(f"rates must be numbers: {text!r}") from None
    if min(rates) <= 0:
        raise argparse.ArgumentTypeError(f"rates must be positive: {text!r}")
    return rates


def parse_scenarios(text: str) -> list[tuple[float, float]]:
    """``"40,40;40,10"`` (or ``"40,40 40,10"``) -> [(40, 40), (40, 10)]."""
    return [parse_rates(part) for part in text.replace(";", " ").split()]


def ideal_seconds(size: int, rates: tuple[float, float]) -> float:
    """Seconds to move ``size`` bytes at the sum of the line rates (Mbit/s)."""
    return size * 8 / (sum(rates) * 1e6)


def ideal_failover_seconds(
    size: int, rates: tuple[float, float], cut_at: float, cut_link: int
) -> float:
    """
    The ideal time of a transfer whose link ``cut_link`` dies ``cut_at`` s in: the sum of the
    rates until then, the surviving link's rate for the rest (all the transfer if it ends first).
    """
    bits = size * 8
    before = sum(rates) * 1e6 * cut_at
    if bits <= before:
        return bits / (sum(rates) * 1e6)
    survivor = rates[2 - cut_link] * 1e6
    return cut_at + (bits - before) / survivor


def own_goodput_ideal(
    size: int, rates: tuple[float, float], cut_at: float, cut_link: int, percent: float
) -> float:
    """
    :func:`ideal_failover_seconds` with both rates scaled to ``percent``, the peer's own steady
    goodput on these links: what remains of the time lost is the failover's alone, not its
    header overhead.
    """
    scaled = (rates[0] * percent / 100, rates[1] * percent / 100)
    return ideal_failover_seconds(size, scaled, cut_at, cut_link)


def goodput_percent(size: int, seconds: float, rates: tuple[float, float]) -> float:
    """Goodput of ``size`` bytes in ``seconds``, in percent of the sum of the link rates."""
    return 100.0 * ideal_seconds(size, rates) / seconds


def link_shares(before: dict, after: dict) -> dict:
    """Bytes each veth end sent between two :meth:`Testbed.counters` readings, and the client
    links' shares of the data direction."""
    sent = {k: after[k] - before.get(k, 0) for k in after}
    data = sent.get("c1", 0) + sent.get("c2", 0)
    shares = [sent.get(k, 0) / data if data else 0.0 for k in ("c1", "c2")]
    return {"bytes": sent, "share": shares}


def fmt_rates(rates: tuple[float, float]) -> str:
    """(40.0, 10.0) -> "40+10"."""
    return "+".join(f"{r:g}" for r in rates)


# -- the children (inside the namespaces) ------------------------------------------------------


def child_env() -> dict:
    """The environment of a child: it finds the project and the benchmark modules."""
    env = dict(os.environ)
    paths = [str(harness.ROOT), str(HERE.parent)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def payload_of(size: int) -> bytes:
    """The bytes sent (as ``bulk.py``)."""
    return random.Random(7).randbytes(size)


def kwik_server_string(args) -> str:
    """The server's endpoint string: both addresses, the development certificate."""
    certs = Path(args.certdir)
    s = (
        f"kwik:{KWIK_PORT}:interface={netns.server_addr(1)},{netns.server_addr(2)}"
        f":privateKey={certs / 'key.pem'}:certKey={certs / 'chain.pem'}"
    )
    return s + (f":{args.kwik_opts}" if args.kwik_opts else "")


def kwik_client_string(args) -> str:
    """The client's endpoint string: link 1 for the handshake, a second path over link 2."""
    certs = Path(args.certdir)
    s = (
        f"kwik:host={netns.server_addr(1)}:port={KWIK_PORT}:hostname=localhost"
        f":trustRoots={certs / 'ca.pem'}:reuse=no:timeout=10"
        f":bindAddress={netns.client_addr(1)}"
        f":paths={netns.client_addr(2)}>{netns.server_addr(2)}"
    )
    return s + (f":{args.kwik_opts}" if args.kwik_opts else "")


def role_kwik_server(args) -> None:
    """A Kwik sink on both server addresses that acks each transfer's last byte; forever."""
    from peers import twisted_peers
    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString

    factory, _ = twisted_peers.sink_factory(int(args.size * 1e6), ack=True)

    def failed(failure) -> None:
        print(f"failed: {failure.getErrorMessage()}", flush=True)
        reactor.stop()

    d = serverFromString(reactor, kwik_server_string(args)).listen(factory)
    d.addCallbacks(lambda _: print("ready", flush=True), failed)
    reactor.run()


def _metrics_sample(conn) -> dict:
    """Every path's figures, JSON-friendly."""
    return {
        str(pid): {
            "srtt": m.smoothed_rtt,
            "cwnd": m.cwnd,
            "inflight": m.bytes_in_flight,
            "bandwidth": m.bandwidth,
            "loss": m.loss_rate,
            "datagram_size": m.datagram_size,
        }
        for pid, m in conn.pathMetrics().items()
    }


def role_kwik_client(args) -> None:
    """One Kwik transfer; prints one JSON line (seconds, series, path events)."""
    from peers import twisted_peers
    from twisted.internet import defer, reactor, task
    from twisted.internet.endpoints import clientFromString
    from twisted.internet.protocol import Factory
    from zope.interface import implementer

    from kwik_twisted.endpoints import closeClientConnections
    from kwik_twisted.interfaces import IKwikConnectionObserver

    @implementer(IKwikConnectionObserver)
    class Pusher(twisted_peers.Pusher):
        def connectionMade(self) -> None:
            self.series, self.events = [], []
            self.sampler = task.LoopingCall(self.sample)
            self.started = time.perf_counter()
            self.cpu = time.process_time()
            self.sampler.start(args.interval)
            self.cutter = None
            if args.cut_at is not None:
                self.cutter = reactor.callLater(args.cut_at, self.cut)
            super().connectionMade()

        def sample(self) -> None:
            self.series.append(
                {
                    "t": time.perf_counter() - self.started,
                    "tx": netns.tx_bytes(),
                    "paths": _metrics_sample(self.transport.kwikConnection),
                }
            )

        def cut(self) -> None:
            netns.run("ip", "link", "set", "dev", netns.CLIENT_IF[args.cut_link - 1], "down")
            self.event(f"link {args.cut_link} down")

        def event(self, what: str) -> None:
            self.events.append({"t": time.perf_counter() - self.started, "event": what})

        def pathEvent(self, event) -> None:
            self.event(f"{type(event).__name__} {event.path_id}")

    pusher = Pusher(payload_of(int(args.size * 1e6)))

    async def main(reactor) -> dict:
        endpoint = clientFromString(reactor, kwik_client_string(args))
        await endpoint.connect(Factory.forProtocol(lambda: pusher))
        pusher.acked.addTimeout(args.stall_timeout, reactor)
        try:
            finished = await pusher.acked
            out = {
                "seconds": finished - pusher.started,
                "client_cpu": time.process_time() - pusher.cpu,
            }
        except defer.TimeoutError:
            out = {
                "error": "stalled",
                "detail": f"kwik: {pusher.offset} bytes written, no ack "
                f"after {args.stall_timeout:g} s",
            }
        pusher.sample()
        pusher.sampler.stop()
        if pusher.cutter is not None and pusher.cutter.active():
            pusher.cutter.cancel()  # the transfer ended first
        out.update(series=pusher.series, events=pusher.events)
        await closeClientConnections(reactor)
        return out

    print(json.dumps(harness.run_reactor(main)), flush=True)


def role_mptcp_client(args) -> None:
    """One MPTCP transfer; prints one JSON line."""
    from peers import mptcp

    out = mptcp.bulk(
        payload_of(int(args.size * 1e6)),
        interval=args.interval,
        cut_at=args.cut_at,
        cut_link=args.cut_link,
        timeout=args.stall_timeout,
        congestion=args.tcp_congestion,
    )
    print(json.dumps(out), flush=True)


def run_role(args) -> None:
    """Be the child ``args.role`` says."""
    if args.role == "kwik-server":
        role_kwik_server(args)
    elif args.role == "kwik-client":
        role_kwik_client(args)
    elif args.role == "mptcp-server":
        from peers import mptcp

        mptcp.serve(int(args.size * 1e6))
    else:
        role_mptcp_client(args)


# -- the parent --------------------------------------------------------------------------------


class Bench:
    """The test bed, the server children, and their cleanup whatever happens."""

    def __init__(self, args) -> None:
        from peers import certs

        self.args = args
        self.testbed = netns.Testbed.named(burst_ms=args.burst_ms, latency_ms=args.latency_ms)
        self.children: list[subprocess.Popen] = []
        self.servers: dict[str, int] = {}
        self.certdir = str(certs.write())
        args.certdir = self.certdir

    def command(self, role: str, **extra) -> list[str]:
        """``ip netns exec NS python multipath_netns.py --role ROLE ...``."""
        a = self.args
        ns = self.testbed.server if role.endswith("server") else self.testbed.client
        cmd = [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            str(HERE),
            "--role",
            role,
            "--size",
            str(a.size),
            "--certdir",
            self.certdir,
            "--interval",
            str(a.interval),
            "--stall-timeout",
            str(a.stall_timeout),
        ]
        if a.kwik_opts:
            cmd += ["--kwik-opts", a.kwik_opts]
        if a.tcp_congestion:
            cmd += ["--tcp-congestion", a.tcp_congestion]
        for name, value in extra.items():
            cmd += [f"--{name.replace('_', '-')}", str(value)]
        return cmd

    def start_server(self, peer: str) -> None:
        """Start ``peer``'s server child; wait for its "ready"."""
        proc = subprocess.Popen(
            self.command(f"{peer}-server"), stdout=subprocess.PIPE, text=True, env=child_env()
        )
        self.children.append(proc)
        self.servers[peer] = proc.pid  # ip netns exec execs: this is the Python process
        line = proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"the {peer} server did not start: {line!r}")

    def transfer(self, peer: str, rates, **extra) -> dict:
        """One client child's transfer, with the veth byte counters around it."""
        before = self.testbed.counters()
        cpu = netns.cpu_seconds(self.servers[peer])
        done = subprocess.run(
            self.command(f"{peer}-client", **extra),
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=self.args.stall_timeout + 60,
        )
        cpu = netns.cpu_seconds(self.servers[peer]) - cpu
        after = self.testbed.counters()
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            sys.stderr.write(done.stderr)
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            out = {"error": f"client exit status {done.returncode}", "detail": last}
        else:
            out = json.loads(lines[-1])
        out["links"] = link_shares(before, after)
        out["server_cpu"] = cpu  # seconds, the whole run (the client's handshake and close too)
        out["rates"] = list(rates)
        return out

    def cleanup(self) -> None:
        """Stop the children, delete the namespaces (idempotent)."""
        while self.children:
            proc = self.children.pop()
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.testbed.destroy()


def summarise(name: str, runs: list[dict], size: int, rates, *, ideal=None) -> dict:
    """A result row over the runs: goodput % (or seconds lost against ``ideal``)."""
    good = [r for r in runs if "seconds" in r]
    if not good:
        errors = {r.get("error", "?") for r in runs}
        return {
            "name": name,
            "median": None,
            "spread": None,
            "unit": "",
            "error": ", ".join(sorted(errors)),
            "detail": "; ".join(r.get("detail", "") for r in runs),
        }
    seconds = harness.Result.of([r["seconds"] for r in good])
    shares = [round(statistics_median([r["links"]["share"][i] for r in good]), 3) for i in (0, 1)]
    extra = {
        "seconds": seconds.as_dict(),
        "link_share": shares,
        "rates": list(rates),
        "failed_runs": len(runs) - len(good),
        "client_cpu": statistics_median([r.get("client_cpu", 0.0) / r["seconds"] for r in good]),
        "server_cpu": statistics_median([r.get("server_cpu", 0.0) / r["seconds"] for r in good]),
    }
    pmtu = path_mtus(good)
    if pmtu:
        extra["datagram_size"] = pmtu
    if ideal is None:
        result = harness.Result.of([goodput_percent(size, s, rates) for s in seconds.values])
        return harness.result_row(name, result, "% of sum", **extra)
    result = harness.Result.of([s - ideal for s in seconds.values])
    return harness.result_row(name, result, "s lost", ideal=ideal, **extra)


def path_mtus(runs: list[dict]) -> dict:
    """Kwik: each path's datagram size (what path MTU discovery reached) at the end of the
    runs, the median over them, by path ID; ``{}`` for MPTCP (no such series)."""
    sizes: dict[str, list] = {}
    for run in runs:
        series = run.get("series") or []
        for pid, m in (series[-1].get("paths", {}) if series else {}).items():
            if m.get("datagram_size"):
                sizes.setdefault(pid, []).append(m["datagram_size"])
    return {pid: statistics_median(v) for pid, v in sorted(sizes.items())}


def statistics_median(values: list[float]) -> float:
    """The median (harness.Result does it for more)."""
    return harness.Result.of(values).median


def run_peer(bench: Bench, peer: str, args, size: int, rows: list, details: list) -> None:
    """Every scenario for ``peer``: the steady ones, then the failover."""
    tb = bench.testbed
    steady = {}
    for rates in args.rates:
        tb.set_rates(rates)
        runs = []
        for i in range(args.warmup + args.runs):
            harness.log(f"{peer} {fmt_rates(rates)} run {i + 1}/{args.warmup + args.runs} ...")
            result = bench.transfer(peer, rates)
            if i >= args.warmup:
                runs.append(result)
        rows.append(summarise(f"{peer} {fmt_rates(rates)} Mbit/s", runs, size, rates))
        steady[rates] = rows[-1]["median"]
        details.append({"peer": peer, "scenario": fmt_rates(rates), "runs": runs})
    if args.no_failover:
        return
    rates = args.failover_rates
    tb.set_rates(rates)
    ideal = ideal_failover_seconds(size, rates, args.cut_at, args.cut_link)
    runs = []
    for i in range(args.warmup + args.runs):
        harness.log(f"{peer} failover {fmt_rates(rates)} run {i + 1} ...")
        result = bench.transfer(peer, rates, cut_at=args.cut_at, cut_link=args.cut_link)
        tb.set_link(args.cut_link, True)
        time.sleep(1.0)  # carrier, routes, neighbours back
        if i >= args.warmup:
            runs.append(result)
    name = f"{peer} failover {fmt_rates(rates)}, link {args.cut_link} cut at {args.cut_at:g} s"
    rows.append(summarise(name, runs, size, rates, ideal=ideal))
    if steady.get(rates) and "seconds" in rows[-1]:
        own = own_goodput_ideal(size, rates, args.cut_at, args.cut_link, steady[rates])
        rows[-1]["ideal_own_goodput"] = own
        rows[-1]["lost_vs_own_goodput"] = rows[-1]["seconds"]["median"] - own
    details.append(
        {"peer": peer, "scenario": f"failover {fmt_rates(rates)}", "ideal": ideal, "runs": runs}
    )


def notes(rows: list[dict]) -> list[tuple]:
    """The table: label, median, spread, unit, and a note (seconds, link shares)."""
    out = []
    for r in harness.table_of(rows):
        row = next(x for x in rows if x["name"] == r[0])
        if "link_share" in row:
            c1, c2 = row["link_share"]
            note = (
                f"{row['seconds']['median']:.2f} s, link1 {c1:.0%} / link2 {c2:.0%}, "
                f"CPU client {row['client_cpu']:.0%} server {row['server_cpu']:.0%}"
            )
            if "ideal" in row:
                note += f", ideal {row['ideal']:.2f} s"
            if "lost_vs_own_goodput" in row:
                note += f", {row['lost_vs_own_goodput']:.2f} s lost at own goodput"
            if row.get("datagram_size"):
                sizes = "/".join(f"{v:.0f}" for v in row["datagram_size"].values())
                note += f", datagrams {sizes} B"
            r = (*r[:4], note)
        out.append(r)
    return out


def parse_args(argv=None):
    """The command line (``--role`` and the rest of the hidden ones are for the children)."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--peer", default="all", choices=(*PEERS, "all"))
    p.add_argument(
        "--rates",
        type=parse_scenarios,
        default=[(40.0, 40.0), (40.0, 10.0)],
        help="scenarios: link rates in Mbit/s, e.g. '40,40;40,10' (the default)",
    )
    p.add_argument("--size", type=float, default=30, help="MB per transfer (default 30)")
    p.add_argument("--quick", action="store_true", help="10 MB, one run, cut at 0.5 s")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="discarded runs per scenario (each run is a fresh process anyway)",
    )
    p.add_argument("--failover-rates", type=parse_rates, default=(40.0, 40.0))
    p.add_argument(
        "--cut-at",
        type=float,
        default=None,
        help="seconds into the failover run (2; 0.5 with --quick)",
    )
    p.add_argument("--cut-link", type=int, default=1, choices=(1, 2))
    p.add_argument("--no-failover", action="store_true")
    p.add_argument(
        "--kwik-opts",
        default="",
        help="extra kwik: endpoint arguments for both sides, e.g. 'scheduler=wrr'",
    )
    p.add_argument(
        "--tcp-congestion",
        default="",
        help="the MPTCP sender's congestion control (TCP_CONGESTION: cubic, bbr, "
        "reno; default: the kernel's)",
    )
    p.add_argument("--burst-ms", type=float, default=4.0, help="tbf burst, ms of the rate")
    p.add_argument("--latency-ms", type=float, default=25.0, help="tbf queue, ms of the rate")
    p.add_argument("--interval", type=float, default=0.1, help="time-series sampling period")
    p.add_argument("--stall-timeout", type=float, default=60.0)
    p.add_argument(
        "--cleanup",
        action="store_true",
        help=f"delete leftover namespaces named {netns.PREFIX}* and exit",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object only")
    p.add_argument(
        "--role",
        choices=("kwik-server", "kwik-client", "mptcp-server", "mptcp-client"),
        help=argparse.SUPPRESS,
    )
    p.add_argument("--certdir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.runs = min(args.size, 10.0), 1
    if args.cut_at is None and args.role is None:  # a child cuts only when told to
        args.cut_at = 0.5 if args.quick else 2.0
    return args


def _on_signal(signum, frame) -> None:
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.role:
        run_role(args)
        return 0
    peers = PEERS if args.peer == "all" else (args.peer,)
    reason = netns.skip_reason(mptcp="mptcp" in peers)
    if reason:
        say = f"multipath_netns: skipped: {reason}"
        harness.emit(args, {"skipped": reason}, lambda: print(say))
        return 0
    if args.cleanup:
        gone = netns.cleanup_leftovers()
        harness.emit(args, {"removed": gone}, lambda: print(f"removed: {' '.join(gone) or '-'}"))
        return 0
    rows, details = [], []
    size = int(args.size * 1e6)
    bench = Bench(args)
    atexit.register(bench.cleanup)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)
    try:
        try:
            bench.testbed.create(args.rates[0])
        except RuntimeError as e:
            reason = f"cannot build the namespaces: {e}"
            harness.emit(args, {"skipped": reason}, lambda: print(f"multipath_netns: {reason}"))
            return 0
        if "mptcp" in peers:
            bench.testbed.mptcp_setup()
        for peer in peers:
            bench.start_server(peer)
            run_peer(bench, peer, args, size, rows, details)
        testbed = {
            "burst_ms": args.burst_ms,
            "latency_ms": args.latency_ms,
            "delay": "none",
            "tcp_congestion": args.tcp_congestion or bench.testbed.tcp_congestion(),
            "kwik_client": kwik_client_string(args),
        }
    finally:
        bench.cleanup()
    out = {"results": rows, "testbed": testbed, "details": details, "size": size}
    harness.emit(
        args,
        out,
        lambda: harness.print_table(
            notes(rows),
            headers=harness.HEADERS,
            title=f"multipath over two tbf-limited veth links, {args.size:g} MB client to server, "
            f"median of {args.runs} (MPTCP subflows: {testbed['tcp_congestion']}):",
        ),
    )
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
