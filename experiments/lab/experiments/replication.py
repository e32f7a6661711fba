"""05 cluster: R1 vs R3 vs memory at the same rates, and cluster faults as the clients see them (failover).

JetStream and Kafka side by side: for each replicated queue in `queues`, one
node at R1 and a cluster of `nodes` at R`nodes` (JetStream: an R3 stream;
Kafka: three KRaft brokers, a topic of replication factor 3 with
`min.insync.replicas=2`), at the same rates. Each fault runs on each queue
whose cluster can take it: `kill`, `pause`, `power-loss` of a role and
`partition` on both (a partition needs a cluster built with per-link
proxies, so it runs on a fresh one: NATS routes; Kafka's controller quorum
and replication links); `stepdown`, `rolling` and `lagging-majority` act
through JetStream's API or routes and run on NATS only.

`label` marks a row with nodes and replicas. `failover` runs one cluster
fault through the phase pipeline (`lab.phase.run_phase` with `FAILOVER`
options), which adds to the usual record what only a failover has: the
per-`BIN_S` timeline of publishes ok / refused and client latency, the
moment a new leader was seen, and the time to recover.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from experiments.lab.context import RunContext
from experiments.lab.experiment import Experiment, ExperimentParams, FaultText, FigureSpec, records_figure, rows_figure
from experiments.lab.phase import FAILOVER, WARMUP_S, run_phase
from experiments.lab.record import PhaseSpec
from experiments.lab.session import Session
from experiments.lab.setup import QueueFamily, Setup
from experiments.results.chapters import cluster as cluster_claims
from experiments.results.plots import median_range
from experiments.results.schema import ResultRecord
from experiments.results.stats import spread
from experiments.results.tables import median_table
from experiments.runtime.broker import ReplicatedBroker
from experiments.workload.faults import FaultStep

ReplicatedQueue = Literal["nats", "kafka"]


class Params(ExperimentParams):
    nodes: int = 3  # brokers of the replicated deployment, its stream or topic has as many replicas; 1: no cluster
    queues: tuple[ReplicatedQueue, ...] = ("nats", "kafka")  # replicated queues compared (each R1 and R`nodes`)
    rates: tuple[float, ...] = (500.0, 3000.0)  # msg/s, one message per request
    duration_s: float = 3.0
    faults: tuple[FaultText, ...] = ()  # the first after the comparison on its cluster, then each on a fresh one
    fault_rate: float = 200.0  # msg/s during a fault
    fault_duration_s: float = 14.0  # long enough for an election and the recovery after it
    fault_at_s: float = 2.0
    down_s: float = 8.0  # a killed or frozen node stays away this long
    workers: int = 4
    payload_bytes: int = 128
    warmup_s: float = WARMUP_S  # unmeasured load at the first rate before each deployment's first phase (0: none)


def label(session: Session, record: ResultRecord) -> ResultRecord:
    """Nodes and replicas of the session's deployment on its row (0 and 0 for the memory queue)."""
    broker, settings = session.deployment().broker, session.stack.backend_settings
    if broker is None:
        record.row.broker_nodes, record.row.replicas = 0, 0
    else:
        record.row.broker_nodes = int(getattr(broker, "size", 1))
        kafka = session.setup.family == "kafka"
        record.row.replicas = int(settings.kafka_replicas if kafka else settings.nats_replicas)
    return record


def replica_env(queue: QueueFamily, replicas: int) -> dict[str, str]:
    """The services' environment that sets the stream's or topic's replicas (Kafka: RF follows the brokers)."""
    return {"NATS_REPLICAS": str(replicas)} if queue == "nats" else {}


def runs_on(step: FaultStep, queue: QueueFamily) -> bool:
    """Whether `queue`'s cluster can take the fault: JetStream-only faults (stepdown, rolling, lagging-majority)
    skip Kafka; `partition` runs on both."""
    return queue == "nats" or "nats-cluster" not in step.fault.needs


def fault_runs(faults: Sequence[str], queues: Sequence[QueueFamily]) -> int:
    """How many fault phases `run` makes (for the notebook's plan): each fault on each queue that can take it."""
    return sum(runs_on(FaultStep.parse(f), q) for f in faults for q in queues)


