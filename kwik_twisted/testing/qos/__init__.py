"""
QoS scenarios in simulated time: applications with delay probes, per-path accounting, issue 15.

:mod:`.model` holds what a scenario is made of and what it measured, :mod:`.run` runs one
(:func:`run_scenario`), :mod:`.scenarios` has the issue's six; everything is re-exported here.

Theory of operation
===================

:func:`run_scenario` builds what the multipath scenario tests build (one client with one address
per :class:`PathSpec`, each address with its own pair of one-way links to the one server address
:data:`SERVER_ADDR`, a :class:`~kwik_twisted.core.dispatcher.ServerDispatcher` behind it), runs the
deterministic :class:`~kwik_twisted.testing.simulator.Network` until ``duration`` and returns a
:class:`ScenarioResult`.  All times are absolute simulated seconds from the client's first packet.

*Flows* are applications on the client, each writing on its own stream towards the server.  They
start once the handshake is complete and every extra path is validated (``ready_at``), or at their
``start`` if that is later:

* :class:`MessageFlow` writes a ``size``-byte message every ``interval``; :class:`RateFlow` is the
  same with ``chunk``-byte messages every ``chunk * 8 / rate_bps`` seconds, skipped (counted in
  ``skipped_bytes``) while the stream is not writable, as a real-time source drops what it cannot
  send.  Every message starts with :data:`HEADER` (its sequence number and its write time), so the
  server side measures its one-way delay: the time the receiving application got the message's
  last byte, in order, minus the write time read from the message.
* :class:`BulkFlow` keeps its stream's send buffer full: :data:`BULK_CHUNK` bytes at a time while
  ``conn.stream_writable`` says so, again on each ``StreamWritable`` event (the core's
  back-pressure: a stream is writable while its unacknowledged bytes are below
  ``stream_send_buffer``).

The *measured window* is ``[warmup, duration]``: delays are those of messages written in it,
goodput the bytes the server application got in it, per-path bytes those sent in it.

*Per-path attribution* comes from the client's qlog hook (``new_tracer``, see
:mod:`kwik_twisted.core.trace`): every ``quic:packet_sent`` lists its STREAM frames with stream ID,
offset and length, and the path ID.  For each stream the tap keeps the frontier of first
transmissions and the path each range first went on, so a frame below the frontier is a resend
(``resent_bytes``: loss recovery and redundancy alike) and the part of it whose first transmission
went on another path is ``cross_path_bytes`` (duplicates on a second path).  Links count what each
path carried (``PathResult.bytes_up``, client to server, delivered).

``events`` are ``(t, fn(network, ctx))`` pairs run at simulated time ``t``; the
:class:`ScenarioContext` changes a path (:meth:`ScenarioContext.set_path`), cuts it, polls
periodically (:meth:`ScenarioContext.every`) and records figures.  QoS is compared by running the
same flows twice: :func:`with_qos` removes the policies, and QoS off uses the ``lowest-rtt``
scheduler.  ``QoSViolated`` events of both sides are kept with their times, and the client's
``conn.qos.report(now=...)`` at the end when the connection has a QoS enforcer.

Everything here is a test tool: it keeps per-run lists (one entry per message or packet), bounded by
the run's length, not by any peer.
"""

from __future__ import annotations

from .model import (
    HEADER,
    BulkFlow,
    Delays,
    Flow,
    FlowResult,
    MessageFlow,
    PathResult,
    PathSpec,
    RateFlow,
    ScenarioResult,
    Violation,
    queue_limit,
    with_qos,
)
from .run import SERVER_ADDR, ScenarioContext, congested_paths, run_scenario
from .scenarios import (
    BASELINE_OPTIONS,
    QOS_OPTIONS,
    SCENARIOS,
    scenario_bufferbloat,
    scenario_cost,
    scenario_guaranteed_rate,
    scenario_jitter,
    scenario_latency,
    scenario_loss_threshold,
)

__all__ = [
    "BASELINE_OPTIONS",
    "HEADER",
    "QOS_OPTIONS",
    "SCENARIOS",
    "SERVER_ADDR",
    "BulkFlow",
    "Delays",
    "Flow",
    "FlowResult",
    "MessageFlow",
    "PathResult",
    "PathSpec",
    "RateFlow",
    "ScenarioContext",
    "ScenarioResult",
    "Violation",
    "congested_paths",
    "queue_limit",
    "run_scenario",
    "scenario_bufferbloat",
    "scenario_cost",
    "scenario_guaranteed_rate",
    "scenario_jitter",
    "scenario_latency",
    "scenario_loss_threshold",
    "with_qos",
]
