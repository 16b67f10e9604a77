"""
A two-link test bed in Linux network namespaces, for the multipath benchmark.

:class:`Testbed` makes a client namespace and a server namespace (``ktbench-c-<pid>`` and
``ktbench-s-<pid>``) joined by two veth pairs, link *i* (1 or 2) on subnet ``10.231.i.0/24``: the
client end ``ktc<i>`` is ``10.231.i.1``, the server end ``kts<i>`` is ``10.231.i.2``.  Each veth
end gets a ``tc tbf`` root qdisc, so every link is rate-limited in both directions.  There is no
added delay: netem is not built into this kernel, so the round trip is the veth's (tens of µs) plus
whatever queue the tbf holds.

The tbf parameters (:func:`tbf_args`): ``burst`` is ``burst_ms`` (4 ms) worth of the rate, at
least 10 kB (a 250 Hz kernel needs more than rate/HZ only with coarse timers; tbf uses hrtimers,
and 4 ms keeps the line smooth while staying well above one full frame); ``latency`` (25 ms) is
how long a packet may wait in the tbf queue before it is dropped, i.e. a queue of about
``rate x 25 ms`` bytes: a small bottleneck buffer, as on a real access link.

:meth:`Testbed.counters` reads the tbf statistics (bytes, packets, drops of every veth end), which
count each segment of a GSO packet with its headers, unlike the veth's own counters; the children
sample ``/proc/net/dev`` (:func:`tx_bytes`) for the time series, cheap but GSO-blind to headers.

Everything here runs ``ip`` and ``tc`` as subprocesses; the names carry the pid, and
:func:`cleanup_leftovers` removes namespaces of the prefix left by a killed run.  Deleting a
namespace deletes its veths (once no process remains inside it: stop the children first).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

PREFIX = "ktbench-"
CLIENT_IF = ("ktc1", "ktc2")
SERVER_IF = ("kts1", "kts2")


def client_addr(link: int) -> str:
    """The client's address on link ``link`` (1 or 2)."""
    return f"10.231.{link}.1"


def server_addr(link: int) -> str:
    """The server's address on link ``link`` (1 or 2)."""
    return f"10.231.{link}.2"


def skip_reason(
    *,
    platform: str | None = None,
    euid: int | None = None,
    which=shutil.which,
    mptcp: bool = True,
    mptcp_sysctl: str = "/proc/sys/net/mptcp/enabled",
) -> str:
    """
    Why the benchmark cannot run here ("" when it can): not Linux, not root, no ``ip``/``tc``, or
    (when ``mptcp`` is needed) no MPTCP in the kernel.
    """
    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux"):
        return f"needs Linux network namespaces (this is {platform})"
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        return "needs root (network namespaces, veth and tc)"
    for tool in ("ip", "tc"):
        if which(tool) is None:
            return f"needs the '{tool}' command (iproute2)"
    if mptcp:
        try:
            with open(mptcp_sysctl) as f:
                enabled = f.read().strip()
        except OSError:
            return "the kernel has no MPTCP (no /proc/sys/net/mptcp); try --peer kwik"
        if enabled != "1":
            return "MPTCP is disabled (net.mptcp.enabled=0); try --peer kwik"
    return ""


def tbf_args(rate_mbit: float, *, burst_ms: float = 4.0, latency_ms: float = 25.0) -> list[str]:
    """The ``tc qdisc ... tbf`` arguments for ``rate_mbit`` Mbit/s (10^6 bit/s)."""
    if rate_mbit <= 0:
        raise ValueError(f"a link rate must be positive, not {rate_mbit}")
    burst = max(10_000, int(rate_mbit * 1e6 / 8 * burst_ms / 1000))
    return [
        "tbf",
        "rate",
        f"{int(rate_mbit * 1e6)}bit",
        "burst",
        str(burst),
        "latency",
        f"{latency_ms:g}ms",
    ]


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command; on failure raise ``RuntimeError`` with its stderr."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip() or done.returncode}")
    return done


def list_namespaces(prefix: str = PREFIX) -> list[str]:
    """Names of the existing namespaces starting with ``prefix``."""
    done = run("ip", "netns", "list", check=False)
    names = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix)]


def cleanup_leftovers(prefix: str = PREFIX) -> list[str]:
    """Delete every namespace starting with ``prefix`` (and so their veths); the names."""
    names = list_namespaces(prefix)
    for name in names:
        run("ip", "netns", "del", name, check=False)
    return names


