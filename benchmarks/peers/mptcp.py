"""
The kernel's MPTCP side of the multipath benchmark: a sink server and a bulk client, blocking
sockets, each run inside its namespace by ``multipath_netns.py --role mptcp-server|mptcp-client``.

The server listens on ``0.0.0.0`` with an ``IPPROTO_MPTCP`` socket, reads each connection to
``size`` bytes and answers one byte.  The client connects to the server's link-1 address, writes
the payload with ``sendall`` and waits for that byte: the sample is first write to the byte back
(half a round trip more than the last byte's arrival, under a millisecond here).  The second
subflow comes from the path manager (:meth:`netns.Testbed.mptcp_setup`).  While sending, a thread
samples every ``interval`` seconds the bytes sent by both client veths and the number of extra
subflows (``MPTCP_INFO``), and may take a link down at ``cut_at`` seconds (the failover run).
"""

from __future__ import annotations

import socket
import threading
import time

from . import netns

IPPROTO_MPTCP = getattr(socket, "IPPROTO_MPTCP", 262)
SOL_MPTCP = 284
MPTCP_INFO = 1
PORT = 5201


def serve(size: int, port: int = PORT) -> None:
    """Accept connections forever; read ``size`` bytes from each, answer ``b"k"``."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(8)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=_sink, args=(conn, size), daemon=True).start()


def _sink(conn: socket.socket, size: int) -> None:
    received = 0
    with conn:
        while received < size:
            data = conn.recv(1 << 20)
            if not data:
                return
            received += len(data)
        conn.sendall(b"k")
        conn.recv(1)  # until the client closes


def extra_subflows(sock: socket.socket) -> int:
    """How many subflows besides the first the connection has (``mptcpi_subflows``), or -1."""
    try:
        return sock.getsockopt(SOL_MPTCP, MPTCP_INFO, 64)[0]
    except OSError:
        return -1


class Sampler(threading.Thread):
    """Every ``interval`` s: (t, [tx bytes of ktc1, ktc2], extra subflows) into ``samples``."""

    def __init__(self, sock: socket.socket, started: float, interval: float) -> None:
        super().__init__(daemon=True)
        self.sock, self.started, self.interval = sock, started, interval
        self.samples: list[dict] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while True:
            self.samples.append(
                {
                    "t": time.perf_counter() - self.started,
                    "tx": netns.tx_bytes(),
                    "subflows": extra_subflows(self.sock),
                }
            )
            if self.stop.wait(self.interval):
                return


def bulk(
    payload: bytes,
    *,
    interval: float = 0.1,
    cut_at: float | None = None,
    cut_link: int = 1,
    timeout: float = 120.0,
    congestion: str = "",
) -> dict:
    """
    One transfer to the server's link-1 address; the sample and the time series.  A
    ``congestion`` name sets the subflows' TCP congestion control (root may pick any the kernel
    has, even outside ``tcp_allowed_congestion_control``).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    if congestion:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, congestion.encode())
    sock.bind((netns.client_addr(1), 0))
    sock.connect((netns.server_addr(1), PORT))
    sock.settimeout(timeout)
    events = []
    started, cpu = time.perf_counter(), time.process_time()
    sampler = Sampler(sock, started, interval)
    sampler.start()
    cutter = None
    if cut_at is not None:

        def cut() -> None:
            netns.run("ip", "link", "set", "dev", netns.CLIENT_IF[cut_link - 1], "down")
            events.append({"t": time.perf_counter() - started, "event": f"link {cut_link} down"})

        cutter = threading.Timer(cut_at, cut)
        cutter.start()
    try:
        sock.sendall(payload)
        sock.recv(1)
        seconds = time.perf_counter() - started
    except OSError as e:  # includes the timeout
        took = time.perf_counter() - started
        return {
            "error": "stalled",
            "detail": f"MPTCP: {e} after {took:.1f} s",
            "series": sampler.samples,
            "events": events,
        }
    finally:
        sampler.stop.set()
        if cutter is not None:
            cutter.cancel()
    sampler.join()
    sock.close()
    return {
        "seconds": seconds,
        "client_cpu": time.process_time() - cpu,
        "series": sampler.samples,
        "events": events,
    }
