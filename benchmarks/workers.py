"""
Scaling with worker processes: full handshakes per second and bulk goodput, 1 and 2 workers.

The server is ``twistd kwik --echo`` run by ``python -m kwik_twisted.workers -n N`` (the same
launcher for every N, so only N differs) with an RSA-2048 certificate, whose signature makes a
full handshake server-heavy.  The load comes from ``--clients`` client processes started at once:

* handshakes: each keeps ``--concurrency`` full handshakes (no session resumption, no connection
  reuse) in flight for ``--duration`` seconds; the figure is completed handshakes per second over
  all clients;
* bulk: each opens ``--connections`` connections and echoes ``--size`` MB on each through the
  server at once; the figure is echoed MB/s (10^6 bytes that came back) over all clients.

Both ratios (2 workers / 1 worker) are printed, and the CPU milliseconds per handshake of the
workers (all of them, from /proc) and of the clients: on a 2-core machine the clients share the
cores with the workers, so when a client's handshake costs about what the server's does the
ratio stays near 1 whatever the number of workers; the CPU rows show which side is the limit.
A run that fails (no answer, a client error) gets error rows.  ``--json`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness

HERE = Path(__file__).resolve()
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"


def write_rsa_certificates(directory: Path):
    """Development CA and server certificate, with RSA-2048 keys instead of devcerts' P-256."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from kwik_twisted.tools import devcerts

    original = devcerts._new_key
    devcerts._new_key = lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    try:
        return devcerts.write_pem_files(directory)
    finally:
        devcerts._new_key = original


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(workers: int, port: int, certs) -> subprocess.Popen:
    listen = f"kwik:{port}:interface=127.0.0.1:privateKey={certs.key}:certKey={certs.chain}"
    argv = [sys.executable, "-m", "kwik_twisted.workers", "-n", str(workers), "--port",
            f"{port}@127.0.0.1", "--", sys.executable, "-c", TWISTD, "-n", "--pidfile=",
            "--logfile=/dev/null", "kwik", "--listen", listen, "--echo"]
    env = dict(os.environ, PYTHONPATH=str(harness.ROOT))
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def run_clients(mode: str, port: int, certs, args) -> list[dict]:
    """Start ``--clients`` client processes at once; their JSON reports."""
    argv = [sys.executable, str(HERE), "--client", mode, "--port", str(port), "--ca",
            str(certs.ca), "--duration", str(args.duration), "--concurrency",
            str(args.concurrency), "--connections", str(args.connections), "--size",
            str(args.size)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
             for _ in range(args.clients)]
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=args.duration * 4 + 120)
        lines = out.strip().splitlines()
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"a {mode} client failed (exit {proc.returncode})")
        reports.append(json.loads(lines[-1]))
    return reports


def wait_ready(port: int, certs, deadline: float) -> None:
    """Run one-handshake clients until one succeeds (the workers are listening)."""
    while time.monotonic() < deadline:
        done = subprocess.run(
            [sys.executable, str(HERE), "--client", "probe", "--port", str(port), "--ca",
             str(certs.ca)], stdout=subprocess.PIPE, text=True, timeout=60)
        if done.returncode == 0:
            return
        time.sleep(0.5)
    raise RuntimeError("the server did not answer")


def workers_cpu(launcher: int) -> float:
    """CPU seconds the launcher's children (the workers) have used so far (Linux /proc)."""
    try:
        children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    except OSError:
        return 0.0
    total = 0
    for pid in children:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def measure(workers: int, certs, args) -> dict:
    """Handshakes/s and bulk MB/s with ``workers`` workers, and CPU ms per handshake."""
    port = free_udp_port()
    server = start_server(workers, port, certs)
    try:
        wait_ready(port, certs, time.monotonic() + 60)
        before = workers_cpu(server.pid)
        hs = run_clients("handshakes", port, certs, args)
        server_cpu = workers_cpu(server.pid) - before
        count = sum(r["handshakes"] for r in hs)
        rate = count / max(r["seconds"] for r in hs)
        failures = sum(r["failures"] for r in hs)
        bulk = run_clients("bulk", port, certs, args)
        goodput = sum(r["bytes"] for r in bulk) / max(r["seconds"] for r in bulk) / 1e6
        return {"handshakes": rate, "failures": failures, "goodput": goodput,
                "server_ms": server_cpu * 1e3 / max(count, 1),
                "client_ms": sum(r["cpu"] for r in hs) * 1e3 / max(count, 1)}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# -- the client processes --------------------------------------------------------------------


