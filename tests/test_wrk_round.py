"""The wrk round's figures: wrk's p99, CPU per request per process, medians and per-round ratios to a baseline."""

from __future__ import annotations

import asyncio
import os

import orjson
import psutil
import pytest
from aiohttp import web

from experiments.bench import wrk, wrk_round
from experiments.bench.http_chain import baselines, interleaved, parse_config
from tests.http_stub import serve_ingest

LATENCY = """Running 5s test @ http://127.0.0.1:8080/api/v1/ingest
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    20.10ms    5.20ms 120.00ms   90.00%
    Req/Sec     3.20k   100.00     3.50k    70.00%
  Latency Distribution
     50%   18.00ms
     75%   22.00ms
     90%   30.00ms
     99%    1.20s
  16000 requests in 5.00s, 3.00MB read
Requests/sec:   3200.00
"""


def test_the_p99_comes_from_the_latency_distribution_in_its_unit() -> None:
    r = wrk.parse(LATENCY)
    assert (r.requests, r.non_2xx, r.seconds) == (16000, 0, 5.0)
    assert r.p99_ms == 1200.0
    assert wrk.parse(LATENCY.replace("1.20s", "850.00us")).p99_ms == 0.85
    assert wrk.parse(LATENCY.replace("     99%    1.20s\n", "")).p99_ms is None  # without --latency


def test_the_go_originals_body_is_its_ingest_request() -> None:
    assert set(orjson.loads(wrk_round.GO_BODY)) == {"source", "data", "metadata"}


def test_cpu_is_counted_per_process_tree_and_a_new_child_counts_from_zero() -> None:
    before = {"gateway": {1: 2.0, 2: 1.0}, "nats-server": {3: 5.0}}
    after = {"gateway": {1: 2.5, 4: 0.25}, "nats-server": {3: 5.5}}  # pid 2 gone, pid 4 new (granian worker)
    assert wrk_round.cpu_delta(before, after) == {"gateway": 0.75, "nats-server": 0.5}
    procs = wrk_round.Processes({"me": os.getpid()})
    assert procs.cpu_s()["me"][os.getpid()] > 0
    assert 0 < procs.rss_mb()["me"] < psutil.virtual_memory().total / 2**20


def one(name: str, rate: float, p99: float, cpu: dict[str, float]) -> wrk_round.WrkRound:
    return wrk_round.WrkRound(name, rate, p99, 0, cpu, {p: 50.0 for p in cpu})


def test_medians_with_spread_per_process_and_ratios_per_round() -> None:
    rounds = [
        [one("memory", 2000, 60, {"gateway": 300, "ingest": 200}), one("memory/x", 3000, 30, {"gateway": 200})],
        [one("memory", 1000, 80, {"gateway": 400, "ingest": 200}), one("memory/x", 2500, 40, {"gateway": 300})],
    ]
    text = wrk_round.render(rounds, ["memory", "memory/x"], {"memory/x": "memory"})
    row = next(line for line in text.splitlines() if line.startswith("memory "))
    assert "1,500 (1,000..2,000)" in row  # req/s
    assert "70.0 (60.0..80.0)" in row  # p99
    assert "550 (500..600)" in row  # CPU µs/req, all processes
    assert "gateway 350, ingest 200" in text
    # per round: 3000/2000 = 1.5, 2500/1000 = 2.5; CPU 200/500, 300/600
    assert "memory/x / memory: req/s 2.00 (1.50..2.50)x, CPU/req 0.45 (0.40..0.50)x, p99 0.50 (0.50..0.50)x" in text


def test_each_lever_is_compared_with_its_plain_configuration_in_alternating_order() -> None:
    configs = [parse_config(c) for c in ("memory", "nats", "memory/granian-all", "nats:2/granian-all")]
    assert baselines(configs) == {"memory/granian-all": "memory"}  # natsx2 has no plain natsx2 in this run
    assert [c.name for c in interleaved(configs, 1)] == [c.name for c in reversed(configs)]
    assert parse_config("nats/granian-all").variant.hop_server == "granian"


@pytest.mark.spawns
async def test_a_real_wrk_window_reads_the_servers_cpu_per_answer() -> None:
    wrk.ensure()

    async def ingest(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ids": ["x"]}, status=202)

    async with serve_ingest(ingest) as url:  # served by this process: its CPU is the server's
        r = await asyncio.to_thread(wrk_round.measure, "stub", url, {"stub": os.getpid()}, 1.0)
    assert r.rate > 0
    assert r.non_2xx == 0
    assert 0 < r.p99_ms < 5000
    assert r.cpu_us["stub"] > 0
    assert r.rss_mb["stub"] > 0
