"""Clients of the Go original keep working: its body, its answer fields, its `healthy` flags.

Every request here speaks only the original's wire format
(`{"source", "data", "metadata"}`), through the real gateway of a real
uvicorn stack on each queue, and every message is found processed by the id
the original's `message_id` field gave back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from experiments.runtime.stack import Stack, StackConfig
from services.models import InvalidInput, parse_items
from tests.test_services_e2e import wait_processed

pytestmark = pytest.mark.e2e

LOOP = 1000


@pytest.fixture(scope="module", params=["memory", "nats"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    cfg = StackConfig(queue=str(request.param), workers=4)
    with Stack(cfg, tmp_path_factory.mktemp(f"original-{request.param}")) as st:
        yield st


def accepted_id(r: httpx.Response) -> str:
    """The original's answer fields, beside ours; the id they name."""
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "accepted"
    assert body["message_id"] == body["ids"][0]
    assert body["messageId"] == body["message_id"]  # the spelling the original's k6 checks read
    assert body["count"] == 1
    return str(body["message_id"])


ORIGINAL_BODIES: list[dict[str, Any]] = [
    {"source": "sensor-1", "data": "hello nats"},
    {"source": "sensor-1", "data": "with labels", "metadata": {"region": "eu", "priority": "high"}},
    {"source": "sensor-1", "data": "", "metadata": {}},
    {"source": "sensor-1", "data": '{"temp": 21.5}', "metadata": None},
]


async def test_single_requests_in_the_original_format_are_accepted_and_processed(stack: Stack) -> None:
    ids = set()
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        for body in ORIGINAL_BODIES:
            ids.add(accepted_id(await client.post(f"{stack.gateway_url}/api/v1/ingest", json=body)))
        # ingest's own endpoint takes it too (the original's clients may talk to ingest directly)
        ids.add(accepted_id(await client.post(f"{stack.ingest.url}/api/v1/ingest", json=ORIGINAL_BODIES[1])))
    assert len(ids) == len(ORIGINAL_BODIES) + 1
    seen = await wait_processed(stack, ids)
    assert {i: seen[i] for i in ids} == dict.fromkeys(ids, 1)


async def test_a_loop_of_1000_original_requests_all_2xx_and_processed_by_id(stack: Stack) -> None:
    """The original's load scripts: one request after another, each answered 2xx, each processed once."""
    ids: list[str] = []
    started = time.monotonic()
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        for i in range(LOOP):
            body = {"source": "loadtest", "data": f"message {i}", "metadata": {"seq": str(i)}}
            ids.append(accepted_id(await client.post(f"{stack.gateway_url}/api/v1/ingest", json=body)))
    sent_s = time.monotonic() - started
    assert len(set(ids)) == LOOP
    seen = await wait_processed(stack, set(ids), timeout=30)
    assert sum(1 for i in ids if seen[i] == 1) == LOOP, f"{sum(1 for i in ids if i in seen)} of {LOOP} processed"
    print(f"{stack.config.queue}: {LOOP} original-format requests in {sent_s:.2f} s, all processed once")


def test_health_and_status_carry_the_original_healthy_fields(stack: Stack) -> None:
    with httpx.Client(trust_env=False, timeout=5) as client:
        for service in stack.services:
            r = client.get(f"{service.url}/health")
            assert (r.status_code, r.json()["healthy"]) == (200, True), service.name
        client.post(f"{stack.gateway_url}/api/v1/ingest", json={"source": "s", "data": "counted"})
        r = client.get(f"{stack.gateway_url}/api/v1/status")
    assert r.status_code == 200
    body = r.json()
    assert body["healthy"] is True
    assert body["status"] == "ok"  # ours beside it
    assert body["ingest"]["healthy"] is True
    assert body["processor"]["healthy"] is True
    assert body["services"] == {"gateway": "healthy", "ingest": "healthy", "processor": "healthy"}
    assert body["ingest"]["stats"]["total_sent"] >= 1
    assert body["ingest"]["stats"]["total_failed"] == 0
    assert body["processor"]["stats"]["queue"]["type"] == stack.config.queue
    assert body["processor"]["stats"]["pool"]["processed_count"] >= 0


@pytest.mark.parametrize("stack", ["nats"], indirect=True)
async def test_healthy_is_false_while_nats_is_down(stack: Stack) -> None:
    assert stack.nats is not None
    stack.nats.stop()
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            health = await client.get(f"{stack.processor_url}/health")
            status = await client.get(f"{stack.gateway_url}/api/v1/status")
            refused = await client.post(f"{stack.gateway_url}/api/v1/ingest", json={"source": "s", "data": "x"})
    finally:
        stack.nats.start()
    assert (health.status_code, health.json()["healthy"]) == (503, False)
    assert status.status_code == 503
    assert (status.json()["healthy"], status.json()["processor"]["healthy"]) == (False, False)
    assert status.json()["ingest"]["healthy"] is True
    assert status.json()["services"] == {"gateway": "healthy", "ingest": "healthy", "processor": "unhealthy"}
    assert refused.status_code == 503
    assert "message_id" not in refused.json()
    deadline = time.monotonic() + 15
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        while (await client.get(f"{stack.processor_url}/health")).status_code != 200:
            assert time.monotonic() < deadline, "processor did not reconnect to NATS"
            await asyncio.sleep(0.2)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"source": "s", "data": "x", "payload": "x"}, {"body.data", "body.payload"}),
        ({"source": "s"}, {"body.data", "body.payload"}),
        ({"source": "s", "data": 5}, {"body.data"}),
        ({"source": "s", "data": "x", "metadata": {"k": 1}}, {"body.metadata.k"}),
        ({"source": "", "data": "x"}, {"body.source"}),
        ({"data": "x"}, {"body.source"}),
        ({"source": "s", "data": "x", "extra": 1}, {"body.extra"}),
        ([{"source": "s", "data": "x"}, {"source": "s", "data": "x", "payload": 1}], {"body.1.data", "body.1.payload"}),
    ],
)
def test_original_format_mistakes_are_422_naming_the_fields(body: Any, fields: set[str]) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_items(body, max_batch=10)
    assert caught.value.status == 422
    assert {d["field"] for d in caught.value.details or []} >= fields, caught.value.details


def test_original_format_maps_data_to_payload_and_metadata_to_attributes() -> None:
    items = parse_items(
        [{"source": "s", "data": "d", "metadata": {"k": "v"}}, {"source": "t", "payload": {"n": 1}}], max_batch=10
    )
    assert [(i.source, i.payload, i.attributes) for i in items] == [("s", "d", {"k": "v"}), ("t", {"n": 1}, None)]


def test_bad_original_bodies_are_refused_by_the_gateway_and_nothing_is_enqueued(stack: Stack) -> None:
    with httpx.Client(trust_env=False, timeout=5) as client:
        before = client.get(f"{stack.processor_url}/stats").json()["queue"]["total_enqueued"]
        both = client.post(f"{stack.gateway_url}/api/v1/ingest", json={"source": "s", "data": "x", "payload": "x"})
        neither = client.post(f"{stack.gateway_url}/api/v1/ingest", json={"source": "s", "metadata": {"k": "v"}})
        after = client.get(f"{stack.processor_url}/stats").json()["queue"]["total_enqueued"]
    for r in (both, neither):
        assert r.status_code == 422, r.text
        assert {"body.data", "body.payload"} <= {d["field"] for d in r.json()["details"]}
    assert after == before
