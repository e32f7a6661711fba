"""06_power_loss's claims: a default policy loses acknowledged messages to a power loss, an fsync per message not.

JetStream's default fsync policy and Kafka's default flush policy both
acknowledge before they fsync. Kafka's documentation says replication makes
that safe (a failed node recovers from its replicas); the Kafka claims test
that on one broker (R1, where there is no replica), on three when the
leader alone loses power (where it holds), and on three that lose power at
once (where it stops holding).
"""

from __future__ import annotations

import pandas as pd

from experiments.results.chapters.cluster import R3_TOLERATES_ONE
from experiments.results.chapters.common import (
    DEFAULT_FSYNC,
    KAFKA_PAGECACHE,
    PUBACK_PERSISTED,
    SYNC_ALWAYS,
    fault_is,
    keeps,
    loses,
)
from experiments.results.claims import (
    JEPSEN_NATS,
    Claim,
    Evidence,
    Finding,
    Source,
    decide,
    fmt,
    inconclusive,
)

EXPERIMENT = "06_power_loss"
KAFKA_FLUSH_DOCS = "https://kafka.apache.org/documentation/#topicconfigs_flush.messages"  # log.flush.interval.messages
KAFKA_OS_FLUSH_DOCS = "https://kafka.apache.org/documentation/#appvsosflush"
KAFKA_FSYNC_EACH = Source(
    "kafka-docs",
    "This setting allows specifying an interval at which we will force an fsync of data written to the log. For "
    "example if this was set to 1 we would fsync after every message",
    KAFKA_FLUSH_DOCS,
)
KAFKA_USE_REPLICATION = Source(
    "kafka-docs",
    "In general we recommend you not set this and use replication for durability and allow the operating system's "
    "background flush capabilities as it is more efficient.",
    KAFKA_FLUSH_DOCS,
)
KAFKA_RECOVER_FROM_REPLICAS = Source(
    "kafka-docs",
    "Note that durability in Kafka does not require syncing data to disk, as a failed node will always recover "
    "from its replicas.",
    KAFKA_OS_FLUSH_DOCS,
)
SYNC_COST = 2.0  # sync_always's pipelined publish rate at most 1/SYNC_COST of the default's (plain dir)
LAGGING_MAJORITY = Source(
    "jepsen",
    "an OS crash on a single node combined with network delays or process pauses, can cause the loss of committed "
    "writes",
    JEPSEN_NATS,
)


def _setting(rows: pd.DataFrame, backend: str, replicas: int, fault: str, target: str = "") -> pd.DataFrame:
    hit = fault_is(rows["fault"], fault, target)
    return rows[(rows["backend"] == backend) & (rows["replicas"] == replicas) & hit]


def _sync_cost(ev: Evidence) -> Finding:
    pub = ev.publish
    if pub.empty:
        return inconclusive("not run: no publish rates measured", "publish_rounds = 0")
    pub = pub[(pub["store"] == "plain") & (pub["mode"] == "pipelined") & (pub["replicas"] == 1)]
    key = ["run_id", "round"]
    default = pub[pub["backend"] == "nats"].set_index(key)["rate"]
    sync = pub[pub["backend"] == "nats-sync"].set_index(key)["rate"]
    ratios = (default / sync).dropna()
    if ratios.empty:
        return inconclusive("not run: needs both policies on a plain dir, R1", "no pair of rounds")
    med = float(ratios.median())
    text = (f"pipelined publishes on a plain dir: default {fmt(float(default.median()))} msg/s, sync_always "
            f"{fmt(float(sync.median()))} msg/s: x{fmt(med)} (median of {len(ratios)} rounds, "
            f"x{fmt(float(ratios.min()))}..x{fmt(float(ratios.max()))})")  # fmt: skip
    return decide(med >= SYNC_COST, text, ratio=med)


