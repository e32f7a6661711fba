"""The fast tier's guard bites: an unmarked test that starts a process fails, naming the mark; marked, it passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiers import MARK

ROOT = Path(__file__).resolve().parent.parent

CONFTEST = """
from tests import tiers
def pytest_configure(config):
    tiers.register(config)
"""
TESTS = """
import subprocess, sys
import pytest

def test_unmarked_spawner():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

@pytest.mark.spawns
def test_marked_spawner():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

def test_in_process():
    assert sum(range(4)) == 6

@pytest.fixture
def nats_server():
    return "stands in for the real fixture: the mark comes from the name"

def test_by_fixture(nats_server):
    subprocess.run([sys.executable, "-c", "pass"], check=True)
"""


@pytest.mark.spawns
def test_an_unmarked_test_that_starts_a_process_fails_and_fixtures_mark_by_themselves(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_sample.py").write_text(TESTS)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # quick start
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    out = run.stdout
    assert "ERROR test_sample.py::test_unmarked_spawner" in out, out
    assert f"is not marked `{MARK}`" in out
    assert "PASSED test_sample.py::test_marked_spawner" in out
    assert "PASSED test_sample.py::test_in_process" in out
    assert "PASSED test_sample.py::test_by_fixture" in out
    fast = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", f"not {MARK}", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    summary = fast.stdout.strip().splitlines()[-1]  # the unmarked spawner's call passes, its teardown errs
    assert "2 passed, 2 deselected, 1 error" in summary, fast.stdout
