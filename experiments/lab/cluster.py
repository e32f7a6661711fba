"""The cluster experiment's phases: R1 vs R3 vs memory at the same rates, and one cluster fault seen by the clients.

`compare` measures each deployment with `Session.measure` and labels the rows
with nodes and replicas. `failover` runs one cluster fault
(`experiments.workload.failover.ClusterFault`) beside open-loop load and adds
to the usual record what only a failover has: the per-`BIN_S` timeline of
publishes ok / refused and client latency, the moment a new leader was seen,
and the time to recover.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from experiments.lab.record import PhaseObservation, PhaseSpec, build_record
from experiments.lab.session import Session
from experiments.results.schema import FailoverSeries, ResultRecord
from experiments.runtime.nats.cluster import NatsCluster
from experiments.workload.failover import BIN_S, ClusterFault, failover_timeline, recovery_s
from experiments.workload.faults import FaultStep
from experiments.workload.load import id_bodies, open_loop


def label(session: Session, record: ResultRecord) -> ResultRecord:
    """Nodes and replicas of the session's deployment on its row (0 and 0 for the memory queue)."""
    nats = session.nats
    if nats is None:
        record.row.nats_nodes, record.row.replicas = 0, 0
    else:
        record.row.nats_nodes = int(getattr(nats, "size", 1))
        record.row.replicas = int(session.stack.backend_settings.nats_replicas)
    return record


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
    cluster = session.nats
    if not isinstance(cluster, NatsCluster):
        raise ValueError(f"fault {step.label} needs a cluster the harness started (this session has {cluster!r})")
    fx = ClusterFault(cluster, step)
    started = time.perf_counter()
    prefix = uuid.uuid4().hex[:10]
    t0, t0_ns = time.perf_counter(), time.time_ns()

    async def inject() -> None:
        await asyncio.sleep(step.at_s or 0.0)
        await asyncio.to_thread(fx)

    injector = asyncio.create_task(inject())
    try:
        result = await open_loop(
            f"{session.gateway_url}/api/v1/ingest",
            id_bodies(prefix, batch_size=1, payload_bytes=payload_bytes),
            rate=rate,
            duration=duration_s,
            timeout=10.0,
            keep_ids=False,
        )
        await injector
    finally:
        injector.cancel()
    window = (fx.started - t0, fx.ended - t0)
    spec = PhaseSpec(phase, rate, duration_s, payload_bytes, 1, step)
    obs = PhaseObservation(prefix, result, [], t0, t0_ns, 0.0, window, [], [], session.nats_provider)
    acked = obs.accounting(1).acked
    await session._drain(prefix, acked, drain_timeout_s, idle_s=4.0)
    await asyncio.sleep(0.5)  # a late redelivery is counted as a duplicate, not missed
    session.ledgers.poll()
    obs.ledger = [r for r in session.ledgers.rows if r[0].startswith(prefix + "-")]
    obs.wall_s = time.perf_counter() - started
    record = build_record(session.ctx.labels, session.setup, spec, obs)
    session.ctx.add(record)
    tl = failover_timeline(result.records, t0, BIN_S)
    record.series.failover = FailoverSeries(
        bin_s=BIN_S, t_s=tl.t_s, ok=tl.ok, failed=tl.failed, p50_ms=tl.p50_ms, max_ms=tl.max_ms
    )
    if fx.leader_seen_at is not None:
        record.series.faults[0].leader_change_s = round(fx.leader_seen_at - t0, 3)
    recover = recovery_s(result.records, fx.started)
    record.row.recover_s = None if recover != recover else round(recover, 3)
    return label(session, record)
