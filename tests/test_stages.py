"""Where the time goes, on real runs: stage stamps through the real stack, CPU per process, schema v1 still read.

Each phase is a real deployment (uvicorn gateway -> ingest -> processor, a
real nats-server for `nats`) driven by the open-loop generator; the stage
figures come from the processors' ledgers.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from experiments.lab import RunContext, Setup
from experiments.results.schema import SCHEMA_VERSION, RunDocument, read_run
from experiments.results.stages import CLIENT_STAGES, STAGES, TOTAL, stage_sum_check, stage_table
from services.ledger import Ledger, read_ledger

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("backend", ["memory", "nats"])
async def test_stages_add_up_to_the_measured_total_on_a_real_run(tmp_path: Path, backend: str) -> None:
    ctx = RunContext("01_latency", results_dir=tmp_path)
    async with ctx.session(Setup(backend=backend, workers=2)) as session:  # type: ignore[arg-type]
        rec = await session.measure("rate=200", rate=200, duration_s=1.5)
    row, stats = rec.row, {s.stage: s for s in rec.series.stages}
    assert row.lost == 0
    assert row.processed == row.sent == 300
    assert [s.stage for s in rec.series.stages] == [*STAGES, TOTAL, *CLIENT_STAGES]
    # every processed message carried every stamp, and the generator's times joined by id
    assert all(stats[name].n == row.processed for name in (*STAGES, TOTAL, *CLIENT_STAGES)), stats
    check = stage_sum_check(rec.series.stages)
    assert check["sum_of_means_ms"] == pytest.approx(check["total_mean_ms"], abs=0.01)
    # medians need not add up exactly (each stage's median is another message); they come close to the total's
    assert check["sum_of_medians_ms"] == pytest.approx(check["total_median_ms"], rel=0.4), check
    # the row's own end-to-end (ingest -> work done) lies inside the stamped total
    assert row.e2e_p50_ms is not None
    assert row.e2e_p50_ms < (stats[TOTAL].p50_ms or 0)
    assert all((s.p50_ms or 0) >= 0 for s in rec.series.stages)
    # the client waited for the store: its median latency covers the hops up to stored and the way back
    assert row.client_p50_ms is not None
    assert row.client_p50_ms >= (stats["store"].p50_ms or 0)
    # CPU: every process of the deployment was measured, and the load generator is part of it
    cpu = rec.series.cpu_us_per_msg
    expected = {"gateway", "ingest", "processor", "load generator"} | ({"nats-server"} if backend == "nats" else set())
    assert set(cpu) == expected, cpu
    assert all(v > 0 for v in cpu.values()), cpu
    assert row.cpu_us_per_msg == pytest.approx(sum(cpu.values()), abs=0.1)
    assert row.client_cpu_pct is not None
    assert row.machine_cpu_pct is not None
    assert row.client_bound is not None
    # the saved document is the current version and round-trips with its stages
    saved = read_run(ctx.save())
    assert saved.schema_version == SCHEMA_VERSION == 3
    assert saved.results[0].series.stages == rec.series.stages
    table = stage_table(saved.results)
    assert table.loc[0, "sum of stage means"] == pytest.approx(table.loc[0, "total mean (measured)"], abs=0.01)


async def test_a_warm_up_is_processed_but_recorded_nowhere(tmp_path: Path) -> None:
    """The warm-up before a deployment's first phase: its messages go through the chain, no row counts them."""
    ctx = RunContext("01_latency", results_dir=tmp_path)
    async with ctx.session(Setup(backend="memory", workers=2)) as session:
        acked = await session.warm_up(rate=200, duration_s=1.0)
        assert ctx.records == []
        rec = await session.measure("rate=200", rate=200, duration_s=1.0)
        session.ledgers.poll()
        warm = [r for r in session.ledgers.rows if r[0].startswith("warmup-") and r[3] == "processed"]
    assert acked == 200
    assert len(warm) == acked  # the warm-up really ran through to the processor
    assert ctx.records == [rec]
    assert rec.row.sent == rec.row.processed == 200  # the measured phase counts its own messages only


