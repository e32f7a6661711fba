"""Every notebook through papermill with the quick profile, and what the batch leaves behind.

This is the main job in small: the default batch file's quick profile, run
by the real batch runner (papermill, one kernel per run, real services and a
real nats-server), then checks on the produced files only.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from experiments.batch.runner import BatchOutcome, report_main, run_batch
from experiments.lab import registry
from experiments.results import verdicts
from experiments.results.schema import read_runs
from experiments.runtime.processes import alive
from tests.test_claims import QUICK_MUST_HOLD, QUICK_SPEED_CLAIMS

# Whichever test first asks for `quick_batch` runs the whole batch inside its own timeout (pytest-timeout
# counts fixture setup), so every test here gets the batch's budget; tests that start no batch set their own.
BATCH_TIMEOUT_S = 600
pytestmark = [pytest.mark.notebooks, pytest.mark.e2e, pytest.mark.timeout(BATCH_TIMEOUT_S)]

BATCH_FILE = Path(__file__).resolve().parent.parent / "experiments" / "batches" / "default.yaml"
NOTEBOOKS = list(registry.EXPERIMENTS)  # every registered experiment has a notebook (test_experiment_library)
FIGURES = [f.name for e in registry.EXPERIMENTS.values() for f in e.figures]
FOOTPRINT = "08_footprint"  # holds its backlog by design: no processing, so no end-to-end latency


@pytest.fixture(scope="module")
def quick_batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchOutcome]:
    old = os.environ.get("HARNESS_NATS")
    os.environ["HARNESS_NATS"] = "process"  # the embedded default; the container path has its own suite
    try:
        yield run_batch(
            BATCH_FILE, quick=True, results_root=tmp_path_factory.mktemp("results"), check=registry.check_parameters
        )
    finally:
        if old is None:
            os.environ.pop("HARNESS_NATS", None)
        else:
            os.environ["HARNESS_NATS"] = old


@pytest.fixture(scope="module")
def rows(quick_batch: BatchOutcome) -> pd.DataFrame:
    return pd.read_csv(quick_batch.batch_dir / "results.csv")


def test_every_test_that_can_trigger_the_batch_has_its_budget(request: pytest.FixtureRequest) -> None:
    """The fixture's timeout does not depend on which test triggers it (`-k cluster_rows_name` alone hit 120 s)."""
    short = [
        item.nodeid
        for item in request.session.items
        if item.path == Path(__file__)
        and "quick_batch" in getattr(item, "fixturenames", ())
        and (marker := item.get_closest_marker("timeout")) is not None
        and marker.args[0] < BATCH_TIMEOUT_S
    ]
    assert short == []


def test_quick_batch_runs_every_notebook(quick_batch: BatchOutcome) -> None:
    assert [f.describe() for f in quick_batch.failures] == []
    executed = {run_id.split("--")[0] for run_id in quick_batch.executed}
    assert executed == set(NOTEBOOKS)
    for run_id in quick_batch.executed:
        assert (quick_batch.batch_dir / "notebooks" / f"{run_id}.ipynb").stat().st_size > 0
    assert (quick_batch.batch_dir / "notebooks" / "99_report.ipynb").exists()
    for run_id in quick_batch.executed:  # also as HTML without code, with the chapter's verdicts
        page = (quick_batch.batch_dir / "html" / f"{run_id}.html").read_text()
        assert "Verdicts" in page
        assert "What this run showed." in page
        assert "lab.RunContext(" not in page


def test_run_documents_match_the_schema(quick_batch: BatchOutcome, rows: pd.DataFrame) -> None:
    docs = read_runs(quick_batch.batch_dir / "runs")  # validates every document
    assert len(docs) == len(quick_batch.executed)
    assert len(rows) == sum(len(d.results) for d in docs)
    env = docs[0].environment
    for key in ("python", "nats_server", "nats_py", "git_sha", "cpu_count"):
        assert env[key], key


def test_every_phase_moved_messages(rows: pd.DataFrame) -> None:
    rows = rows[rows["experiment"] != FOOTPRINT]
    assert (rows["achieved_rate"] > 0).all()
    assert (rows["processed"] > 0).all()


