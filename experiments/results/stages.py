"""Latency by stage: where a message's time goes between the gateway and its ack.

Every hop stamps `time.time_ns()` (one clock for every process on the
machine) and the consumer's ledger keeps the stamps. A message's stamps, in
order, are the `MARKS`; consecutive marks bound one stage, so per message the
stages add up to `total` (gateway received -> acked) exactly, and the stage
means add up to the mean total. Medians and p99s of stages do not add up in
general (each stage's median is another message); `stage_sum_check` says how
far apart they are.

Two client-side stages come from the load generator and sit outside the sum:
`client → gateway` (scheduled send -> gateway received: client queueing and
the first hop) and `stored → answer` (the PubAck or memory put travelling
back through processor, ingest and gateway to the client).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from experiments.results.schema import ResultRecord, StageStat
from experiments.results.stats import nearest_rank

MARKS: tuple[str, ...] = (
    "gateway_at",
    "created_at",
    "processor_at",
    "stored_at",
    "delivered_at",
    "processed_at",
    "committed_at",
    "acked_at",
)
STAGES: tuple[str, ...] = (
    "gateway → ingest",
    "ingest → processor",
    "store",
    "queue wait",
    "work",
    "record",
    "ack",
)
TOTAL = "total"  # gateway received -> acked: the sum of STAGES, per message
CLIENT_STAGES: tuple[str, ...] = ("client → gateway", "stored → answer")

# `Stamps`: one message's MARKS in ns (None where a stamp is missing), then,
# when the load generator knows them, its scheduled send and answer times in ns.
Stamps = tuple[int | None, ...]


def _stat(stage: str, values_ns: list[int]) -> StageStat:
    if not values_ns:
        return StageStat(stage=stage, n=0, p50_ms=None, p99_ms=None, mean_ms=None)
    ordered = sorted(values_ns)
    return StageStat(
        stage=stage,
        n=len(ordered),
        p50_ms=round(nearest_rank(ordered, 0.5) / 1e6, 4),
        p99_ms=round(nearest_rank(ordered, 0.99) / 1e6, 4),
        mean_ms=round(sum(ordered) / len(ordered) / 1e6, 4),
    )


def stage_stats(messages: Iterable[Stamps]) -> list[StageStat]:
    """STAGES, TOTAL, then CLIENT_STAGES, over messages with every server stamp (the others are left out)."""
    n_marks = len(MARKS)
    durations: list[list[int]] = [[] for _ in STAGES]
    totals: list[int] = []
    to_gateway: list[int] = []
    answer: list[int] = []
    for m in messages:
        marks = m[:n_marks]
        if any(t is None for t in marks):
            continue
        ts: Sequence[int] = marks  # type: ignore[assignment]  # no None left
        for i in range(len(STAGES)):
            durations[i].append(ts[i + 1] - ts[i])
        totals.append(ts[-1] - ts[0])
        scheduled, answered = (m[n_marks], m[n_marks + 1]) if len(m) > n_marks + 1 else (None, None)
        if scheduled is not None and answered is not None:
            to_gateway.append(ts[0] - scheduled)
            answer.append(answered - ts[3])
    out = [_stat(name, d) for name, d in zip(STAGES, durations, strict=True)]
    out.append(_stat(TOTAL, totals))
    out.append(_stat(CLIENT_STAGES[0], to_gateway))
    out.append(_stat(CLIENT_STAGES[1], answer))
    return out


def stage_sum_check(stats: Sequence[StageStat]) -> dict[str, float | None]:
    """Sums of the server stages' means and medians beside the total's mean and median, in ms."""
    by = {s.stage: s for s in stats}
    parts = [by[name] for name in STAGES if name in by]
    total = by.get(TOTAL)

    def add(values: list[float | None]) -> float | None:
        return None if not values or any(v is None for v in values) else round(sum(v for v in values if v), 4)

    return {
        "sum_of_means_ms": add([p.mean_ms for p in parts]),
        "total_mean_ms": total.mean_ms if total else None,
        "sum_of_medians_ms": add([p.p50_ms for p in parts]),
        "total_median_ms": total.p50_ms if total else None,
    }


def stage_frame(records: Iterable[ResultRecord]) -> pd.DataFrame:
    """One row per record and stage: the phase's keys and that stage's n, p50, p99, mean (ms)."""
    rows = []
    for rec in records:
        r = rec.row
        for s in rec.series.stages:
            rows.append(
                {
                    "backend": r.backend,
                    "payload_bytes": r.payload_bytes,
                    "batch_size": r.batch_size,
                    "offered_rate": r.offered_rate,
                    "repetition": r.repetition,
                    "e2e_p50_ms": r.e2e_p50_ms,
                    **s.model_dump(),
                }
            )
    return pd.DataFrame(rows)


PHASE_KEYS = ["backend", "payload_bytes", "batch_size", "offered_rate"]


def stage_table(records: Iterable[ResultRecord]) -> pd.DataFrame:
    """Per backend x payload x batch x rate: each stage's p50 and p99 (medians over repetitions), in ms.

    Beside them the check that the stages add up: the sum of the stage
    medians against the measured total (gateway -> acked) median, the sum of
    the stage means against the total mean (equal by construction, up to
    rounding), and the row's own end-to-end median (ingest -> work done).
    """
    long = stage_frame(records)
    if long.empty:
        return long
    med = long.groupby([*PHASE_KEYS, "stage"], sort=True)[["p50_ms", "p99_ms", "mean_ms"]].median().reset_index()
    out = []
    for keys, part in med.groupby(PHASE_KEYS, sort=True):
        by = part.set_index("stage")
        row: dict[str, object] = dict(zip(PHASE_KEYS, keys, strict=True))
        for name in (*STAGES, TOTAL, *CLIENT_STAGES):
            if name in by.index:
                row[f"{name} p50"] = by.at[name, "p50_ms"]
                row[f"{name} p99"] = by.at[name, "p99_ms"]
        parts = [n for n in STAGES if n in by.index]
        row["sum of stage p50s"] = round(float(by.loc[parts, "p50_ms"].sum()), 4) if parts else None
        row["total p50 (measured)"] = by.at[TOTAL, "p50_ms"] if TOTAL in by.index else None
        row["sum of stage means"] = round(float(by.loc[parts, "mean_ms"].sum()), 4) if parts else None
        row["total mean (measured)"] = by.at[TOTAL, "mean_ms"] if TOTAL in by.index else None
        e2e = long[(long[PHASE_KEYS] == pd.Series(keys, index=PHASE_KEYS)).all(axis=1)]
        row["row e2e_p50_ms"] = e2e.drop_duplicates("repetition")["e2e_p50_ms"].median()
        out.append(row)
    return pd.DataFrame(out)
