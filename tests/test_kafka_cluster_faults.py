"""Kafka as a fault victim on three KRaft brokers (RF 3, min.insync.replicas=2): leader SIGKILL, then its
controlled shutdown (`restart:leader`: SIGTERM), under load.

The roles `leader`, `follower`, `quorum` and `cluster` resolve on a Kafka
cluster as on a NATS one (`ReplicatedBroker`); the leader is that of the
backend topic's partition 0. Real gateway -> ingest -> processor, slow
workers and a small consumer buffer so a backlog waits in the brokers when
the leader dies. The fault bit: the leader's JVM was SIGKILLed (its pid
changed, the other two did not), publishes were refused while the partition
had no leader, a new leader was seen (the metadata-poll witness) and it is
another node. Lost 0 with a backlog (sampled before the fault) at stake. About 70-100 s on 2 cores.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from experiments.lab.context import RunContext
from experiments.lab.phase import FAILOVER, run_phase
from experiments.lab.record import PhaseSpec
from experiments.results.chapters.durability import backlog_at_fault
from experiments.runtime.broker import ReplicatedBroker
from experiments.runtime.kafka.cluster import KafkaCluster
from experiments.workload.faults import FaultRunner, FaultStep
from experiments.workload.faults.nodes import ClusterNodes
from tests.kafka_fixtures import require_kafka_or_skip
from tests.test_kafka_faults import RATE, faulted_kafka_setup

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.timeout(300)]

DURATION_S = 10.0  # the dead leader is fenced after broker.session.timeout.ms (4 s), then a new one leads
FAULT_AT_S = 2.0
DOWN_S = 6.0  # the killed leader stays away through the election
WARMUP_S = 3.0  # unmeasured load first: the producer has its metadata and the JVMs their JIT


async def test_leader_sigkill_moves_partition_leadership_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_kafka_or_skip()
    monkeypatch.setenv("HARNESS_KAFKA", "process")
    ctx = RunContext("test_kafka_cluster_faults", results_dir=tmp_path / "results")
    setup = faulted_kafka_setup(3)  # the load, slow workers and small prefetch of test_kafka_faults
    step = FaultStep.parse("kill:leader", at_s=FAULT_AT_S, down_s=DOWN_S)
    async with ctx.session(setup) as session:
        kafka = session.kafka
        assert isinstance(kafka, KafkaCluster)
        assert isinstance(kafka, ReplicatedBroker)
        assert kafka.size == 3
        topic = session.stack.backend_settings.kafka_topic
        assert session.stack.backend_settings.kafka_replicas == 3
        victim = FaultRunner(step, session.deployment()).victim
        assert isinstance(victim, ClusterNodes)
        assert victim.stream == topic, "the leader is the backend topic's"

        leader = kafka.wait_leader(topic, 30.0)
        _, isr = kafka.wait_partition(topic, isr=3, timeout=30.0)
        # the cluster takes writes before the fault (a cold RF3 producer on a busy machine once had all of a
        # phase's publishes time out, so the fault had nothing to interrupt)
        assert await session.warm_up(rate=RATE, duration_s=WARMUP_S) > 0, "the cluster took no write before the fault"
        pids = {name: kafka.node(name).pid for name in kafka.names}
        processor_pid = session.stack.processors[0].pid
        spec = PhaseSpec("kill:leader", RATE, DURATION_S, 128, 1)
        options = dataclasses.replace(FAILOVER, drain_timeout_s=60.0, sample_backlog=True)  # the backlog at stake
        rec = await run_phase(session, spec, step, options)
        after = kafka.wait_leader(topic, 30.0)
        now = {name: kafka.node(name).pid for name in kafka.names}
        assert session.stack.processors[0].pid == processor_pid

        # Controlled shutdown of the new leader (SIGTERM: Kafka hands its leaderships over before it exits),
        # once the killed node is back in sync: leadership moves, nothing acknowledged is lost.
        kafka.wait_partition(topic, isr=3, timeout=60.0)
        graceful = FaultStep.parse("restart:leader", at_s=FAULT_AT_S, down_s=2.0)
        spec2 = PhaseSpec("restart:leader", RATE, 6.0, 128, 1)
        rec2 = await run_phase(session, spec2, graceful, options)
        handed_to = kafka.wait_leader(topic, 30.0)
        then = {name: kafka.node(name).pid for name in kafka.names}

    row, window, at_stake = rec.row, rec.series.faults[0], backlog_at_fault(rec)
    print(f"kafka R3 kill:leader ({leader} -> {after}, ISR before {isr}): sent={row.sent} "
          f"acknowledged={row.acknowledged} processed={row.processed} lost={row.lost} duplicated={row.duplicated} "
          f"backlog at the fault={at_stake} refused={row.errors} fault at {window.start_s:.2f} s, new leader seen at "
          f"{window.leader_change_s} s, clients recovered after {row.recover_s} s")  # fmt: skip
    assert window.kind == "kill:leader"
    assert now[leader] not in (None, pids[leader]), "the leader's JVM was not killed and started again"
    assert all(now[n] == pids[n] for n in pids if n != leader), "a follower was hit"
    assert after != leader, "partition 0 is still led by the node that was killed"
    assert window.leader_change_s is not None, "the leader watch never saw a new leader"
    assert window.leader_change_s > window.start_s
    assert row.errors > 0, f"no publish was refused: the partition never lost its leader: {row}"
    assert row.acknowledged > 0, row
    assert row.lost == 0, row
    # The fault window ends when the killed node is back (after the load), so `recovered` (first processed after
    # the window) is no witness here: the backlog stored in the brokers and not yet consumed when the leader died is.
    assert at_stake > 0, f"no backlog waited in the brokers at the fault: lost=0 proves nothing: {row}"

    row2, window2 = rec2.row, rec2.series.faults[0]
    print(f"kafka R3 restart:leader (controlled shutdown, {after} -> {handed_to}): sent={row2.sent} "
          f"acknowledged={row2.acknowledged} processed={row2.processed} lost={row2.lost} "
          f"duplicated={row2.duplicated} refused={row2.errors} "
          f"new leader seen at {window2.leader_change_s} s")  # fmt: skip
    assert window2.kind == "restart:leader"
    assert then[after] not in (None, now[after]), "the leader was not stopped and started again"
    assert window2.leader_change_s is not None, "leadership did not move during the controlled shutdown"
    assert row2.acknowledged > 0, row2
    assert row2.lost == 0, row2
