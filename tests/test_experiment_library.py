"""The experiment library's pure parts: percentiles, the result schema, batch planning, failing-cell reports."""

from __future__ import annotations

import asyncio
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from experiments.batch.runner import failing_cell, load_batch, plan
from experiments.lab import registry
from experiments.lab.setup import Setup
from experiments.results.schema import ResultRow
from experiments.results.stats import nearest_rank, percentiles, quantile_curve, spread
from experiments.workload.faults import FaultStep, Progress

DEFAULT_BATCH = Path(__file__).resolve().parent.parent / "experiments" / "batches" / "default.yaml"


def test_nearest_rank_returns_observed_values_in_order() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    p = percentiles(values)
    assert p["p50"] == 3.0
    assert p["max"] == 5.0
    assert list(p.values()) == sorted(p.values())
    assert all(v in values for v in p.values())
    assert nearest_rank([1.0, 2.0], 0.5) == 1.0
    assert math.isnan(percentiles([])["p99"])


def test_quantile_curve_spans_min_to_max() -> None:
    curve = quantile_curve([float(i) for i in range(1000)])
    assert len(curve) == 101
    assert curve[0] == 0.0
    assert curve[-1] == 999.0
    assert curve == sorted(curve)


def test_spread_of_repetitions() -> None:
    s = spread([2.0, 1.0, 4.0])
    assert (s["min"], s["median"], s["max"], s["n"]) == (1.0, 2.0, 4.0, 3)
    assert s["rel_spread"] == pytest.approx(1.5)


def _row(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict(
        experiment="x", run_id="r", repetition=0, backend="nats", broker_provider="process", phase="p",
        offered_rate=100.0, duration_s=1.0, payload_bytes=128, batch_size=1, workers=4, processors=1,
        processing_ms=0.0, achieved_rate=100.0, processed_rate=100.0,
        client_p50_ms=1.0, client_p90_ms=2.0, client_p99_ms=3.0, client_p999_ms=4.0, client_max_ms=5.0,
        e2e_p50_ms=1.0, e2e_p90_ms=2.0, e2e_p99_ms=3.0, e2e_p999_ms=4.0, e2e_max_ms=5.0,
        sent=10, acknowledged=9, processed=9, lost=0, duplicated=0, extra_deliveries=0, unacked_processed=0,
        rejected=1, errors=0, dead_lettered=0, wall_time_s=1.0, params="{}",
    )  # fmt: skip
    row.update(over)
    return row


def test_result_row_accepts_a_consistent_row() -> None:
    assert ResultRow(**_row()).lost == 0
    assert ResultRow(**_row(e2e_p50_ms=None, e2e_p90_ms=None, e2e_p99_ms=None, e2e_p999_ms=None, e2e_max_ms=None))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"acknowledged": 11, "rejected": 0, "sent": 10}, "counts inconsistent"),
        ({"lost": 10}, "counts inconsistent"),
        ({"rejected": 0}, "acknowledged + rejected + errors"),
        ({"e2e_p99_ms": 9.0}, "e2e percentiles not ordered"),
        ({"backend": "rabbitmq"}, "backend"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_result_row_rejects_inconsistent_rows(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        ResultRow(**_row(**change))


def test_default_batch_plans_every_notebook_with_stable_ids() -> None:
    runs = plan(load_batch(DEFAULT_BATCH))
    notebooks = set(registry.EXPERIMENTS)
    assert {r.notebook for r in runs} == notebooks
    assert len({r.run_id for r in runs}) == len(runs)
    assert plan(load_batch(DEFAULT_BATCH)) == runs  # same file, same ids: a batch resumes
    quick = plan(load_batch(DEFAULT_BATCH, quick=True))
    assert {r.run_id for r in quick}.isdisjoint({r.run_id for r in runs})  # other parameters, other ids
    latency = [r for r in quick if r.notebook == "01_latency"]
    assert [r.repetition for r in latency] == [0, 1]
    assert latency[0].parameters["backends"] == ["memory", "nats"]  # kept from the full profile


def test_batch_file_errors_name_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch: b\nruns:\n  - notebook: 01_latency\n    repetitons: 2\n")
    with pytest.raises(ValueError, match="repetitons"):
        load_batch(bad)
    missing = tmp_path / "missing.yaml"
    missing.write_text("batch: b\nruns:\n  - notebook: 07_nothing\n")
    with pytest.raises(ValueError, match="07_nothing"):
        plan(load_batch(missing))


def test_failing_cell_names_the_cell_and_the_error(tmp_path: Path) -> None:
    error = {"output_type": "error", "ename": "ValueError", "evalue": "boom", "traceback": []}
    cells = [
        {"id": "a", "cell_type": "code", "source": "x = 1", "metadata": {}, "outputs": [], "execution_count": 1},
        {"id": "b", "cell_type": "code", "source": "raise ValueError('boom')", "metadata": {}, "outputs": [error],
         "execution_count": 2},
    ]  # fmt: skip
    path = tmp_path / "out.ipynb"
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}))
    assert failing_cell(path) == "cell 1: ValueError: boom (cell starts: \"raise ValueError('boom')\")"