def client(args) -> dict:
    """One client process: handshakes for ``duration`` seconds, or the bulk echoes."""
    from twisted.internet import defer
    from twisted.internet.endpoints import clientFromString
    from twisted.internet.protocol import Factory, Protocol

    from kwik_twisted.endpoints import closeClientConnections

    class Echoed(Protocol):
        def connectionMade(self) -> None:
            self.got = 0
            self.expected = 0
            self.done = defer.Deferred()

        def dataReceived(self, data: bytes) -> None:
            self.got += len(data)
            if self.got >= self.expected and not self.done.called:
                self.done.callback(self.got)

    async def main(reactor) -> dict:
        string = (f"kwik:host=127.0.0.1:port={args.port}:trustRoots={args.ca}:hostname=localhost"
                  f":reuse=no:resumption=no:timeout=10")
        endpoint = clientFromString(reactor, string)
        if args.client == "probe":
            proto = await endpoint.connect(Factory.forProtocol(Protocol))
            proto.transport.loseConnection()
            await closeClientConnections(reactor)
            return {}
        if args.client == "handshakes":
            counts = {"handshakes": 0, "failures": 0}
            end = time.monotonic() + args.duration

            async def loop():
                while time.monotonic() < end:
                    try:
                        proto = await endpoint.connect(Factory.forProtocol(Protocol))
                    except Exception:
                        counts["failures"] += 1
                        continue
                    counts["handshakes"] += 1
                    proto.transport.loseConnection()

            started, cpu = time.monotonic(), time.process_time()
            await defer.gatherResults([defer.ensureDeferred(loop())
                                       for _ in range(args.concurrency)])
            counts["seconds"] = time.monotonic() - started
            counts["cpu"] = time.process_time() - cpu
            await closeClientConnections(reactor)
            return counts
        size = int(args.size * 1e6)
        payload = os.urandom(size)
        protos = [await endpoint.connect(Factory.forProtocol(Echoed))
                  for _ in range(args.connections)]
        started = time.monotonic()
        for proto in protos:
            proto.expected = size
            proto.transport.write(payload)
        got = await defer.gatherResults([proto.done for proto in protos])
        seconds = time.monotonic() - started
        await closeClientConnections(reactor)
        return {"bytes": sum(got), "seconds": seconds}

    return harness.run_reactor(main)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of handshakes")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="handshakes in flight per client process")
    parser.add_argument("--connections", type=int, default=4,
                        help="bulk connections per client process")
    parser.add_argument("--size", type=float, default=4.0, help="MB echoed per connection")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--client", choices=("probe", "handshakes", "bulk"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client is not None:
        print(json.dumps(client(args)), flush=True)
        return {}
    certs = write_rsa_certificates(Path(tempfile.mkdtemp(prefix="kwik-workers-bench-")))
    rows, figures = [], {}
    for workers in (int(n) for n in args.workers.split(",")):
        harness.log(f"workers: {workers} ...")
        try:
            figures[workers] = got = measure(workers, certs, args)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            for name, unit in (("handshakes", "1/s"), ("bulk", "MB/s")):
                rows.append({"name": f"{name} {workers} workers", "median": None,
                             "spread": None, "unit": unit, "error": str(e)})
            continue
        rows.append({"name": f"handshakes {workers} workers", "median": got["handshakes"],
                     "spread": None, "unit": "1/s", "failures": got["failures"]})
        rows.append({"name": f"bulk {workers} workers", "median": got["goodput"],
                     "spread": None, "unit": "MB/s"})
        for side in ("server", "client"):
            rows.append({"name": f"{side} cpu per handshake, {workers} workers",
                         "median": got[f"{side}_ms"], "spread": None, "unit": "ms"})
    if 1 in figures and 2 in figures:
        for key, name in (("handshakes", "handshakes"), ("goodput", "bulk")):
            rows.append({"name": f"{name} ratio 2/1 workers", "spread": None, "unit": "x",
                         "median": figures[2][key] / figures[1][key]})
    out = {"results": rows}
    harness.emit(args, out, lambda: harness.print_table(
        harness.table_of(rows), headers=harness.HEADERS,
        title=f"{args.clients} client processes, RSA-2048 server certificate:"))
    return out


if __name__ == "__main__":
    main()
