"""wrk as an independent load generator: its request script and its summary, and a real run against a server."""

from __future__ import annotations

import asyncio
import shutil

import orjson
import pytest
from aiohttp import web

from experiments.bench import wrk
from tests.http_stub import serve_ingest

SUMMARY = """Running 2s test @ http://127.0.0.1:8080/api/v1/ingest
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.10ms    1.20ms  20.00ms   90.00%
    Req/Sec     1.30k   100.00     1.50k    70.00%
  2600 requests in 2.00s, 500.00KB read
  Non-2xx or 3xx responses: 100
Requests/sec:   1300.00
Transfer/sec:    250.00KB
"""


def test_summary_counts_only_2xx() -> None:
    r = wrk.parse(SUMMARY)
    assert (r.requests, r.non_2xx, r.seconds) == (2600, 100, 2.0)
    assert r.rate == 1250.0
    with pytest.raises(ValueError, match="not a wrk summary"):
        wrk.parse("unable to connect to 127.0.0.1:1 Connection refused")


def test_the_script_posts_the_exact_body() -> None:
    body = orjson.dumps({"source": "bench", "payload": {"n": 0, "pad": 'x"y\\z'}})
    script = wrk.lua_script(body)
    assert 'wrk.method = "POST"' in script
    assert 'wrk.headers["Content-Type"] = "application/json"' in script
    assert '\\"pad\\":\\"x\\\\\\"y\\\\\\\\z\\"' in script  # quotes and backslashes escaped for Lua


@pytest.mark.spawns
async def test_wrk_drives_a_real_server_with_our_body() -> None:
    wrk.ensure()  # installs Debian's wrk through scripts/ensure-wrk.sh when missing; fails loudly otherwise
    assert shutil.which("wrk")
    body = orjson.dumps({"source": "bench", "payload": {"n": 0}})
    seen: list[bytes] = []

    async def ingest(request: web.Request) -> web.Response:
        data = await request.read()
        seen.append(data)
        return web.json_response({"ids": ["x"]}, status=202 if len(seen) % 2 else 503)

    async with serve_ingest(ingest) as url:
        r = await asyncio.to_thread(wrk.accepted_rate, url, body, 2, 1.0)
    assert seen
    assert set(seen) == {body}
    assert r.requests >= len(seen) - 2  # wrk counts what it finished in the window
    assert r.non_2xx == pytest.approx(r.requests / 2, abs=2)  # every other answer was a 503: not counted
