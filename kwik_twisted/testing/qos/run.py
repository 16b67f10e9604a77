"""
One QoS scenario in simulated time: :func:`run_scenario` (see :mod:`kwik_twisted.testing.qos`).

The hosts are the sans-I/O client connection and server dispatcher, adapted as in
:mod:`kwik_twisted.testing.transfer`; the applications are :class:`_Source` (client, one per flow)
and :class:`_Receiver` (server); :class:`_StreamTap` is the client's qlog tracer.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from ...core.connection import Connection
from ...core.dispatcher import ServerDispatcher
from ...core.entropy import SeededEntropy
from ...core.paths.path import PathPhase
from ...events import QoSViolated, StreamDataReceived, StreamWritable
from ...wire import QosPolicy
from ..pair import client_config, server_config
from ..simulator import Network
from ..transfer import _Client, _Server
from .model import (
    HEADER,
    BulkFlow,
    Flow,
    FlowResult,
    PathResult,
    PathSpec,
    RateFlow,
    ScenarioResult,
    Violation,
    queue_limit,
)

SERVER_ADDR = ("10.0.0.1", 4433)
#: Bytes a :class:`~.model.BulkFlow` writes at a time.
BULK_CHUNK = 64 * 1024
#: Flows start at the latest this long after the client's first packet, paths validated or not.
READY_TIMEOUT = 3.0


class ScenarioContext:
    """What an event callable gets: the network, the two ends, and ways to change a path."""

    def __init__(self, network: Network, client: Connection, server: ServerDispatcher,
                 addresses: list[tuple], specs: Sequence[PathSpec]) -> None:
        self.network = network
        self.client = client
        self.server = server
        self.addresses = addresses
        self.specs = list(specs)
        self.figures: dict[str, Any] = {}
        self.notes: list[str] = []

    @property
    def now(self) -> float:
        """The simulated time."""
        return self.network.now

    def path_id(self, index: int) -> int | None:
        """The client's path ID of path ``index``, or ``None`` while it has none."""
        address = self.addresses[index]
        for path_id, path in self.client.paths.items():
            if path.local_addr == address:
                return path_id
        return None

    def set_path(self, index: int, *, direction: str = "up", rate_bps: float | None = None,
                 queue_ms: float | None = None, queue_bytes: int | None = None, **changes) -> None:
        """Change path ``index``'s ``"up"`` (client to server), ``"down"`` or ``"both"`` links
        from now: a new rate and queue (``queue_ms`` of the new rate), or any ``LinkConfig``
        field in ``changes``."""
        ends = {"up": [(0, 1)], "down": [(1, 0)], "both": [(0, 1), (1, 0)]}[direction]
        pair = (self.addresses[index], SERVER_ADDR)
        for a, b in ends:
            link = self.network.link(pair[a], pair[b])
            update = dict(changes)
            if rate_bps is not None:
                update["rate_bps"] = rate_bps
            rate = update.get("rate_bps", link.config.rate_bps)
            limit = queue_limit(rate, queue_ms, queue_bytes)
            if limit is not None:
                update["queue_bytes"] = limit
            link.config = replace(link.config, **update)

    def set_path_up(self, index: int, up: bool) -> None:
        """Cut (``False``) or restore both links of path ``index``."""
        self.network.set_link_up(self.addresses[index], SERVER_ADDR, up)

    def every(self, period: float, fn: Callable[[ScenarioContext], object], *,
              start: float | None = None, stop: float | None = None) -> None:
        """Call ``fn(ctx)`` every ``period`` seconds from ``start`` (now) until ``stop`` or until
        it returns true."""
        first = self.now if start is None else start

        def tick(k: int) -> None:
            t = first + k * period
            if (stop is None or t <= stop) and not fn(self):
                self.network.at(first + (k + 1) * period, lambda: tick(k + 1))

        self.network.at(first, lambda: tick(0))

    def qos_report(self) -> Any:
        """The client's ``conn.qos.report(now=...)``, or ``None`` without a QoS enforcer."""
        enforcer = getattr(self.client, "qos", None)
        report = getattr(enforcer, "report", None)
        return report(now=self.now) if report is not None else None