CLAIMS = (
    Claim(
        "power.default-loses",
        EXPERIMENT,
        "With the default fsync policy, one node's power loss loses acknowledged messages.",
        DEFAULT_FSYNC,
        lambda ev: loses(_setting(ev.rows, "nats", 1, "power-loss"), "JetStream default, R1"),
        (
            "the lazy file system did not drop the unsynced writes (the FUSE mount was bypassed)",
            "the kernel-like writeback flushed before the fault (writeback_s shorter than fault_at_s)",
            "no backlog at the fault: the worker kept up (raise the rate or processing_ms)",
        ),
    ),
    Claim(
        "power.sync-always-keeps",
        EXPERIMENT,
        "With sync_interval: always, a power loss loses no acknowledged message.",
        PUBACK_PERSISTED,
        lambda ev: keeps(_setting(ev.rows, "nats-sync", 1, "power-loss"), "JetStream sync_always, R1"),
        ("the PubAck came before the fsync (a nats-server regression)", "the store was not on the lazy FS"),
    ),
    Claim(
        "power.r3-one-node-keeps",
        EXPERIMENT,
        "On three nodes (R3), the stream leader's power loss alone loses nothing: two nodes still hold every "
        "acknowledged message.",
        R3_TOLERATES_ONE,
        lambda ev: keeps(
            ev.rows[(ev.rows["replicas"] == 3) & fault_is(ev.rows["fault"], "power-loss", "leader")],
            "R3, leader's power loss",
        ),
        ("the followers had not yet stored the tail when the leader acknowledged", "a second node failed too"),
    ),
    Claim(
        "power.lagging-majority-loses",
        EXPERIMENT,
        "With the default policy on R3, Jepsen's lagging majority (a follower cut off, the leader's power lost, "
        "the other follower paused) loses acknowledged messages.",
        LAGGING_MAJORITY,
        lambda ev: loses(_setting(ev.rows, "nats", 3, "lagging-majority"), "R3 default, lagging majority"),
        (
            "the cut-off follower was not cut off (partition proxy not in the path)",
            "the leader fsynced before its power went (a writeback shorter than the phase)",
        ),
    ),
    Claim(
        "power.lagging-majority-sync-always-keeps",
        EXPERIMENT,
        "With sync_interval: always on R3, the lagging majority loses nothing.",
        PUBACK_PERSISTED,
        lambda ev: keeps(_setting(ev.rows, "nats-sync", 3, "lagging-majority"), "R3 sync_always, lagging majority"),
        ("an acknowledged write was not fsynced on the leader", "the accounting read the ledger before the drain"),
    ),
    Claim(
        "power.kafka-default-loses",
        EXPERIMENT,
        "With Kafka's default flush policy (no fsync), one broker's power loss (R1, no replica) loses acknowledged "
        "messages: acks=all meant the kernel's page cache.",
        KAFKA_PAGECACHE,
        lambda ev: loses(_setting(ev.rows, "kafka", 1, "power-loss"), "Kafka default flush, R1"),
        (
            "the lazy file system did not drop the unsynced writes (the log dir was not on the mount)",
            "the kernel-like writeback flushed before the fault (writeback_s shorter than fault_at_s)",
            "no backlog at the fault: the processor had fetched it all (raise the rate, lower KAFKA_PREFETCH)",
        ),
    ),
    Claim(
        "power.kafka-flush-keeps",
        EXPERIMENT,
        "With log.flush.interval.messages=1 (an fsync per message), a power loss loses no acknowledged message: "
        "of one broker (R1), or of all three at once (R3).",
        KAFKA_FSYNC_EACH,
        lambda ev: keeps(
            ev.rows[(ev.rows["backend"] == "kafka-flush") & fault_is(ev.rows["fault"], "power-loss")],
            "Kafka flush each message",
        ),
        ("the broker acknowledged before its flush (a Kafka regression)", "the log dir was not on the lazy FS"),
    ),
    Claim(
        "power.kafka-r3-leader-keeps",
        EXPERIMENT,
        "With Kafka's default flush policy on three brokers (RF 3, min.insync.replicas=2), the partition leader's "
        "power loss alone loses nothing: an in-sync replica still holds every acknowledged message.",
        KAFKA_RECOVER_FROM_REPLICAS,
        lambda ev: keeps(_setting(ev.rows, "kafka", 3, "power-loss", "leader"), "Kafka default flush, R3, leader"),
        (
            "the leader acknowledged before the followers had the record (acks=all not honoured)",
            "a second broker failed too",
        ),
    ),
    Claim(
        "power.kafka-r3-coordinated-loses",
        EXPERIMENT,
        "Replication instead of fsync stops holding when every replica loses power at once: with Kafka's default "
        "flush policy, a coordinated power loss of all three brokers (RF 3, min.insync.replicas=2) loses "
        "acknowledged messages.",
        KAFKA_USE_REPLICATION,
        lambda ev: loses(_setting(ev.rows, "kafka", 3, "power-loss", "queue"), "Kafka default flush, R3, all three"),
        (
            "a broker fsynced before the power went (a segment roll, or a writeback shorter than the phase)",
            "the brokers did not lose power together (one restarted and replicated to the others first)",
        ),
    ),
    Claim(
        "power.sync-always-costs",
        EXPERIMENT,
        f"sync_interval: always costs at least {SYNC_COST:g}x in pipelined publish rate (one node, plain dir).",
        SYNC_ALWAYS,
        _sync_cost,
        ("the disk ignores fsync (a tmpfs or a write-back cache)", "the rounds were too short to pipeline"),
    ),
)
