"""
Issue 15's six QoS scenarios, each ``(qos=True, duration=..., seed=1) -> ScenarioResult``.

QoS off runs the same flows without their policies on the ``lowest-rtt`` scheduler
(:data:`BASELINE_OPTIONS`); QoS on uses :data:`QOS_OPTIONS`.  Each fills ``result.figures`` with
its headline figures (``_ms`` milliseconds, ``_mbps`` Mbit/s, ``_s`` seconds, fractions bare).
"""

from __future__ import annotations

from collections.abc import Callable

from ...wire import QosPolicy
from ..simulator import Network
from .model import BulkFlow, MessageFlow, PathSpec, RateFlow, ScenarioResult, with_qos
from .run import ScenarioContext, congested_paths, run_scenario

#: Client options of a QoS-off run.
BASELINE_OPTIONS = {"scheduler": "lowest-rtt"}
#: Client options of a QoS-on run (the defaults: the enforcer acts on the streams' policies).
QOS_OPTIONS: dict = {}


def _options(qos: bool) -> dict:
    return dict(QOS_OPTIONS if qos else BASELINE_OPTIONS)


def _two_paths() -> list[PathSpec]:
    """10 Mbit/s at 10 ms and at 25 ms one-way, 100 ms drop-tail queues."""
    return [PathSpec(0.010, 10e6, queue_ms=100), PathSpec(0.025, 10e6, queue_ms=100)]


def scenario_latency(qos: bool = True, duration: float = 20.0, seed: int = 1) -> ScenarioResult:
    """1. Bulk saturating two paths; 200-byte messages every 20 ms with max_latency 40 ms."""
    flows = [BulkFlow("bulk"), MessageFlow("interactive", qos=QosPolicy(max_latency_ms=40))]
    result = run_scenario(paths=_two_paths(), flows=with_qos(flows, qos), duration=duration,
                          seed=seed, client_options=_options(qos))
    interactive, bulk = result.flows["interactive"], result.flows["bulk"]
    result.figures.update(
        interactive_p99_ms=interactive.p99() * 1000,
        interactive_late=interactive.late_fraction(0.040),
        bulk_share_of_capacity=bulk.goodput_bps() / result.capacity_bps,
    )
    return result


def scenario_bufferbloat(qos: bool = True, duration: float = 20.0, seed: int = 1,
                         drop_at: float = 10.0) -> ScenarioResult:
    """
    2. Scenario 1, and at ``drop_at`` the 10 ms path drops to 2 Mbit/s with a 300 ms queue.

    ``detected_after_s``: when the client's QoS report first names the dropped path congested,
    polled every 5 ms from the drop; left ``None`` when the report named it congested already
    just before the drop (``congested_before_drop``: a standing queue), or names no paths.
    """
    flows = [BulkFlow("bulk"), MessageFlow("interactive", qos=QosPolicy(max_latency_ms=40))]

    def congested(ctx: ScenarioContext) -> bool | None:
        found = congested_paths(ctx.qos_report())
        return None if found is None else ctx.path_id(0) in found

    def watch(ctx: ScenarioContext) -> bool:
        if congested(ctx):
            ctx.figures["detected_after_s"] = ctx.now - drop_at
            return True
        return False

    def drop(network: Network, ctx: ScenarioContext) -> None:
        before = ctx.figures["congested_before_drop"] = congested(ctx)
        ctx.set_path(0, rate_bps=2e6, queue_ms=300)
        if before is False:
            ctx.every(0.005, watch, stop=duration)

    result = run_scenario(paths=_two_paths(), flows=with_qos(flows, qos), duration=duration,
                          seed=seed, client_options=_options(qos), events=[(drop_at, drop)])
    interactive = result.flows["interactive"]
    result.figures.setdefault("detected_after_s", None)
    result.figures.setdefault("congested_before_drop", None)
    result.figures.update(
        interactive_p99_after_drop_ms=interactive.delays_in(drop_at, duration).p99() * 1000,
        interactive_late_after_drop=interactive.late_fraction(0.040, drop_at, duration),
        violations=len(result.violations_of(side="client")),
    )
    return result


