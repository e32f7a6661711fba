"""Power loss end to end on one node: real gateway -> ingest -> processor over HTTP, NATS on the lazy FS.

Load goes through the gateway with client-given ids; slow workers keep a
backlog of acknowledged, unprocessed messages; mid-load the NATS node loses
power (SIGKILL, every unsynced write dropped, restart). Accounting by id
from the processor's ledger. Under the default fsync policy (every 2 min)
with `writeback_s: never` the fault must bite: acknowledged messages are
lost. With `sync_interval: always` none is, and the backlog that was at
stake is processed after the restart (recovered > 0 shows it was there).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.lab.context import RunContext
from experiments.lab.experiments import power_loss as power_loss_results
from experiments.lab.setup import Setup
from experiments.results.schema import Backend, PublishRate, ResultRow
from experiments.runtime.nats.process import ProcessNats
from experiments.workload.accounting import LossSplit, loss_split
from experiments.workload.faults import FaultStep
from tests.lazyfs_fixtures import require_fuse_or_skip

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

RATE = 300.0  # messages/s offered, one per request
DURATION_S = 2.5
FAULT_AT_S = 1.5  # a backlog of ~300 acknowledged, unprocessed messages by then
PROCESSING_MS = 10.0  # one worker: ~100 messages/s


async def power_loss_row(tmp_path: Path, backend: Backend) -> ResultRow:
    require_fuse_or_skip()
    ctx = RunContext("test_power_loss", results_dir=tmp_path / "results")
    setup = Setup(backend=backend, workers=1, processing_ms=PROCESSING_MS, store="lazyfs", writeback_s=None)
    step = FaultStep(kind="power-loss", at_s=FAULT_AT_S, down_s=0.3)
    async with ctx.session(setup) as session:
        assert session.nats is not None
        assert session.nats.kind == "process-lazyfs"
        rec = await session.measure("power-loss", rate=RATE, duration_s=DURATION_S, fault=step, drain_timeout_s=20)
    assert rec.series.faults
    assert rec.series.faults[0].kind == "power-loss:queue"
    return rec.row


async def test_default_policy_loses_acknowledged_messages_on_power_loss(tmp_path: Path) -> None:
    row = await power_loss_row(tmp_path, "nats")
    assert row.acknowledged > 200, row
    assert row.lost > 0, f"the power loss did not bite: {row}"
    assert row.lost == row.lost_prefix + row.lost_middle + row.lost_postfix
    assert row.lost_prefix == 0  # the first messages were processed before the fault
    print(
        f"default policy: acknowledged={row.acknowledged} lost={row.lost} (middle {row.lost_middle}, "
        f"postfix {row.lost_postfix}) recovered={row.recovered}"
    )


async def test_sync_always_loses_nothing_on_power_loss(tmp_path: Path) -> None:
    row = await power_loss_row(tmp_path, "nats-sync")
    assert row.acknowledged > 200, row
    assert row.lost == 0, row
    assert row.recovered > 0, f"no backlog was at stake, so lost=0 proves nothing: {row}"
    print(f"sync_always: acknowledged={row.acknowledged} lost={row.lost} recovered={row.recovered}")


def test_loss_split_follows_send_order() -> None:
    order = [f"m{i}" for i in range(10)]
    processed = {"m2", "m3", "m6"}
    split = loss_split(order, processed)
    assert (split.prefix, split.middle, split.postfix) == (2, 2, 3)  # m0 m1 | m4 m5 | m7 m8 m9
    assert loss_split(order, set()) == LossSplit(postfix=10)  # nothing survived: all of it is the tail
    assert loss_split(order, set(order)) == LossSplit()


def test_power_loss_parses_and_needs_a_lazy_store(tmp_path: Path) -> None:
    step = FaultStep.parse("power-loss", at_s=1.0, down_s=0.1)
    assert (step.kind, step.target, step.label) == ("power-loss", "queue", "power-loss:queue")
    with ProcessNats(tmp_path / "nats") as plain, pytest.raises(ValueError, match="no lazy store"):
        step.fault.run(step, plain)


def test_the_settings_grid_runs_r1_then_r3_and_refuses_typos() -> None:
    grid = power_loss_results.power_loss_settings(
        ["memory", "nats", "nats-sync"], ["never", 30], [1, 3], ["power-loss:leader", "lagging-majority"], ["never"]
    )
    r1 = [(g.backend, g.writeback_s, g.phase) for g in grid if g.replicas == 1]
    assert r1 == [("memory", None, "power-loss,writeback=-"), ("nats", None, "power-loss,writeback=never"),
                  ("nats", 30.0, "power-loss,writeback=30"), ("nats-sync", None, "power-loss,writeback=-")]  # fmt: skip
    r3 = [(g.backend, g.phase) for g in grid if g.replicas == 3]
    assert r3 == [
        ("nats", "power-loss:leader,writeback=never"),
        ("nats", "lagging-majority,writeback=never"),
        ("nats-sync", "power-loss:leader,writeback=-"),
        ("nats-sync", "lagging-majority,writeback=-"),
    ]
    with pytest.raises(ValueError, match="kind must be one of"):
        power_loss_results.power_loss_settings(["nats"], ["never"], [3], ["power-lose:leader"], ["never"])
    with pytest.raises(ValueError, match="replicas=2"):
        power_loss_results.power_loss_settings(["nats"], ["never"], [2], [], [])


def test_the_settings_grid_gives_kafka_its_own_cluster_faults_and_the_writeback_knob() -> None:
    grid = power_loss_results.power_loss_settings(
        ["kafka", "kafka-flush"], ["never", 30], [1, 3], ["power-loss:leader", "lagging-majority"], ["never"],
        ["power-loss:queue"],
    )  # fmt: skip
    assert [(g.replicas, g.backend, g.phase) for g in grid] == [
        (1, "kafka", "power-loss,writeback=never"),
        (1, "kafka", "power-loss,writeback=30"),
        (1, "kafka-flush", "power-loss,writeback=-"),  # an fsync per message: nothing pending for a writeback
        (3, "kafka", "power-loss:queue,writeback=never"),  # JetStream's lagging majority is not Kafka's
        (3, "kafka-flush", "power-loss:queue,writeback=-"),
    ]
    assert power_loss_results.setting_label("kafka", "power-loss:queue,writeback=never", 3).endswith(
        "Kafka\ndefault flush\nwriteback never"
    )


def test_publish_cost_ratios_pair_rounds() -> None:
    def rate(backend: str, store: str, rnd: int, value: float) -> PublishRate:
        return PublishRate(experiment="06_power_loss", run_id="r", repetition=0, backend=backend,
                           store=store, mode="single", round=rnd, messages=10, rate=value)  # fmt: skip

    df = power_loss_results.publish_frame([
        rate("nats", "plain", 0, 1000), rate("nats-sync", "plain", 0, 100),
        rate("nats", "plain", 1, 500), rate("nats-sync", "plain", 1, 100),
        rate("nats", "lazyfs", 0, 800), rate("nats-sync", "lazyfs", 0, 40),
    ])  # fmt: skip
    t = power_loss_results.cost_table(df).set_index(["ratio", "at"])
    assert t.loc[("nats-sync / nats", "plain"), "median"] == pytest.approx(0.15)  # 0.1 and 0.2, paired by round
    assert t.loc[("nats-sync / nats", "plain"), "n"] == 2
    assert t.loc[("lazyfs / plain", "nats"), "median"] == pytest.approx(0.8)
