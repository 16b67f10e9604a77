"""
Bulk transfers through the simulator: one call sets up a client and a server, links and files.

:func:`run_transfers` is what the scenario tests, the demo and the simulated benchmarks share: N
    client
connections each upload a file to one server over simulated links, and the result says when each
finished, whether every byte arrived intact (SHA-256), and what the links and connections counted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from ..core.connection import Connection
from ..core.dispatcher import ServerDispatcher
from ..core.entropy import SeededEntropy
from ..events import ConnectionTerminated, StreamDataReceived
from .links import LinkConfig
from .pair import client_config, server_config
from .simulator import Network

SERVER_ADDR = ("10.0.0.1", 4433)


def make_payload(size: int, seed: int = 0) -> bytes:
    """Deterministic bytes that do not compress (SHA-256 in counter mode)."""
    key = seed.to_bytes(8, "big")
    blocks = (size + 31) // 32
    return b"".join(hashlib.sha256(key + i.to_bytes(8, "big")).digest() for i in range(blocks))[
        :size
    ]


@dataclass
class TransferResult:
    """What a run of :func:`run_transfers` observed."""

    finished: dict[int, float] = field(default_factory=dict)  # connection index -> time
    intact: dict[int, bool] = field(default_factory=dict)
    terminated: list[ConnectionTerminated] = field(default_factory=list)
    clients: list[Connection] = field(default_factory=list)
    server: ServerDispatcher | None = None
    network: Network | None = None
    size: int = 0
    start: float = 0.0

    @property
    def all_intact(self) -> bool:
        """Whether every transfer finished with the right bytes."""
        return len(self.intact) == len(self.clients) and all(self.intact.values())

    @property
    def duration(self) -> float:
        """Time from start until the last transfer finished."""
        return max(self.finished.values()) - self.start if self.finished else float("inf")

    def goodput_bps(self) -> float:
        """Application bytes per second over all transfers, in bits."""
        return self.size * len(self.clients) * 8 / self.duration


class _Host:
    """A client connection or the server dispatcher as a simulator host, handing every event of
    ``connections()`` to ``on_event`` after each call in."""

    def __init__(self, endpoint, on_event: Callable, connections: Callable) -> None:
        self.endpoint = endpoint
        self.on_event = on_event
        self.connections = connections

    def receive_datagram(self, data, local_addr, remote_addr, *, now):
        self.endpoint.receive_datagram(data, local_addr, remote_addr, now=now)
        self._drain()

    def datagrams_to_send(self, *, now):
        return self.endpoint.datagrams_to_send(now=now)

    def next_deadline(self):
        return self.endpoint.next_deadline()

    def handle_deadline(self, *, now):
        self.endpoint.handle_deadline(now=now)
        self._drain()

    def _drain(self):
        for conn in self.connections():
            while (event := conn.next_event()) is not None:
                self.on_event(conn, event)


class _Server(_Host):
    """The dispatcher as a simulator host, collecting what arrives on all its connections."""

    def __init__(self, dispatcher: ServerDispatcher, on_event: Callable) -> None:
        super().__init__(dispatcher, on_event,
                         lambda: {id(c): c for c in dispatcher.connections.values()}.values())
        self.dispatcher = dispatcher


class _Client(_Host):
    """A client connection as a simulator host."""

    def __init__(self, conn: Connection, on_event: Callable) -> None:
        super().__init__(conn, on_event, lambda: (conn,))
        self.conn = conn


def run_transfers(
    *,
    size: int,
    link: LinkConfig,
    reverse: LinkConfig | None = None,
    connections: int = 1,
    seed: int = 1,
    timeout: float = 600.0,
    client_options: dict | None = None,
    server_options: dict | None = None,
    setup: Callable[[Network], None] | None = None,
    on_start: Callable[[list[Connection]], None] | None = None,
    extra_paths: list[tuple[LinkConfig, LinkConfig | None]] = (),
    extra_server_addresses: tuple = (),
    new_tracer: Callable[[bytes, bool], object] | None = None,
) -> TransferResult:
    """
    Upload ``size`` bytes on one stream from each of ``connections`` clients to one server.

    Each client has its own address and its own pair of links (``link`` towards the server,
    ``reverse`` back, defaulting to ``link``).  ``setup`` may schedule events on the network (cut a
    link, ...).  ``new_tracer(odcid, is_client)`` gives each connection its qlog tracer.
    """
    network = Network(seed)
    result = TransferResult(network=network, size=size)
    payload = make_payload(size, seed)
    expected = hashlib.sha256(payload).digest()
    received: dict[int, hashlib._Hash] = {}
    index_of: dict[tuple, int] = {}

    conn_index: dict[int, int] = {}

    def on_server_event(conn: Connection, event) -> None:
        # Attribute by connection (first seen address): rebinding changes the address later.
        index = conn_index.setdefault(id(conn), index_of.get(conn.paths[0].remote_addr, -1))
        if isinstance(event, StreamDataReceived):
            received.setdefault(index, hashlib.sha256()).update(event.data)
            if event.end_stream:
                result.finished[index] = network.now
                result.intact[index] = received[index].digest() == expected
        elif isinstance(event, ConnectionTerminated):
            result.terminated.append(event)

    def on_client_event(conn: Connection, event) -> None:
        if isinstance(event, ConnectionTerminated):
            result.terminated.append(event)

    dispatcher = ServerDispatcher(
        server_config(**(server_options or {})),
        entropy=SeededEntropy(seed * 1000 + 1),
        new_tracer=new_tracer and (lambda odcid: new_tracer(odcid, False)),
    )
    result.server = dispatcher
    network.attach(_Server(dispatcher, on_server_event), [SERVER_ADDR, *extra_server_addresses])
    for i in range(connections):
        addr = (f"10.1.{i // 250}.{i % 250 + 1}", 50000 + i)
        index_of[addr] = i
        network.add_link(addr, SERVER_ADDR, ab=link, ba=reverse or link)
        addresses = [addr]
        for k, (up, down) in enumerate(extra_paths, start=2):
            extra = (f"10.{k}.{i // 250}.{i % 250 + 1}", 50000 + i)
            network.add_link(extra, SERVER_ADDR, ab=up, ba=down or up)
            addresses.append(extra)
        conn = Connection.client(
            client_config(**(client_options or {})),
            local_addr=addr,
            remote_addr=SERVER_ADDR,
            entropy=SeededEntropy(seed * 1000 + 10 + i),
            now=0.0,
            new_tracer=new_tracer and (lambda odcid: new_tracer(odcid, True)),
        )
        for extra in addresses[1:]:
            conn.open_path(extra, SERVER_ADDR)
        sid = conn.open_stream()
        conn.send_stream_data(sid, payload, end_stream=True)
        result.clients.append(conn)
        network.attach(_Client(conn, on_client_event), addresses)
    if on_start is not None:
        on_start(result.clients)
    if setup is not None:
        setup(network)
    network.run(until=timeout, stop=lambda: len(result.finished) == connections)
    return result
