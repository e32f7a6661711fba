"""The testcontainers suite's one skip site (`testcontainers_tests/conftest.py`, `docker_engine`) cannot fire
under CI=true: with no engine answering, every test there errors naming the reason instead of skipping.
The same pytest without CI skips, so the run below really reached the skip site (the guard bit)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TARGET = "testcontainers_tests/test_tcp_proxy.py"  # any file of the suite: the guard is a session fixture

pytestmark = [pytest.mark.spawns, pytest.mark.timeout(120)]


def _pytest_without_engine(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": ci, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    cmd = [sys.executable, "-m", "pytest", TARGET, "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-rs"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=100, check=False)


def test_with_ci_set_and_no_engine_the_container_suite_fails_and_skips_nothing(tmp_path: Path) -> None:
    done = _pytest_without_engine(tmp_path, "true")
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode != 0, done.stdout[-2000:]
    assert "skipped" not in summary, summary
    assert "error" in summary, summary
    assert "CI is set and no Docker engine answers" in done.stdout


def test_without_ci_the_same_run_reaches_the_skip_site(tmp_path: Path) -> None:
    done = _pytest_without_engine(tmp_path, "")
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0, done.stdout[-2000:]
    assert "skipped" in summary, summary
    assert "error" not in summary, summary
    assert "passed" not in summary, summary
    assert "With CI=true this is a failure" in done.stdout
