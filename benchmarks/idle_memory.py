"""
Memory per idle Kwik connection: ``--connections`` (default 1000) connections to one server.

Each client connection is a ``KwikClientEndpoint(..., reuse=False)`` with one idle stream open (the
endpoint's ``connect`` opens a stream; with none the pool would close the connection after
``POOL_LINGER``), its own UDP port, and ``idle_timeout`` raised to 600 s so nothing expires while
the rest connect.  After a warm-up connection, a baseline is taken; then the connections open
(``--parallel`` at a time), the process idles ``--settle`` seconds so ACKs and handshake
confirmations are done, and the growth is divided by the number of connections:

* ``traced``: growth of the Python heap (``tracemalloc``, started at the baseline): what Kwik's own
  Python objects cost.  Memory that OpenSSL or Rust (``cryptography``) allocate is not traced.
* ``rss``: growth of the resident set (``/proc/self/statm``): everything, allocator slack included.

By default the server runs in a child process, so each side is measured on its own (client side in
this process, server side in the child, which answers on a pipe).  ``--one-process`` puts the server
in this process too and reports the sum of both sides per connection.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import harness

HERE = Path(__file__).resolve()
IDLE_TIMEOUT = 600.0


class Meter:
    """Baseline then growth of the Python heap (tracemalloc) and the RSS of this process."""

    def __init__(self) -> None:
        self.rss0 = self.traced0 = 0

    @staticmethod
    def rss() -> int:
        """The resident set size in bytes."""
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def baseline(self) -> dict:
        """Start tracing; remember where we are."""
        gc.collect()
        if not tracemalloc.is_tracing():
            tracemalloc.start()
        self.traced0 = tracemalloc.get_traced_memory()[0]
        self.rss0 = self.rss()
        return {"rss": self.rss0}

    def growth(self) -> dict:
        """Bytes grown since the baseline."""
        gc.collect()
        return {"rss": self.rss() - self.rss0,
                "traced": tracemalloc.get_traced_memory()[0] - self.traced0}


# -- Twisted pieces ----------------------------------------------------------------------------


def _idle_factory(counter: dict, *, hello: bool = False):
    """
    A factory of idle protocols, counting the live ones in ``counter["live"]``.

    With ``hello`` (the client side) each first writes one byte, so the server sees the stream.
    """
    from twisted.internet.protocol import Factory, Protocol

    class Idle(Protocol):
        def connectionMade(self) -> None:
            counter["live"] += 1
            if hello:
                self.transport.write(b"h")

        def connectionLost(self, reason=None) -> None:
            counter["live"] -= 1

    return Factory.forProtocol(Idle)


def _configs(certs):
    from kwik_twisted.testing.pair import client_config, server_config

    return (server_config(certs, idle_timeout=IDLE_TIMEOUT),
            client_config(certs, idle_timeout=IDLE_TIMEOUT))


async def _open(reactor, port: int, config, count: int, parallel: int, counter: dict) -> int:
    """Open ``count`` client connections, ``parallel`` at a time; how many failed."""
    from twisted.internet import defer

    from kwik_twisted.endpoints import KwikClientEndpoint

    factory, failed = _idle_factory(counter, hello=True), 0
    for start in range(0, count, parallel):
        attempts = [KwikClientEndpoint(reactor, "127.0.0.1", port, config=config, reuse=False)
                    .connect(factory) for _ in range(min(parallel, count - start))]
        results = await defer.DeferredList(attempts, consumeErrors=True)
        failed += sum(1 for ok, _ in results if not ok)
    return failed


def _sleep(reactor, seconds: float):
    from twisted.internet import task

    return task.deferLater(reactor, seconds, lambda: None)


# -- the child (server side) -------------------------------------------------------------------


def serve_child(certdir: str) -> None:
    """The server in a child: prints its port; answers ``base`` / ``snap`` lines with JSON."""
    from peers import certs
    from twisted.internet import reactor, stdio
    from twisted.protocols.basic import LineReceiver

    from kwik_twisted.endpoints import KwikServerEndpoint

    meter, counter = Meter(), {"live": 0}
    server_conf, _ = _configs(certs.load(certdir))

    class Control(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            reply = meter.baseline() if line == b"base" else meter.growth()
            reply["live"] = counter["live"]
            self.sendLine(json.dumps(reply).encode())

        def connectionLost(self, reason=None) -> None:
            if reactor.running:
                reactor.stop()

    def listening(port) -> None:
        sys.stdout.write(f"{port.getHost().port}\n")
        sys.stdout.flush()
        stdio.StandardIO(Control())

    endpoint = KwikServerEndpoint(reactor, 0, config=server_conf, interface="127.0.0.1")
    endpoint.listen(_idle_factory(counter)).addCallback(listening)
    reactor.run()


class Child:
    """The server child process, talked to over its stdin/stdout."""

    def __init__(self, certdir: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, str(HERE), "--serve-child", str(certdir)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise SystemExit(f"the server child did not start: {line!r}")
        self.port = int(line)

    def ask(self, command: str) -> dict:
        """Send a command; its JSON reply (blocking: the server lives in the other process)."""
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        """End the child (closing its stdin stops its reactor)."""
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait()


# -- the measurement ---------------------------------------------------------------------------


def measure(args) -> dict:
    """Open the connections, measure, close; a dict of figures."""
    from peers import certs

    from kwik_twisted.endpoints import KwikServerEndpoint, closeClientConnections

    certdir = certs.write()
    server_conf, client_conf = _configs(certs.load(certdir))
    child = None if args.one_process else Child(certdir)
    meter, counter, server_counter = Meter(), {"live": 0}, {"live": 0}

    async def main(reactor) -> dict:
        listening = None
        if child is None:
            endpoint = KwikServerEndpoint(reactor, 0, config=server_conf, interface="127.0.0.1")
            listening = await endpoint.listen(_idle_factory(server_counter))
        port = child.port if child else listening.getHost().port
        await _open(reactor, port, client_conf, 2, 2, {"live": 0})  # warm-up
        await closeClientConnections(reactor)
        await _sleep(reactor, 0.5)
        server_base = child.ask("base") if child else None
        meter.baseline()
        started = time.perf_counter()
        failed = await _open(reactor, port, client_conf, args.connections, args.parallel, counter)
        opened = time.perf_counter() - started
        await _sleep(reactor, args.settle)
        out = {"client": meter.growth(), "server": child.ask("snap") if child else None,
               "client_live": counter["live"], "failed": failed, "open_seconds": opened,
               "server_base": server_base}
        if child is None:
            out["server_live"] = server_counter["live"]
        await closeClientConnections(reactor)
        if listening is not None:
            await listening.stopListening()
        return out

    try:
        return harness.run_reactor(main)
    finally:
        if child is not None:
            child.close()


def rows_of(figures: dict, args) -> list[dict]:
    """Per-connection rows (KiB) from the raw figures."""
    n = figures["client_live"] or 1
    rows = []
    sides = [("client+server (1 process)", figures["client"])] if args.one_process else [
        ("client", figures["client"]), ("server", figures["server"])]
    for side, growth in sides:
        for what in ("traced", "rss"):
            rows.append({"name": f"idle {side} {what}", "median": growth[what] / n / 1024,
                         "spread": None, "unit": "KiB/conn"})
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=20, help="connections opened at once")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds idle before measuring")
    parser.add_argument("--one-process", action="store_true", help="server in this process too")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--serve-child", metavar="CERTDIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_child:
        serve_child(args.serve_child)
        return {}
    figures = measure(args)
    rows = rows_of(figures, args)
    live = figures["client_live"]
    server_live = (figures["server"] or {}).get("live", figures.get("server_live"))
    out = {"results": rows, "connections": live, "server_connections": server_live,
           "failed": figures["failed"], "open_seconds": figures["open_seconds"]}

    def text() -> None:
        harness.print_table(
            [(r["name"], r["median"], r["unit"]) for r in rows],
            title=f"memory per idle Kwik connection ({live} open on the client side, "
                  f"{server_live} on the server side, {figures['failed']} failed; opened in "
                  f"{figures['open_seconds']:.1f} s):")

    harness.emit(args, out, text)
    return out


if __name__ == "__main__":
    main()
