"""The experiments the notebooks run: each a loop of measured phases over real deployments.

Kept out of the notebooks so they can be tested and reused: a notebook sets
its parameters, calls one of these, and shows the table and the plot.
Every function returns the rows of this run as a DataFrame; the records
(with CDF and timeline series) stay in `ctx.records` and go to disk with
`ctx.save()`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from experiments.lab import cluster as cluster_lab
from experiments.lab import footprint as _footprint
from experiments.lab.context import RunContext
from experiments.lab.session import Session
from experiments.lab.setup import Setup
from experiments.results import power_loss as power_loss_results
from experiments.results import registry
from experiments.results.schema import Backend, PublishRate, ResultRecord
from experiments.runtime.nats.cluster import NatsCluster
from experiments.runtime.nats.process import ProcessNats
from experiments.runtime.nats.provider import NatsServer
from experiments.workload.faults import FaultStep
from experiments.workload.publish import PUBLISH_MODES, publish_rate
from services.settings import HttpSettings


def _payloads(payload_bytes: int | Sequence[int]) -> list[int]:
    return [payload_bytes] if isinstance(payload_bytes, int) else list(payload_bytes)


def _phase(payloads: list[int], payload: int, **keys: float) -> str:
    """`rate=200` (one payload size) or `payload=1024,rate=200` (a sweep over sizes)."""
    parts = ([f"payload={payload}"] if len(payloads) > 1 else []) + [f"{k}={v:g}" for k, v in keys.items()]
    return ",".join(parts)


async def latency(
    ctx: RunContext,
    *,
    backends: Sequence[Backend],
    rates: Sequence[float],
    duration_s: float,
    payload_bytes: int | Sequence[int] = 128,
    workers: int = 4,
) -> Any:
    """End-to-end and client latency at fixed offered rates (and payload sizes): one session per backend."""
    payloads = _payloads(payload_bytes)
    for backend in backends:
        async with ctx.session(Setup(backend=backend, workers=workers)) as session:
            for payload in payloads:
                for rate in rates:
                    await session.measure(
                        _phase(payloads, payload, rate=rate), rate=rate, duration_s=duration_s, payload_bytes=payload
                    )
    return ctx.frame()


def fits_one_request(batch: int, payload: int) -> bool:
    """Whether `batch` messages of `payload` bytes fit the gateway's default body limit (else: 413, not a rate)."""
    limit = int(HttpSettings.model_fields["max_body_bytes"].default)
    return batch * (payload + 64) <= limit


async def throughput(
    ctx: RunContext,
    *,
    backends: Sequence[Backend],
    rates: Sequence[float],
    batch_sizes: Sequence[int] = (1,),
    duration_s: float,
    payload_bytes: int | Sequence[int] = 128,
    workers: int = 4,
    stop_below: float = 0.5,
) -> Any:
    """Saturation sweep: offered rate upwards until the stack delivers under `stop_below` of it.

    Once achieved < stop_below x offered the knee is behind us; higher rates
    would only pile up timeouts and cost minutes, so the sweep for that batch
    size and payload stops there (the rows say which rates were measured). A
    batch of payloads larger than the gateway's body limit is not measured.
    """
    payloads = _payloads(payload_bytes)
    for backend in backends:
        async with ctx.session(Setup(backend=backend, workers=workers)) as session:
            for payload in payloads:
                for batch in batch_sizes:
                    if not fits_one_request(batch, payload):
                        continue
                    for rate in sorted(rates):
                        rec = await session.measure(
                            _phase(payloads, payload, batch=batch, rate=rate),
                            rate=rate,
                            duration_s=duration_s,
                            payload_bytes=payload,
                            batch_size=batch,
                            drain_timeout_s=20.0,
                        )
                        if rec.row.achieved_rate < stop_below * rate:
                            break
    return ctx.frame()


