"""End-to-end integrity: the payload's digest is stamped at the first hop and compared with what was processed.

The first two tests show the digest travels unchanged (gateway -> ingest ->
processor -> queue -> worker -> ledger) and that the check bites: a message
whose stored payload is not the one stamped, written straight into the
memory queue or the NATS stream, is counted `altered`. In process (the real
apps over httpx's ASGI transport), with a real nats-server for NATS: about
two seconds in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import pytest
from fastapi import FastAPI

from backends.contract import Message, QueueBackend, payload_digest
from backends.factory import create_backend, load_settings
from experiments.workload.accounting import altered
from services import gateway, ingest, processor
from services.inprocess import AsgiHops, lifespans
from services.ledger import read_ledger
from services.settings import GatewaySettings, IngestSettings, ProcessorSettings

INGEST_URL = "http://ingest.inprocess"
PROCESSOR_URL = "http://processor.inprocess"
PAYLOADS: list[Any] = [
    {"n": 1, "text": "é\r\n\u2028", "nested": [[1.5, -0.0], {"": None}]},
    2**64 - 1,
    -(2**63),
    "x" * 1000,
    [True, False, None, 1e300, 5e-324],
]


def chain(ledger: Path, backend: QueueBackend) -> tuple[FastAPI, FastAPI, FastAPI]:
    proc_app = processor.create_app(
        ProcessorSettings(workers=2, ledger_path=str(ledger)), backend=backend, backend_settings=load_settings()
    )
    ingest_app = ingest.create_app(
        IngestSettings(processor_url=PROCESSOR_URL), downstream=AsgiHops({PROCESSOR_URL: proc_app})
    )
    gateway_app = gateway.create_app(
        GatewaySettings(ingest_url=INGEST_URL, processor_url=PROCESSOR_URL),
        downstream=AsgiHops({INGEST_URL: ingest_app, PROCESSOR_URL: proc_app}),
    )
    return gateway_app, ingest_app, proc_app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app.inprocess")


def processed_rows(ledger: Path) -> dict[str, Any]:
    return {r.id: r for r in read_ledger(ledger) if r.outcome == "processed"} if ledger.exists() else {}


async def processed(ledger: Path, ids: set[str], timeout: float = 10.0) -> dict[str, Any]:
    """Wait until every id has a processed row; the rows by id."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = processed_rows(ledger)
        if ids <= rows.keys():
            return rows
        assert asyncio.get_running_loop().time() < deadline, f"not processed: {ids - rows.keys()}"
        await asyncio.sleep(0.05)


async def test_the_digest_is_stamped_at_the_first_hop_and_matches_what_was_processed(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite"
    apps = chain(ledger, create_backend(load_settings(queue_type="memory")))
    gw, ing, proc = (client(a) for a in apps)
    async with lifespans(*reversed(apps)):
        ids: dict[str, Any] = {}
        for i, payload in enumerate(PAYLOADS):
            target = (gw, ing, proc)[i % 3]  # each service can be the first hop
            if target is proc:
                body = [{"id": f"p{i}", "source": "s", "payload": payload, "created_at": 1}]
                r = await proc.post("/api/v1/messages", json=body)
            else:
                r = await target.post("/api/v1/ingest", json={"source": "s", "payload": payload, "id": f"p{i}"})
            assert r.status_code == 202, r.text
            ids[f"p{i}"] = payload
        rows = await processed(ledger, set(ids))
    with contextlib.closing(sqlite3.connect(ledger)) as conn:
        digests = dict(conn.execute("SELECT id, payload_digest || ' ' || processed_digest FROM deliveries"))
    for mid, payload in ids.items():
        assert digests[mid] == f"{payload_digest(payload)} {payload_digest(payload)}", mid
    assert set(rows) == set(ids)
    assert altered([ledger]) == 0


@pytest.mark.spawns
@pytest.mark.parametrize("queue", ["memory", "nats"])
async def test_a_message_altered_in_the_store_is_counted_altered(
    tmp_path: Path, queue: str, request: pytest.FixtureRequest
) -> None:
    """Planted: a message whose stored payload is not what the first hop stamped; the ledger's check finds it."""
    url = str(request.getfixturevalue("nats_server").url) if queue == "nats" else ""
    settings = load_settings(queue_type=queue, **({"nats_url": url} if url else {}))
    backend = create_backend(settings)
    ledger = tmp_path / "ledger.sqlite"
    apps = chain(ledger, backend)
    gw = client(apps[0])
    async with lifespans(*reversed(apps)):
        r = await gw.post(
            "/api/v1/ingest", json=[{"source": "s", "payload": {"n": i}, "id": f"ok{i}"} for i in range(5)]
        )
        assert r.status_code == 202, r.text
        stamped = payload_digest({"n": 1})  # what the first hop stamped for the payload {"n": 1} ...
        planted = Message(id="planted", source="s", payload={"n": 2}, digest=stamped)  # ... stored as {"n": 2}
        if queue == "memory":
            await backend.publish(planted)  # straight into the memory queue, past every service
        else:
            nc = await nats.connect(url)
            try:  # straight into the stream, as any client of the broker could
                await nc.jetstream().publish("diplom.messages", planted.to_json(), headers={"Nats-Msg-Id": "planted"})
            finally:
                await nc.close()
        await processed(ledger, {f"ok{i}" for i in range(5)} | {"planted"})
    assert altered([ledger]) == 1
    assert orjson.loads(planted.to_json())["digest"] == stamped
