"""End-to-end throughput and latency of the three services, beside a bare chain.

    python -m experiments.bench.services [--quick] [--duration S] [--rounds N]
                                         [--configs memory,nats,nats:2]

Each round measures the bare 3-hop chain (same HTTP stack, no queue, no
validation) and then each configuration of the real stack (`BACKEND[:N]`, N
processor instances, default 1), all on fresh processes, back to back, so a
slow moment of the machine hits neighbours alike. Per configuration:
- single messages, closed loop (64 connections): accepted msg/s, and
  processed msg/s = every accepted message worked off and acked, divided by
  the time from the start of the load until the last one was (the drain
  counts: a queue that only grows is not throughput);
- batches of 100, closed loop (8 connections): the same, in messages;
- client latency p50/p99 at half the max single-message rate, open loop
  (from each request's scheduled time: no coordinated omission).
Figures are medians over the rounds; the single-message ratio to the bare
chain is the median of per-round ratios, with min..max.
Every process runs on 127.0.0.1 and is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from experiments.runtime.nats.process import free_port, nats_server_version
from experiments.runtime.stack import ServiceProcess, Stack, StackConfig
from experiments.workload.load import closed_loop, open_loop
from services.settings import BackendSettings

PAD = "x" * 64


def single_body(seq: int) -> bytes:
    return orjson.dumps({"source": "bench", "payload": {"n": seq, "pad": PAD}})


def batch_body(seq: int) -> bytes:
    return orjson.dumps([{"source": "bench", "payload": {"n": seq * 100 + i, "pad": PAD}} for i in range(100)])


@dataclass
class ChainFigures:
    """One configuration in one round."""

    name: str
    single_accepted: float
    single_processed: float
    batch_accepted: float
    batch_processed: float
    half_rate: float
    p50_ms: float
    p99_ms: float
    errors: int


class BareChain:
    """sink <- forwarder <- forwarder, as uvicorn processes."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        sink = ServiceProcess(
            "bare-sink", "experiments.bench.bare_chain:create_sink", free_port(), {}, workdir / "sink.log"
        )
        mid = ServiceProcess(
            "bare-mid", "experiments.bench.bare_chain:create_forwarder", free_port(), {"BARE_NEXT_URL": sink.url},
            workdir / "mid.log",
        )  # fmt: skip
        front = ServiceProcess(
            "bare-front", "experiments.bench.bare_chain:create_forwarder", free_port(), {"BARE_NEXT_URL": mid.url},
            workdir / "front.log",
        )  # fmt: skip
        self.services = [sink, mid, front]
        self.url = front.url

    def start(self) -> None:
        for s in self.services:
            s.start()

    def stop(self) -> None:
        for s in reversed(self.services):
            s.stop()


class Processed:
    """The processors' `processed_count`, summed (one or several instances)."""

    def __init__(self, stats_urls: list[str]) -> None:
        self.stats_urls = stats_urls

    async def count(self, client: httpx.AsyncClient) -> int:
        answers = await asyncio.gather(*(client.get(u) for u in self.stats_urls))
        return sum(int(a.json()["pool"]["processed_count"]) for a in answers)

    async def wait_for(self, client: httpx.AsyncClient, target: int, timeout: float) -> int:
        """Poll until `target` are processed (bounded); the stats API has no push."""
        deadline = time.monotonic() + timeout
        n = await self.count(client)
        while n < target and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            n = await self.count(client)
        return n


