"""Backend fixtures shared by the unit suite and the testcontainers suite.

Both suites import these; each defines its own `nats_server` fixture (a
process here, a container there), so the contract tests run unchanged on both.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from backends.contract import QueueBackend
from backends.factory import create_backend, load_settings

MakeBackend = Callable[..., Awaitable[QueueBackend]]


@dataclass(frozen=True)
class Capabilities:
    """Where the backends' semantics differ, said once; the contract asserts each side of it.

    `dedup_by_id`: the broker itself drops a republished message id inside
    `dedup_window` (JetStream's Nats-Msg-Id window; the memory queue's map). Kafka's
    idempotent producer drops only its own retries within one producer session: a
    republished id is stored again, and the processor's ledger records each id once.
    """

    dedup_by_id: bool


CAPABILITIES = {
    "memory": Capabilities(dedup_by_id=True),
    "nats": Capabilities(dedup_by_id=True),
    "kafka": Capabilities(dedup_by_id=False),
}


@pytest.fixture(params=["memory", "nats", "kafka"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def capabilities(backend_kind: str) -> Capabilities:
    return CAPABILITIES[backend_kind]


@pytest.fixture(scope="session")
def warm_kafka(kafka_broker: Any) -> Any:
    """The session broker after one idempotent publish and one group commit.

    A fresh broker makes its coordinators (producer ids, __consumer_offsets) on
    first use, which took longer than a test's 1 s publish timeout; that cost
    belongs to the broker's start, not to the first test that happens to pay it.
    """
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    servers = kafka_broker.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": servers})  # kept in a name: a collected client cancels its futures
    admin.create_topics([NewTopic("warm-up", 1, 1)])["warm-up"].result(60)
    producer = Producer({"bootstrap.servers": servers, "enable.idempotence": True, "acks": "all"})
    producer.produce("warm-up", b"x")
    assert producer.flush(60) == 0, "the warm-up record was not stored within 60 s"
    consumer = Consumer({"bootstrap.servers": servers, "group.id": "warm-up", "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe(["warm-up"])
        deadline = time.monotonic() + 60
        record = None
        while record is None and time.monotonic() < deadline:
            record = consumer.poll(0.5)
        assert record is not None, "the warm-up record was not consumed within 60 s"
        consumer.commit(message=record, asynchronous=False)
    finally:
        consumer.close()
    return kafka_broker


@pytest.fixture
async def make_backend(backend_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[MakeBackend]:
    """Build and connect backends of `backend_kind` through the factory.

    Settings go through `load_settings`, so the factory's parsing is exercised
    too. Every backend made is closed at teardown, even when the test failed.
    """
    made: list[QueueBackend] = []
    server = request.getfixturevalue("nats_server") if backend_kind == "nats" else None
    kafka = request.getfixturevalue("warm_kafka") if backend_kind == "kafka" else None
    own = uuid.uuid4().hex[:10]  # one session broker: each test its own topic and group

    async def make(**overrides: object) -> QueueBackend:
        settings: dict[str, object] = {"queue_type": backend_kind, "publish_timeout": 1.0}
        if server is not None:
            settings.update(nats_url=server.url, nats_monitor_url=server.monitor_url, nats_connect_timeout=2.0)
        if kafka is not None:
            settings.update(
                kafka_brokers=kafka.bootstrap_servers,
                kafka_topic=f"contract-{own}",
                kafka_consumer_group=f"group-{own}",
                kafka_connect_timeout=10.0,
            )
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
