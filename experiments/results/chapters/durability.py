"""03_durability's claims: JetStream and Kafka keep what they acknowledged across faults of their broker; memory loses
its backlog."""

from __future__ import annotations

from collections.abc import Sequence

from experiments.results.chapters.common import (
    KAFKA_PAGECACHE,
    LOSS_CAUSES,
    MEMORY_NOT_PERSISTENT,
    PUBACK_PERSISTED,
    fault_is,
    kafka_rows,
    keeps,
    nats_rows,
)
from experiments.results.claims import Claim, Evidence, Finding, decide, fmt, inconclusive
from experiments.results.schema import ResultRecord

EXPERIMENT = "03_durability"
KILL = "kill"  # the fault kind whose label the memory claim reads


def _kafka_keeps(ev: Evidence) -> Finding:
    """Both Kafka backends' fault rows (the default flush policy and an fsync per message) keep what they acked."""
    return keeps(kafka_rows(ev.rows), "Kafka")


def backlog_at_fault(record: ResultRecord) -> int:
    """The largest queue depth sampled before the fault started: what a fault can take with it."""
    series = record.series
    start = series.faults[0].start_s if series.faults else float("inf")
    before = [b for t, b in zip(series.timeline.backlog_t_s, series.timeline.backlog, strict=False) if t <= start]
    return max(before, default=0)


def _memory_kill(ev: Evidence) -> Finding:
    killed = ev.rows[(ev.rows["backend"] == "memory") & fault_is(ev.rows["fault"], KILL)]
    if killed.empty:
        return inconclusive("not run: no kill on the memory queue", "no memory kill phase")
    recs: Sequence[ResultRecord] = [
        r for r in ev.records if r.row.backend == "memory" and r.row.fault.partition(":")[0] == KILL
    ]
    backlog = min((backlog_at_fault(r) for r in recs), default=0)
    lost = [int(v) for v in killed["lost"]]
    text = f"memory killed: lost {' '.join(map(str, lost))} per phase, backlog before the kill >= {fmt(backlog)}"
    if all(v == 0 for v in lost) and backlog == 0:
        return inconclusive("the fault did not bite: no backlog sampled before the kill", text, backlog=backlog)
    return decide(all(v > 0 for v in lost), text, lost=sum(lost), backlog=backlog)


CLAIMS = (
    Claim(
        "durability.nats-keeps-acknowledged",
        EXPERIMENT,
        "JetStream loses no acknowledged message when its server is restarted, killed or paused.",
        PUBACK_PERSISTED,
        lambda ev: keeps(nats_rows(ev.rows), "JetStream"),
        LOSS_CAUSES,
    ),
    Claim(
        "durability.kafka-keeps-acknowledged",
        EXPERIMENT,
        "Kafka (acks=all, one broker) loses no acknowledged message when its broker is restarted, killed or paused, "
        "with or without an fsync per message: what it acknowledged is in the kernel's page cache, which a process "
        "fault does not touch (a power loss does: 06).",
        KAFKA_PAGECACHE,
        _kafka_keeps,
        (*LOSS_CAUSES, "the producer answered before the broker's ack (acks not 'all', or no idempotence)"),
    ),
    Claim(
        "durability.memory-kill-loses-backlog",
        EXPERIMENT,
        "A SIGKILLed processor takes the memory queue's backlog with it: acknowledged messages are lost.",
        MEMORY_NOT_PERSISTENT,
        _memory_kill,
        (
            "no backlog at the kill: the workers kept up (raise processing_ms or the rate)",
            "the memory queue was persisted somewhere (a wrong QUEUE_TYPE)",
        ),
    ),
)