def test_fault_steps_parse_and_validate() -> None:
    assert FaultStep.parse("kill").label == "kill:queue"
    assert FaultStep.parse("pause:broker", down_s=2.0).down_s == 2.0
    assert FaultStep.parse("none").label == "none"
    with pytest.raises(ValueError, match="kind"):
        FaultStep.parse("explode")
    with pytest.raises(ValueError, match="target"):
        FaultStep.parse("kill:gateway")
    assert FaultStep.parse("switch:nats").label == "switch:nats"
    assert FaultStep.parse("naive-switch:memory").label == "naive-switch:memory"
    with pytest.raises(ValueError, match="switches to"):
        FaultStep.parse("switch")  # a switch must name the queue it switches to
    with pytest.raises(ValueError, match="target"):
        FaultStep.parse("kill:memory")


def test_setup_rejects_an_unknown_backend_at_once() -> None:
    with pytest.raises(ValueError, match="rabbitmq"):
        Setup(backend="rabbitmq")  # type: ignore[arg-type]


async def test_progress_wakes_a_fault_waiting_for_n_requests() -> None:
    progress = Progress()
    waiter = asyncio.create_task(progress.reached(3))
    progress(1)
    progress(2)
    await asyncio.sleep(0)
    assert not waiter.done()
    progress(3)
    await asyncio.wait_for(waiter, 1.0)
    await asyncio.wait_for(progress.reached(2), 1.0)  # already past: returns at once


def test_a_phase_record_counts_by_id_what_was_sent_acked_processed_lost_and_duplicated() -> None:
    from experiments.lab.record import PhaseObservation, PhaseSpec, RunLabels, build_record
    from experiments.workload.load import LoadResult, RequestRecord

    t0_ns = 1_000_000_000_000
    # 4 requests: 0 and 1 acknowledged, 2 timed out (status 0) but stored after all, 3 rejected (429).
    load = LoadResult(
        [
            RequestRecord(0, 10.0, 0.002, 202),
            RequestRecord(1, 10.1, 0.004, 202),
            RequestRecord(2, 10.2, 10.0, 0),
            RequestRecord(3, 10.3, 0.001, 429),
        ],
        duration=1.0,
    )
    ms = 1_000_000
    ledger = [
        ("p-0", t0_ns, t0_ns + 3 * ms, "processed"),
        ("p-0", t0_ns, t0_ns + 900 * ms, "processed"),  # a redelivery: duplicated
        ("p-2", t0_ns, t0_ns + 5 * ms, "processed"),  # processed though the client saw no 2xx
    ]  # p-1 was acknowledged and never processed: lost
    obs = PhaseObservation("p", load, ledger, t0=10.0, t0_ns=t0_ns, wall_s=2.5)
    spec = PhaseSpec("rate=4", rate=4.0, duration_s=1.0)
    rec = build_record(RunLabels("03_durability", "r1", 0, {"k": 1}), Setup(backend="nats"), spec, obs)
    row = rec.row
    assert (row.sent, row.acknowledged, row.processed) == (4, 2, 2)
    assert (row.lost, row.duplicated, row.extra_deliveries, row.unacked_processed) == (1, 1, 1, 1)
    assert (row.rejected, row.errors) == (1, 1)
    assert (row.e2e_p50_ms, row.e2e_max_ms) == (3.0, 5.0)  # the first processing of each id
    assert row.client_max_ms == 4.0
    assert row.achieved_rate == 2.0
    assert sum(rec.series.timeline.processed_per_s) * 0.25 == 2  # first processings only, in their bins