async def measure(name: str, url: str, processed: Processed | None, duration: float) -> ChainFigures:
    ingest = f"{url}/api/v1/ingest"
    errors = 0
    client = httpx.AsyncClient(trust_env=False, timeout=5)

    async def window(body, concurrency: int, per_request: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
        nonlocal errors
        before = await processed.count(client) if processed else 0
        started = time.monotonic()
        res = await closed_loop(ingest, body, concurrency=concurrency, duration=duration)
        errors += len(res.records) - len(res.ok)
        accepted_msgs = len(res.ok) * per_request
        accepted = accepted_msgs / res.duration
        if processed is None:
            return accepted, accepted
        done = await processed.wait_for(client, before + accepted_msgs, timeout=120) - before
        return accepted, done / (time.monotonic() - started)

    try:
        await closed_loop(ingest, single_body, concurrency=16, duration=1.0)  # warm up connections
        single_acc, single_proc = await window(single_body, 64, 1)
        batch_acc, batch_proc = await window(batch_body, 8, 100)
        half = max(1.0, single_acc / 2)
        res = await open_loop(ingest, single_body, rate=half, duration=duration, keep_ids=False)
        errors += len(res.records) - len(res.ok)
    finally:
        await client.aclose()
    return ChainFigures(
        name, single_acc, single_proc, batch_acc, batch_proc, half, res.latency_ms(0.50), res.latency_ms(0.99), errors
    )


def parse_config(text: str) -> tuple[str, int]:
    backend, _, n = text.partition(":")
    if backend not in ("memory", "nats"):
        raise argparse.ArgumentTypeError(f"unknown backend {backend!r} in {text!r}")
    return backend, int(n or 1)


def label(backend: str, processors: int) -> str:
    return backend if processors == 1 else f"{backend}x{processors}"


def run_round(work: Path, configs: list[tuple[str, int]], duration: float, workers: int) -> list[ChainFigures]:
    out = []
    bare_chain = BareChain(work / "bare")
    bare_chain.start()
    try:
        out.append(asyncio.run(measure("bare", bare_chain.url, None, duration)))
    finally:
        bare_chain.stop()
    for backend, processors in configs:
        name = label(backend, processors)
        cfg = StackConfig(
            queue=backend,
            workers=workers,
            processors=processors,
            backend=BackendSettings(queue_size=200_000, nats_max_ack_pending=20_000),
        )
        with Stack(cfg, work / name) as stack:
            counter = Processed([f"{p.url}/stats" for p in stack.processors])
            out.append(asyncio.run(measure(name, stack.gateway_url, counter, duration)))
    return out


def median_of(rounds: list[list[ChainFigures]], name: str) -> ChainFigures:
    rows = [r for rnd in rounds for r in rnd if r.name == name]

    def med(attr: str) -> float:
        return float(statistics.median(float(getattr(r, attr)) for r in rows))

    return ChainFigures(
        name,
        med("single_accepted"),
        med("single_processed"),
        med("batch_accepted"),
        med("batch_processed"),
        med("half_rate"),
        med("p50_ms"),
        med("p99_ms"),
        sum(r.errors for r in rows),
    )


def single_ratios(rounds: list[list[ChainFigures]], name: str) -> list[float]:
    out = []
    for rnd in rounds:
        bare = next(r for r in rnd if r.name == "bare")
        row = next(r for r in rnd if r.name == name)
        out.append(row.single_processed / bare.single_processed if bare.single_processed else 0.0)
    return out


def render(rounds: list[list[ChainFigures]], names: list[str]) -> str:
    head = (
        f"{'chain':<9} {'single acc/s':>12} {'single proc/s':>13} {'vs bare (min..max)':>19} {'batch100 acc/s':>14}"
        f" {'batch100 proc/s':>15} {'half rate':>9} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
    )
    lines = [head, "-" * len(head)]
    for name in ["bare", *names]:
        r = median_of(rounds, name)
        ratios = single_ratios(rounds, name)
        vs = f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}..{max(ratios):.2f})"
        lines.append(
            f"{r.name:<9} {r.single_accepted:>12,.0f} {r.single_processed:>13,.0f} {vs:>19}"
            f" {r.batch_accepted:>14,.0f} {r.batch_processed:>15,.0f} {r.half_rate:>9,.0f}"
            f" {r.p50_ms:>7.1f} {r.p99_ms:>7.1f} {r.errors:>6}"
        )
    return "\n".join(lines)


def verdicts(rounds: list[list[ChainFigures]], names: list[str]) -> str:
    out = []
    for name in names:
        r = median_of(rounds, name)
        ratio = statistics.median(single_ratios(rounds, name))
        batch_target = 15_000 if name.startswith("nats") else 30_000
        checks = [
            ("single processed >= 0.8x bare", ratio >= 0.8),
            ("single processed >= 1,000 msg/s", r.single_processed >= 1000),
            (f"batch processed >= {batch_target:,} msg/s", r.batch_processed >= batch_target),
            ("client p99 <= 50 ms at half max", r.p99_ms <= 50),
        ]
        out.append(f"{name}: " + "; ".join(f"{text}: {'ok' if ok else 'MISSED'}" for text, ok in checks))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement window")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are shown")
    parser.add_argument("--quick", action="store_true", help="one round of 2 s windows")
    parser.add_argument("--configs", default="memory,nats,nats:2", help="BACKEND[:PROCESSORS],...")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    duration, rounds_n = (2.0, 1) if args.quick else (args.duration, args.rounds)
    configs = [parse_config(c) for c in args.configs.split(",")]
    names = [label(b, n) for b, n in configs]
    print(
        f"python {sys.version.split()[0]}, nats-server {nats_server_version()}, {platform.machine()}, "
        f"{duration:.0f} s windows, {rounds_n} round(s), workers={args.workers} per processor",
        flush=True,
    )
    rounds = []
    with tempfile.TemporaryDirectory(prefix="bench-services-") as tmp:
        for i in range(rounds_n):
            rounds.append(run_round(Path(tmp) / f"round-{i}", configs, duration, args.workers))
            print(f"round {i + 1}/{rounds_n} done", flush=True)
    print(render(rounds, names))
    print(verdicts(rounds, names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
