"""
Live metrics: Prometheus text at ``/metrics`` and a JSON status at ``/status`` (``twistd kwik
--metrics ENDPOINT``).

Theory of operation.  Nothing is counted here: a scrape reads the live connections of a
:class:`~kwik_twisted.glue.registry.ConnectionRegistry` (every
:class:`~kwik_twisted.glue.connection.KwikConnection` is in :data:`~kwik_twisted.glue.registry.LIVE`
while it lives) and their paths' :class:`~kwik_twisted.core.paths.metrics.PathMetrics`, and builds
the metric families at that moment (:class:`KwikCollector`, a ``prometheus_client`` custom
collector in a :class:`~prometheus_client.CollectorRegistry` of its own).  So the series of a
connection vanish with it, and there are never more series than live paths times metrics.  Both
pages are served by twisted.web (:func:`metricsResource`), not by prometheus_client's own HTTP
server.

``prometheus_client`` is optional (the ``metrics`` extra); :func:`metricsResource` raises
:class:`ImportError` with the install hint without it.

The metrics (labels ``side`` = client or server, ``peer`` = ``host:port`` of the peer,
``connection`` = the connection's original destination ID in hex, which tells apart two
connections between the same hosts, ``path`` = the path ID):

* ``kwik_connections_open{side}``: live connections.
* ``kwik_connections_accepted_total``: connections the server ports of this process accepted.
* ``kwik_handshakes_failed_total{reason}``: failed handshakes, by ``tls_<alert>`` or error name.
* ``kwik_path_{sent,received,lost,retransmitted}_{bytes,packets}_total{side,peer,connection,path}``.
* ``kwik_path_rtt_seconds``, ``kwik_path_min_rtt_seconds``, ``kwik_path_cwnd_bytes``,
  ``kwik_path_bytes_in_flight``, ``kwik_path_loss_ratio`` (the loss EWMA) per path.
* ``kwik_path_state{side,peer,connection,path,state}``: 1 for the path's state, 0 for the four
  others.
"""

from __future__ import annotations

import json

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site

from .registry import LIVE, ConnectionRegistry

#: The path states ``kwik_path_state`` enumerates.
STATES = ("validating", "active", "backup", "failed", "abandoned")

#: ``(metric suffix, PathMetrics field, help)`` of the per-path counters.
_COUNTERS = (
    ("sent_bytes", "bytes_sent", "Datagram bytes sent on the path."),
    ("received_bytes", "bytes_received", "Datagram bytes received on the path."),
    ("lost_bytes", "bytes_lost", "Bytes of the packets sent on the path and declared lost."),
    ("retransmitted_bytes", "bytes_retransmitted",
     "Bytes of lost packets on the path whose frames were sent again."),
    ("sent_packets", "packets_sent", "Packets sent on the path."),
    ("received_packets", "packets_received", "Authenticated packets received on the path."),
    ("lost_packets", "packets_lost", "Packets sent on the path and declared lost."),
    ("retransmitted_packets", "packets_retransmitted",
     "Lost packets on the path whose frames were sent again."),
)
#: ``(metric name, PathMetrics field, help)`` of the per-path gauges.
_GAUGES = (
    ("kwik_path_rtt_seconds", "smoothed_rtt", "Smoothed RTT of the path."),
    ("kwik_path_min_rtt_seconds", "min_rtt", "Minimum RTT seen on the path."),
    ("kwik_path_cwnd_bytes", "cwnd", "Congestion window of the path."),
    ("kwik_path_bytes_in_flight", "bytes_in_flight", "Bytes in flight on the path."),
    ("kwik_path_loss_ratio", "loss_rate", "Share of recent packets lost on the path (EWMA)."),
)
_PATH_LABELS = ["side", "peer", "connection", "path"]

log = Logger()


def format_address(address: tuple | None) -> str:
    """``host:port`` (``[host]:port`` for IPv6), or ``"-"``."""
    if not address:
        return "-"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _side(conn) -> str:
    return "client" if conn.core.is_client else "server"


def _connection_id(conn) -> str:
    """The ``connection`` label: the connection's original destination ID, in hex."""
    return conn.core.original_dcid.hex()


def _peer(conn) -> str:
    paths = conn.core.paths
    return format_address(paths[min(paths)].remote_addr if paths else None)


def _snapshots(registry: ConnectionRegistry):
    """``(conn, side, peer, {path_id: PathMetrics})`` of every live connection (one that
    cannot say is left out and logged: a scrape never fails because of one connection)."""
    for conn in registry.connections():
        if conn.dead:
            continue
        try:
            entry = conn, _side(conn), _peer(conn), conn.pathMetrics()
        except Exception as e:
            log.warn("Kwik metrics: left out {conn!r}, which cannot say: {error!r}", conn=conn,
                     error=e)
            continue
        yield entry