def test_a_v1_document_is_still_read(tmp_path: Path) -> None:
    """A run document written before stages and CPU (schema 1) reads with those fields empty."""
    row = {
        "schema_version": 1, "experiment": "01_latency", "run_id": "r", "repetition": 0, "backend": "nats",
        "broker_provider": "process", "phase": "rate=200", "offered_rate": 200.0, "duration_s": 2.0,
        "payload_bytes": 128, "batch_size": 1, "workers": 4, "processors": 1, "processing_ms": 0.0,
        "fault": "none", "achieved_rate": 200.0, "processed_rate": 200.0, "client_p50_ms": 2.0,
        "client_p90_ms": 3.0, "client_p99_ms": 4.0, "client_p999_ms": 5.0, "client_max_ms": 6.0,
        "e2e_p50_ms": 1.0, "e2e_p90_ms": 2.0, "e2e_p99_ms": 3.0, "e2e_p999_ms": 4.0, "e2e_max_ms": 5.0,
        "sent": 400, "acknowledged": 400, "processed": 400, "lost": 0, "duplicated": 0, "extra_deliveries": 0,
        "unacked_processed": 0, "rejected": 0, "errors": 0, "dead_lettered": 0, "wall_time_s": 3.0, "params": "{}",
    }  # fmt: skip
    names = ("t_s", "processed_per_s", "acked_per_s", "backlog_t_s", "backlog")
    timeline: dict[str, list[float]] = {name: [] for name in names}
    series = {"client_quantiles_ms": [], "e2e_quantiles_ms": [], "faults": [], "timeline": timeline}
    doc = {
        "schema_version": 1,
        "run": {
            "run_id": "r",
            "notebook": "01_latency",
            "repetition": 0,
            "parameters": {},
            "started_at": "x",
            "wall_time_s": 3.0,
        },
        "environment": {},
        "results": [{"row": row, "series": series}],
    }
    path = tmp_path / "r.json"
    path.write_bytes(orjson.dumps(doc))
    got = read_run(path)
    assert got.schema_version == 1
    assert got.results[0].row.cpu_us_per_msg is None
    assert got.results[0].row.client_bound is None
    assert got.results[0].series.stages == []
    assert got.results[0].series.cpu_us_per_msg == {}
    doc["schema_version"] = 99
    with pytest.raises(ValueError, match="schema_version 99"):
        RunDocument.model_validate(doc)


async def test_a_ledger_from_before_the_stamps_gets_the_columns(tmp_path: Path) -> None:
    """An old ledger file (8 columns) is migrated in place: old rows stay, new rows carry stamps."""
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE deliveries (id TEXT NOT NULL, source TEXT NOT NULL, created_at INTEGER NOT NULL, "
        "processed_at INTEGER NOT NULL, delivery_count INTEGER NOT NULL, worker TEXT NOT NULL, "
        "instance TEXT NOT NULL, outcome TEXT NOT NULL)"
    )
    conn.execute("INSERT INTO deliveries VALUES ('old', 's', 1, 2, 1, 'w0', 'p', 'processed')")
    conn.commit()
    conn.close()
    ledger = Ledger(path)
    await ledger.start()
    committed = await ledger.record([("new", "s", 3, 4, 1, "w0", "p", "processed", 1, 3, 3, 4, None, None)])
    ledger.settled([("new", 1, "p", committed, committed + 5)])
    await ledger.close()
    assert {r.id for r in read_ledger(path)} == {"old", "new"}
    conn = sqlite3.connect(path)
    stamps = conn.execute("SELECT id, gateway_at, delivered_at FROM deliveries ORDER BY id").fetchall()
    settled = conn.execute("SELECT id, acked_at - committed_at FROM settlements").fetchall()
    conn.close()
    assert stamps == [("new", 1, 4), ("old", None, None)]
    assert settled == [("new", 5)]
