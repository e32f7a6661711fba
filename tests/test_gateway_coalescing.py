"""The gateway's coalescing toward ingest, end to end: real uvicorn processes, real HTTP.

Concurrent clients share ingest calls (fewer ingest requests than client
requests), yet each gets its own 202 with its own ids only once stored, and
each message keeps its own gateway stamp: inside its client's send..answer
window, read from the processor's ledger. About 5 s (one memory stack).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from experiments.runtime.stack import Stack, StackConfig


def ingest_calls(stack: Stack) -> int:
    text = httpx.get(f"{stack.ingest.url}/metrics", trust_env=False, timeout=5).text
    m = re.search(
        r'http_requests_total\{method="POST",route="/api/v1/ingest",service="ingest",status="202"\} (\S+)', text
    )
    return int(float(m.group(1))) if m else 0


def gateway_stamps(stack: Stack) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{stack.ledger_paths[0]}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT id, gateway_at FROM deliveries WHERE gateway_at IS NOT NULL").fetchall())
    finally:
        conn.close()


@pytest.mark.spawns
async def test_concurrent_requests_share_ingest_calls_and_keep_their_ids_and_stamps(tmp_path: Path) -> None:
    cfg = StackConfig(queue="memory", workers=2, gateway_env={"INGEST_IN_FLIGHT": "1"})
    n = 60
    with Stack(cfg, tmp_path) as stack:
        windows: dict[str, tuple[int, int]] = {}

        async def send(client: httpx.AsyncClient, i: int) -> httpx.Response:
            body = {"source": "t", "data": f"m{i}"} if i % 2 else [{"id": f"c{i}-a", "source": "t", "payload": i}]
            t0 = time.time_ns()
            r = await client.post("/api/v1/ingest", json=body, headers={"Idempotency-Key": f"c{i}"} if i % 2 else {})
            windows[f"c{i}" if i % 2 else f"c{i}-a"] = (t0, time.time_ns())
            return r

        async with httpx.AsyncClient(base_url=stack.gateway_url, trust_env=False, timeout=10) as client:
            answers = await asyncio.gather(*(send(client, i) for i in range(n)))
        for i, r in enumerate(answers):
            assert r.status_code == 202, r.text
            mine = f"c{i}" if i % 2 else f"c{i}-a"
            assert r.json()["ids"] == [mine]  # its own id, from a shared call
            if i % 2:
                assert r.json()["message_id"] == mine  # the original's fields on a single object
        assert ingest_calls(stack) < n  # coalesced: fewer ingest calls than requests
        deadline = time.monotonic() + 20
        stamps = gateway_stamps(stack)
        while len(stamps) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            stamps = gateway_stamps(stack)
    assert set(stamps) == set(windows)
    for mid, (sent, answered) in windows.items():
        assert sent <= stamps[mid] <= answered, mid  # its own received time, not a batch neighbour's
