"""The NATS providers themselves: what the experiments rely on when they fault the broker.

Durability across restarts of a container (graceful, SIGKILL, a new container
on the same store), a frozen broker (`docker pause`) failing publishes in
bounded time and recovering, the monitoring endpoints of both providers,
`sync_always` in a container, a clear error when a server cannot come up, and
the `HARNESS_NATS` selection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from testcontainers.core.docker_client import DockerClient

from backends.contract import BackendUnavailable, Message, QueueBackend
from backends.factory import create_backend, load_settings
from experiments.runtime.nats import provider as nats_provider
from experiments.runtime.nats.base import nats_server_version
from experiments.runtime.nats.docker import (
    LABEL_APP,
    DockerNats,
    containers_of_run,
    ensure_nats_image,
    nats_image_tag,
)
from experiments.runtime.nats.process import ProcessNats
from experiments.runtime.nats.provider import NatsNotReady, NatsServer, choose_nats_kind, nats_server_from_env
from tests.backend_fixtures import eventually, settles_to

pytestmark = pytest.mark.docker

Connect = Callable[..., Awaitable[QueueBackend]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Connect backends to a given server; all are closed at teardown, even on failure."""
    made: list[QueueBackend] = []

    async def make(server: NatsServer, **overrides: object) -> QueueBackend:
        settings: dict[str, object] = {
            "queue_type": "nats",
            "nats_url": server.url,
            "nats_monitor_url": server.monitor_url,
            "nats_connect_timeout": 2.0,
            "publish_timeout": 1.0,
        }
        settings.update(overrides)
        backend = create_backend(load_settings(**settings))
        await backend.connect()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()


def msg(i: int | str) -> Message:
    return Message(id=f"p-{i}", source="provider-test", payload={"n": i})


async def publish_backlog(connect: Connect, server: NatsServer, n: int) -> None:
    producer = await connect(server)
    await producer.publish_many([msg(i) for i in range(n)])
    await settles_to(producer, n)
    await producer.close()