def congested_paths(report: Any) -> frozenset[int] | None:
    """The path IDs a QoS report calls congested (``congested_paths``, an attribute or key at any
    depth of the report or its ``as_dict()``), or ``None`` when it names none that way."""
    if report is None:
        return None
    found = getattr(report, "congested_paths", None)
    if found is not None:
        return frozenset(int(p) for p in found)
    if hasattr(report, "as_dict"):
        report = report.as_dict()
    pending = [report]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if node.get("congested_paths") is not None:
                return frozenset(int(p) for p in node["congested_paths"])
            pending.extend(node.values())
        elif isinstance(node, (list, tuple)):
            pending.extend(node)
        elif hasattr(node, "as_dict"):
            pending.append(node.as_dict())
    return None


class _StreamTap:
    """The client's tracer: STREAM frames of ``quic:packet_sent`` into per-flow, per-path series
    and resend accounting (see the module docstring)."""

    def __init__(self, addresses: list[tuple], flows: dict[int, FlowResult]) -> None:
        self.addresses = addresses
        self.flows = flows
        self.client: Connection | None = None
        self.index_of: dict[int, int] = {}
        self.frontier: dict[int, int] = {}
        self.first_path: dict[int, tuple[list[int], list[int]]] = {}  # sid -> (starts, paths)

    def event(self, time: float, name: str, data: dict) -> None:
        """Take one qlog event (the :class:`~kwik_twisted.core.trace.Tracer` protocol)."""
        if name != "quic:packet_sent":
            return
        path_id = data["path_id"]
        index = self.index_of.get(path_id)
        if index is None:
            path = self.client.paths.get(path_id) if self.client is not None else None
            local = path.local_addr if path is not None else None
            index = self.addresses.index(local) if local in self.addresses else -1
            self.index_of[path_id] = index
        for frame in data["frames"]:
            if frame["frame_type"] == "stream" and frame["length"]:
                flow = self.flows.get(frame["stream_id"])
                if flow is not None:
                    self._count(flow, index, frame["offset"], frame["length"], time)

    def _count(self, flow: FlowResult, index: int, offset: int, length: int, now: float) -> None:
        times = flow.path_times.get(index)
        if times is None:
            times = flow.path_times[index] = array("d")
            flow.path_cumulative[index] = array("q")
        cumulative = flow.path_cumulative[index]
        cumulative.append((cumulative[-1] if cumulative else 0) + length)
        times.append(now)
        flow.sent_bytes += length
        sid = flow.stream_id
        frontier = self.frontier.get(sid, 0)
        starts, paths = self.first_path.setdefault(sid, ([], []))
        end = offset + length
        resent_end = min(end, frontier)
        if resent_end > offset:
            flow.resent_bytes += resent_end - offset
            i = bisect_right(starts, offset) - 1
            while i < len(starts) and starts[i] < resent_end:
                hi = starts[i + 1] if i + 1 < len(starts) else frontier
                if paths[i] != index:
                    flow.cross_path_bytes += max(0, min(hi, resent_end) - max(starts[i], offset))
                i += 1
        if end > frontier:
            if not paths or paths[-1] != index:
                starts.append(max(offset, frontier))
                paths.append(index)
            self.frontier[sid] = end


