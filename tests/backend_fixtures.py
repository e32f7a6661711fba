"""Backend fixtures shared by the unit suite and the testcontainers suite.

Both suites import these; each defines its own `nats_server` fixture (a
process here, a container there), so the contract tests run unchanged on both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from backends.contract import QueueBackend
from backends.factory import create_backend, load_settings

MakeBackend = Callable[..., Awaitable[QueueBackend]]


@pytest.fixture(params=["memory", "nats"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_backend(backend_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[MakeBackend]:
    """Build and connect backends of `backend_kind` through the factory.

    Settings go through `load_settings`, so the factory's parsing is exercised
    too. Every backend made is closed at teardown, even when the test failed.
    """
    made: list[QueueBackend] = []
    server = request.getfixturevalue("nats_server") if backend_kind == "nats" else None

    async def make(**overrides: object) -> QueueBackend:
        settings: dict[str, object] = {"queue_type": backend_kind, "publish_timeout": 1.0}
        if server is not None:
            settings.update(nats_url=server.url, nats_monitor_url=server.monitor_url, nats_connect_timeout=2.0)
        settings.update(overrides)
        backend = create_backend(load_settings(**settings))
        await backend.connect()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0, every: float = 0.05) -> None:
    """Poll an async condition; fail with the timeout if it never holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(every)


async def settles_to(backend: QueueBackend, size: int, timeout: float = 5.0) -> None:
    """Wait until the queue depth is `size`: JetStream applies acks asynchronously."""

    async def check() -> bool:
        return (await backend.stats()).current_size == size

    try:
        await eventually(check, timeout=timeout, every=0.02)
    except AssertionError:
        raise AssertionError(f"current_size stayed {(await backend.stats()).current_size}, expected {size}") from None
