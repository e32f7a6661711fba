"""Checks several chapters share: nothing acknowledged lost, and the sources they quote."""

from __future__ import annotations

import pandas as pd

from experiments.results.claims import (
    JEPSEN_NATS,
    NATS_CONFIG_DOCS,
    NATS_JETSTREAM_DOCS,
    NATS_PUBACK_DOCS,
    SPEC,
    Finding,
    Source,
    decide,
    first_guard,
    fmt,
    inconclusive,
    nothing_at_stake,
)

PUBACK_PERSISTED = Source(
    "nats-docs",
    "If the publisher receives the acknowledgement from the server it can safely discard any state it has for that "
    "publication, the message has not only been received correctly by the server, but it has also been "
    "successfully persisted.",
    NATS_PUBACK_DOCS,
)
AT_LEAST_ONCE = Source(
    "jepsen",
    "JetStream promises “at least once” delivery: messages may be duplicated, but acknowledged messages should not "
    "be lost.",
    JEPSEN_NATS,
)
DEFAULT_FSYNC = Source(
    "nats-docs",
    "The server uses a configurable sync_interval option, with a default value of 2 minutes [...] In a "
    "non-replicated setup, an OS failure may result in data loss.",
    NATS_JETSTREAM_DOCS,
)
SYNC_ALWAYS = Source(
    "nats-docs",
    "If a value always is used, a explicit sync will occur on every write. Do note that this will degrade the max "
    "throughput due to the additional I/O calls.",
    NATS_CONFIG_DOCS,
)
KAFKA_ACKS_DOCS = "https://kafka.apache.org/documentation/#producerconfigs_acks"
ACKS_ALL = Source(
    "kafka-docs",
    "acks=all This means the leader will wait for the full set of in-sync replicas to acknowledge the record. "
    "This guarantees that the record will not be lost as long as at least one in-sync replica remains alive.",
    KAFKA_ACKS_DOCS,
)
KAFKA_PAGECACHE = Source(
    "kafka-docs",
    "All data is immediately written to a persistent log on the filesystem without necessarily flushing to disk. "
    "In effect this just means that it is transferred into the kernel's pagecache.",
    "https://kafka.apache.org/documentation/#design_filesystem",
)
TRANSPARENT = Source(
    "spec", "All existing endpoints remain unchanged. The queue implementation is transparent to clients", SPEC
)
MEMORY_NOT_PERSISTENT = Source("spec", "Memory Queue (Phase 1) [...] Persistence: None (in-memory only)", SPEC)
SCALES = Source("spec", "Scalability: Horizontal scaling of consumers", SPEC)
ZERO_DOWNTIME = Source("spec", "Phase 1 → Phase 2: Zero-downtime migration", SPEC)

LOSS_CAUSES = (
    "a worker acked before the work was recorded in the ledger (ack order in services/processor)",
    "the processor answered 2xx before the backend's publish returned (PubAck not awaited)",
    "the ledger was read before the drain finished (drain timeout too short for the backlog)",
    "a message id counted twice or not at all by the accounting (workload/accounting)",
)


def no_loss(rows: pd.DataFrame, what: str) -> Finding:
    """Nothing acknowledged lost over `rows`; inconclusive when nothing was acknowledged."""
    acked, lost = int(rows["acknowledged"].sum()), int(rows["lost"].sum())
    guard = first_guard(nothing_at_stake(acked, f"{what}: acknowledged"))
    text = f"{what}: lost {fmt(lost)} of {fmt(acked)} acknowledged over {len(rows)} phase(s)"
    if guard:
        return inconclusive(guard, text, acknowledged=acked, lost=lost)
    return decide(lost == 0, text, acknowledged=acked, lost=lost)


def nats_rows(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["backend"].str.startswith("nats")]


def broker_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the queues that live in a broker: JetStream's and Kafka's (any flush or sync policy)."""
    return rows[rows["backend"].str.startswith(("nats", "kafka"))]


def kafka_rows(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["backend"].str.startswith("kafka")]


def _per_phase(part: pd.DataFrame) -> str:
    return ", ".join(f"lost {fmt(r.lost)} of {fmt(r.acknowledged)} (recovered {fmt(r.recovered)})"
                     for r in part.itertuples())  # fmt: skip


def loses(part: pd.DataFrame, what: str) -> Finding:
    """Every phase lost something; a phase with nothing at stake (no loss, nothing recovered) is inconclusive."""
    if part.empty:
        return inconclusive("not run", f"no {what} phase in this batch")
    text = f"{what}: {_per_phase(part)}"
    stake = int((part["lost"] + part["recovered"]).min())
    if (part["lost"] == 0).any() and stake == 0:
        return inconclusive(nothing_at_stake(0, "lost + recovered") or "", text)
    return decide(bool((part["lost"] > 0).all()), text, lost=int(part["lost"].sum()))


def keeps(part: pd.DataFrame, what: str) -> Finding:
    """No phase lost anything; inconclusive when no phase had acknowledged messages recovered after the fault."""
    if part.empty:
        return inconclusive("not run", f"no {what} phase in this batch")
    text = f"{what}: {_per_phase(part)}"
    lost = int(part["lost"].sum())
    guard = nothing_at_stake(int(part["recovered"].min()), "recovered (acknowledged before the fault)")
    if lost == 0 and guard:
        return inconclusive(guard, text)
    return decide(lost == 0, text, lost=lost, recovered=int(part["recovered"].sum()))


def fault_is(labels: pd.Series, kind: str, target: str = "") -> pd.Series:
    """Which rows' fault labels (`kind:target`, as the rows record them) are `kind` (on `target`, when given)."""
    parts = labels.str.partition(":")
    hit = parts[0] == kind
    return hit & (parts[2] == target) if target else hit
