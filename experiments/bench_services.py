"""End-to-end throughput and latency of the three services, beside a bare chain.

    python -m experiments.bench_services [--quick] [--duration S] [--backends memory,nats]

For the bare 3-hop chain (same HTTP stack, no queue, no validation) and for
the real stack on each backend, measured in the same run:
- single messages, closed loop (64 connections): accepted and *processed*
  msg/s (processed = the processor's `processed_count` growth during the
  window, i.e. worked off and acked, not just accepted);
- batches of 100, closed loop (8 connections): the same in messages/s;
- client latency p50/p99 at half the max single-message rate, open loop
  (measured from each request's scheduled time).
Every process runs on 127.0.0.1 and is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from experiments.http_load import closed_loop, open_loop
from experiments.nats_server import free_port, nats_server_version
from experiments.stack import ServiceProcess, Stack, StackConfig

PAD = "x" * 64


def single_body(seq: int) -> bytes:
    return orjson.dumps({"source": "bench", "payload": {"n": seq, "pad": PAD}})


def batch_body(seq: int) -> bytes:
    return orjson.dumps([{"source": "bench", "payload": {"n": seq * 100 + i, "pad": PAD}} for i in range(100)])


@dataclass
class ChainFigures:
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
        sink = ServiceProcess("bare-sink", "experiments.bare_chain:create_sink", free_port(), {}, workdir / "sink.log")
        mid = ServiceProcess(
            "bare-mid", "experiments.bare_chain:create_forwarder", free_port(), {"BARE_NEXT_URL": sink.url},
            workdir / "mid.log",
        )  # fmt: skip
        front = ServiceProcess(
            "bare-front", "experiments.bare_chain:create_forwarder", free_port(), {"BARE_NEXT_URL": mid.url},
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


def processed_count(stats_url: str | None) -> int:
    if stats_url is None:
        return 0
    return int(httpx.get(stats_url, trust_env=False, timeout=5).json()["pool"]["processed_count"])


async def measure(name: str, url: str, stats_url: str | None, duration: float) -> ChainFigures:
    ingest = f"{url}/api/v1/ingest"
    errors = 0

    async def window(body, concurrency: int, per_request: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
        nonlocal errors
        before = processed_count(stats_url)
        res = await closed_loop(ingest, body, concurrency=concurrency, duration=duration)
        after = processed_count(stats_url)
        errors += len(res.records) - len(res.ok)
        accepted = res.achieved_rate * per_request
        processed = (after - before) / res.duration if stats_url else accepted
        return accepted, processed

    await closed_loop(ingest, single_body, concurrency=16, duration=1.0)  # warm up connections and JIT-less caches
    single_acc, single_proc = await window(single_body, 64, 1)
    batch_acc, batch_proc = await window(batch_body, 8, 100)
    await drain(stats_url)
    half = max(1.0, single_acc / 2)
    res = await open_loop(ingest, single_body, rate=half, duration=duration, keep_ids=False)
    errors += len(res.records) - len(res.ok)
    return ChainFigures(
        name, single_acc, single_proc, batch_acc, batch_proc, half, res.latency_ms(0.50), res.latency_ms(0.99), errors
    )


async def drain(stats_url: str | None, timeout: float = 60.0) -> None:
    """Wait until the processor's queue is empty, so windows do not overlap."""
    if stats_url is None:
        return
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        while time.monotonic() < deadline:
            if (await client.get(stats_url)).json()["queue"]["current_size"] == 0:
                return
            await asyncio.sleep(0.2)


def render(rows: list[ChainFigures], bare: ChainFigures) -> str:
    head = (
        f"{'chain':<8} {'single acc/s':>12} {'single proc/s':>13} {'vs bare':>8} {'batch100 acc/s':>14}"
        f" {'batch100 proc/s':>15} {'half rate':>9} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in [bare, *rows]:
        ratio = r.single_processed / bare.single_processed if bare.single_processed else 0.0
        lines.append(
            f"{r.name:<8} {r.single_accepted:>12,.0f} {r.single_processed:>13,.0f} {ratio:>7.2f}x"
            f" {r.batch_accepted:>14,.0f} {r.batch_processed:>15,.0f} {r.half_rate:>9,.0f}"
            f" {r.p50_ms:>7.1f} {r.p99_ms:>7.1f} {r.errors:>6}"
        )
    return "\n".join(lines)


def verdicts(rows: list[ChainFigures], bare: ChainFigures) -> str:
    out = []
    for r in rows:
        batch_target = 15_000 if r.name == "nats" else 30_000
        checks = [
            ("single processed >= 0.8x bare", r.single_processed >= 0.8 * bare.single_processed),
            ("single processed >= 1,000 msg/s", r.single_processed >= 1000),
            (f"batch processed >= {batch_target:,} msg/s", r.batch_processed >= batch_target),
            ("p99 <= 50 ms at half max", r.p99_ms <= 50),
        ]
        out.append(f"{r.name}: " + "; ".join(f"{name}: {'ok' if ok else 'MISSED'}" for name, ok in checks))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement window")
    parser.add_argument("--quick", action="store_true", help="3 s windows")
    parser.add_argument("--backends", default="memory,nats")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    duration = 3.0 if args.quick else args.duration
    print(
        f"python {sys.version.split()[0]}, nats-server {nats_server_version()}, {platform.machine()}, "
        f"{duration:.0f} s windows, workers={args.workers}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-services-") as tmp:
        work = Path(tmp)
        bare_chain = BareChain(work)
        bare_chain.start()
        try:
            bare = asyncio.run(measure("bare", bare_chain.url, None, duration))
        finally:
            bare_chain.stop()
        rows = []
        for backend in args.backends.split(","):
            cfg = StackConfig(
                queue=backend,
                workers=args.workers,
                env={"QUEUE_SIZE": "200000", "NATS_MAX_ACK_PENDING": "20000"},
            )
            with Stack(cfg, work / backend) as stack:
                rows.append(asyncio.run(measure(backend, stack.gateway_url, f"{stack.processor_url}/stats", duration)))
    print(render(rows, bare))
    print(verdicts(rows, bare))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
