"""
qlog files: the glue's side of ``qlog=DIR`` (the core's is :mod:`kwik_twisted.core.trace`).

:class:`QlogWriter` is a tracer (``event(time, name, data)``) that writes one connection's trace as
JSON text sequences (RFC 7464: each record is 0x1E, JSON, line feed), the qlog
``application/qlog+json-seq`` serialization.  The first record is the file header; then one
record per event, its ``time`` in milliseconds since the trace's reference time (the
connection's start).
Records are buffered and appended to the file when the buffer passes :data:`FLUSH_BYTES`, when the
connection closes (``quic:connection_closed``) and when the writer is closed (the connection is
gone); the file is open only while it is being written.

:func:`qlog_directory` says where traces go: the ``qlog=DIR`` option when given, else the
``QLOGDIR`` environment variable (as quiche, quic-go and ngtcp2 read it), else nowhere.
:func:`tracer_factory` makes the ``new_tracer(odcid)`` callables the connections use.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime

from twisted.logger import Logger

__all__ = [
    "EVENT_SCHEMAS",
    "FILE_SCHEMA",
    "FLUSH_BYTES",
    "SERIALIZATION_FORMAT",
    "QlogWriter",
    "qlog_directory",
    "trace_path",
    "tracer_factory",
]

log = Logger()

FILE_SCHEMA = "urn:ietf:params:qlog:file:sequential"
SERIALIZATION_FORMAT = "application/qlog+json-seq"
EVENT_SCHEMAS = ("urn:ietf:params:qlog:events:quic", "urn:kwik-twisted:qlog:events:kwik")
#: Buffered bytes that make the writer write.
FLUSH_BYTES = 64 * 1024

_RS = "\x1e"
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=str).encode


def qlog_directory(explicit: str | None = None, environ=None) -> str | None:
    """The directory traces go to: ``explicit``, else ``$QLOGDIR``, else ``None`` (no qlog)."""
    if explicit:
        return explicit
    return (os.environ if environ is None else environ).get("QLOGDIR") or None


def trace_path(directory: str, odcid: bytes, is_client: bool) -> str:
    """``DIR/<odcid hex>_<client|server>.sqlog``."""
    return os.path.join(directory, f"{odcid.hex()}_{'client' if is_client else 'server'}.sqlog")


class QlogWriter:
    """
    One connection's qlog trace, written to ``path`` (see the module docstring).

    :param odcid: the original destination connection ID (the trace's ``group_id``).
    :param is_client: the vantage point.
    :param wall_clock: the current time in seconds since the Unix epoch (the reference time's
        wall-clock reading; the default is ``time.time``).
    """

    def __init__(self, path: str, *, odcid: bytes, is_client: bool, wall_clock=time.time) -> None:
        self.path = path
        # Created (or emptied) now, so that an unwritable directory shows at once; each flush
        # then appends and closes again: no file descriptor stays open per traced connection.
        with open(path, "w", encoding="utf-8"):
            pass
        self._buffer: list[str] = []
        self._size = 0
        self._reference: float | None = None
        self.closed = False
        started = datetime.fromtimestamp(wall_clock(), tz=UTC)
        vantage = "client" if is_client else "server"
        self._write(
            {
                "file_schema": FILE_SCHEMA,
                "serialization_format": SERIALIZATION_FORMAT,
                "title": f"kwik_twisted {vantage} {odcid.hex()}",
                "trace": {
                    "title": f"kwik_twisted {vantage}",
                    "vantage_point": {"type": vantage, "name": "kwik_twisted"},
                    "common_fields": {
                        "group_id": odcid.hex(),
                        "reference_time": {
                            "clock_type": "system",
                            "epoch": started.isoformat(timespec="milliseconds").replace(
                                "+00:00", "Z"
                            ),
                        },
                    },
                    "event_schemas": list(EVENT_SCHEMAS),
                },
            }
        )

    def event(self, time: float, name: str, data: dict) -> None:
        """Record one event; ``time`` is the connection's clock in seconds (the first event's
        time is the reference: 0 ms)."""
        if self.closed:
            return
        if self._reference is None:
            self._reference = time
        ms = round((time - self._reference) * 1000.0, 3)
        text = _bulk_packet(ms, name, data) if name in _PACKET_EVENTS else None
        if text is None:
            text = _RS + _encode({"time": ms, "name": name, "data": data}) + "\n"
        self._buffer.append(text)
        self._size += len(text)
        if self._size >= FLUSH_BYTES or name == "quic:connection_closed":
            self.flush()

    def _write(self, record: dict) -> None:
        text = _RS + _encode(record) + "\n"
        self._buffer.append(text)
        self._size += len(text)

    def flush(self) -> None:
        """Write what is buffered."""
        if self._buffer and not self.closed:
            try:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write("".join(self._buffer))
            except OSError as e:
                log.warn("qlog: cannot write {path}: {error}", path=self.path, error=e)
                self.closed = True
        self._buffer.clear()
        self._size = 0

    def close(self) -> None:
        """Flush and close the file (the connection is gone); later events are ignored."""
        if not self.closed:
            self.flush()
            self.closed = True


_PACKET_EVENTS = frozenset({"quic:packet_sent", "quic:packet_received"})
_PACKET_KEYS = ("header", "raw", "frames", "path_id")
_STREAM_KEYS = ("frame_type", "stream_id", "offset", "length", "fin")


def _bulk_packet(ms: float, name: str, data: dict) -> str | None:
    """The record of a packet carrying one STREAM frame, formatted directly (the bulk of a
    trace; the JSON encoder costs several microseconds a record), or ``None`` for the others."""
    if tuple(data) != _PACKET_KEYS or len(data["frames"]) != 1:
        return None
    frames = data["frames"]
    frame = frames[0]
    if frame["frame_type"] != "stream" or tuple(frame) != _STREAM_KEYS:
        return None
    header = data["header"]
    return (
        f'\x1e{{"time":{ms!r},"name":"{name}","data":{{"header":{{"packet_type":'
        f'"{header["packet_type"]}","packet_number":{header["packet_number"]:d},"path_id":'
        f'{header["path_id"]:d}}},"raw":{{"length":{data["raw"]["length"]:d}}},"frames":[{{'
        f'"frame_type":"stream","stream_id":{frame["stream_id"]:d},"offset":{frame["offset"]:d},'
        f'"length":{frame["length"]:d},"fin":{"true" if frame["fin"] else "false"}}}],'
        f'"path_id":{data["path_id"]:d}}}}}\n'
    )


def tracer_factory(directory: str | None, *, is_client: bool):
    """``new_tracer(odcid)`` writing ``DIR/<odcid>_<side>.sqlog``, or ``None`` when ``directory``
    is ``None``.  A trace that cannot be created is logged, and the connection runs untraced."""
    if directory is None:
        return None

    def new_tracer(odcid: bytes) -> QlogWriter | None:
        path = trace_path(directory, odcid, is_client)
        try:
            os.makedirs(directory, exist_ok=True)
            return QlogWriter(path, odcid=odcid, is_client=is_client)
        except OSError as e:
            log.warn("qlog: cannot create {path}: {error}", path=path, error=e)
            return None

    return new_tracer