async def failover(
    session: Session,
    phase: str,
    step: FaultStep,
    *,
    rate: float,
    duration_s: float,
    payload_bytes: int = 128,
    drain_timeout_s: float = 30.0,
) -> ResultRecord:
    """One fault on the session's cluster at `step.at_s` under `rate` msg/s; the record with its failover series."""
    broker = session.deployment().broker
    if not isinstance(broker, ReplicatedBroker):
        raise ValueError(f"fault {step.label} needs a cluster the harness started (this session has {broker!r})")
    spec = PhaseSpec(phase, rate, duration_s, payload_bytes, 1)
    record = await run_phase(session, spec, step, dataclasses.replace(FAILOVER, drain_timeout_s=drain_timeout_s))
    return label(session, record)


async def run(ctx: RunContext, params: Params) -> pd.DataFrame:
    """Memory, then for each queue (JetStream, Kafka) R1 (one node) vs R`nodes` (a cluster) at the same rates and
    each fault on its cluster.

    The comparison measures latency percentiles and, at the top rates, how much
    each deployment can take one message per request. Each fault (`kill:leader`,
    `stepdown`, `pause:leader`, `kill:quorum`, `partition:leader`, `rolling`...)
    runs as `_queue_runs` says. Its record carries the failover timeline.
    """
    if params.faults and params.nodes < 3:
        raise ValueError(f"cluster faults need nodes=3 (got nodes={params.nodes}); set faults=[] for a comparison only")
    await _compare(ctx, params, Setup(backend="memory", workers=params.workers), "memory")
    for queue in params.queues:  # one queue's deployments, its faults included, before the next queue's
        await _queue_runs(ctx, params, queue)
    return ctx.frame()


async def _compare(ctx: RunContext, params: Params, setup: Setup, variant: str) -> None:
    """The comparison's phases (each rate) on a fresh deployment of `setup`, closed again after them."""
    async with ctx.session(setup) as session:
        await _measure_rates(session, params, variant)


async def _measure_rates(session: Session, params: Params, variant: str) -> None:
    if params.warmup_s > 0:  # else the first phase measures the deployment's start (Kafka: the JVM's JIT)
        await session.warm_up(rate=params.rates[0], duration_s=params.warmup_s)
    for rate in params.rates:
        rec = await session.measure(
            f"{variant},rate={rate:g}", rate=rate, duration_s=params.duration_s, payload_bytes=params.payload_bytes
        )
        label(session, rec)


async def _queue_runs(ctx: RunContext, params: Params, queue: ReplicatedQueue) -> None:
    """R1 on one node, R`nodes` on a cluster, then each fault this queue's cluster can take.

    The first fault runs on the comparison's cluster, after it (one cluster
    start less), unless it needs per-route proxies (a cluster built with
    them); every other fault on a fresh cluster and store, so one fault's
    aftermath never colours the next.
    """
    nodes, workers = params.nodes, params.workers
    steps = [FaultStep.parse(f, at_s=params.fault_at_s, down_s=params.down_s) for f in params.faults]
    steps = [s for s in steps if runs_on(s, queue)]
    one = Setup(backend=queue, workers=workers, nodes=1, env=replica_env(queue, 1))
    await _compare(ctx, params, one, f"{queue} R1")
    if nodes < 2:
        return
    cluster = Setup(backend=queue, workers=workers, nodes=nodes, env=replica_env(queue, nodes))
    reuse = bool(steps) and "partitionable" not in steps[0].fault.needs
    async with ctx.session(cluster) as session:
        await _measure_rates(session, params, f"{queue} R{nodes}")
        if reuse:
            await _failover_step(session, params, steps[0])
    for step in steps[1:] if reuse else steps:
        setup = dataclasses.replace(cluster, partitionable="partitionable" in step.fault.needs)
        async with ctx.session(setup) as session:
            await _failover_step(session, params, step)


async def _failover_step(session: Session, params: Params, step: FaultStep) -> None:
    await failover(session, f"fault={step.label}", step, rate=params.fault_rate, duration_s=params.fault_duration_s)


def _variant(row: pd.Series) -> str:
    if row["backend"] == "memory":
        return "memory"
    nodes = int(row["broker_nodes"])
    return f"{_queue(str(row['backend']))} R{int(row['replicas'])} ({nodes} node{'s' if nodes > 1 else ''})"


def _queue(backend: str) -> str:
    return "kafka" if backend.startswith("kafka") else "nats"


def tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """R1 vs R3 vs memory at each rate, the R3/R1 ratios (median, min..max over repetitions), and each fault."""
    df = df.assign(variant=df.apply(_variant, axis=1))
    calm = df[df["fault"] == "none"]
    faults = df[df["fault"] != "none"]
    out: dict[str, pd.DataFrame] = {}
    if not calm.empty:
        values = ["achieved_rate", "client_p50_ms", "client_p99_ms", "e2e_p50_ms", "e2e_p99_ms"]
        out["cluster_latency"] = median_table(calm, ["variant", "offered_rate"], values)
        out["cluster_ratios"] = replica_ratios(calm)
    if not faults.empty:
        g = faults.groupby(["fault", "variant"], sort=True)
        t = g[["sent", "acknowledged", "processed", "lost", "duplicated", "unacked_processed"]].sum()
        # the "recovered": refused or timed out at the client, stored after all (not the row's `recovered`)
        t = t.rename(columns={"unacked_processed": "recovered_unacked"})
        t.insert(0, "runs", g.size())
        rec = g["recover_s"].agg(["median", "min", "max"]).add_prefix("recover_s_")
        out["cluster_faults"] = t.join(rec).reset_index()
    return out


def replica_ratios(calm: pd.DataFrame) -> pd.DataFrame:
    """R_high / R1 per queue (JetStream, Kafka) and repetition: max achieved rate, client p50 / p99 at each rate."""
    brokers = calm[calm["backend"] != "memory"]
    frames = [_replica_ratios(part, str(queue)) for queue, part in brokers.groupby(brokers["backend"].map(_queue))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame([])


def _replica_ratios(brokers: pd.DataFrame, queue: str) -> pd.DataFrame:
    high = int(brokers["replicas"].max()) if not brokers.empty else 1
    rows: list[dict[str, object]] = []
    if high <= 1:
        return pd.DataFrame(rows)
    per_rep: dict[str, list[float]] = {}
    for _, part in brokers.groupby("repetition"):
        one, many = part[part["replicas"] == 1], part[part["replicas"] == high]
        if one.empty or many.empty:
            continue
        per_rep.setdefault("max achieved rate", []).append(many["achieved_rate"].max() / one["achieved_rate"].max())
        for rate in sorted(set(one["offered_rate"]) & set(many["offered_rate"])):
            for col in ("client_p50_ms", "client_p99_ms"):
                a = one[one["offered_rate"] == rate][col].median()
                b = many[many["offered_rate"] == rate][col].median()
                if a and a == a and b == b:
                    per_rep.setdefault(f"{col} at {rate:g} msg/s", []).append(b / a)
    for metric, values in per_rep.items():
        rows.append({"ratio": f"{queue} R{high}/R1 {metric}", **spread(values)})
    return pd.DataFrame(rows)


VARIANT_STYLE = {
    "memory": {"color": "#1f77b4", "marker": "o", "label": "memory queue"},
    "nats R1": {"color": "#d62728", "marker": "s", "label": "JetStream R1, 1 node"},
    "nats R3": {"color": "#2ca02c", "marker": "D", "label": "JetStream R3, 3 nodes"},
    "kafka R1": {"color": "#ff7f0e", "marker": "^", "label": "Kafka RF1, 1 broker"},
    "kafka R3": {"color": "#9467bd", "marker": "v", "label": "Kafka RF3, 3 brokers (min ISR 2)"},
}


def _variant_key(backend: str, replicas: int) -> str:
    return "memory" if backend == "memory" else f"{_queue(backend)} R{int(replicas)}"


def cluster_comparison(df: pd.DataFrame) -> Figure:
    """Memory vs R1 vs R3 at the same offered rates: achieved rate, client p50 and p99 (median, bars min..max)."""
    calm = df[df["fault"] == "none"]
    fig, axes = plt.subplots(1, 3, figsize=(12.0, 3.8))
    cols = (("achieved_rate", "achieved [msg/s acknowledged]"), ("client_p50_ms", "client latency p50 [ms]"),
            ("client_p99_ms", "client latency p99 [ms]"))  # fmt: skip
    for (backend, replicas), part in calm.groupby(["backend", "replicas"], sort=True):
        key = _variant_key(str(backend), int(str(replicas)))
        st = VARIANT_STYLE.get(key, {"color": "black", "marker": "x", "label": key})
        for ax, (col, _) in zip(axes, cols, strict=True):
            agg = median_range(part, ["offered_rate"], col)
            yerr = [agg["median"] - agg["lo"], agg["hi"] - agg["median"]]
            ax.errorbar(agg["offered_rate"], agg["median"], yerr=yerr, capsize=3, **st)
    for ax, (_, ylabel) in zip(axes, cols, strict=True):
        ax.set_xlabel("offered rate [msg/s, one message per request]")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
    top = float(calm["offered_rate"].max()) if not calm.empty else 1.0
    axes[0].plot([0, top], [0, top], color="grey", linewidth=0.8, linestyle=":", label="achieved = offered")
    axes[0].set_title("Throughput")
    axes[1].set_title("Median publish latency")
    axes[2].set_title("p99 publish latency")
    axes[0].legend(fontsize=7)
    fig.suptitle("Memory vs R1 vs R3, JetStream and Kafka (median of repetitions, bars: min..max)", fontsize=10)
    fig.tight_layout()
    return fig


def failover_timeline(records: Sequence[ResultRecord]) -> Figure:
    """Per bin: publishes acknowledged / refused (bars) and client p50 (line), fault shaded, leader change marked."""
    chosen = [r for r in records if r.series.failover is not None and r.row.repetition == 0]
    firsts: dict[tuple[str, str], ResultRecord] = {}  # the first run of each fault on each queue
    for r in chosen:
        firsts.setdefault((_queue(r.row.backend), r.row.fault), r)
    runs = list(firsts.values())
    fig, axes = plt.subplots(max(1, len(runs)), 1, figsize=(9.0, 2.6 * max(1, len(runs))), squeeze=False)
    for ax, rec in zip(axes[:, 0], runs, strict=False):
        fo = rec.series.failover
        assert fo is not None
        per_s = 1.0 / fo.bin_s
        ax.bar(fo.t_s, [v * per_s for v in fo.ok], width=fo.bin_s, align="edge", color="#2ca02c", label="acknowledged")
        ax.bar(fo.t_s, [v * per_s for v in fo.failed], width=fo.bin_s, align="edge", color="#d62728",
               bottom=[v * per_s for v in fo.ok], label="refused / no answer")  # fmt: skip
        for w in rec.series.faults:
            ax.axvspan(w.start_s, w.end_s, facecolor="none", edgecolor="black", hatch="//", alpha=0.5,
                       zorder=3, label="fault window")  # fmt: skip
            if w.leader_change_s is not None:
                ax.axvline(w.leader_change_s, color="black", linestyle="--", linewidth=1.0, label="new leader seen")
        lat = ax.twinx()
        lat.plot([t + fo.bin_s / 2 for t in fo.t_s], fo.p50_ms, color="black", linewidth=0.9, label="client p50")
        lat.set_yscale("log")
        lat.set_ylabel("client p50 [ms], line", fontsize=8)
        lat.grid(False)
        recover = "" if rec.row.recover_s is None else f", recovered after {rec.row.recover_s:.2f} s"
        queue = "Kafka" if rec.row.backend.startswith("kafka") else "JetStream"
        ax.set_title(f"{queue}: {rec.row.fault} on {rec.row.broker_nodes} nodes, R{rec.row.replicas}{recover}",
                     fontsize=9)  # fmt: skip
        ax.set_ylabel(f"publishes [per s, {fo.bin_s * 1000:g} ms bins]", fontsize=8)
        ax.set_xlabel("time since load start [s]")
        handles, labels = ax.get_legend_handles_labels()
        h2, l2 = lat.get_legend_handles_labels()
        ax.legend(handles + h2, labels + l2, fontsize=7, loc="lower left")
    if not runs:
        axes[0, 0].set_title("no cluster fault in these results")
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    name="05_cluster",
    title="Three-node JetStream and Kafka clusters: R1 vs R3 vs memory, and failover",
    params=Params,
    run=run,
    columns=("phase", "broker_nodes", "replicas", "offered_rate", "achieved_rate", "client_p50_ms", "client_p99_ms",
             "e2e_p99_ms", "sent", "acknowledged", "processed", "lost", "duplicated", "unacked_processed",
             "recover_s"),
    tables=tables,
    figures=(
        FigureSpec("cluster_comparison", rows_figure(cluster_comparison)),
        FigureSpec("failover_timeline", records_figure(failover_timeline)),
    ),
    claims=cluster_claims.CLAIMS,
)  # fmt: skip
