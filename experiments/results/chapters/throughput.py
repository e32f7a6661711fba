"""02_throughput's claims: HTTP, not the queue, limits the chain; what JetStream and Kafka cost in CPU."""

from __future__ import annotations

import pandas as pd

from experiments.results.chapters.common import LOSS_CAUSES, broker_rows, no_loss
from experiments.results.claims import (
    HYPOTHESIS,
    Claim,
    Evidence,
    Finding,
    Source,
    client_bound,
    decide,
    fmt,
    inconclusive,
)
from experiments.results.client_bound import highest_unsaturated

EXPERIMENT = "02_throughput"
KEEPS_UP = 0.95  # achieved / offered at or above this: the point kept up
PEAK_WITHIN = 0.30  # JetStream's peak one-per-request rate within this fraction of memory's
HTTP_BOUND = Source(
    "hypothesis",
    "this lab's hypothesis (DESIGN: “The queue is never the bottleneck of the single-message chain: HTTP is.”)",
)


def _keeps_up(rows: pd.DataFrame) -> pd.Series:
    return rows["achieved_rate"] >= KEEPS_UP * rows["offered_rate"]


def _batching(ev: Evidence) -> Finding:
    rows = ev.rows
    single, batched = rows[rows["batch_size"] == 1], rows[rows["batch_size"] > 1]
    if single.empty or batched.empty:
        return inconclusive("not run: needs batch_size 1 and > 1", "one batch size only")
    short = single[~_keeps_up(single)]
    if short.empty:
        top = single["offered_rate"].max()
        return inconclusive(
            "the load did not bite: one message per request kept up at every rate",
            f"one per request kept up to {fmt(top)} msg/s",
            top_rate=float(top),
        )
    rate = float(short["offered_rate"].min())
    at = batched[batched["offered_rate"] == rate]
    if at.empty:
        return inconclusive("not run: no batched point at that rate", f"no batched phase at {fmt(rate)} msg/s")
    s_rate, b_rate = (
        float(short[short["offered_rate"] == rate]["achieved_rate"].median()),
        float(at["achieved_rate"].median()),
    )
    text = (f"at {fmt(rate)} msg/s offered: one per request carried {fmt(s_rate)} msg/s, "
            f"{fmt(int(at['batch_size'].max()))} per request {fmt(b_rate)} msg/s")  # fmt: skip
    guard = client_bound(at)
    if guard:
        return inconclusive(guard, text, single=s_rate, batched=b_rate)
    return decide(b_rate >= KEEPS_UP * rate, text, single=s_rate, batched=b_rate)


def _queue_not_bottleneck(ev: Evidence) -> Finding:
    single = ev.rows[ev.rows["batch_size"] == 1]
    peaks = single.groupby("backend")["achieved_rate"].max()
    if not {"memory", "nats"} <= set(peaks.index):
        return inconclusive("not run: needs memory and nats", "one backend only")
    mem, nats = float(peaks["memory"]), float(peaks["nats"])
    text = f"peak one-per-request rate: JetStream {fmt(nats)} msg/s, memory {fmt(mem)} msg/s"
    if _keeps_up(single).all():
        return inconclusive("the load did not bite: both kept up at every rate", text, memory=mem, nats=nats)
    return decide(nats >= (1 - PEAK_WITHIN) * mem, text, memory=mem, nats=nats, ratio=nats / mem if mem else 0.0)


def _cpu_cost(ev: Evidence, backend: str, name: str) -> Finding:
    """`backend` against memory in CPU per message, each at its highest point that kept up and was not client-bound."""
    if backend not in set(ev.rows["backend"]):
        return inconclusive("not run", f"no {name} phase in this batch")
    mem, other = highest_unsaturated(ev.records, "memory"), highest_unsaturated(ev.records, backend)
    if mem is None or other is None:
        return inconclusive("no point that kept up and was not client-bound, for every queue",
                            "no unsaturated point to compare")  # fmt: skip
    m, o = mem.row.cpu_us_per_msg or 0.0, other.row.cpu_us_per_msg or 0.0
    text = (f"CPU per message: {name} {fmt(o)} µs at {fmt(other.row.offered_rate)} msg/s, memory {fmt(m)} µs "
            f"at {fmt(mem.row.offered_rate)} msg/s")  # fmt: skip
    return decide(o > m, text, **{f"{backend}_us": o, "memory_us": m})


CLAIMS = (
    Claim(
        "throughput.no-loss",
        EXPERIMENT,
        "Overload is refused or slowed, never lost: no acknowledged message goes missing at any rate.",
        HYPOTHESIS,
        lambda ev: no_loss(broker_rows(ev.rows), "JetStream and Kafka"),
        LOSS_CAUSES,
    ),
    Claim(
        "throughput.batching-pays",
        EXPERIMENT,
        "Where one message per request falls short of the offered rate, many messages per request still keep up: "
        "the cost is per HTTP request, not per message.",
        HTTP_BOUND,
        _batching,
        ("the batched point was client-bound (see the client_bound table)", "the body limit refused the batch (413)"),
    ),
    Claim(
        "throughput.queue-not-bottleneck",
        EXPERIMENT,
        f"One message per request, JetStream's peak rate is within {PEAK_WITHIN:.0%} of the memory queue's: "
        "HTTP, not the queue, limits the chain.",
        HTTP_BOUND,
        _queue_not_bottleneck,
        ("the processor's publish path waits per message (no pipelining)", "JetStream fsyncs every write"),
    ),
    Claim(
        "throughput.nats-costs-cpu",
        EXPERIMENT,
        "JetStream costs more CPU per message than the memory queue (nats-server's work is added).",
        HYPOTHESIS,
        lambda ev: _cpu_cost(ev, "nats", "JetStream"),
        ("the nats-server's CPU was not measured (wrong pid)",),
    ),
    Claim(
        "throughput.kafka-costs-cpu",
        EXPERIMENT,
        "Kafka costs more CPU per message than the memory queue (the broker JVM's work is added).",
        HYPOTHESIS,
        lambda ev: _cpu_cost(ev, "kafka", "Kafka"),
        ("the broker JVM's CPU was not measured (wrong pid)",),
    ),
)
