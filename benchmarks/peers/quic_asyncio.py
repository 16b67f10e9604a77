"""
aioquic and qh3 peers: a QUIC server and client on 127.0.0.1 in one process, on asyncio.

Both libraries share aioquic's API (qh3 is its fork, with a Rust core for TLS and packet
protection), so one implementation serves both: :func:`library` imports either by name.  The
configuration matches Kwik's benchmarks: 1350-byte maximum datagram size, TLS 1.3 with the same
development certificates (the client trusts the development CA and checks ``localhost``), one
bidirectional stream, ALPN ``kwik-bench``.

* :func:`bulk`: the client writes ``payload`` on one stream with FIN; the sample is the time from
  the first byte written to the last byte received by the server.
* :func:`ttfb`: fresh connections to one echo server; each sample is the time from ``connect`` to
  the first byte of the echoed response.
* :func:`echo`: round trips of a small message on one stream; the samples are the round trips.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import time
from pathlib import Path
from types import SimpleNamespace

from . import PeerMissing

ALPN = ["kwik-bench"]
DATAGRAM = 1350
NAMES = ("aioquic", "qh3")


def library(name: str) -> SimpleNamespace:
    """The pieces of ``aioquic`` or ``qh3`` the peers use.  :raises PeerMissing: not installed."""
    if name not in NAMES:
        raise ValueError(f"unknown QUIC library {name!r}")
    try:
        base = importlib.import_module(name)
        aio = importlib.import_module(f"{name}.asyncio")
        cfg = importlib.import_module(f"{name}.quic.configuration")
        events = importlib.import_module(f"{name}.quic.events")
    except ImportError as e:
        raise PeerMissing(f"{name} is not installed ({e})") from e
    return SimpleNamespace(
        name=name, version=getattr(base, "__version__", "?"), serve=aio.serve,
        connect=aio.connect, Protocol=aio.QuicConnectionProtocol,
        Configuration=cfg.QuicConfiguration, StreamDataReceived=events.StreamDataReceived,
    )


def configuration(lib: SimpleNamespace, certdir: Path, *, client: bool):
    """A client or server configuration with the development certificates."""
    conf = lib.Configuration(is_client=client, alpn_protocols=ALPN, max_datagram_size=DATAGRAM)
    if client:
        conf.server_name = "localhost"
        conf.load_verify_locations(cafile=str(certdir / "ca.pem"))
    else:
        conf.load_cert_chain(str(certdir / "chain.pem"), str(certdir / "key.pem"))
    return conf


def _server_protocol(lib: SimpleNamespace):
    """A server protocol class: a sink (``state.expected`` set) or an echo server."""

    class Server(lib.Protocol):
        def __init__(self, *args, state, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.state = state

        def quic_event_received(self, event) -> None:
            if not isinstance(event, lib.StreamDataReceived):
                return
            state = self.state
            if state.expected is None:  # echo
                self._quic.send_stream_data(event.stream_id, event.data, event.end_stream)
                self.transmit()
                return
            state.received += len(event.data)
            if state.received >= state.expected and not state.done.done():
                state.done.set_result(time.perf_counter())

    return Server


def _client_protocol(lib: SimpleNamespace):
    """A client protocol class that hands stream data to ``self.on_data``."""

    class Client(lib.Protocol):
        on_data = None

        def quic_event_received(self, event) -> None:
            if isinstance(event, lib.StreamDataReceived) and self.on_data is not None:
                self.on_data(event.data)

    return Client


async def _serve(lib, certdir: Path, state: SimpleNamespace):
    proto = functools.partial(_server_protocol(lib), state=state)
    server = await lib.serve("127.0.0.1", 0, configuration=configuration(lib, certdir,
                                                                            client=False),
                             create_protocol=proto)
    port = server._transport.get_extra_info("sockname")[1]
    return server, port


async def bulk(name: str, certdir: Path, payload: bytes, *, runs: int, warmup: int,
               timeout: float = 120.0):
    """Transfer ``payload`` ``warmup + runs`` times on fresh connections; a Result of seconds."""
    from harness import measure_async

    lib = library(name)
    loop = asyncio.get_running_loop()
    state = SimpleNamespace(expected=len(payload), received=0, done=None)
    server, port = await _serve(lib, certdir, state)

    async def once() -> float:
        state.received, state.done = 0, loop.create_future()
        async with lib.connect("127.0.0.1", port,
                               configuration=configuration(lib, certdir, client=True),
                               create_protocol=_client_protocol(lib)) as client:
            sid = client._quic.get_next_available_stream_id()
            started = time.perf_counter()
            client._quic.send_stream_data(sid, payload, end_stream=True)
            client.transmit()
            try:
                finished = await asyncio.wait_for(state.done, timeout)
            except TimeoutError:
                raise TimeoutError(f"{name} transfer stalled: {state.received} of "
                                   f"{len(payload)} bytes received after {timeout:g} s") from None
            client.close()
            await client.wait_closed()
        return finished - started

    try:
        return await measure_async(once, runs=runs, warmup=warmup)
    finally:
        server.close()


async def _first_response(lib, certdir: Path, port: int, message: bytes) -> float:
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    first = loop.create_future()
    async with lib.connect("127.0.0.1", port,
                           configuration=configuration(lib, certdir, client=True),
                           create_protocol=_client_protocol(lib)) as client:
        client.on_data = lambda data: first.done() or first.set_result(time.perf_counter())
        sid = client._quic.get_next_available_stream_id()
        client._quic.send_stream_data(sid, message, end_stream=False)
        client.transmit()
        finished = await asyncio.wait_for(first, 30)
        client.close()
        await client.wait_closed()
    return finished - started


async def ttfb(name: str, certdir: Path, *, runs: int, warmup: int):
    """Time from ``connect`` to the first response byte, fresh connection each; a Result."""
    from harness import measure_async

    lib = library(name)
    server, port = await _serve(lib, certdir, SimpleNamespace(expected=None))
    try:
        return await measure_async(lambda: _first_response(lib, certdir, port, b"ping"),
                                   runs=runs, warmup=warmup)
    finally:
        server.close()


async def echo(name: str, certdir: Path, *, count: int, size: int) -> list[float]:
    """``count`` sequential round trips of ``size`` bytes on one stream; their seconds."""
    lib = library(name)
    loop = asyncio.get_running_loop()
    server, port = await _serve(lib, certdir, SimpleNamespace(expected=None))
    message, samples = b"x" * size, []
    try:
        async with lib.connect("127.0.0.1", port,
                               configuration=configuration(lib, certdir, client=True),
                               create_protocol=_client_protocol(lib)) as client:
            sid = client._quic.get_next_available_stream_id()
            got = SimpleNamespace(n=0, fut=None)

            def on_data(data: bytes) -> None:
                got.n += len(data)
                if got.n >= size and not got.fut.done():
                    got.fut.set_result(None)

            client.on_data = on_data
            for _ in range(count):
                got.n, got.fut = 0, loop.create_future()
                started = time.perf_counter()
                client._quic.send_stream_data(sid, message)
                client.transmit()
                await asyncio.wait_for(got.fut, 10)
                samples.append(time.perf_counter() - started)
            client.close()
            await client.wait_closed()
    finally:
        server.close()
    return samples