async def durability(
    ctx: RunContext,
    *,
    backends: Sequence[Backend],
    faults: Sequence[str],
    rate: float,
    duration_s: float,
    fault_at_s: float,
    down_s: float,
    processing_ms: float = 0.0,
    workers: int = 4,
) -> Any:
    """Each fault on each backend in a fresh deployment (fresh store), counted by message id.

    `processing_ms` slows the workers so a backlog builds up before the fault:
    that backlog is what a memory queue loses on a kill.
    """
    for fault in faults:
        step = FaultStep.parse(fault, at_s=fault_at_s, down_s=down_s)
        for backend in backends:
            setup = Setup(backend=backend, workers=workers, processing_ms=processing_ms)
            async with ctx.session(setup) as session:
                await session.measure(f"fault={step.label}", rate=rate, duration_s=duration_s, fault=step)
    return ctx.frame()


async def scaling(
    ctx: RunContext,
    *,
    backends: Sequence[Backend],
    workers: Sequence[int],
    processors: Sequence[int],
    max_rate: float,
    duration_s: float,
    processing_ms: float,
    overload: float = 1.25,
) -> Any:
    """Processed throughput as workers and processor instances grow, with simulated work per message.

    Each setup is offered `overload` x its nominal capacity (workers x
    instances x 1000 / processing_ms, capped at `max_rate`): enough to keep
    every worker busy, little enough that the backlog drains in seconds, so
    every acknowledged message is still accounted for. NATS instances share
    one durable consumer (the spec's load balancing); memory instances each
    own a queue, fed round-robin by ingest.
    """
    for backend in backends:
        for n_proc in processors:
            for n_workers in workers:
                setup = Setup(backend=backend, workers=n_workers, processors=n_proc, processing_ms=processing_ms)
                nominal = n_workers * n_proc * 1000.0 / processing_ms
                async with ctx.session(setup) as session:
                    await session.measure(
                        f"processors={n_proc},workers={n_workers}",
                        rate=min(max_rate, overload * nominal),
                        duration_s=duration_s,
                        drain_timeout_s=30.0,
                    )
    return ctx.frame()


MIGRATION_MODES = ("naive", "planned")
MIGRATION_BIN_S = 0.1  # the timeline's resolution: a switch lasts seconds


async def migration(
    ctx: RunContext,
    *,
    directions: Sequence[str],
    modes: Sequence[str] = MIGRATION_MODES,
    rate: float,
    duration_s: float,
    switch_at_s: float,
    processing_ms: float = 0.0,
    workers: int = 4,
) -> Any:
    """A queue switch under steady open-loop load, each direction x mode in a fresh deployment.

    `directions`: "memory->nats", "nats->memory". `modes`: "naive" (stop the
    processor, start it on the other queue) and "planned" (a processor on the
    new queue beside the old, ingest rerouted, the old drained, then stopped).
    A NATS server runs in every deployment, so either direction can switch.
    `processing_ms` slows the workers below the offered rate, so the old queue
    holds a backlog at the switch: what the naive switch drops and the planned
    one finishes.
    """
    for direction in directions:
        source, sep, target = direction.partition("->")
        if not sep or {source, target} != {"memory", "nats"}:
            raise ValueError(f"direction {direction!r}: expected memory->nats or nats->memory")
        for mode in modes:
            if mode not in MIGRATION_MODES:
                raise ValueError(f"mode {mode!r}: expected naive or planned")
            kind = "switch" if mode == "planned" else "naive-switch"
            step = FaultStep.parse(f"{kind}:{target}", at_s=switch_at_s)
            setup = Setup(
                backend=source,  # type: ignore[arg-type]  # checked above
                workers=workers,
                processing_ms=processing_ms,
                standby_nats=True,
            )
            async with ctx.session(setup) as session:
                await session.measure(
                    f"{mode} {direction}", rate=rate, duration_s=duration_s, fault=step, bin_s=MIGRATION_BIN_S
                )
    return ctx.frame()


