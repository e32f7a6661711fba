"""The fast tier: which tests start processes outside pytest, marked `spawns` at collection.

`pytest -m "not spawns"` runs the in-process tests only (seconds); the full
suite (what `.ci/run` runs) is unchanged. A test is marked when

- it uses a fixture that starts something (`SPAWNING_FIXTURES`): a new test
  that takes `nats_server`, `lazyfs` or a stack gets the mark by itself;
- it carries a marker that implies processes (`e2e`, `docker`, `notebooks`, `faults`);
- it is marked `spawns` by hand (a test that starts a `ProcessNats` inline).

What keeps the marks honest: an audit hook (`sys.addaudithook`) sees every
process this pytest process starts (`subprocess.Popen`, `os.fork`,
`os.posix_spawn`, `os.exec*`, `os.system`). An unmarked test that starts one
fails, naming the mark it lacks, in any run; so a fast tier that starts
processes cannot creep back in.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Any

import pytest

MARK = "spawns"
MARK_HELP = (
    f"{MARK}: starts processes outside pytest (nats-server, uvicorn services, FUSE daemons, papermill kernels, "
    f"Docker, CLI tools); `pytest -m 'not {MARK}'` is the fast in-process tier"
)

# Fixtures that start a process (directly or through the fixtures they use).
SPAWNING_FIXTURES = frozenset(
    {
        "nats_server",  # a nats-server process (tests/) or container (testcontainers_tests/)
        "process_nats",
        "auth_nats",
        "lazyfs",  # a FUSE daemon
        "cluster",  # three nats-servers
        "stack",  # uvicorn services (and a nats-server)
        "two_processors",
        "quick_batch",  # papermill kernels
        "child",  # tests/test_processes.py: a busy child process
        "docker_engine",  # every testcontainers test
        "kafka_broker",  # a KRaft broker (JVM) process
        "kafka_cluster",  # three of them
        "warm_kafka",
    }
)
IMPLYING_MARKERS = ("e2e", "docker", "notebooks", "faults")
SPAWN_EVENTS = frozenset({"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.system"})


def spawns(item: pytest.Item) -> bool:
    """Whether `item` starts processes: by its fixtures, its markers, or its `nats` backend parameter."""
    names = set(getattr(item, "fixturenames", ()))
    if names & SPAWNING_FIXTURES or any(item.get_closest_marker(m) for m in (MARK, *IMPLYING_MARKERS)):
        return True
    callspec = getattr(item, "callspec", None)
    # make_backend asks for its broker (`nats_server`, `kafka_broker`) at run time for those kinds
    return "make_backend" in names and callspec is not None and callspec.params.get("backend_kind") in ("nats", "kafka")


def mark_spawning(items: list[pytest.Item]) -> None:
    for item in items:
        if spawns(item) and item.get_closest_marker(MARK) is None:
            item.add_marker(MARK)


class _SpawnWatch:
    """Notes the first process started while an unmarked test runs (audit hooks cannot be removed: one per process)."""

    def __init__(self) -> None:
        self.watching: str | None = None
        self.seen: str | None = None

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.watching is not None and self.seen is None and event in SPAWN_EVENTS:
            self.seen = f"{event} {args[0]!r}" if args else event


WATCH = _SpawnWatch()
_installed = False


def register(config: pytest.Config) -> None:
    """Called from each suite's conftest: registers this module as a plugin, once."""
    if not config.pluginmanager.has_plugin(__name__):
        config.pluginmanager.register(sys.modules[__name__], __name__)


def pytest_configure(config: pytest.Config) -> None:
    global _installed
    config.addinivalue_line("markers", MARK_HELP)
    if not _installed:
        sys.addaudithook(WATCH.hook)
        _installed = True


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_spawning(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """Watch unmarked tests from setup to teardown."""
    marked = item.get_closest_marker(MARK) is not None
    WATCH.watching, WATCH.seen = (None if marked else item.nodeid), None
    try:
        return (yield)
    finally:
        WATCH.watching = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """An unmarked test that started a process fails at its teardown, naming the mark."""
    report = yield
    if call.when == "teardown" and WATCH.seen is not None and item.get_closest_marker(MARK) is None:
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} started a process ({WATCH.seen}) but is not marked `{MARK}`: "
            f"mark it (pytest.mark.{MARK}) or take it through a fixture in tests/tiers.py SPAWNING_FIXTURES, "
            f"so the fast tier (-m 'not {MARK}') stays in process"
        )
    return report
