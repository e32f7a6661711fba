"""The open-loop generator reports its own lateness beside each request's latency, against a real HTTP server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from experiments.workload.load import closed_loop, open_loop
from tests.http_stub import serve_ingest


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def ingest(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ids": ["x"]}, status=202)

    async with serve_ingest(ingest) as url:
        yield url


async def test_a_blocked_generator_shows_as_send_lag_not_only_as_latency(server: str) -> None:
    async def block_the_loop() -> None:
        await asyncio.sleep(0.2)
        time.sleep(0.15)  # noqa: ASYNC251  # the generator stalls: every request due meanwhile starts late

    stall = asyncio.create_task(block_the_loop())
    res = await open_loop(server, lambda seq: b'{"n": %d}' % seq, rate=200, duration=0.6, keep_ids=False)
    await stall
    assert len(res.ok) == len(res.records) == 120
    assert all(0 <= r.send_lag <= r.latency for r in res.records)  # the lag is part of the latency
    assert res.send_lag_ms(1.0) >= 140  # the request due when the stall began started that much late
    late = [r for r in res.records if r.send_lag >= 0.05]
    assert 10 <= len(late) <= 60  # about those due during the 150 ms stall (30 at 200/s), not all 120


async def test_closed_loop_has_no_schedule_so_no_lag(server: str) -> None:
    res = await closed_loop(server, lambda seq: b"{}", concurrency=2, duration=0.2)
    assert res.records
    assert res.send_lag_ms(1.0) == 0.0
