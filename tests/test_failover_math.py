"""The failover arithmetic on hand-made request records: time to recover, the 100 ms timeline, the R3/R1 table.

Pure functions, so the figures the cluster notebook and the fault matrix
print are pinned here on cases whose answer is known.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from experiments.lab.experiments.replication import fault_runs, replica_ratios, runs_on
from experiments.lab.experiments.replication import tables as cluster
from experiments.runtime.kafka.cluster import KafkaCluster
from experiments.runtime.stack import Stack, StackConfig
from experiments.workload.failover import failover_timeline, recovery_s
from experiments.workload.faults import Deployment, FaultRunner, FaultStep
from experiments.workload.faults.nodes import ClusterNodes
from experiments.workload.load import RequestRecord


def rec(seq: int, at: float, status: int, latency: float = 0.01) -> RequestRecord:
    return RequestRecord(seq=seq, scheduled=at, latency=latency, status=status)


def test_recovery_is_fault_start_to_the_first_2xx_after_the_first_refusal() -> None:
    records = [rec(0, 9.9, 202), rec(1, 10.05, 202), rec(2, 10.2, 503), rec(3, 11.0, 503), rec(4, 12.0, 202, 0.5)]
    assert recovery_s(records, fault_start=10.0) == pytest.approx(2.5)  # 12.0 + 0.5 - 10.0
    assert recovery_s([rec(0, 10.1, 202)], fault_start=10.0) == 0.0  # nothing refused: the clients never saw it
    assert math.isnan(recovery_s([rec(0, 10.1, 503)], fault_start=10.0))  # never recovered within the load


def test_failover_timeline_bins_by_scheduled_time() -> None:
    records = [rec(0, 0.01, 202, 0.002), rec(1, 0.05, 202, 0.004), rec(2, 0.15, 503), rec(3, 0.25, 0)]
    tl = failover_timeline(records, t0=0.0, bin_s=0.1)
    assert tl.t_s == [0.0, 0.1, 0.2]
    assert tl.ok == [2, 0, 0]
    assert tl.failed == [0, 1, 1]
    assert tl.p50_ms == [2.0, None, None]
    assert tl.max_ms == [4.0, None, None]


@pytest.mark.parametrize(
    ("text", "kind", "target", "needs_cluster"),
    [
        ("kill:leader", "kill", "leader", True),
        ("stepdown", "stepdown", "leader", True),
        ("rolling", "rolling", "cluster", True),
        ("partition:leader", "partition", "leader", True),
        ("kill:quorum", "kill", "quorum", True),
        ("pause", "pause", "queue", False),
    ],
)
def test_cluster_fault_steps_parse(text: str, kind: str, target: str, needs_cluster: bool) -> None:
    step = FaultStep.parse(text)
    assert (step.kind, step.target, step.needs_cluster) == (kind, target, needs_cluster)


def test_fault_step_names_what_it_accepts() -> None:
    with pytest.raises(ValueError, match="kind must be one of none, restart, kill, pause, power-loss, stepdown"):
        FaultStep.parse("explode:leader")


def _row(backend: str, replicas: int, rate: float, achieved: float, p50: float, rep: int = 0) -> dict[str, object]:
    return {"backend": backend, "replicas": replicas, "broker_nodes": replicas if backend != "memory" else 0,
            "offered_rate": rate, "achieved_rate": achieved, "client_p50_ms": p50, "client_p99_ms": 2 * p50,
            "e2e_p50_ms": p50, "e2e_p99_ms": 2 * p50, "fault": "none", "repetition": rep}  # fmt: skip


def test_replica_ratios_are_per_repetition_with_min_median_max() -> None:
    rows = []
    for rep, slow in enumerate((2.0, 4.0, 3.0)):
        rows += [_row("nats", 1, 500, 500, 1.0, rep), _row("nats", 1, 3000, 2000, 5.0, rep),
                 _row("nats", 3, 500, 500, slow, rep), _row("nats", 3, 3000, 1000, 5.0 * slow, rep)]  # fmt: skip
    t = replica_ratios(pd.DataFrame(rows)).set_index("ratio")
    assert t.loc["nats R3/R1 max achieved rate", "median"] == pytest.approx(0.5)
    p50 = t.loc["nats R3/R1 client_p50_ms at 500 msg/s"]
    assert (p50["n"], p50["min"], p50["median"], p50["max"]) == (3, 2.0, 3.0, 4.0)


def test_cluster_tables_split_calm_rows_from_faults() -> None:
    calm = [_row("memory", 0, 500, 500, 0.5), _row("nats", 1, 500, 500, 1.0), _row("nats", 3, 500, 480, 3.0)]
    fault = {**_row("nats", 3, 200, 150, 3.0), "fault": "kill:leader", "sent": 100, "acknowledged": 80,
             "processed": 85, "lost": 0, "duplicated": 0, "unacked_processed": 5, "recover_s": 6.5}  # fmt: skip
    for r in calm:
        r.update(sent=100, acknowledged=100, processed=100, lost=0, duplicated=0, unacked_processed=0, recover_s=None)
    out = cluster(pd.DataFrame([*calm, fault]))
    assert set(out["cluster_latency"]["variant"]) == {"memory", "nats R1 (1 node)", "nats R3 (3 nodes)"}
    f = out["cluster_faults"].iloc[0]
    assert (f["fault"], f["recovered_unacked"], f["recover_s_median"]) == ("kill:leader", 5, 6.5)


def test_kafka_rows_get_their_own_variants_and_ratios() -> None:
    rows = [_row("nats", 1, 500, 500, 1.0), _row("nats", 3, 500, 500, 2.0),
            _row("kafka", 1, 500, 500, 3.0), _row("kafka", 3, 500, 450, 9.0)]  # fmt: skip
    for r in rows:
        r.update(sent=100, acknowledged=100, processed=100, lost=0, duplicated=0, unacked_processed=0, recover_s=None)
    out = cluster(pd.DataFrame(rows))
    assert set(out["cluster_latency"]["variant"]) == {"nats R1 (1 node)", "nats R3 (3 nodes)", "kafka R1 (1 node)",
                                                      "kafka R3 (3 nodes)"}  # fmt: skip
    ratios = out["cluster_ratios"].set_index("ratio")
    assert ratios.loc["kafka R3/R1 client_p50_ms at 500 msg/s", "median"] == pytest.approx(3.0)
    assert ratios.loc["nats R3/R1 client_p50_ms at 500 msg/s", "median"] == pytest.approx(2.0)


def test_jetstream_only_faults_skip_kafka() -> None:
    assert runs_on(FaultStep.parse("kill:leader"), "kafka")
    assert runs_on(FaultStep.parse("pause:follower"), "kafka")
    assert not runs_on(FaultStep.parse("stepdown"), "kafka")
    assert not runs_on(FaultStep.parse("rolling"), "kafka")
    assert not runs_on(FaultStep.parse("lagging-majority"), "kafka")
    assert runs_on(FaultStep.parse("partition:leader"), "kafka"), "a partitionable Kafka cluster takes a partition"
    assert runs_on(FaultStep.parse("stepdown"), "nats")
    assert fault_runs(["kill:leader", "stepdown"], ["nats", "kafka"]) == 3
    assert fault_runs(["partition:leader", "stepdown"], ["nats", "kafka"]) == 3


def test_cluster_roles_resolve_on_a_kafka_cluster_and_jetstream_only_faults_are_refused(tmp_path: Path) -> None:
    kafka = KafkaCluster(tmp_path / "kafka", nodes=3)  # not started: resolving a role starts nothing
    stack = Stack(StackConfig(queue="kafka"), tmp_path / "stack", kafka=kafka)
    deployment = Deployment(stack, kafka)
    victim = FaultRunner(FaultStep.parse("kill:leader"), deployment).victim
    assert isinstance(victim, ClusterNodes)
    assert (victim.cluster, victim.stream) == (kafka, stack.backend_settings.kafka_topic)
    assert kafka.names == ["k1", "k2", "k3"]
    assert kafka.node("k2") is kafka.node(2)
    assert FaultRunner(FaultStep.parse("kill:queue"), deployment).victim is kafka
    with pytest.raises(ValueError, match="stepdown:leader needs a NATS cluster of 3 nodes"):
        FaultRunner(FaultStep.parse("stepdown"), deployment)
    with pytest.raises(ValueError, match="partition:leader needs a cluster of 3 built partitionable=True"):
        FaultRunner(FaultStep.parse("partition:leader"), deployment)  # no per-link proxies on this one
    cut = KafkaCluster(tmp_path / "cut", nodes=3, partitionable=True)  # proxies start (threads), no JVM
    try:
        victim = FaultRunner(FaultStep.parse("partition:leader"), Deployment(stack, cut)).victim
        assert isinstance(victim, ClusterNodes)
        assert victim.cluster is cut
        assert len(cut.proxies) == 12
    finally:
        cut.close()
    one = KafkaCluster(tmp_path / "one", nodes=1)
    with pytest.raises(ValueError, match=r"needs a cluster of 3 nodes .* this run has a process Kafka of 1 node"):
        FaultRunner(FaultStep.parse("kill:leader"), Deployment(stack, one))
