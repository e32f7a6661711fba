"""Every service's /metrics as Prometheus expects, read back with prometheus-client's own parser.

Counters end in `_total`, every name carries its unit, and a gauge is
something that can fall (shown: the queue depth rises, then falls to 0).
In process (the real apps, a memory backend, httpx's ASGI transport): about
half a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from backends.memory import MemoryBackend
from services import gateway, ingest, processor
from services.inprocess import AsgiHops, lifespans
from services.settings import BackendSettings, GatewaySettings, IngestSettings, ProcessorSettings

INGEST_URL = "http://ingest.inprocess"
PROCESSOR_URL = "http://processor.inprocess"
UNITS = ("_messages", "_seconds", "_requests", "_elections")


@pytest_asyncio.fixture
async def clients(tmp_path: Path) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    proc_app = processor.create_app(
        ProcessorSettings(workers=1, processing_ms=30, ledger_path=str(tmp_path / "ledger.sqlite")),
        backend=MemoryBackend(),
        backend_settings=BackendSettings(),
    )
    ingest_app = ingest.create_app(
        IngestSettings(processor_url=PROCESSOR_URL), downstream=AsgiHops({PROCESSOR_URL: proc_app})
    )
    gateway_app = gateway.create_app(
        GatewaySettings(ingest_url=INGEST_URL, processor_url=PROCESSOR_URL),
        downstream=AsgiHops({INGEST_URL: ingest_app, PROCESSOR_URL: proc_app}),
    )
    apps = {"gateway": gateway_app, "ingest": ingest_app, "processor": proc_app}
    async with lifespans(proc_app, ingest_app, gateway_app):
        out = {
            name: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}.inprocess")
            for name, app in apps.items()
        }
        try:
            yield out
        finally:
            for c in out.values():
                await c.aclose()


async def scrape(client: httpx.AsyncClient) -> dict[str, tuple[str, dict[str, float]]]:
    """Family name -> (type, {sample name: summed value})."""
    text = (await client.get("/metrics")).text
    out: dict[str, tuple[str, dict[str, float]]] = {}
    for family in text_string_to_metric_families(text):
        samples: dict[str, float] = {}
        for s in family.samples:
            samples[s.name] = samples.get(s.name, 0.0) + s.value
        out[family.name] = (family.type, samples)
    return out


async def test_counters_end_in_total_names_carry_units_and_gauges_can_fall(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    sent = [{"source": "metrics", "payload": i} for i in range(20)]
    r = await clients["gateway"].post("/api/v1/ingest", json=sent)
    assert r.status_code == 202, r.text
    risen = await scrape(clients["processor"])
    for _ in range(100):  # 20 messages at 30 ms on one worker, fetched in batches
        proc = await scrape(clients["processor"])
        if proc["pool_processed_messages"][1]["pool_processed_messages_total"] == len(sent):
            break
        await asyncio.sleep(0.05)
    for name, client in clients.items():
        families = await scrape(client)
        assert families, name
        for family, (kind, samples) in families.items():
            assert family.endswith(UNITS), f"{name}: {family} names no unit"
            if kind == "counter":
                assert all(s.endswith(("_total", "_created")) for s in samples), (name, family, samples)
            else:
                assert not any(s.endswith("_total") for s in samples), (name, family, kind)
    assert proc["pool_processed_messages"][1]["pool_processed_messages_total"] == len(sent)
    assert proc["pool_failed_messages"][0] == "counter"
    assert proc["queue_leader_elections"][0] == "counter"
    gauges = {f for f, (kind, _) in proc.items() if kind == "gauge"}
    assert gauges == {"queue_depth_messages", "queue_dead_letter_messages"}
    # the depth is a gauge because it falls: it held messages, and holds none once they are processed
    assert risen["queue_depth_messages"][1]["queue_depth_messages"] > 0
    assert proc["queue_depth_messages"][1]["queue_depth_messages"] == 0