class KwikCollector:
    """
    A ``prometheus_client`` collector whose families are built at scrape time from the live
    connections of ``registry`` (the module docstring lists them).
    """

    def __init__(self, registry: ConnectionRegistry = LIVE) -> None:
        self.registry = registry

    def describe(self) -> list:
        """Nothing up front: the families depend on the live connections."""
        return []

    def collect(self):
        """Yield every metric family, built now."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        registry = self.registry
        live = list(_snapshots(registry))
        opened = GaugeMetricFamily("kwik_connections_open", "Live Kwik connections.",
                                   labels=["side"])
        for side in ("client", "server"):
            opened.add_metric([side], sum(1 for _, s, _p, _m in live if s == side))
        yield opened
        yield CounterMetricFamily("kwik_connections_accepted",
                                  "Connections accepted by the server ports of this process.",
                                  value=registry.accepted)
        failed = CounterMetricFamily("kwik_handshakes_failed", "Failed handshakes, by reason.",
                                     labels=["reason"])
        for reason, count in sorted(registry.handshakesFailed.items()):
            failed.add_metric([reason], count)
        yield failed
        counters = [
            (CounterMetricFamily(f"kwik_path_{suffix}", text, labels=_PATH_LABELS), field)
            for suffix, field, text in _COUNTERS
        ]
        gauges = [
            (GaugeMetricFamily(name, text, labels=_PATH_LABELS), field)
            for name, field, text in _GAUGES
        ]
        state = GaugeMetricFamily("kwik_path_state", "1 for the state the path is in.",
                                  labels=[*_PATH_LABELS, "state"])
        for conn, side, peer, metrics in live:
            connection = _connection_id(conn)
            for path_id, m in sorted(metrics.items()):
                labels = [side, peer, connection, str(path_id)]
                for family, field in (*counters, *gauges):
                    family.add_metric(labels, getattr(m, field))
                for name in STATES:
                    state.add_metric([*labels, name], 1.0 if m.state == name else 0.0)
        for family, _field in (*counters, *gauges):
            yield family
        yield state


def status(registry: ConnectionRegistry = LIVE, *, now: float) -> dict:
    """
    The ``/status`` document: every live connection (peer, side, age, bytes, paths with state,
    addresses, RTT, loss and share of the connection's bytes), in the spirit of ``wg show``.
    """
    connections = []
    for conn, side, peer, metrics in _snapshots(registry):
        sent = sum(m.bytes_sent for m in metrics.values())
        received = sum(m.bytes_received for m in metrics.values())
        total = sent + received
        paths = []
        for path_id, m in sorted(metrics.items()):
            path = conn.core.paths.get(path_id)
            paths.append({
                "id": path_id,
                "local": format_address(path.local_addr if path else None),
                "remote": format_address(path.remote_addr if path else None),
                "state": m.state,
                "rtt": m.smoothed_rtt,
                "min_rtt": m.min_rtt,
                "loss_rate": m.loss_rate,
                "cwnd": m.cwnd,
                "bytes_sent": m.bytes_sent,
                "bytes_received": m.bytes_received,
                "packets_lost": m.packets_lost,
                "share": (m.bytes_sent + m.bytes_received) / total if total else 0.0,
                "last_activity_ago": None if m.last_activity is None
                else max(0.0, now - m.last_activity),
            })
        connections.append({
            "peer": peer,
            "side": side,
            "age": max(0.0, now - conn.startedAt),
            "bytes_sent": sent,
            "bytes_received": received,
            "paths": paths,
        })
    return {
        "connections": connections,
        "connections_accepted": registry.accepted,
        "handshakes_failed": dict(sorted(registry.handshakesFailed.items())),
    }


class _MetricsPage(Resource):
    isLeaf = True

    def __init__(self, registry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request) -> bytes:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self.registry)


class _StatusPage(Resource):
    isLeaf = True

    def __init__(self, registry: ConnectionRegistry, reactor) -> None:
        super().__init__()
        self.registry = registry
        self.reactor = reactor

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        document = status(self.registry, now=self.reactor.seconds())
        return json.dumps(document, indent=2).encode("utf-8") + b"\n"


def metricsResource(registry: ConnectionRegistry = LIVE, reactor=None) -> Resource:
    """
    The root resource serving ``/metrics`` (Prometheus text) and ``/status`` (JSON) for the
    connections of ``registry``.

    :raises ImportError: prometheus_client is not installed (``pip install kwik_twisted[metrics]``).
    """
    try:
        from prometheus_client import CollectorRegistry
    except ImportError as e:
        raise ImportError(
            "twistd kwik --metrics needs prometheus_client: pip install 'kwik_twisted[metrics]'"
        ) from e
    if reactor is None:
        from twisted.internet import reactor
    collectors = CollectorRegistry(auto_describe=False)
    collectors.register(KwikCollector(registry))
    root = Resource()
    root.putChild(b"metrics", _MetricsPage(collectors))
    root.putChild(b"status", _StatusPage(registry, reactor))
    return root


class _QuietSite(Site):
    """A site that does not log every scrape (Prometheus asks every few seconds)."""

    noisy = False

    def log(self, request) -> None:
        """No access log."""


def metricsSite(registry: ConnectionRegistry = LIVE, reactor=None) -> Site:
    """A twisted.web site serving :func:`metricsResource`, without an access log."""
    return _QuietSite(metricsResource(registry, reactor))


__all__ = [
    "STATES", "KwikCollector", "format_address", "metricsResource", "metricsSite", "status",
]
