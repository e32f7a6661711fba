"""`partition:leader` on three KRaft brokers (RF 3, min.insync.replicas=2): the leader of the lab topic's
partition 0 cut off from its peers while every client still reaches it, under load through the real stack.

Setup(partitionable=True) builds a Kafka cluster whose every link between two nodes (controller quorum,
heartbeats to the active controller, replication) goes through a proxy of its own; `isolate` resets those
to and from the victim. The fault bit: while the old leader is cut off, the majority (the other two,
asked alone) elects a new leader among themselves and drops the old one from the ISR; publishes are
refused until the clients find the new leader, and the cut-off leader acknowledges nothing meanwhile
(acks=all: no follower fetches from it, and it cannot reach the controller to shrink its ISR). After the
heal the old node rejoins the ISR, and nothing acknowledged is lost, by id. About 60-90 s on 2 cores.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from experiments.lab.context import RunContext
from experiments.lab.phase import FAILOVER, run_phase
from experiments.lab.record import PhaseSpec
from experiments.runtime.broker import Partitionable
from experiments.runtime.kafka.cluster import KafkaCluster
from experiments.workload.faults import FaultRunner, FaultStep
from experiments.workload.faults.nodes import ClusterNodes
from tests.kafka_fixtures import require_kafka_or_skip
from tests.test_kafka_faults import RATE, faulted_kafka_setup

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.timeout(300)]

DURATION_S = 13.0
FAULT_AT_S = 2.0
# The victim is fenced after broker.session.timeout.ms (4 s) without a heartbeat; if it was the active
# controller too, the quorum first elects another (its check-quorum: 1.5 x the 2 s fetch timeout). 6.5 s seen.
DOWN_S = 10.0
WARMUP_S = 3.0


@dataclass
class CutMarks:
    """When the cluster's `isolate` and `heal` ran (perf_counter), recorded by wrapping them on the instance."""

    isolated: float | None = None
    healed: float | None = None

    @classmethod
    def on(cls, cluster: KafkaCluster, monkeypatch: pytest.MonkeyPatch) -> CutMarks:
        marks, isolate, heal = cls(), cluster.isolate, cluster.heal

        def isolated(name: str) -> None:
            isolate(name)
            marks.isolated = time.perf_counter()

        def healed() -> None:
            heal()
            marks.healed = time.perf_counter()

        monkeypatch.setattr(cluster, "isolate", isolated)
        monkeypatch.setattr(cluster, "heal", healed)
        return marks


View = tuple[int, list[int]] | None  # (leader id, ISR ids) as one node sees partition 0


class NodeViews:
    """Polls partition 0 as each node sees it, asked of it alone (`KafkaCluster.partition_views`), every 0.2 s."""

    def __init__(self, cluster: KafkaCluster, topic: str) -> None:
        self.cluster, self.topic = cluster, topic
        self.seen: list[tuple[float, dict[str, View]]] = []  # (perf_counter, node name -> its view)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="node-views", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.append((time.perf_counter(), self.cluster.partition_views(self.topic, 0, timeout=1.0)))
            self._stop.wait(0.2)

    def majority(self, cut: str) -> list[tuple[float, int, list[int]]]:
        """(when, leader, ISR) where every node but `cut` answered the same."""
        out = []
        for t, views in self.seen:
            others = {str(v) for name, v in views.items() if name != cut}
            first = next((v for name, v in views.items() if name != cut), None)
            if len(others) == 1 and first is not None:
                out.append((t, first[0], first[1]))
        return out

    def __enter__(self) -> NodeViews:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


