"""The open-loop generator reports its own lateness beside each request's latency, against a real HTTP server."""

from __future__ import annotations

import asyncio
import gc
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


async def test_the_heap_alive_before_a_load_is_out_of_garbage_collection_during_it_and_back_after(server: str) -> None:
    """A full collection during the load walks what the load allocated, not the harness (65-90 ms for 145 k here)."""
    harness = [[i] for i in range(200_000)]  # stands in for pandas, matplotlib, the harness
    gc.collect()
    assert len(gc.get_objects(generation=2)) > 200_000
    seen: dict[str, list[int]] = {"frozen": [], "gen2": []}

    def during(n: int) -> None:
        if n in (1, 100):
            seen["frozen"].append(gc.get_freeze_count())
            seen["gen2"].append(len(gc.get_objects(generation=2)))

    await open_loop(server, lambda seq: b'{"n": %d}' % seq, rate=400, duration=0.5, keep_ids=False, on_sent=during)
    assert all(n > 200_000 for n in seen["frozen"]), seen
    assert all(n < 20_000 for n in seen["gen2"]), f"a full collection would walk the harness: {seen}"
    assert gc.get_freeze_count() == 0, "the heap was left frozen after the load"
    assert len(gc.get_objects(generation=2)) > 200_000  # back where a full collection reaches it

    res = await closed_loop(server, lambda seq: b'{"n": %d}' % seq, concurrency=2, duration=0.2)
    assert res.ok
    assert gc.get_freeze_count() == 0
    del harness


async def test_two_overlapping_loads_keep_the_heap_frozen_until_the_last_ends(server: str) -> None:
    frozen_while_the_long_one_runs: list[int] = []

    def long_one_sent(n: int) -> None:
        if n == 150:  # the short load (0.2 s) ended at about n = 60
            frozen_while_the_long_one_runs.append(gc.get_freeze_count())

    def body(seq: int) -> bytes:
        return b'{"n": %d}' % seq

    await asyncio.gather(
        open_loop(server, body, rate=300, duration=0.6, keep_ids=False, on_sent=long_one_sent),
        open_loop(server, body, rate=300, duration=0.2, keep_ids=False),
    )
    assert frozen_while_the_long_one_runs
    assert frozen_while_the_long_one_runs[0] > 0
    assert gc.get_freeze_count() == 0


async def test_a_load_without_the_frozen_heap_leaves_it_as_it_is(server: str) -> None:
    """The bench's `plain-heap` lever: the comparison needs a generator that does not freeze."""
    seen: list[int] = []
    await open_loop(
        server, lambda seq: b"{}", rate=200, duration=0.2, keep_ids=False, freeze_heap=False,
        on_sent=lambda n: seen.append(gc.get_freeze_count()),
    )  # fmt: skip
    assert seen
    assert set(seen) == {0}
