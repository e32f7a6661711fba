"""07_migration's claims: a planned switch under load loses nothing and refuses nothing; a naive one costs."""

from __future__ import annotations

import pandas as pd

from experiments.results.chapters.common import ZERO_DOWNTIME, fault_is
from experiments.results.claims import HYPOTHESIS, Claim, Evidence, Finding, Source, decide, fmt, inconclusive

EXPERIMENT = "07_migration"
KAFKA_CONSUMER_DOCS = "https://kafka.apache.org/40/javadoc/org/apache/kafka/clients/consumer/KafkaConsumer.html"
COMMITTED_POSITION = Source(
    "kafka-docs",
    "The committed position is the last offset that has been stored securely. Should the process fail and "
    "restart, this is the offset that the consumer will recover to.",
    KAFKA_CONSUMER_DOCS,
)


def _touches(phases: pd.Series, queue: str) -> pd.Series:
    """Which phases ('planned memory->kafka') switch from or to `queue`."""
    directions = phases.str.split(" ").str[-1].str.split("->")
    return directions.apply(lambda ends: queue in ends)


def _leaves(phases: pd.Series, queue: str) -> pd.Series:
    return phases.str.split(" ").str[-1].str.startswith(f"{queue}->")


def _planned(ev: Evidence, queue: str = "") -> Finding:
    planned = ev.rows[fault_is(ev.rows["fault"], "switch")]
    if queue:
        planned = planned[_touches(planned["phase"], queue)]
    if planned.empty:
        return inconclusive(f"not run: no planned switch{f' with {queue}' if queue else ''}", "modes or directions")
    sent, acked = int(planned["sent"].sum()), int(planned["acknowledged"].sum())
    lost, errors = int(planned["lost"].sum()), int(planned["errors"].sum())
    text = f"planned: {fmt(acked)} of {fmt(sent)} acknowledged, lost {fmt(lost)}, errors {fmt(errors)}"
    if acked == 0:
        return inconclusive("nothing at stake: acknowledged = 0", text)
    return decide(lost == 0 and errors == 0 and acked == sent, text, lost=lost, errors=errors, sent=sent)


def _naive(ev: Evidence, source: str = "") -> Finding:
    naive = ev.rows[fault_is(ev.rows["fault"], "naive-switch")]
    if source:
        naive = naive[_leaves(naive["phase"], source)]
    if naive.empty:
        return inconclusive(f"not run: no naive switch{f' from {source}' if source else ''}", "modes or directions")
    cost = naive["lost"] + naive["errors"]
    text = ", ".join(f"{r.phase}: lost {fmt(r.lost)}, errors {fmt(r.errors)}" for r in naive.itertuples())
    return decide(bool((cost > 0).all()), text, lost=int(naive["lost"].sum()), errors=int(naive["errors"].sum()))


def _accounted(ev: Evidence) -> Finding:
    if not ev.records:
        return inconclusive("no records", "no series")
    off = [(r.row.phase, sum(r.series.status_counts.values()), r.row.sent) for r in ev.records
           if sum(r.series.status_counts.values()) != r.row.sent]  # fmt: skip
    text = f"{len(ev.records) - len(off)} of {len(ev.records)} phases: HTTP statuses add up to the messages sent"
    return decide(not off, text + ("" if not off else f"; off: {off}"), phases=len(ev.records))


CLAIMS = (
    Claim(
        "migration.planned-keeps",
        EXPERIMENT,
        "A planned switch (new processor beside the old, reroute, drain, stop) under load loses nothing and "
        "refuses nothing.",
        ZERO_DOWNTIME,
        _planned,
        ("ingest rerouted before the new processor was ready", "the old processor stopped before its drain ended"),
    ),
    Claim(
        "migration.naive-costs",
        EXPERIMENT,
        "A naive switch (stop, start on the other queue) loses or refuses messages under load.",
        HYPOTHESIS,
        _naive,
        ("no backlog at the switch and no request in flight (raise the rate or processing_ms)",),
    ),
    Claim(
        "migration.planned-keeps-kafka",
        EXPERIMENT,
        "A planned switch into or out of Kafka loses nothing and refuses nothing: the old processor's consumer "
        "group drains the topic to its end before it stops, the new queue takes every new message.",
        ZERO_DOWNTIME,
        lambda ev: _planned(ev, "kafka"),
        ("the old Kafka processor stopped before its group's committed offset reached the topic's end",),
    ),
    Claim(
        "migration.naive-from-kafka-costs",
        EXPERIMENT,
        "A naive switch away from Kafka leaves what the topic held past the group's committed offset to no "
        "processor of the new queue (lost to the stack, though still stored in Kafka), or refuses messages.",
        COMMITTED_POSITION,
        lambda ev: _naive(ev, "kafka"),
        ("the workers kept up: the group's lag was 0 at the switch (raise the rate or processing_ms)",),
    ),
    Claim(
        "migration.every-request-answered",
        EXPERIMENT,
        "Every message sent during a switch is accounted for by an HTTP status (or no answer), none forgotten.",
        HYPOTHESIS,
        _accounted,
        ("the load generator dropped requests it could not schedule",),
    ),
)
