"""The one phase pipeline: load, fault, drain, accounting -> one `ResultRecord`.

`run_phase(session, spec, fault)` is what `Session.measure` and the cluster
experiment's failover phases call: open-loop load through the gateway with
client-given ids, the fault through the one fault runner, a drain until
every acknowledged id is processed (or nothing moves), and the accounting
by id from the processors' ledgers (`lab.record.build_record`). `options`
says what a phase keeps beside the counts: the backlog and the stages/CPU
breakdown (a measured phase), or the failover series (what the clients saw
around a cluster fault, the leader change, the time to recover).

It depends on a `PhaseSession` (what a running deployment offers), not on
`Session` itself, so the session can call it without an import cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from experiments.lab.breakdown import PhaseBreakdown
from experiments.lab.record import LedgerEntry, PhaseObservation, PhaseSpec, RecordSink, build_record
from experiments.lab.setup import Setup
from experiments.results.schema import FailoverSeries, ResultRecord
from experiments.runtime.broker import BrokerServer
from experiments.runtime.nats.provider import NatsServer
from experiments.runtime.stack import Stack
from experiments.workload.accounting import altered_ids
from experiments.workload.failover import BIN_S as FAILOVER_BIN_S
from experiments.workload.failover import failover_timeline, recovery_s
from experiments.workload.faults import Deployment, FaultRunner, FaultStep
from experiments.workload.load import id_bodies, request_ids
from experiments.workload.under_fault import load_under_fault

STATS_EVERY_S = 0.25  # backlog sampling period


class Ledgers(Protocol):
    rows: list[LedgerEntry]
    paths: list[Path]

    def poll(self) -> None: ...
    def track(self, paths: list[Path]) -> None: ...


class PhaseSession(Protocol):
    """What a running deployment offers a phase (`lab.session.Session` is one)."""

    @property
    def ctx(self) -> RecordSink: ...
    @property
    def setup(self) -> Setup: ...
    @property
    def stack(self) -> Stack: ...
    @property
    def nats(self) -> NatsServer | None: ...
    @property
    def broker(self) -> BrokerServer | None: ...
    @property
    def ledgers(self) -> Ledgers: ...
    @property
    def broker_provider(self) -> str: ...
    @property
    def gateway_url(self) -> str: ...
    def deployment(self) -> Deployment: ...
    async def backlog(self) -> int | None: ...


@dataclass(frozen=True)
class PhaseOptions:
    """How a phase runs beside its spec: load shape, drain, and what it records besides the counts."""

    max_in_flight: int = 256
    drain_timeout_s: float = 30.0
    idle_s: float | None = None  # drain gives up after this long without progress; None: the setup's ack wait + 1.5
    settle_s: float = 0.5  # a late redelivery is counted as a duplicate, not missed
    sample_backlog: bool = True
    breakdown: bool = True  # stages and CPU (schema v2)
    failover: bool = False  # the failover series, leader change and recovery; the fault window ends at the heal


FAILOVER = PhaseOptions(max_in_flight=512, idle_s=4.0, sample_backlog=False, breakdown=False, failover=True)


async def drain(session: PhaseSession, prefix: str, acked: set[str], timeout_s: float, idle_s: float) -> None:
    """Until every acked id is processed and the backlog is empty, or nothing moved for `idle_s`."""
    deadline = time.monotonic() + timeout_s
    last_count, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        session.ledgers.poll()
        done = {r[0] for r in session.ledgers.rows if r[3] == "processed" and r[0].startswith(prefix)}
        if acked <= done and (await session.backlog() or 0) == 0:
            return
        if len(session.ledgers.rows) != last_count:
            last_count, last_change = len(session.ledgers.rows), time.monotonic()
        elif time.monotonic() - last_change > idle_s:
            return  # what is missing will not come (a memory queue lost it)
        await asyncio.sleep(0.2)


async def _sample_backlog(
    session: PhaseSession, t0: float, out_t: list[float], out_v: list[int], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        value = await session.backlog()
        if value is not None:
            out_t.append(round(time.perf_counter() - t0, 3))
            out_v.append(value)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), STATS_EVERY_S)


WARMUP_S = 2.0  # unmeasured load before a deployment's first measured phase (01, 05): past a JVM's JIT, warm caches


async def warm_up(session: PhaseSession, rate: float, duration_s: float, payload_bytes: int = 128) -> int:
    """Load that is not measured: `rate` msg/s for `duration_s`, drained, no record; the count acknowledged.

    A deployment's first phase otherwise measures its start: a JVM broker's
    JIT compiling the hot paths (Kafka's first phase in a session had a p99 of
    hundreds of ms against tens in the next), connection pools, page cache.
    """
    prefix = "warmup-" + uuid.uuid4().hex[:8]
    done = await load_under_fault(
        f"{session.gateway_url}/api/v1/ingest",
        id_bodies(prefix, batch_size=1, payload_bytes=payload_bytes),
        rate=rate,
        duration=duration_s,
        fault=None,
        at_s=0.0,
        after_requests=None,
        max_in_flight=256,
        t0=(time.perf_counter(), time.time_ns()),
    )
    acked = {i for r in done.result.ok for i in request_ids(prefix, r.seq)}
    await drain(session, prefix, acked, timeout_s=30.0, idle_s=session.setup.ack_wait_s + 1.5)
    return len(acked)


async def run_phase(
    session: PhaseSession, spec: PhaseSpec, fault: FaultStep | None = None, options: PhaseOptions = PhaseOptions()
) -> ResultRecord:
    """One phase of `spec` with `fault` (default: the spec's) on `session`'s deployment; the record, also added."""
    if fault is not None:
        spec = dataclasses.replace(spec, fault=fault)
    started = time.perf_counter()
    runner = FaultRunner(spec.fault, session.deployment()) if spec.fault.kind != "none" else None
    prefix = uuid.uuid4().hex[:10]
    t0, t0_ns = time.perf_counter(), time.time_ns()
    backlog_t: list[float] = []
    backlog_v: list[int] = []
    stop_sampling = asyncio.Event()
    sampler = (
        asyncio.create_task(_sample_backlog(session, t0, backlog_t, backlog_v, stop_sampling))
        if options.sample_backlog
        else None
    )
    breakdown = PhaseBreakdown.begin(session.stack, session.broker) if options.breakdown else None
    try:
        done = await load_under_fault(
            f"{session.gateway_url}/api/v1/ingest",
            id_bodies(prefix, batch_size=spec.batch_size, payload_bytes=spec.payload_bytes),
            rate=spec.rate / spec.batch_size,
            duration=spec.duration_s,
            fault=runner,
            at_s=spec.fault.at_s,
            after_requests=spec.fault.after_requests,
            max_in_flight=options.max_in_flight,
            t0=(t0, t0_ns),
            on_load_done=breakdown.load_done if breakdown is not None else None,
        )
        session.ledgers.track(session.stack.ledger_paths)  # a queue switch adds processors, each with its own ledger
        report = done.report
        window = None
        if report is not None:
            window = (report.started - t0, (report.ended if options.failover else report.returned) - t0)
        obs = PhaseObservation(
            prefix, done.result, [], t0, t0_ns, 0.0, window, backlog_t, backlog_v, session.broker_provider
        )
        acked = obs.accounting(spec.batch_size).acked
        idle_s = options.idle_s if options.idle_s is not None else session.setup.ack_wait_s + 1.5
        await drain(session, prefix, acked, options.drain_timeout_s, idle_s)
        await asyncio.sleep(options.settle_s)
        session.ledgers.poll()
    finally:
        stop_sampling.set()
        if sampler is not None:
            await sampler
    obs.ledger = [r for r in session.ledgers.rows if r[0].startswith(prefix + "-")]
    obs.altered = altered_ids(session.ledgers.paths, prefix + "-")
    obs.wall_s = time.perf_counter() - started
    record = build_record(session.ctx.labels, session.setup, spec, obs)
    if breakdown is not None:
        ids_of = lambda seq: request_ids(prefix, seq, spec.batch_size)  # noqa: E731
        breakdown.annotate(record, done.result, prefix, ids_of, t0, t0_ns)
    if options.failover and report is not None:
        _add_failover(record, done.result.records, report, t0)
    session.ctx.add(record)
    return record


def _add_failover(record: ResultRecord, records: Any, report: Any, t0: float) -> None:
    """What only a failover has: the per-bin timeline the clients saw, the new leader's moment, the recovery."""
    tl = failover_timeline(records, t0, FAILOVER_BIN_S)
    record.series.failover = FailoverSeries(
        bin_s=FAILOVER_BIN_S, t_s=tl.t_s, ok=tl.ok, failed=tl.failed, p50_ms=tl.p50_ms, max_ms=tl.max_ms
    )
    if report.leader_seen_at is not None:
        record.series.faults[0].leader_change_s = round(report.leader_seen_at - t0, 3)
    recover = recovery_s(records, report.started)
    record.row.recover_s = None if recover != recover else round(recover, 3)
