"""05_cluster's claims: an R3 stream and an RF3 topic survive one leader fault without loss; replication costs
latency."""

from __future__ import annotations

import pandas as pd

from experiments.results.chapters.common import ACKS_ALL, LOSS_CAUSES, broker_rows, kafka_rows, nats_rows, no_loss
from experiments.results.claims import (
    HYPOTHESIS,
    NATS_CLUSTERING_DOCS,
    Claim,
    Evidence,
    Finding,
    Source,
    client_bound,
    decide,
    fmt,
    inconclusive,
)

EXPERIMENT = "05_cluster"
RESUME_S = 15.0  # writes resume within this long after a leader fault (nats-server elections took 4-9 s here)
R3_TOLERATES_ONE = Source(
    "nats-docs", "Replicas=3 - Can tolerate loss of one server servicing the stream.", NATS_CLUSTERING_DOCS
)


def _faults(rows: pd.DataFrame, what: str) -> Finding:
    faults = rows[rows["fault"] != "none"]
    if faults.empty:
        return inconclusive(f"not run: no cluster fault on {what}", "faults = [] or this queue not in queues")
    return no_loss(faults, f"{what} under " + ", ".join(sorted(set(faults["fault"]))))


def _resume(ev: Evidence) -> Finding:
    faults = ev.rows[ev.rows["fault"] != "none"]
    if faults.empty:
        return inconclusive("not run: no cluster fault", "faults = []")
    took = faults["recover_s"]
    text = ", ".join(f"{f}: {fmt(v) + ' s' if v == v else 'no refusal'}" for f, v in zip(faults["fault"], took,
                                                                                          strict=True))  # fmt: skip
    if took.isna().all():
        return inconclusive("the fault did not bite: no publish was refused", text)
    return decide(bool((took.dropna() <= RESUME_S).all()), text, worst_s=float(took.max()))


def _r3_cost(ev: Evidence, backend: str = "nats") -> Finding:
    calm = ev.rows[(ev.rows["fault"] == "none") & (ev.rows["backend"] == backend)]
    if calm.empty or calm["replicas"].nunique() < 2:
        return inconclusive("not run: needs R1 and R3", "one replica count only")
    low = calm[calm["offered_rate"] == calm["offered_rate"].min()]
    r1 = float(low[low["replicas"] == 1]["client_p50_ms"].median())
    r3 = float(low[low["replicas"] == low["replicas"].max()]["client_p50_ms"].median())
    text = f"client p50 at {fmt(low['offered_rate'].iloc[0])} msg/s: R3 {fmt(r3)} ms, R1 {fmt(r1)} ms"
    guard = client_bound(low)
    if guard:
        return inconclusive(guard, text, r1_ms=r1, r3_ms=r3)
    return decide(r3 > r1, text, r1_ms=r1, r3_ms=r3)


CLAIMS = (
    Claim(
        "cluster.no-loss",
        EXPERIMENT,
        "Neither R1 nor R3 loses an acknowledged message at any rate, on JetStream or on Kafka.",
        HYPOTHESIS,
        lambda ev: no_loss(broker_rows(ev.rows[ev.rows["fault"] == "none"]), "JetStream and Kafka, R1 and R3"),
        LOSS_CAUSES,
    ),
    Claim(
        "cluster.failover-loses-nothing",
        EXPERIMENT,
        "An R3 stream loses no acknowledged message when its leader is killed, cut off from its peers or steps down.",
        R3_TOLERATES_ONE,
        lambda ev: _faults(nats_rows(ev.rows), "JetStream R3"),
        ("the processor acknowledged before the new leader had the message", *LOSS_CAUSES[:2]),
    ),
    Claim(
        "cluster.kafka-failover-loses-nothing",
        EXPERIMENT,
        "A Kafka topic of replication factor 3 (min.insync.replicas=2, acks=all, unclean leader election off) loses "
        "no acknowledged message when the leader of its partition is killed or cut off from its peers.",
        ACKS_ALL,
        lambda ev: _faults(kafka_rows(ev.rows), "Kafka RF3"),
        (
            "a replica outside the ISR became leader (unclean.leader.election.enable on)",
            "the producer was not acks=all",
            *LOSS_CAUSES[:2],
        ),
    ),
    Claim(
        "cluster.writes-resume",
        EXPERIMENT,
        f"After a leader fault, publishes succeed again within {RESUME_S:g} s (a Raft election, then the client's "
        "retry).",
        HYPOTHESIS,
        _resume,
        ("the killed leader was still counted in the quorum (down_s too long?)", "the client gave up retrying"),
    ),
    Claim(
        "cluster.r3-costs-latency",
        EXPERIMENT,
        "R3 answers a publish later than R1 (a quorum must store it first).",
        HYPOTHESIS,
        _r3_cost,
        ("the machine was busy during the R1 phase", "R3 phases ran on a warm cluster and R1 on a cold one"),
    ),
    Claim(
        "cluster.kafka-rf3-costs-latency",
        EXPERIMENT,
        "Kafka at RF3 answers a publish later than at RF1 (acks=all waits for the in-sync followers to fetch it).",
        HYPOTHESIS,
        lambda ev: _r3_cost(ev, "kafka"),
        ("the machine was busy during the RF1 phase", "RF3 phases ran on a warm cluster and RF1 on a cold one"),
    ),
)
