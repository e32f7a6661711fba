"""The fsync check at connect: the server's version and sync policy from /varz, a warning when it cannot promise.

Against real nats-servers started with and without `sync_interval: always`,
through the backend the processor builds at start (and, in
`test_security.py`, in the processor's own log).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from backends.factory import create_backend, load_settings
from experiments.runtime.nats.base import nats_server_version
from experiments.runtime.nats.process import ProcessNats

POWER_LOSS = "acknowledged messages can be lost on power loss; not on process crash"


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.name.startswith("backends.nats.")]


@pytest.mark.parametrize("sync_always", [False, True])
async def test_connect_logs_version_and_sync_policy_and_warns_without_sync_always(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sync_always: bool
) -> None:
    with ProcessNats(tmp_path / "nats", sync_always=sync_always) as server:
        caplog.set_level(logging.INFO, logger="backends.nats")
        backend = create_backend(
            load_settings(queue_type="nats", nats_url=server.url, nats_monitor_url=server.monitor_url)
        )
        await backend.connect()
        await backend.close()
    version = nats_server_version().removeprefix("v")
    infos = messages(caplog, logging.INFO)
    assert any(f"NATS server {version}: jetstream sync_always={sync_always}" in m for m in infos), infos
    warnings = [m for m in messages(caplog, logging.WARNING) if "power loss" in m]
    if sync_always:
        assert warnings == []
    else:
        assert len(warnings) == 1
        assert POWER_LOSS in warnings[0]


async def test_without_a_monitor_url_the_policy_is_unknown_and_that_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with ProcessNats(tmp_path / "nats") as server:
        caplog.set_level(logging.INFO, logger="backends.nats")
        backend = create_backend(load_settings(queue_type="nats", nats_url=server.url))
        await backend.connect()
        await backend.close()
    assert any("fsync policy unknown" in m and "power loss" in m for m in messages(caplog, logging.WARNING))