async def drain_ids(backend: QueueBackend, want: int, timeout: float = 10.0) -> list[str]:
    """Fetch and ack until `want` messages came or `timeout` passed; the ids in delivery order."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        for d in await backend.fetch(100, timeout=0.5):
            got.append(d.message.id)
            await d.ack()
    return got


@pytest.mark.parametrize("hard", [False, True], ids=["graceful", "sigkill"])
async def test_backlog_survives_a_container_restart(nats_server: DockerNats, connect: Connect, hard: bool) -> None:
    await publish_backlog(connect, nats_server, 250)
    container, pid = nats_server.container_id, nats_server.pid
    nats_server.restart(hard=hard)
    assert nats_server.container_id == container  # the same container, started again
    assert nats_server.pid not in (None, pid)  # by a new nats-server process
    consumer = await connect(nats_server)
    assert await drain_ids(consumer, 250) == [f"p-{i}" for i in range(250)]
    await settles_to(consumer, 0)


async def test_backlog_survives_kill_then_start(nats_server: DockerNats, connect: Connect) -> None:
    await publish_backlog(connect, nats_server, 100)
    nats_server.kill()
    assert nats_server.status == "exited"
    assert nats_server.pid is None
    async with httpx.AsyncClient(trust_env=False) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{nats_server.monitor_url}/healthz", timeout=0.5)
    nats_server.start()
    consumer = await connect(nats_server)
    assert await drain_ids(consumer, 100) == [f"p-{i}" for i in range(100)]


async def test_backlog_survives_a_new_container_on_the_same_store(tmp_path: Path, connect: Connect) -> None:
    store = tmp_path / "kept-store"
    first = DockerNats(store)
    try:
        first.start()
        await publish_backlog(connect, first, 50)
    finally:
        first.close()  # removes the container; a store dir it was given is kept
    assert (store / "js").is_dir()
    second = DockerNats(store, port=first.port, monitor_port=first.monitor_port)
    try:
        second.start()
        assert second.container_id != first.container_id
        consumer = await connect(second)
        assert await drain_ids(consumer, 50) == [f"p-{i}" for i in range(50)]
        await consumer.close()
    finally:
        second.close()


async def test_pause_longer_than_publish_timeout_then_resume(nats_server: DockerNats, connect: Connect) -> None:
    b = await connect(nats_server, publish_timeout=0.5, nats_reconnect_wait=0.1)
    await b.publish(msg("before"))
    nats_server.pause()
    paused_at = time.monotonic()
    try:
        assert nats_server.status == "paused"
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            await b.publish(msg("frozen"))
        assert time.monotonic() - started < 1.5  # bounded by publish_timeout, no hang
        await asyncio.sleep(max(0.0, 1.5 - (time.monotonic() - paused_at)))  # frozen well past the timeout
    finally:
        nats_server.resume()
    assert nats_server.status == "running"

    async def accepts() -> bool:
        try:
            await b.publish(msg("after"))
        except BackendUnavailable:
            return False
        return True

    await eventually(accepts, timeout=10.0, every=0.2)
    ids = set(await drain_ids(b, 3, timeout=2.0))
    # The frozen publish may have been stored once the broker thawed: either is fine, a loss is not.
    assert {"p-before", "p-after"} <= ids <= {"p-before", "p-frozen", "p-after"}


@pytest.fixture(params=["process", "docker"])
def any_nats(request: pytest.FixtureRequest) -> NatsServer:
    server: NatsServer = request.getfixturevalue("process_nats" if request.param == "process" else "nats_server")
    return server


async def test_monitoring_endpoints_answer(any_nats: NatsServer, connect: Connect) -> None:
    b = await connect(any_nats)
    await b.publish_many([msg(i) for i in range(3)])
    async with httpx.AsyncClient(base_url=any_nats.monitor_url, timeout=2.0, trust_env=False) as client:
        health = await client.get("/healthz", params={"js-enabled-only": "true"})
        varz = (await client.get("/varz")).json()
        jsz = (await client.get("/jsz", params={"streams": "true"})).json()
    assert health.status_code == 200
    assert any_nats.url.endswith(f":{varz['port']}")
    assert varz["host"] == "127.0.0.1"
    assert varz["version"] == nats_server_version().removeprefix("v")
    assert "jetstream" in varz
    assert jsz["config"]["store_dir"].endswith("/js/jetstream")
    assert jsz["streams"] >= 1
    assert jsz["messages"] >= 3


async def test_sync_always_in_a_container(tmp_path: Path, connect: Connect) -> None:
    with DockerNats(tmp_path / "sync", sync_always=True) as server:
        async with httpx.AsyncClient(trust_env=False) as client:
            varz = (await client.get(f"{server.monitor_url}/varz", timeout=2.0)).json()
        assert varz["jetstream"]["config"]["sync_always"] is True
        b = await connect(server, nats_sync_always=True)  # the backend verifies it at connect
        await b.publish(msg(1))
        assert (await b.stats()).current_size == 1
        await b.close()


def test_a_server_that_cannot_start_fails_fast_with_its_log(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        server = DockerNats(tmp_path / "busy", port=busy, ready_timeout=20.0)
        started = time.monotonic()
        with pytest.raises(NatsNotReady, match=r"(?s)container exited.*nats-server log.*address already in use"):
            server.start()
        assert time.monotonic() - started < 10.0  # the exit is noticed, not waited out
        assert server.container_id is None  # and the failed container is removed
        server.close()


def test_the_image_is_the_wheels_binary_on_scratch() -> None:
    tag = ensure_nats_image()
    assert tag == nats_image_tag() == f"queue-lab/nats:{nats_server_version().removeprefix('v')}"
    assert ensure_nats_image() == tag  # built once, then reused
    client = DockerClient()
    try:
        image = client.client.images.get(tag)
        assert image.attrs["Config"]["Entrypoint"] == ["/nats-server"]
        assert image.labels.get(f"{LABEL_APP}.image") == "1"
        layers = [h for h in image.history() if h.get("Size", 0) > 0]
        assert len(layers) == 1  # scratch + the binary: no base image, no shell
    finally:
        client.client.close()


def test_containers_carry_the_run_label(nats_server: DockerNats) -> None:
    listed = containers_of_run()
    assert nats_server.container_id is not None
    assert nats_server.container_id[:12] in {c["id"] for c in listed}
    assert all(c["state"] in ("running", "paused", "exited", "created") for c in listed)


@pytest.fixture
def fresh_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget earlier choices, so a test sees the probe and the log line."""
    monkeypatch.setattr(nats_provider, "_resolved", {})


@pytest.mark.usefixtures("fresh_selection")
@pytest.mark.parametrize(
    ("value", "cls"), [("process", ProcessNats), ("docker", DockerNats), ("auto", DockerNats), ("", DockerNats)]
)
def test_harness_nats_selects_the_provider(tmp_path: Path, value: str, cls: type[Any]) -> None:
    server = nats_server_from_env(tmp_path / "sel", environ={"HARNESS_NATS": value})
    try:
        assert isinstance(server, cls)
        assert isinstance(server, NatsServer)
        assert server.kind == cls.kind
    finally:
        server.close()  # never started: nothing to stop, nothing left


@pytest.mark.usefixtures("fresh_selection")
def test_selection_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="experiments.runtime.nats.provider"):
        kinds = {choose_nats_kind({"HARNESS_NATS": "auto"}) for _ in range(3)}
    assert kinds == {"docker"}
    lines = [r.getMessage() for r in caplog.records if r.name == "experiments.runtime.nats.provider"]
    assert lines == ["NATS runs as a docker (HARNESS_NATS=auto and a Docker engine answers)"]


@pytest.mark.usefixtures("fresh_selection")
def test_selection_without_an_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nats_provider, "_docker_problem", lambda: "no engine (simulated)")
    assert choose_nats_kind({"HARNESS_NATS": "auto"}) == "process"
    with pytest.raises(RuntimeError, match=r"HARNESS_NATS=docker but no engine \(simulated\)"):
        choose_nats_kind({"HARNESS_NATS": "docker"})
    with pytest.raises(ValueError, match="HARNESS_NATS='kafka': expected one of auto, docker, process, external"):
        choose_nats_kind({"HARNESS_NATS": "kafka"})