async def test_partition_cuts_the_kafka_leader_off_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_kafka_or_skip()
    monkeypatch.setenv("HARNESS_KAFKA", "process")
    ctx = RunContext("test_kafka_partition", results_dir=tmp_path / "results")
    setup = dataclasses.replace(faulted_kafka_setup(3), partitionable=True)
    step = FaultStep.parse("partition:leader", at_s=FAULT_AT_S, down_s=DOWN_S)
    async with ctx.session(setup) as session:
        kafka = session.kafka
        assert isinstance(kafka, KafkaCluster)
        assert isinstance(kafka, Partitionable)
        assert len(kafka.proxies) == 12, "two links (controller, replication) for each ordered pair of nodes"
        topic = session.stack.backend_settings.kafka_topic
        victim = FaultRunner(step, session.deployment()).victim
        assert isinstance(victim, ClusterNodes)
        assert victim.stream == topic

        _, isr = kafka.wait_partition(topic, isr=3, timeout=30.0)
        assert await session.warm_up(rate=RATE, duration_s=WARMUP_S) > 0, "the cluster took no write before the fault"
        leader = kafka.wait_leader(topic, 30.0)
        leader_id = kafka.node(leader).node_id
        pids = {name: kafka.node(name).pid for name in kafka.names}
        resets = sum(p.resets_sent for p in kafka.proxies.values())
        marks = CutMarks.on(kafka, monkeypatch)
        spec = PhaseSpec("partition:leader", RATE, DURATION_S, 128, 1)
        options = dataclasses.replace(FAILOVER, drain_timeout_s=60.0)
        with NodeViews(kafka, topic) as views:
            rec = await run_phase(session, spec, step, options)
            _, isr_after = kafka.wait_partition(topic, isr=3, timeout=60.0)
            await asyncio.sleep(0.5)  # one more sample of the views with the old node back in the ISR
        resets = sum(p.resets_sent for p in kafka.proxies.values()) - resets
        after = kafka.wait_leader(topic, 10.0)
        now = {name: kafka.node(name).pid for name in kafka.names}

    row, window, fo = rec.row, rec.series.faults[0], rec.series.failover
    assert fo is not None
    assert marks.isolated is not None, "the fault never isolated a node"
    assert marks.healed is not None, "the fault never healed the cluster"
    majority = views.majority(leader)
    cut = [(t, ld, i) for t, ld, i in majority if marks.isolated <= t <= marks.healed]
    elected = [(t, ld, i) for t, ld, i in cut if ld not in (-1, leader_id)]
    back = [t for t, _, i in majority if t > marks.healed and leader_id in i]
    to_leader_s = elected[0][0] - marks.isolated if elected else None
    # the cut-off node's own view once the others had elected: it still names itself, with the old ISR
    stale = [v[leader] for t, v in views.seen if elected and elected[0][0] <= t <= marks.healed]
    rejoined_s = back[0] - marks.healed if back else None
    # acknowledged publishes scheduled after the cut took hold (a publish times out after 1 s) and before a new
    # leader could be known to the clients (the leader watch sees it at most a poll and an ask late)
    quiet = [ok for t, ok in zip(fo.t_s, fo.ok, strict=True)
             if window.leader_change_s is not None
             and window.start_s + 1.0 <= t and t + fo.bin_s <= window.leader_change_s - 1.5]  # fmt: skip
    print(f"kafka R3 partition:leader ({leader} cut off for {marks.healed - marks.isolated:.1f} s; ISR before {isr}): "
          f"the other two elected k{elected[0][1] if elected else None} (ISR {elected[0][2] if elected else None}) "
          f"{to_leader_s and round(to_leader_s, 2)} s after the cut (the cut-off node's own view then: "
          f"{stale[:1]}); leader watch saw it "
          f"{window.leader_change_s and round(window.leader_change_s - window.start_s, 2)} s after the fault began; "
          f"resets sent={resets}; sent={row.sent} acknowledged={row.acknowledged} refused={row.errors} "
          f"processed={row.processed} lost={row.lost} duplicated={row.duplicated}; acknowledged in the "
          f"{len(quiet)} cut-off bins before a new leader: {sum(quiet)}; {leader} back in the ISR "
          f"{rejoined_s and round(rejoined_s, 2)} s after the heal (ISR {isr_after}), leader then {after}")  # fmt: skip
    assert window.kind == "partition:leader"
    assert now == pids, "a partition kills nothing: every JVM is the same process"
    assert resets > 0, "no link was reset: the partition did not bite"
    assert elected, f"the other nodes named no leader but {leader} while it was cut off: {cut[-3:]}"
    assert all(leader_id not in i for _, _, i in elected), f"the cut-off leader still in the majority's ISR: {elected}"
    assert any(v is not None and v[0] == leader_id for v in stale), f"{leader} no longer named itself leader: {stale}"
    assert window.leader_change_s is not None, "the leader watch saw no new leader"
    assert row.errors > 0, f"no publish was refused: the leader was never cut off: {row}"
    assert quiet, "no bin between the cut taking hold and a new leader: the election was too quick to tell"
    assert sum(quiet) == 0, f"acknowledged while the leader was cut off and before a new one: {quiet}"
    assert rejoined_s is not None, f"{leader} never seen back in the ISR after the heal: {views.seen[-3:]}"
    assert leader_id in isr_after, "the old leader did not rejoin the ISR after the heal"
    assert row.acknowledged > 0, row
    assert row.lost == 0, row
