"""Turning what one measured phase observed into a `ResultRecord`: counts by id, percentiles, series.

`Session.measure` collects a `PhaseObservation` and hands it here with the
`PhaseSpec` it ran and the `RunLabels` of its notebook run; nothing here
talks to a process, so the arithmetic is testable on its own.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from experiments.lab.setup import Setup
from experiments.results.schema import FaultWindow, ResultRecord, ResultRow, Series, Timeline
from experiments.results.stats import percentiles, quantile_curve
from experiments.workload.accounting import Accounting, loss_split, recovered
from experiments.workload.faults import FaultStep
from experiments.workload.load import LoadResult, request_ids

BIN_S = 0.25  # timeline resolution

LedgerEntry = tuple[str, int, int, str]  # id, created_at ns, processed_at ns, outcome


@dataclass(frozen=True)
class RunLabels:
    """Which notebook run a record belongs to."""

    experiment: str
    run_id: str
    repetition: int
    params: dict[str, Any]


class RecordSink(Protocol):
    """Where a session's records go (a notebook run: `RunContext`), what they are labelled with, and what the
    servers said of themselves."""

    servers: dict[str, str]

    @property
    def labels(self) -> RunLabels: ...
    def add(self, record: ResultRecord) -> None: ...


@dataclass(frozen=True)
class PhaseSpec:
    """What a phase was asked to do."""

    name: str
    rate: float  # messages/s offered
    duration_s: float
    payload_bytes: int = 128
    batch_size: int = 1
    fault: FaultStep = field(default_factory=FaultStep)
    bin_s: float = BIN_S  # the timeline's resolution


@dataclass
class PhaseObservation:
    """What a phase saw: the load generator's records, the ledgers' rows for its ids, the backlog, the fault."""

    prefix: str
    load: LoadResult
    ledger: list[LedgerEntry]  # every row of this phase's ids, in ledger order
    t0: float  # perf_counter when the load started
    t0_ns: int  # time.time_ns() at the same moment
    wall_s: float
    window: tuple[float, float] | None = None  # the fault's (start, end) in s after t0
    backlog_t_s: list[float] = field(default_factory=list)
    backlog: list[int] = field(default_factory=list)
    broker_provider: str = "none"
    altered: set[str] = field(default_factory=set)  # ids processed with another payload digest than sent

    def accounting(self, batch_size: int) -> Accounting:
        sent = {i for r in self.load.records for i in request_ids(self.prefix, r.seq, batch_size)}
        acked = {i for r in self.load.ok for i in request_ids(self.prefix, r.seq, batch_size)}
        processed = Counter(rid for rid, _, _, outcome in self.ledger if outcome == "processed")
        return Accounting(sent, acked, processed)


def bins(times_s: list[float], until_s: float, bin_s: float = BIN_S) -> tuple[list[float], list[float]]:
    """Events per second in `bin_s`-wide bins from 0 to `until_s`: (bin starts, rates)."""
    n = max(1, int(until_s / bin_s) + 1)
    counts = [0] * n
    for t in times_s:
        if 0 <= t < n * bin_s:
            counts[int(t / bin_s)] += 1
    return [round(i * bin_s, 3) for i in range(n)], [c / bin_s for c in counts]


def _ms(v: float) -> float | None:
    return None if v != v else round(v, 4)  # nan -> None: no sample


def build_record(run: RunLabels, setup: Setup, spec: PhaseSpec, obs: PhaseObservation) -> ResultRecord:
    """One tidy row (counts by id, latency percentiles, rates) plus the series for CDFs and timelines."""
    batch = spec.batch_size
    load = obs.load
    acc = obs.accounting(batch)
    first_done: dict[str, tuple[int, int]] = {}
    for rid, created, done_at, outcome in obs.ledger:
        if outcome == "processed" and rid not in first_done:
            first_done[rid] = (created, done_at)
    e2e_ms = [(done - created) / 1e6 for created, done in first_done.values()]
    done_times = [(done - obs.t0_ns) / 1e9 for _, done in first_done.values()]
    client_ms = [r.latency * 1000 for r in load.ok]
    end_s = max([spec.duration_s, *done_times, *(obs.window[1:] if obs.window else ())])
    t_axis, processed_per_s = bins(done_times, end_s, spec.bin_s)
    _, acked_per_s = bins([r.scheduled - obs.t0 for r in load.ok for _ in range(batch)], end_s, spec.bin_s)
    failed = [r.scheduled - obs.t0 for r in load.records if not 200 <= r.status < 300 for _ in range(batch)]
    _, errors_per_s = bins(failed, end_s, spec.bin_s)
    statuses = Counter(str(r.status) for r in load.records for _ in range(batch))
    in_window = sum(1 for t in done_times if t <= load.duration)
    ok_in_order = [i for r in sorted(load.ok, key=lambda r: r.seq) for i in request_ids(obs.prefix, r.seq, batch)]
    split = loss_split(ok_in_order, acc.processed)
    kept = 0
    if obs.window is not None:
        start_s, end_s_fault = obs.window
        before = [i for r in load.ok if r.scheduled - obs.t0 < start_s for i in request_ids(obs.prefix, r.seq, batch)]
        kept = recovered(before, {i: d for i, (_, d) in first_done.items()}, obs.t0_ns + int(end_s_fault * 1e9))
    latency: dict[str, Any] = {f"client_{k}_ms": _ms(v) for k, v in percentiles(client_ms).items()}
    latency.update({f"e2e_{k}_ms": _ms(v) for k, v in percentiles(e2e_ms).items()})
    row = ResultRow(
        experiment=run.experiment,
        run_id=run.run_id,
        repetition=run.repetition,
        backend=setup.backend,
        broker_provider=obs.broker_provider,
        partitions=setup.kafka_partitions,
        phase=spec.name,
        offered_rate=spec.rate,
        duration_s=spec.duration_s,
        payload_bytes=spec.payload_bytes,
        batch_size=batch,
        workers=setup.workers,
        processors=setup.processors,
        processing_ms=setup.processing_ms,
        fault=spec.fault.label,
        achieved_rate=len(acc.acked) / load.duration,
        processed_rate=in_window / load.duration,
        **latency,
        sent=len(acc.sent),
        acknowledged=len(acc.acked),
        processed=len(acc.processed),
        lost=len(acc.lost),
        lost_prefix=split.prefix,
        lost_middle=split.middle,
        lost_postfix=split.postfix,
        recovered=kept,
        duplicated=len(acc.duplicated),
        altered=len(obs.altered),
        extra_deliveries=acc.extra_deliveries,
        unacked_processed=len(acc.unacked_processed),
        rejected=sum(batch for r in load.records if 400 <= r.status < 500),
        errors=sum(batch for r in load.records if r.status == 0 or r.status >= 500),
        dead_lettered=len({rid for rid, _, _, outcome in obs.ledger if outcome == "dead_lettered"}),
        wall_time_s=round(obs.wall_s, 3),
        params=json.dumps(run.params, sort_keys=True, default=str),
    )
    window = obs.window
    series = Series(
        client_quantiles_ms=[round(v, 4) for v in quantile_curve(client_ms)],
        e2e_quantiles_ms=[round(v, 4) for v in quantile_curve(e2e_ms)],
        timeline=Timeline(
            t_s=t_axis,
            processed_per_s=processed_per_s,
            acked_per_s=acked_per_s,
            errors_per_s=errors_per_s,
            backlog_t_s=obs.backlog_t_s,
            backlog=obs.backlog,
        ),
        status_counts=dict(sorted(statuses.items())),
        faults=[FaultWindow(kind=spec.fault.label, start_s=round(window[0], 3), end_s=round(window[1], 3))]
        if window
        else [],
    )
    return ResultRecord(row=row, series=series)
