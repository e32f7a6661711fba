"""The deployment end to end: real uvicorn processes, real HTTP, real nats-server.

Each backend gets one stack for the module (3 services + NATS as processes on
127.0.0.1); tests assert on deltas and on the processor's ledger by message id.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from experiments.runtime.stack import Stack, StackConfig
from services.ledger import LedgerRow, read_ledger

pytestmark = pytest.mark.e2e


def outcomes(stack: Stack) -> list[LedgerRow]:
    return [row for path in stack.ledger_paths if path.exists() for row in read_ledger(path)]


def processed_ids(stack: Stack) -> Counter[str]:
    return Counter(r.id for r in outcomes(stack) if r.outcome == "processed")


async def wait_processed(stack: Stack, ids: set[str], timeout: float = 20.0) -> Counter[str]:
    deadline = time.monotonic() + timeout
    while True:
        seen = processed_ids(stack)
        if ids <= set(seen) or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.1)


def stats(stack: Stack) -> dict[str, Any]:
    return dict(httpx.get(f"{stack.processor_url}/stats", trust_env=False, timeout=5).json())


@pytest.fixture(scope="module", params=["memory", "nats"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    cfg = StackConfig(
        queue=str(request.param),
        workers=4,
        env={"MAX_DELIVER": "3", "ACK_WAIT": "2", "PUBLISH_TIMEOUT": "1", "NATS_RECONNECT_WAIT": "0.2"},
        processor_env={"FAILURE_ID_PREFIX": "poison-"},
    )
    st = Stack(cfg, tmp_path_factory.mktemp(f"stack-{request.param}"))
    st.start()
    try:
        yield st
    finally:
        st.close()
        assert all(s.pid is None for s in st.services)


async def post(client: httpx.AsyncClient, stack: Stack, body: Any, **kw: Any) -> httpx.Response:
    return await client.post(f"{stack.gateway_url}/api/v1/ingest", json=body, **kw)


async def test_every_message_processed_exactly_once(stack: Stack) -> None:
    before = stats(stack)
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        answers = await asyncio.gather(
            *(post(client, stack, {"source": "e2e", "payload": {"n": i}}) for i in range(200))
        )
    assert {r.status_code for r in answers} == {202}
    ids = {r.json()["ids"][0] for r in answers}
    assert len(ids) == 200
    seen = await wait_processed(stack, ids)
    assert {i: seen[i] for i in ids} == dict.fromkeys(ids, 1)
    after = stats(stack)
    assert after["queue"]["total_enqueued"] - before["queue"]["total_enqueued"] == 200
    assert after["pool"]["processed_count"] - before["pool"]["processed_count"] == 200
    assert after["queue"]["current_size"] == 0
    assert set(after["queue"]) >= {"total_enqueued", "total_dequeued", "current_size"}
    assert set(after["pool"]) >= {"processed_count", "error_count", "total_duration"}
    assert isinstance(after["pool"]["total_duration"], str)


async def test_batch_request(stack: Stack) -> None:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        r = await post(client, stack, [{"source": "batch", "payload": [i, "x"]} for i in range(50)])
    assert r.status_code == 202
    body = r.json()
    assert (body["count"], body["duplicates"], len(set(body["ids"]))) == (50, 0, 50)
    seen = await wait_processed(stack, set(body["ids"]))
    assert all(seen[i] == 1 for i in body["ids"])


async def test_retried_request_with_idempotency_key_is_stored_once(stack: Stack) -> None:
    key = f"order-{uuid.uuid4().hex[:8]}"
    before = stats(stack)["queue"]["total_enqueued"]
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        first = await post(client, stack, {"source": "shop", "payload": 1}, headers={"Idempotency-Key": key})
        again = await post(client, stack, {"source": "shop", "payload": 1}, headers={"Idempotency-Key": key})
        given = await post(client, stack, [{"source": "shop", "payload": 2, "id": f"{key}-own"}] * 2)
    assert (first.status_code, again.status_code, given.status_code) == (202, 202, 202)
    assert first.json()["ids"] == again.json()["ids"] == [key]
    assert (first.json()["duplicates"], again.json()["duplicates"]) == (0, 1)
    assert given.json()["duplicates"] == 1
    seen = await wait_processed(stack, {key, f"{key}-own"})
    await asyncio.sleep(0.5)  # a second copy, if stored, would be processed by now
    seen = processed_ids(stack)
    assert (seen[key], seen[f"{key}-own"]) == (1, 1)
    assert stats(stack)["queue"]["total_enqueued"] - before == 2


async def test_poison_message_ends_in_the_dead_letter_place(stack: Stack) -> None:
    mid = f"poison-{uuid.uuid4().hex[:8]}"
    before = stats(stack)
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        r = await post(client, stack, {"source": "e2e", "payload": "bad", "id": mid})
    assert r.status_code == 202
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = [row for row in outcomes(stack) if row.id == mid]
        if any(row.outcome == "dead_lettered" for row in rows):
            break
        await asyncio.sleep(0.1)
    assert sorted((row.delivery_count, row.outcome) for row in rows) == [
        (1, "failed"),
        (2, "failed"),
        (3, "dead_lettered"),
    ]
    after = stats(stack)
    assert after["queue"]["dead_lettered"] - before["queue"]["dead_lettered"] == 1
    assert after["pool"]["error_count"] - before["pool"]["error_count"] == 3
    assert after["queue"]["current_size"] == 0


def test_status_reports_every_component(stack: Stack) -> None:
    r = httpx.get(f"{stack.gateway_url}/api/v1/status", trust_env=False, timeout=5)
    assert r.status_code == 200
    components = r.json()["components"]
    assert {k: v["status"] for k, v in components.items()} == {
        "gateway": "ok",
        "ingest": "ok",
        "processor": "ok",
        "backend": "ok",
    }
    assert components["backend"]["type"] == stack.config.queue


@pytest.mark.parametrize("path", ["/health", "/metrics", "/openapi.json", "/docs"])
def test_every_service_has_health_metrics_and_docs(stack: Stack, path: str) -> None:
    for service in stack.services:
        r = httpx.get(f"{service.url}{path}", trust_env=False, timeout=5)
        assert r.status_code == 200, (service.name, path, r.text[:200])
    metrics = httpx.get(f"{stack.processor_url}/metrics", trust_env=False).text
    assert "queue_depth_messages" in metrics  # renamed from queue_current_size (issue 20: units in names)
    assert "http_requests_total" in metrics


@pytest.mark.parametrize("stack", ["nats"], indirect=True)
async def test_nats_outage_gives_503_then_recovers(stack: Stack) -> None:
    assert stack.nats is not None
    stack.nats.stop()
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            started = time.monotonic()
            r = await post(client, stack, {"source": "outage", "payload": 1})
            waited = time.monotonic() - started
            assert r.status_code == 503, r.text
            assert "error" in r.json()
            assert waited < 5.0
            status = await client.get(f"{stack.gateway_url}/api/v1/status")
            assert status.status_code == 503
            assert status.json()["components"]["backend"]["status"] != "ok"
    finally:
        stack.nats.start()
    deadline = time.monotonic() + 15
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        while True:
            r = await post(client, stack, {"source": "after-outage", "payload": 1})
            if r.status_code == 202 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    assert r.status_code == 202
    seen = await wait_processed(stack, set(r.json()["ids"]))
    assert seen[r.json()["ids"][0]] == 1


async def test_sigterm_drains_in_flight_work(tmp_path: Path) -> None:
    """Work in flight at SIGTERM is finished and acked, so a restart redoes none of it."""
    cfg = StackConfig(queue="nats", workers=2, processor_env={"PROCESSING_MS": "20", "FETCH_BATCH": "5"})
    with Stack(cfg, tmp_path) as stack:
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            r = await post(client, stack, [{"source": "drain", "payload": i} for i in range(60)])
        ids = set(r.json()["ids"])
        await asyncio.sleep(0.15)  # workers are mid-batch now
        proc = stack.processors[0]
        proc.stop()  # SIGTERM; the drain finishes what was fetched
        done_before_restart = processed_ids(stack)
        assert 0 < len(done_before_restart) < 60
        proc.start()
        seen = await wait_processed(stack, ids)
    assert {i: seen[i] for i in ids} == dict.fromkeys(ids, 1)  # no redelivery of drained work
