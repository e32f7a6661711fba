"""The single-server providers' shared lifetime (runtime/nats/base.py): a failed start leaves nothing behind."""

from __future__ import annotations

import socket

import pytest

from experiments.runtime.nats.base import NatsNotReady
from experiments.runtime.nats.process import ProcessNats

pytestmark = pytest.mark.spawns


def test_a_failed_start_removes_the_process_and_its_temporary_store() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = ProcessNats(port=taken.getsockname()[1], ready_timeout=2.0)  # the client port is in use
        store = server.store_dir
        assert store.exists()
        with pytest.raises(NatsNotReady), server:
            pytest.fail("the server cannot have started on a port that is taken")
    assert server.pid is None
    assert not store.exists(), "the temporary store of a failed start was left behind"


def test_a_started_server_is_healthy_on_its_fixed_ports_and_gone_after_with() -> None:
    with ProcessNats() as server:
        url, pid = server.url, server.pid
        assert url == f"nats://127.0.0.1:{server.port}"
        assert pid is not None
        server.restart(hard=True)
        assert server.url == url  # same ports across a restart
        assert server.pid not in (None, pid)
        store = server.store_dir
    assert server.pid is None
    assert not store.exists()