async def footprint(
    ctx: RunContext,
    *,
    queues: Sequence[_footprint.FootprintQueue],
    backlogs: Sequence[int],
    payload_sizes: Sequence[int],
    parallel: int = 3,
) -> Any:
    """Resident memory against backlog: one deployment per queue x payload size, filled step by step.

    `queues`: memory (QUEUE_SIZE above the largest backlog), memory-default
    (the spec's QUEUE_SIZE, where the backlog becomes 429s), nats (JetStream).
    Up to `parallel` deployments run side by side: memory is read per pid and
    nothing here is timed, so they do not disturb each other's figures, and
    the run spends most of its time starting services.
    """
    gate = asyncio.Semaphore(max(1, parallel))

    async def one(queue: _footprint.FootprintQueue, payload: int) -> list[ResultRecord]:
        async with gate, ctx.session(_footprint.setup_for(queue, max(backlogs))) as session:
            return await _footprint.measure_steps(session, queue, backlogs=backlogs, payload_bytes=payload)

    done = await asyncio.gather(*(one(q, p) for q in queues for p in payload_sizes))
    for records in done:  # in a fixed order, whichever deployment finished first
        for record in records:
            ctx.add(record)
    return ctx.frame()


def _writeback_label(writeback_s: float | None) -> str:
    return "never" if writeback_s is None else f"{writeback_s:g}"