class _Receiver:
    """The server application of one flow: deliveries, and messages cut out of them."""

    def __init__(self, result: FlowResult, size: int | None) -> None:
        self.result = result
        self.size = size
        self.offset = 0
        self.header = bytearray()

    def deliver(self, data: bytes, now: float) -> None:
        result = self.result
        n = len(data)
        if not n:
            return
        size = self.size
        if size is not None:
            pos = 0
            while pos < n:
                within = self.offset % size
                if within < HEADER.size:
                    self.header += data[pos : pos + min(HEADER.size - within, n - pos)]
                step = min(size - within, n - pos)
                pos += step
                self.offset += step
                if self.offset % size == 0:
                    seq, written = HEADER.unpack(self.header)
                    self.header.clear()
                    result.delivery_delays[seq] = now - written
        else:
            self.offset += n
        result.delivery_times.append(now)
        result.delivered_cumulative.append(self.offset)


class _Source:
    """The client application of one flow."""

    def __init__(self, flow: Flow, result: FlowResult, conn: Connection, network: Network) -> None:
        self.flow = flow
        self.result = result
        self.conn = conn
        self.network = network
        self.sid = result.stream_id
        self.began = 0.0
        self.bulk = isinstance(flow, BulkFlow)
        self.fill = bytes(BULK_CHUNK if self.bulk else flow.size - HEADER.size)

    def begin(self) -> None:
        self.began = self.network.now
        if self.bulk:
            self.top_up()
        else:
            self.tick(0)

    def stopped(self) -> bool:
        return self.flow.stop is not None and self.network.now >= self.flow.stop

    def top_up(self) -> None:
        """(Bulk) write while the stream is writable."""
        conn = self.conn
        while not self.stopped() and conn.stream_writable(self.sid):
            conn.send_stream_data(self.sid, self.fill)
            self.result.bytes_written += len(self.fill)

    def tick(self, k: int) -> None:
        """(Timed) write message ``k`` and schedule the next."""
        if self.stopped():
            return
        flow, result, now = self.flow, self.result, self.network.now
        if isinstance(flow, RateFlow) and not self.conn.stream_writable(self.sid):
            result.skipped_bytes += flow.size
        else:
            seq = len(result.write_times)
            self.conn.send_stream_data(self.sid, HEADER.pack(seq, now) + self.fill)
            result.write_times.append(now)
            result.delivery_delays.append(math.nan)
            result.bytes_written += flow.size
        self.network.at(self.began + (k + 1) * flow.interval, lambda: self.tick(k + 1))


def _wire_qos(qos: Any) -> QosPolicy | None:
    """A wire ``QosPolicy`` from either policy type."""
    return qos.to_wire() if hasattr(qos, "to_wire") else qos