def scenario_guaranteed_rate(qos: bool = True, duration: float = 20.0, seed: int = 1,
                             guaranteed: int = 1) -> ScenarioResult:
    """3. One 10 Mbit/s path, four bulk streams and ``guaranteed`` streams offering 4 Mbit/s
    with min_bandwidth 4 Mbit/s (3: the guarantees sum past the capacity)."""
    policy = QosPolicy(min_bandwidth_kbps=4000)
    flows = [BulkFlow(f"bulk{i}") for i in range(4)]
    flows += [RateFlow(f"rate{i}", 4e6, qos=policy) for i in range(guaranteed)]
    result = run_scenario(paths=[PathSpec(0.010, 10e6, queue_ms=100)],
                          flows=with_qos(flows, qos), duration=duration, seed=seed,
                          client_options=_options(qos))
    rates = [result.flows[f"rate{i}"].goodput_bps() / 1e6 for i in range(guaranteed)]
    result.figures.update(
        rate_mbps=rates[0], rate_min_mbps=min(rates), rate_sum_mbps=sum(rates),
        bulk_mbps=sum(result.flows[f"bulk{i}"].goodput_bps() for i in range(4)) / 1e6,
        violations=len(result.violations_of(side="client")),
    )
    return result


def scenario_loss_threshold(qos: bool = True, duration: float = 20.0, seed: int = 1):
    """4. A 10 ms path with 5% loss and a clean 30 ms one; messages with loss_threshold 0.1% and
    max_latency 80 ms, and a bulk stream."""
    paths = [PathSpec(0.010, 10e6, queue_ms=100, loss=0.05), PathSpec(0.030, 10e6, queue_ms=100)]
    policy = QosPolicy(max_latency_ms=80, loss_threshold_ppm=1000)
    flows = [BulkFlow("bulk"), MessageFlow("messages", qos=policy)]
    result = run_scenario(paths=paths, flows=with_qos(flows, qos), duration=duration, seed=seed,
                          client_options=_options(qos))
    messages = result.flows["messages"]
    result.figures.update(
        late_fraction=messages.late_fraction(0.080),
        messages_p99_ms=messages.p99() * 1000,
        redundancy=messages.redundancy,
        cross_path_redundancy=messages.cross_path_bytes / max(1, messages.sent_bytes
                                                                - messages.resent_bytes),
        bulk_share_of_clean=result.flows["bulk"].goodput_bps() / paths[1].rate_bps,
    )
    return result


def scenario_jitter(qos: bool = True, duration: float = 20.0, seed: int = 1) -> ScenarioResult:
    """5. Bulk on both paths of scenario 1; messages with max_jitter 5 ms."""
    flows = [BulkFlow("bulk"), MessageFlow("messages", qos=QosPolicy(max_jitter_ms=5))]
    result = run_scenario(paths=_two_paths(), flows=with_qos(flows, qos), duration=duration,
                          seed=seed, client_options=_options(qos))
    delays = result.flows["messages"].delays
    result.figures.update(std_ms=delays.std() * 1000, p99_ms=delays.p99() * 1000,
                          p50_ms=delays.p50() * 1000)
    return result


def scenario_cost(qos: bool = True, duration: float = 20.0, seed: int = 1,
                  fail_at: float = 10.0) -> ScenarioResult:
    """6. A cheap path (25 ms) and a costly one (cost 10, 10 ms: lowest-rtt prefers it), 10
    Mbit/s each; an app-limited 2 Mbit/s flow; the cheap path fails at ``fail_at``."""
    paths = [PathSpec(0.025, 10e6, queue_ms=100), PathSpec(0.010, 10e6, queue_ms=100, cost=10.0)]
    flows = [RateFlow("video", 2e6, qos=QosPolicy(min_bandwidth_kbps=2000))]
    result = run_scenario(paths=paths, flows=with_qos(flows, qos), duration=duration, seed=seed,
                          client_options=_options(qos),
                          events=[(fail_at, lambda network, ctx: ctx.set_path_up(0, False))])
    video = result.flows["video"]
    first = video.first_sent_on(1, fail_at)
    result.figures.update(
        costly_share=video.share(1, result.warmup, fail_at),
        failover_s=None if first is None else first - fail_at,
        gap_after_failure_ms=video.max_gap(fail_at - 1.0, duration) * 1000,
        rate_after_failure_mbps=video.goodput_bps(fail_at + 1.0, duration) / 1e6,
    )
    return result


#: The six, by name, for the benchmark.
SCENARIOS: dict[str, Callable[..., ScenarioResult]] = {
    "latency": scenario_latency,
    "bufferbloat": scenario_bufferbloat,
    "guaranteed_rate": scenario_guaranteed_rate,
    "loss_threshold": scenario_loss_threshold,
    "jitter": scenario_jitter,
    "cost": scenario_cost,
}
