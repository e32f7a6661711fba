"""The 05_cluster notebook's quick profile through testcontainers: three NATS containers, the report naming them.

`tests/test_notebooks.py` runs the whole quick batch on the embedded
process; this runs the cluster notebook the way the user's design has the
notebooks start NATS, `HARNESS_NATS=docker`, so both providers run on every
change. Checks are on the files the batch leaves: rows, run document, report.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from experiments.batch.runner import BatchOutcome, run_batch
from experiments.results.schema import read_runs

pytestmark = [pytest.mark.notebooks, pytest.mark.docker, pytest.mark.slow]

BATCH_FILE = Path(__file__).resolve().parent.parent / "experiments" / "batches" / "default.yaml"


@pytest.fixture(scope="module")
def docker_batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchOutcome]:
    old = {k: os.environ.get(k) for k in ("HARNESS_NATS", "HARNESS_NATS_NODES")}
    os.environ["HARNESS_NATS"] = "docker"
    os.environ.pop("HARNESS_NATS_NODES", None)  # the notebook's `nodes` parameter decides
    try:
        yield run_batch(BATCH_FILE, quick=True, only={"05_cluster"}, results_root=tmp_path_factory.mktemp("results"))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.timeout(400)
def test_cluster_quick_profile_runs_on_containers_and_the_report_names_them(docker_batch: BatchOutcome) -> None:
    assert [f.describe() for f in docker_batch.failures] == []
    assert [r.split("--")[0] for r in docker_batch.executed] == ["05_cluster"]
    rows = pd.read_csv(docker_batch.batch_dir / "results.csv")
    nats = rows[rows["backend"] == "nats"]
    assert set(nats["broker_provider"]) == {"docker"}
    assert set(zip(nats["broker_nodes"], nats["replicas"], strict=True)) == {(1, 1), (3, 3)}
    assert (nats["lost"] == 0).all()
    (doc,) = read_runs(docker_batch.batch_dir / "runs")
    env = doc.environment
    assert env["broker_provider"] == "docker"
    assert env["nats_cluster_size"] == "1; 3", env  # the R1 node, then the three-node cluster
    assert env["nats_servers"].count("@") == 4, env["nats_servers"]  # n1 alone, then n1..n3
    html = (docker_batch.batch_dir / "report.html").read_text()
    assert "docker" in html
    assert "failover_timeline" in html