@dataclass
class Testbed:
    """Two namespaces joined by two rate-limited veth links (see the module docstring)."""

    client: str
    server: str
    burst_ms: float = 4.0
    latency_ms: float = 25.0
    up: bool = False

    @classmethod
    def named(cls, tag: int | str | None = None, **kw) -> Testbed:
        """A test bed whose names carry ``tag`` (default: this process id)."""
        tag = os.getpid() if tag is None else tag
        return cls(f"{PREFIX}c-{tag}", f"{PREFIX}s-{tag}", **kw)

    def create(self, rates: tuple[float, float]) -> None:
        """Make the namespaces and links, addresses, tbf qdiscs (``rates`` in Mbit/s)."""
        self.up = True  # from here on destroy() has something to do
        run("ip", "netns", "add", self.client)
        run("ip", "netns", "add", self.server)
        for ns in (self.client, self.server):
            run("ip", "-n", ns, "link", "set", "lo", "up")
        for link in (1, 2):
            c, s = CLIENT_IF[link - 1], SERVER_IF[link - 1]
            veth = f"link add {c} netns {self.client} type veth peer name {s} netns {self.server}"
            run("ip", *veth.split())
            run("ip", "-n", self.client, "addr", "add", f"{client_addr(link)}/24", "dev", c)
            run("ip", "-n", self.server, "addr", "add", f"{server_addr(link)}/24", "dev", s)
            run("ip", "-n", self.client, "link", "set", c, "up")
            run("ip", "-n", self.server, "link", "set", s, "up")
        self.set_rates(rates, verb="add")

    def set_rates(self, rates: tuple[float, float], *, verb: str = "replace") -> None:
        """Rate-limit link 1 and link 2, both ends (both directions)."""
        for link, rate in zip((1, 2), rates, strict=True):
            args = tbf_args(rate, burst_ms=self.burst_ms, latency_ms=self.latency_ms)
            for ns, dev in ((self.client, CLIENT_IF[link - 1]), (self.server, SERVER_IF[link - 1])):
                run("ip", "netns", "exec", ns, "tc", "qdisc", verb, "dev", dev, "root", *args)

    def set_link(self, link: int, up: bool) -> None:
        """Take link ``link`` down or up (both ends; their connected routes go and come with it)."""
        state = "up" if up else "down"
        run("ip", "-n", self.client, "link", "set", CLIENT_IF[link - 1], state)
        run("ip", "-n", self.server, "link", "set", SERVER_IF[link - 1], state)
        if up:
            self.wait_route(link)

    def wait_route(self, link: int, timeout: float = 5.0) -> None:
        """Wait until the client routes to the server's link-``link`` address over that link."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = run("ip", "-n", self.client, "route", "get", server_addr(link), check=False)
            if f"dev {CLIENT_IF[link - 1]} " in done.stdout:
                return
            time.sleep(0.05)
        raise RuntimeError(f"link {link} has no route back after {timeout:g} s")

    def counters(self) -> dict:
        """
        What each veth end's tbf sent, on the wire: ``{"c1": bytes of ktc1, "c1_packets": ...,
        "c1_drops": ..., "s1": bytes of kts1, ...}``.  The qdisc counts every segment of a GSO
        packet with its headers (the veth's own counters count a GSO packet once).
        """
        out = {}
        for ns, side, names in ((self.client, "c", CLIENT_IF), (self.server, "s", SERVER_IF)):
            for i, dev in enumerate(names, 1):
                done = run("ip", "netns", "exec", ns, "tc", "-s", "-j", "qdisc", "show", "dev", dev)
                stats = next(q for q in json.loads(done.stdout) if q.get("kind") == "tbf")
                out[f"{side}{i}"] = stats["bytes"]
                out[f"{side}{i}_packets"] = stats["packets"]
                out[f"{side}{i}_drops"] = stats["drops"]
        return out

    def mptcp_setup(self) -> None:
        """
        The in-kernel path manager: 2 subflows and 2 accepted ADD_ADDRs on both sides, and the
        server announcing its link-2 address (a ``signal`` endpoint), so the client opens its
        second subflow ``10.231.2.1 -> 10.231.2.2`` over link 2.
        """
        for ns in (self.client, self.server):
            run("ip", "-n", ns, "mptcp", "limits", "set", "subflows", "2", "add_addr_accepted", "2")
        run("ip", "-n", self.server, "mptcp", "endpoint", "flush")
        signal = f"-n {self.server} mptcp endpoint add {server_addr(2)} dev {SERVER_IF[1]} signal"
        run("ip", *signal.split())

    def tcp_congestion(self) -> str:
        """The client namespace's TCP congestion control (MPTCP subflows use it)."""
        sysctl = "/proc/sys/net/ipv4/tcp_congestion_control"
        done = run("ip", "netns", "exec", self.client, "cat", sysctl, check=False)
        return done.stdout.strip() or "?"

    def destroy(self) -> None:
        """Delete both namespaces (idempotent; errors ignored)."""
        if not self.up:
            return
        self.up = False
        for ns in (self.client, self.server):
            run("ip", "netns", "del", ns, check=False)


def parse_proc_net_dev(text: str) -> dict[str, tuple[int, int]]:
    """``/proc/net/dev`` as ``{interface: (rx_bytes, tx_bytes)}``."""
    out = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        fields = rest.split()
        if sep and len(fields) >= 9:
            out[name.strip()] = (int(fields[0]), int(fields[8]))
    return out


def tx_bytes(names=CLIENT_IF) -> list[int]:
    """Bytes sent so far by each of ``names`` in this process's namespace (0 if absent)."""
    with open("/proc/net/dev") as f:
        table = parse_proc_net_dev(f.read())
    return [table.get(name, (0, 0))[1] for name in names]


def parse_proc_stat_cpu(text: str, ticks: int = 100) -> float:
    """User + system CPU seconds from a ``/proc/PID/stat`` line (fields 14 and 15)."""
    fields = text.rpartition(")")[2].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / ticks


def cpu_seconds(pid: int) -> float:
    """CPU seconds process ``pid`` has used so far (0.0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_proc_stat_cpu(f.read(), os.sysconf("SC_CLK_TCK"))
    except OSError:
        return 0.0
