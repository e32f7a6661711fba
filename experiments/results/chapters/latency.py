"""01_latency's claims: what JetStream's PubAck costs in the median and the tail, and that it is repeatable.

Kafka's counterpart: with `acks=all` the 202 comes only after the broker
stored the record, so the client waits at least the store stage.
"""

from __future__ import annotations

import pandas as pd

from experiments.results.chapters.common import ACKS_ALL, LOSS_CAUSES, no_loss
from experiments.results.claims import (
    HYPOTHESIS,
    Claim,
    Evidence,
    Finding,
    client_bound,
    decide,
    first_guard,
    fmt,
    inconclusive,
    too_few_samples,
)
from experiments.results.stats import spread

EXPERIMENT = "01_latency"
P50_OVERHEAD_MS = 1.0  # JetStream's end-to-end p50 over memory's, at the lowest rate
P99_RATIO = 3.0  # JetStream's client p99 / memory's, at the lowest rate
REPEAT_FACTOR = 3.0  # two repetitions of one phase agree within this factor (catches a broken measurement)


def _kafka_waits_for_store(ev: Evidence) -> Finding:
    """Per Kafka phase: the client's p50 (scheduled send -> 202) against the store stage's p50 (processor -> stored)."""
    lines, worst, n = [], float("inf"), 0
    for rec in ev.records:
        r = rec.row
        store = next((s for s in rec.series.stages if s.stage == "store"), None)
        if not r.backend.startswith("kafka") or store is None or store.p50_ms is None or r.client_p50_ms is None:
            continue
        n += 1
        worst = min(worst, r.client_p50_ms - store.p50_ms)
        lines.append(f"{r.backend} {fmt(r.offered_rate)} msg/s, {fmt(r.payload_bytes)} B: client p50 "
                     f"{fmt(r.client_p50_ms)} ms, store p50 {fmt(store.p50_ms)} ms")  # fmt: skip
    if not n:
        return inconclusive("not run: no Kafka phase with stage stamps", "no Kafka rows")
    return decide(worst >= 0, "; ".join(lines[:6]), phases=n, worst_margin_ms=worst)


def lowest_point(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows at the lowest offered rate and the smallest payload: where the queue, not the load, is measured."""
    small = rows[rows["payload_bytes"] == rows["payload_bytes"].min()]
    out: pd.DataFrame = small[small["offered_rate"] == small["offered_rate"].min()]
    return out


def _pair(rows: pd.DataFrame, column: str) -> tuple[float, float, pd.DataFrame] | None:
    point = lowest_point(rows)
    mem, nats = point[point["backend"] == "memory"], point[point["backend"] == "nats"]
    if mem.empty or nats.empty:
        return None
    return float(mem[column].median()), float(nats[column].median()), point


def _where(point: pd.DataFrame) -> str:
    return f"{fmt(point['offered_rate'].iloc[0])} msg/s, {fmt(point['payload_bytes'].iloc[0])} B"


def _p50_overhead(ev: Evidence) -> Finding:
    pair = _pair(ev.rows, "e2e_p50_ms")
    if pair is None:
        return inconclusive("not run: needs memory and nats", "one backend only")
    mem, nats, point = pair
    diff = nats - mem
    text = f"at {_where(point)}: e2e p50 JetStream {fmt(nats)} ms, memory {fmt(mem)} ms: +{fmt(diff)} ms"
    guard = first_guard(client_bound(point), too_few_samples(int(point["processed"].min()), 0.5))
    if guard:
        return inconclusive(guard, text, overhead_ms=diff)
    return decide(diff < P50_OVERHEAD_MS, text, overhead_ms=diff, nats_ms=nats, memory_ms=mem)


def _p99_tail(ev: Evidence) -> Finding:
    pair = _pair(ev.rows, "client_p99_ms")
    if pair is None:
        return inconclusive("not run: needs memory and nats", "one backend only")
    mem, nats, point = pair
    ratio = nats / mem if mem else float("nan")
    text = f"at {_where(point)}: client p99 JetStream {fmt(nats)} ms, memory {fmt(mem)} ms: x{fmt(ratio)}"
    guard = first_guard(client_bound(point), too_few_samples(int(point["acknowledged"].min()), 0.99))
    if guard:
        return inconclusive(guard, text, ratio=ratio)
    return decide(ratio <= P99_RATIO, text, ratio=ratio, nats_ms=nats, memory_ms=mem)


def _repeatable(ev: Evidence) -> Finding:
    worst, where, n = 0.0, "", 0
    for (backend, payload, rate), part in ev.rows.groupby(["backend", "payload_bytes", "offered_rate"]):
        s = spread(part["e2e_p50_ms"].dropna().tolist())
        n = max(n, int(s["n"]))
        if s["n"] >= 2 and s["min"] > 0 and s["max"] / s["min"] > worst:
            worst, where = s["max"] / s["min"], f"{backend} {fmt(payload)} B at {fmt(rate)} msg/s"
    if n < 2:
        return inconclusive("one repetition: nothing to compare", "repetitions = 1", repetitions=n)
    text = f"largest max/min of e2e p50 over repetitions: x{fmt(worst)} ({where})"
    return decide(worst <= REPEAT_FACTOR, text, worst_ratio=worst)


CLAIMS = (
    Claim(
        "latency.no-loss",
        EXPERIMENT,
        "Without faults no queue loses an acknowledged message.",
        HYPOTHESIS,
        lambda ev: no_loss(ev.rows, ", ".join(sorted(ev.rows["backend"].unique()))),
        LOSS_CAUSES,
    ),
    Claim(
        "latency.nats-p50-overhead",
        EXPERIMENT,
        f"At the lowest offered rate, JetStream's end-to-end p50 is less than {P50_OVERHEAD_MS:g} ms above the "
        "memory queue's: a file-backed PubAck costs well under a millisecond.",
        HYPOTHESIS,
        _p50_overhead,
        (
            "the machine was busy (other jobs on 2 cores)",
            "the fetch batch waited for its timeout at a low rate",
            "JetStream fsyncs every write (sync_always set by mistake)",
        ),
    ),
    Claim(
        "latency.nats-p99-tail",
        EXPERIMENT,
        f"At the lowest offered rate, JetStream's client p99 is at most {P99_RATIO:g}x the memory queue's: the "
        "PubAck adds to the median, not to the tail.",
        HYPOTHESIS,
        _p99_tail,
        (
            "a garbage collection or a busy neighbour landed in one phase (compare the repetitions)",
            "a phase too short to have a tail (raise duration_s)",
        ),
    ),
    Claim(
        "latency.kafka-acks-all-waits-for-store",
        EXPERIMENT,
        "With acks=all the gateway answers only after Kafka stored the record: Kafka's client p50 is at least its "
        "store stage's p50 in every phase.",
        ACKS_ALL,
        _kafka_waits_for_store,
        ("the processor answered 2xx before the producer's delivery report", "the stage stamps are missing"),
    ),
    Claim(
        "latency.repeatable",
        EXPERIMENT,
        f"Repetitions of the same phase agree on the end-to-end p50 within a factor of {REPEAT_FACTOR:g}.",
        HYPOTHESIS,
        _repeatable,
        ("a repetition ran while the machine was busy", "a phase too short for a stable median"),
    ),
)