def parse_writeback(value: float | str | None) -> float | None:
    """A notebook's writeback value: seconds, or 'never' / None."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "never"):
        return None
    seconds = float(value)
    if seconds <= 0:
        raise ValueError(f"writeback_s={value!r}: expected seconds > 0 or 'never'")
    return seconds


async def _publish_costs(
    ctx: RunContext,
    backend: Backend,
    lazy: NatsServer,
    workdir: Any,
    counts: dict[str, int],
    rounds: int,
    replicas: int,
) -> None:
    """Raw publish rate on the lazy store and on a plain dir with the same fsync policy and replicas, interleaved."""
    sync = backend == "nats-sync"
    nodes = int(getattr(lazy, "size", 1))
    plain: NatsServer = (
        NatsCluster(workdir / "plain-nats", nodes=nodes, sync_always=sync)
        if nodes > 1
        else ProcessNats(workdir / "plain-nats", sync_always=sync)
    )
    with plain:
        for rnd in range(rounds):
            stores: tuple[tuple[Literal["plain", "lazyfs"], str], ...] = (("plain", plain.url), ("lazyfs", lazy.url))
            for store, url in stores:
                for mode in PUBLISH_MODES:
                    rate = await publish_rate(url, mode, counts[mode], replicas=replicas)
                    row = PublishRate(
                        experiment=ctx.experiment,
                        run_id=ctx.run_id,
                        repetition=ctx.repetition,
                        backend=backend,
                        store=store,
                        mode=mode,
                        round=rnd,
                        messages=counts[mode],
                        rate=round(rate, 1),
                        replicas=replicas,
                    )
                    ctx.publish_rates.append(row)


@dataclass(frozen=True)
class PowerLossSetting:
    """One deployment of the power-loss experiment: queue, replicas, writeback, and the fault it takes."""

    backend: Backend
    replicas: int  # 1: one node; 3: three nodes, R3
    writeback_s: float | None  # the default policy's kernel-like writeback (None: never)
    fault: str  # a FaultStep text: power-loss (R1), power-loss:leader, power-loss:queue, lagging-majority (R3)

    @property
    def phase(self) -> str:
        wb = _writeback_label(self.writeback_s) if self.backend == "nats" else "-"  # nothing pending elsewhere
        return f"{self.fault},writeback={wb}"

    def step(self, at_s: float, down_s: float, lag_s: float) -> FaultStep:
        """The fault at `at_s`: down `down_s`, or for the lagging majority its follower cut off `lag_s`."""
        kind = FaultStep.parse(self.fault).kind
        return FaultStep.parse(self.fault, at_s=at_s, down_s=lag_s if kind == "lagging-majority" else down_s)


def power_loss_settings(
    backends: Sequence[Backend],
    writebacks: Sequence[float | str | None],
    replicas: Sequence[int],
    cluster_faults: Sequence[str],
    cluster_writebacks: Sequence[float | str | None],
) -> list[PowerLossSetting]:
    """The grid, in run order: R1 for every backend and writeback, then R3 (NATS only) for each cluster fault.

    Writebacks apply to the default policy only (`nats-sync` has nothing
    pending); the memory queue has one node and no replicas.
    """
    out: list[PowerLossSetting] = []
    for r in replicas:
        if r not in (1, 3):
            raise ValueError(f"replicas={r}: expected 1 (one node) or 3 (three nodes, R3)")
        for backend in backends:
            if backend == "memory" and r > 1:
                continue
            faults = ["power-loss"] if r == 1 else list(cluster_faults)
            wbs = writebacks if r == 1 else cluster_writebacks
            settings = [parse_writeback(w) for w in wbs] if backend == "nats" else [None]
            for fault in faults:
                FaultStep.parse(fault)  # a typo fails here, not after the first deployments ran
                out.extend(PowerLossSetting(backend, r, wb, fault) for wb in settings)
    return out


async def power_loss(
    ctx: RunContext,
    *,
    backends: Sequence[Backend],
    writebacks: Sequence[float | str | None],
    rate: float,
    duration_s: float,
    fault_at_s: float,
    down_s: float,
    processing_ms: float,
    workers: int = 1,
    replicas: Sequence[int] = (1,),
    cluster_faults: Sequence[str] = ("power-loss:leader", "lagging-majority"),
    cluster_writebacks: Sequence[float | str | None] = ("never",),
    cluster_rate: float | None = None,
    cluster_duration_s: float = 12.0,
    lag_s: float = 1.0,
    publish_single: int = 300,
    publish_pipelined: int = 2000,
    publish_rounds: int = 1,
) -> Any:
    """Power loss mid-load, in a fresh deployment per setting; accounting by id.

    NATS runs with each node's store on the lazy file system, so SIGKILL +
    `lose` drops what it wrote but never fsynced. Slow workers
    (`processing_ms`) keep a backlog of acknowledged, unprocessed messages at
    the moment of the fault: that backlog is what is at stake. The memory
    queue is the baseline (its power loss is the processor's death).

    R1 (`replicas` 1): the one node loses power. R3 (`replicas` 3, three
    nodes): each of `cluster_faults`, with `cluster_duration_s` of load at
    `cluster_rate` (default `rate`; a leader election takes seconds, and a
    lower rate keeps the drain after it short): `power-loss:leader` (one node),
    `power-loss:queue` (all three at once) and `lagging-majority` (Jepsen's
    scenario; its follower lags `lag_s`). For each NATS policy and replica
    count, the raw publish rate (one at a time and pipelined) is measured on
    the lazy store and on a plain dir, so the figure shows what durability costs.
    """
    counts = {"single": publish_single, "pipelined": publish_pipelined}
    measured_costs: set[tuple[Backend, int]] = set()
    for setting in power_loss_settings(backends, writebacks, replicas, cluster_faults, cluster_writebacks):
        cluster = setting.replicas > 1
        step = setting.step(fault_at_s, down_s, lag_s)
        setup = Setup(
            backend=setting.backend,
            workers=workers,
            processing_ms=processing_ms,
            store="disk" if setting.backend == "memory" else "lazyfs",
            writeback_s=setting.writeback_s,
            nodes=setting.replicas if setting.backend != "memory" else None,
            env={"NATS_REPLICAS": str(setting.replicas)} if setting.backend != "memory" else {},
            partitionable=step.kind == "lagging-majority",
        )
        async with ctx.session(setup) as session:
            key = (setting.backend, setting.replicas)
            if setting.backend != "memory" and publish_rounds > 0 and key not in measured_costs:
                assert session.nats is not None
                measured_costs.add(key)
                await _publish_costs(ctx, setting.backend, session.nats, session.workdir, counts, publish_rounds,
                                     setting.replicas)  # fmt: skip
            rec = await session.measure(
                setting.phase,
                rate=(cluster_rate or rate) if cluster else rate,
                duration_s=cluster_duration_s if cluster else duration_s,
                fault=step,
                drain_timeout_s=45.0 if cluster else 30.0,
            )
            cluster_lab.label(session, rec)
    return ctx.frame()


def publish_frame(ctx: RunContext) -> Any:
    """This run's raw publish rates as a DataFrame."""
    return power_loss_results.publish_frame(ctx.publish_rates)


async def cluster(
    ctx: RunContext,
    *,
    nodes: int,
    rates: Sequence[float],
    duration_s: float,
    faults: Sequence[str],
    fault_rate: float,
    fault_duration_s: float,
    fault_at_s: float,
    down_s: float,
    workers: int = 4,
    payload_bytes: int = 128,
) -> Any:
    """Memory vs JetStream R1 (one node) vs R`nodes` (a cluster) at the same rates, then each fault on a fresh cluster.

    The comparison measures latency percentiles and, at the top rates, how much
    each deployment can take one message per request. Each fault (`kill:leader`,
    `stepdown`, `pause:leader`, `kill:quorum`, `partition:leader`, `rolling`...)
    runs in a fresh cluster and store, so one fault's aftermath never colours
    the next; the first runs on the comparison's cluster, after it (one
    cluster start less). Its record carries the failover timeline.
    """
    if faults and nodes < 3:
        raise ValueError(f"cluster faults need nodes=3 (got nodes={nodes}); set faults=[] for a comparison only")
    deployments: list[tuple[Backend, int | None, dict[str, str]]] = [
        ("memory", None, {}),
        ("nats", 1, {"NATS_REPLICAS": "1"}),
        ("nats", nodes, {"NATS_REPLICAS": str(nodes)}),
    ]
    first_on_comparison = bool(faults) and nodes > 1 and FaultStep.parse(faults[0]).kind != "partition"
    async with contextlib.AsyncExitStack() as kept:
        replicated: Session | None = None  # the comparison's cluster: the first fault runs there, after it
        for backend, n, env in deployments if nodes > 1 else deployments[:2]:
            setup = Setup(backend=backend, workers=workers, nodes=n, env=env)
            keep = first_on_comparison and n == nodes
            async with contextlib.AsyncExitStack() as this:
                session = await (kept if keep else this).enter_async_context(ctx.session(setup))
                replicated = session if keep else replicated
                for rate in rates:
                    variant = "memory" if backend == "memory" else f"R{env['NATS_REPLICAS']}"
                    rec = await session.measure(
                        f"{variant},rate={rate:g}", rate=rate, duration_s=duration_s, payload_bytes=payload_bytes
                    )
                    cluster_lab.label(session, rec)
        for i, fault in enumerate(faults):
            step = FaultStep.parse(fault, at_s=fault_at_s, down_s=down_s)
            async with contextlib.AsyncExitStack() as this:
                if i == 0 and replicated is not None:
                    session = replicated
                else:
                    setup = Setup(
                        backend="nats",
                        workers=workers,
                        nodes=nodes,
                        partitionable=step.kind == "partition",
                        env={"NATS_REPLICAS": str(nodes)},
                    )
                    session = await this.enter_async_context(ctx.session(setup))
                await cluster_lab.failover(
                    session, f"fault={step.label}", step, rate=fault_rate, duration_s=fault_duration_s
                )
    return ctx.frame()


def table(df: Any, experiment: str, digits: int = 2) -> Any:
    """The columns a notebook shows for its experiment (from the registry), rounded for reading."""
    return df[list(registry.experiment(experiment).columns)].round(digits)
