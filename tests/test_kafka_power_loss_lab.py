"""06's power-loss fault on Kafka deployments: the real stack over HTTP, each broker's data dir on a lazy FS.

gateway -> ingest -> processor, client-given ids, one slow worker and a
small consumer buffer (KAFKA_PREFETCH) so acknowledged messages wait in
the broker when the power goes; the fault is the lab's `power-loss` plug-in
as 06 runs it (`power_loss.setup_for`), accounting by id from the ledger.
The broker-level cases (the leader alone at R3 among them) are
tests/test_kafka_power_loss.py's; these show the lab's wiring bites.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.lab.context import RunContext
from experiments.lab.experiments import power_loss as power_loss_lab
from experiments.lab.experiments.replication import label
from experiments.results.schema import Backend, ResultRow
from experiments.runtime.kafka.cluster import KafkaCluster
from experiments.runtime.lazyfs import is_mounted
from experiments.runtime.processes import alive
from tests.kafka_fixtures import require_kafka_or_skip
from tests.lazyfs_fixtures import require_fuse_or_skip

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

FAULT_AT_S = 1.5
DOWN_S = 0.3


async def power_loss_row(tmp_path: Path, backend: Backend, nodes: int, fault: str, duration_s: float) -> ResultRow:
    require_fuse_or_skip()
    require_kafka_or_skip()
    params = power_loss_lab.Params(processing_ms=10.0, workers=1)
    setting = power_loss_lab.PowerLossSetting(backend, nodes, None, fault)
    step = setting.step(FAULT_AT_S, DOWN_S, params.lag_s)
    ctx = RunContext("test_kafka_power_loss_lab", results_dir=tmp_path / "results")
    async with ctx.session(power_loss_lab.setup_for(setting, params, step)) as session:
        kafka = session.kafka
        assert isinstance(kafka, KafkaCluster)
        assert (kafka.kind, kafka.size) == ("process-lazyfs", nodes)
        mounts = [n.disk for n in kafka.nodes]
        assert all(is_mounted(m) for m in mounts)
        pids_before = [n.pid for n in kafka.nodes]
        rate = 300.0 if nodes == 1 else 150.0
        rec = await session.measure(setting.phase, rate=rate, duration_s=duration_s, fault=step, drain_timeout_s=60)
        label(session, rec)
        assert not set(pids_before) & {n.pid for n in kafka.nodes}, "a broker kept its JVM through the power loss"
        daemons = [n.lazyfs.pid for n in kafka.nodes]
    assert not any(is_mounted(m) for m in mounts), "a lazy mount outlived its session"
    assert not any(alive(p) for p in daemons if p is not None), "a lazy FS daemon outlived its session"
    assert (rec.row.broker_nodes, rec.row.replicas) == (nodes, nodes)
    assert [f.kind for f in rec.series.faults] == [step.label]
    row = rec.row
    print(f"{backend} R{nodes} {fault}: acknowledged={row.acknowledged} lost={row.lost} "
          f"(prefix {row.lost_prefix}, middle {row.lost_middle}, postfix {row.lost_postfix}) "
          f"recovered={row.recovered} refused={row.errors}")  # fmt: skip
    return row


async def test_r1_default_flush_loses_acknowledged_messages_in_the_lab(tmp_path: Path) -> None:
    row = await power_loss_row(tmp_path, "kafka", 1, "power-loss", 3.0)
    assert row.acknowledged > 200, row
    assert row.lost > 0, f"the power loss did not bite: {row}"


async def test_r3_flush_every_message_keeps_what_it_acknowledged_when_all_three_lose_power(tmp_path: Path) -> None:
    row = await power_loss_row(tmp_path, "kafka-flush", 3, "power-loss:queue", 5.0)
    assert row.lost == 0, row
    assert row.recovered > 0, f"no backlog was at stake, so lost=0 proves nothing: {row}"
    assert row.errors > 0, f"no publish was refused: the brokers never went down: {row}"
