"""The gateway's FastAPI app, unchanged, under granian instead of uvicorn (the bench-tail lever): real processes."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest

from experiments.runtime.processes import alive
from experiments.runtime.stack import Stack, StackConfig
from services.ledger import read_ledger

pytestmark = pytest.mark.e2e


async def test_the_gateway_under_granian_answers_like_under_uvicorn(tmp_path: Path) -> None:
    with Stack(StackConfig(queue="memory", gateway_server="granian"), tmp_path) as stack:
        assert stack.gateway.pid is not None
        workers = psutil.Process(stack.gateway.pid).children(recursive=True)
        assert [w.pid for w in workers] == [stack.gateway.serving_pid]  # what CPU per message is read from
        async with httpx.AsyncClient(base_url=stack.gateway_url, trust_env=False, timeout=5) as client:
            ok = await asyncio.gather(
                *(client.post("/api/v1/ingest", json={"source": "g", "payload": i, "id": f"gr-{i}"}) for i in range(50))
            )
            bad = await client.post("/api/v1/ingest", json={"source": "g"})
            malformed = await client.post("/api/v1/ingest", content=b"{", headers={"Content-Type": "application/json"})
            status = await client.get("/api/v1/status")
        assert [r.status_code for r in ok] == [202] * 50
        assert bad.status_code == 422
        assert "payload" in bad.text
        assert malformed.status_code == 400
        assert status.status_code == 200
        assert status.json()["healthy"] is True
        deadline = time.monotonic() + 20
        seen: Counter[str] = Counter()
        while time.monotonic() < deadline:
            seen = Counter(r.id for p in stack.ledger_paths for r in read_ledger(p) if r.outcome == "processed")
            if len(seen) >= 50:
                break
            await asyncio.sleep(0.1)
        assert seen == Counter({f"gr-{i}": 1 for i in range(50)})  # the bad ones stored nothing
        stack.gateway.kill()  # SIGKILL of the master takes its worker too: nothing left on the port
        assert not any(alive(w.pid) for w in workers)