def run_scenario(
    *,
    paths: Sequence[PathSpec],
    flows: Sequence[Flow],
    duration: float,
    warmup: float = 3.0,
    seed: int = 1,
    events: Iterable[tuple[float, Callable[[Network, ScenarioContext], object]]] = (),
    client_options: dict | None = None,
    server_options: dict | None = None,
) -> ScenarioResult:
    """Run ``flows`` over ``paths`` until ``duration`` (see the module docstring)."""
    network = Network(seed)
    dispatcher = ServerDispatcher(server_config(**(server_options or {})),
                                  entropy=SeededEntropy(seed * 1000 + 1))
    addresses = [(f"10.{k + 1}.0.1", 50000) for k in range(len(paths))]
    for address, spec in zip(addresses, paths):
        network.add_link(address, SERVER_ADDR, ab=spec.up_link(), ba=spec.down_link())
    results: dict[int, FlowResult] = {}
    tap = _StreamTap(addresses, results)
    conn = tap.client = Connection.client(
        client_config(**(client_options or {})), local_addr=addresses[0],
        remote_addr=SERVER_ADDR, entropy=SeededEntropy(seed * 1000 + 10), now=0.0,
        new_tracer=lambda odcid: tap,
    )
    ctx = ScenarioContext(network, conn, dispatcher, addresses, paths)
    for address in addresses[1:]:
        conn.open_path(address, SERVER_ADDR)
    violations: list[Violation] = []
    receivers: dict[int, _Receiver] = {}
    sources: dict[int, _Source] = {}
    state = {"ready_at": None}

    def violated(side: str, event: QoSViolated) -> None:
        flow = results.get(event.stream_id)
        violations.append(Violation(network.now, side, flow and flow.name, event))

    def on_server_event(server_conn: Connection, event) -> None:
        if isinstance(event, StreamDataReceived):
            receiver = receivers.get(event.stream_id)
            if receiver is not None:
                receiver.deliver(event.data, network.now)
        elif isinstance(event, QoSViolated):
            violated("server", event)

    def on_client_event(client: Connection, event) -> None:
        if isinstance(event, StreamWritable):
            source = sources.get(event.stream_id)
            if source is not None and source.bulk:
                source.top_up()
        elif isinstance(event, QoSViolated):
            violated("client", event)
        if state["ready_at"] is None and _ready(conn, len(paths)):
            start()

    def start() -> None:
        if state["ready_at"] is not None:
            return
        state["ready_at"] = network.now
        for index, spec in enumerate(paths):
            if spec.cost is not None:
                _set_cost(ctx, index, spec.cost)
        for flow in flows:
            sid = conn.open_stream(priority=flow.priority, qos=_wire_qos(flow.qos))
            kind = type(flow).__name__
            result = results[sid] = FlowResult(flow.name, kind, sid, warmup, duration)
            receivers[sid] = _Receiver(result, None if isinstance(flow, BulkFlow) else flow.size)
            sources[sid] = source = _Source(flow, result, conn, network)
            network.at(max(network.now, flow.start), source.begin)

    def late_start() -> None:
        if state["ready_at"] is None:
            ctx.notes.append(f"paths not all validated by {READY_TIMEOUT} s; flows started anyway")
            start()

    network.attach(_Server(dispatcher, on_server_event), [SERVER_ADDR])
    network.attach(_Client(conn, on_client_event), addresses)
    network.at(min(READY_TIMEOUT, duration), late_start)
    for t, fn in events:
        network.at(t, lambda fn=fn: fn(network, ctx))
    up_links = [network.link(a, SERVER_ADDR) for a in addresses]
    at_warmup: list[int] = []
    network.at(warmup, lambda: at_warmup.extend(link.stats.bytes_delivered for link in up_links))
    network.run(until=duration)
    path_results = [
        PathResult(index, spec, ctx.path_id(index),
                   link.stats.bytes_delivered - (at_warmup[index] if at_warmup else 0),
                   link.stats.bytes_delivered, link.stats.lost_queue, link.stats.lost_random)
        for index, (spec, link) in enumerate(zip(paths, up_links))
    ]
    return ScenarioResult(
        flows={r.name: r for r in results.values()},
        paths=path_results,
        violations=violations,
        capacity_bps=sum(spec.rate_bps or 0.0 for spec in paths),
        ready_at=state["ready_at"],
        warmup=warmup,
        duration=duration,
        qos_report=ctx.qos_report(),
        figures=ctx.figures,
        notes=ctx.notes,
        client=conn,
        network=network,
    )


def _ready(conn: Connection, paths: int) -> bool:
    """Handshake complete and ``paths`` paths all validated."""
    return (
        conn.handshake_complete
        and len(conn.paths) >= paths
        and all(p.phase is PathPhase.ACTIVE for p in conn.paths.values())
    )


def _set_cost(ctx: ScenarioContext, index: int, cost: float) -> None:
    """Give path ``index`` its cost (``Connection.set_path_cost``, else the path manager's
    ``set_cost``), or note that the client takes none."""
    client = ctx.client
    set_cost = getattr(client, "set_path_cost", None) or getattr(
        client.path_manager, "set_cost", None
    )
    path_id = ctx.path_id(index)
    if set_cost is None or path_id is None:
        ctx.notes.append(f"cost {cost} of path {index} not applied (no set_path_cost)")
    else:
        set_cost(path_id, cost)