def test_nothing_was_altered_end_to_end_for_any_queue_or_fault(rows: pd.DataFrame) -> None:
    """Issue 20: every phase row counts, from the ledgers' digests, the messages processed with another body
    than the one sent; the count is there on every row, over real processed messages, and it is 0 for
    every queue and fault. (That the count sees a planted change: tests/test_integrity.py.)"""
    assert "altered" in rows.columns
    assert rows["altered"].notna().all()
    assert rows.loc[rows["processed"] > 0, "backend"].nunique() >= 2  # the count ran over real deliveries
    changed = rows[rows["altered"] != 0]
    assert changed.empty, changed[["experiment", "backend", "fault", "altered"]].to_string()


def test_latency_percentiles_are_ordered(rows: pd.DataFrame) -> None:
    rows = rows[rows["experiment"] != FOOTPRINT]
    for prefix in ("client", "e2e"):
        cols = [f"{prefix}_{p}_ms" for p in ("p50", "p90", "p99", "p999", "max")]
        values = rows[cols].dropna()
        assert len(values) == len(rows)
        assert (values.diff(axis=1).iloc[:, 1:] >= 0).all().all(), prefix


def test_the_claims_hold_on_this_quick_batch(quick_batch: BatchOutcome) -> None:
    """The lab's expectations (loss, durability, switch, footprint...) as claims: each lives in its chapter module."""
    found = {v.claim.id: v for v in verdicts.of_batch(quick_batch.batch_dir)}
    contradicted = {i: v.finding.evidence for i, v in found.items() if v.outcome == "contradicted"}
    # Speed claims (QUICK_SPEED_CLAIMS) may go either way on a fresh quick batch; every other claim must not
    # be contradicted, and the safety claims (QUICK_MUST_HOLD) must hold.
    assert {i: e for i, e in contradicted.items() if i not in QUICK_SPEED_CLAIMS} == {}
    assert {i: found[i].outcome for i in QUICK_MUST_HOLD} == dict.fromkeys(QUICK_MUST_HOLD, "holds"), {
        i: (found[i].finding.guard, found[i].finding.evidence) for i in QUICK_MUST_HOLD
    }


def test_power_loss_run_measured_publish_rates(quick_batch: BatchOutcome) -> None:
    costs = pd.read_csv(quick_batch.batch_dir / "tables" / "publish_cost.csv")
    assert set(costs["store"]) == {"plain", "lazyfs"}
    assert set(costs["backend"]) == {"nats", "nats-sync"}
    assert (costs["median_msg_s"] > 0).all()


def test_cluster_rows_name_their_deployment(rows: pd.DataFrame) -> None:
    cl = rows[rows["experiment"] == "05_cluster"]
    deployments = set(zip(cl["backend"], cl["broker_nodes"], cl["replicas"], strict=True))
    assert deployments == {("memory", 0, 0), ("nats", 1, 1), ("nats", 3, 3)}, deployments
    faults = cl[cl["fault"] != "none"]
    assert len(faults) > 0
    assert (faults["broker_nodes"] == 3).all()
    assert faults["recover_s"].notna().all()


def test_report_has_every_figure_and_table(quick_batch: BatchOutcome) -> None:
    batch_dir = quick_batch.batch_dir
    assert quick_batch.report_html == batch_dir / "report.html"
    html = (batch_dir / "report.html").read_text()
    for name in FIGURES:
        for ext in ("png", "svg", "pdf"):
            assert (batch_dir / "figures" / f"{name}.{ext}").stat().st_size > 1000, (name, ext)
        assert f"alt='{name}'" in html
    # thesis-ready: numbered figures with generated captions, verdicts and headlines before any table
    captions = json.loads((batch_dir / "captions.json").read_text())
    assert [f["number"] for f in captions["figures"]] == list(range(1, len(captions["figures"]) + 1))
    assert {f["name"] for f in captions["figures"]} >= set(FIGURES)
    assert all("From " in f["caption"] and "CPUs" in f["caption"] for f in captions["figures"])
    assert html.index("<h2>Verdicts</h2>") < html.index("<h2>Headlines</h2>") < html.index("Table 1:")
    assert "Figure 1.</b>" in html
    methods = (batch_dir / "methods.md").read_text()
    assert "nats_server: v" in methods
    assert "| 01_latency | 2 | 2 |" in methods
    tables = ("latency", "repeatability", "throughput", "durability", "scaling", "power_loss", "publish_cost",
              "publish_ratios", "migration", "migration_statuses", "footprint", "cluster_latency",
              "cluster_faults")  # fmt: skip
    for table in tables:
        assert (batch_dir / "tables" / f"{table}.csv").exists()
        tex = (batch_dir / "tables" / f"{table}.tex").read_text()
        assert "\\toprule" in tex
        assert "\\bottomrule" in tex
        assert f"\\label{{tab:{table}}}" in tex


