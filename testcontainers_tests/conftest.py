"""Testcontainers suite fixtures: NATS in a Docker container.

`nats_server` is a `DockerNats` here (a `ProcessNats` in `tests/`); the shared
backend fixtures come from `tests.backend_fixtures`, so the contract tests run
unchanged against the container.

No engine answering: with `CI` set the suite FAILS (every test errors with
the reason), because a CI run that skipped its container tests would pass
while proving nothing. On a user's machine without CI it skips, with the
reason and how to start an engine.

At session end a leak check fails the run if any container this run started
(by label) or any nats-server process a test started (by pid) is left.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from experiments.runtime.nats.docker import LABEL_RUN, RUN_ID, DockerNats, containers_of_run, docker_engine_problem
from experiments.runtime.nats.process import ProcessNats
from experiments.runtime.processes import alive
from testcontainers_tests.fault_matrix import FaultMatrix
from tests import tiers
from tests.backend_fixtures import capabilities, make_backend
from tests.ci import ci_is_set

__all__ = [
    "backend_kind",
    "capabilities",
    "docker_engine",
    "fault_matrix",
    "make_backend",
    "nats_server",
    "no_leftovers",
    "process_nats",
]

START_ENGINE_HINT = "start one with `bash scripts/ensure-docker.sh` (as root)"


@functools.cache
def engine_problem() -> str | None:
    """Probed once per session: None when a Docker engine answers, else why not."""
    return docker_engine_problem()


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too, so --strict-markers accepts it whatever pyproject says.
    config.addinivalue_line("markers", "docker: needs a Docker engine (NATS in a container via testcontainers)")
    tiers.register(config)  # every test here is marked `spawns` (the session's `docker_engine` fixture)


def pytest_report_header(config: pytest.Config) -> str:
    problem = engine_problem()
    engine = "answers" if problem is None else f"NOT available: {problem}"
    return f"docker engine: {engine}; CI={'set' if ci_is_set() else 'unset'}; container label {LABEL_RUN}={RUN_ID}"


@pytest.fixture(scope="session", autouse=True)
def docker_engine() -> None:
    """Fail (CI) or skip (elsewhere) every test here when no engine answers."""
    problem = engine_problem()
    if problem is None:
        return
    if ci_is_set():
        pytest.fail(
            f"CI is set and no Docker engine answers: {problem}. The testcontainers suite never skips "
            f"in CI; {START_ENGINE_HINT} before pytest.",
            pytrace=False,
        )
    pytest.skip(f"no Docker engine answers ({problem}); {START_ENGINE_HINT}. With CI=true this is a failure.")


def _recording(start: Callable[..., None], pids: list[int]) -> Callable[..., None]:
    def start_and_record(self: Any, *args: Any, **kwargs: Any) -> None:
        start(self, *args, **kwargs)
        if self.pid is not None:
            pids.append(int(self.pid))

    return start_and_record


def _nats_server_alive(pid: int) -> bool:
    """A live (not zombie) process with this pid that is a nats-server (pids can be reused)."""
    try:
        return alive(pid) and any("nats-server" in part for part in psutil.Process(pid).cmdline())
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="session", autouse=True)
def no_leftovers(docker_engine: None) -> Iterator[list[int]]:
    """The final check: every container and nats-server process the tests started is gone.

    Every `start` of either provider during the session records the server's
    pid (for a container: its nats-server as the host sees it), whoever called
    it: fixtures, tests, or the contract module's own `ProcessNats`.
    """
    pids: list[int] = []
    with pytest.MonkeyPatch.context() as mp:
        for cls in (ProcessNats, DockerNats):
            mp.setattr(cls, "start", _recording(cls.start, pids))
        yield pids
    left = containers_of_run()
    alive = sorted({p for p in pids if _nats_server_alive(p)})
    problems = []
    if left:
        problems.append(f"containers left by this run (docker ps -a --filter label={LABEL_RUN}={RUN_ID}): {left}")
    if alive:
        problems.append(f"nats-server processes started by the tests still alive: pids {alive}")
    assert not problems, "; ".join(problems)


@pytest.fixture(params=["nats"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Only the NATS case here: the memory backend's contract runs in `tests/` already."""
    return str(request.param)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[DockerNats]:
    """A fresh NATS container: host network, free ports on 127.0.0.1, store in tmp_path; removed after."""
    server = DockerNats(tmp_path / "nats")
    try:
        server.start()
        yield server
    finally:
        server.close()
    assert server.container_id is None


@pytest.fixture
def process_nats(tmp_path: Path) -> Iterator[ProcessNats]:
    """The process provider, for tests that hold both providers to the same promise."""
    server = ProcessNats(tmp_path / "nats-process")
    try:
        server.start()
        yield server
    finally:
        server.close()
    assert server.pid is None


_MATRIX = FaultMatrix()


@pytest.fixture(scope="session")
def fault_matrix() -> FaultMatrix:
    """Fault and durability tests add one row each (A, G, P, lost, duplicated); printed and written at the end."""
    return _MATRIX


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """The matrix's wall time: setup, call and teardown of every test marked `faults`."""
    if "faults" in report.keywords:
        _MATRIX.seconds += report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _MATRIX.rows:
        terminalreporter.section("fault matrix by message id")
        for line in _MATRIX.lines():
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"written to {_MATRIX.write()}")