def _digests(batch_dir: Path) -> dict[str, str]:
    paths = [batch_dir / "results.csv", batch_dir / "report.html"]
    paths += sorted((batch_dir / "tables").glob("*.csv")) + sorted((batch_dir / "figures").glob("*"))
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def test_the_report_leaves_out_runs_the_batch_file_no_longer_plans(quick_batch: BatchOutcome) -> None:
    """A changed parameter gives a new run id; the old run's document stays in runs/ but not in the report."""
    batch_dir = quick_batch.batch_dir
    rows_before = len(pd.read_csv(batch_dir / "results.csv"))
    tour = next((batch_dir / "runs").glob("00_tour--*.json"))
    stale = batch_dir / "runs" / "00_tour--0000dead--r0.json"
    stale.write_bytes(tour.read_bytes().replace(tour.stem.encode(), stale.stem.encode()))
    try:
        registry.build_report(batch_dir)  # what the report notebook calls, without a kernel's start-up
        assert len(pd.read_csv(batch_dir / "results.csv")) == rows_before
        assert (
            "1 run document(s) in <code>runs/</code> are of parameters the batch file no longer plans"
            in (batch_dir / "report.html").read_text()
        )
    finally:
        stale.unlink()
        assert report_main([str(batch_dir)]) == 0  # `diplom report`: the report as it was


def test_a_finished_batch_resumes_without_rerunning_and_rebuilds_identical_files(quick_batch: BatchOutcome) -> None:
    """Run again over a finished batch: nothing re-runs, and the report, rebuilt from the run documents alone
    (its tables and results.csv deleted first), is byte-identical (the same `execute_report` as `diplom report`)."""
    before = _digests(quick_batch.batch_dir)
    for p in [*(quick_batch.batch_dir / "tables").glob("*.csv"), quick_batch.batch_dir / "results.csv"]:
        p.unlink()
    again = run_batch(BATCH_FILE, quick=True, results_root=quick_batch.batch_dir.parent)
    assert again.executed == []
    assert sorted(again.skipped) == sorted(quick_batch.executed)
    assert again.failures == []
    assert _digests(quick_batch.batch_dir) == before


@pytest.mark.timeout(120)
def test_a_failing_notebook_fails_the_batch_naming_notebook_parameters_and_cell(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch: bad\nruns:\n  - notebook: 00_tour\n    parameters: {backends: [rabbitmq]}\nreport: null\n")
    outcome = run_batch(bad, results_root=tmp_path / "results")
    assert len(outcome.failures) == 1
    text = outcome.failures[0].describe()
    assert "00_tour" in text
    assert '"backends": ["rabbitmq"]' in text
    assert "ValidationError" in text  # the cell's error, from the experiment's Params
    assert "rabbitmq" in text
    assert "cell " in text


@pytest.mark.timeout(120)
def test_a_run_over_its_timeout_is_stopped_with_everything_it_started(tmp_path: Path) -> None:
    slow = tmp_path / "slow.yaml"
    slow.write_text(
        "batch: slow\ntimeout_s: 20\nreport: null\nruns:\n  - notebook: 01_latency\n"
        "    parameters: {backends: [nats], rates: [50], duration_s: 300}\n"
    )
    outcome = run_batch(slow, results_root=tmp_path / "results")
    assert len(outcome.failures) == 1
    assert "timed out after 20 s" in outcome.failures[0].reason
    pids_file = next((tmp_path / "results" / "slow" / ".children").glob("*.pids"))
    lines = pids_file.read_text().split("\n")
    started = {int(line.split()[0]) for line in lines if line and line[0].isdigit()}
    containers = {line.split()[1] for line in lines if line.startswith("container ")}
    # papermill and its kernel (the runner's), processor, ingest, gateway, and nats-server: a process,
    # or a container where a Docker engine runs (HARNESS_NATS=auto)
    assert len(started) + len(containers) >= 6
    for pid in started:
        assert not alive(pid), pid
    for container in containers:  # removed by id, not only stopped
        gone = subprocess.run(["docker", "inspect", container], capture_output=True, check=False)
        assert gone.returncode != 0, container
