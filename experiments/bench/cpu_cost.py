"""CPU µs per message of the processor's queue work against bare nats-py doing the same, in one process each.

Ours: `publish_many` in batches of 100 (what a batch request to the processor
does) while a `WorkerPool` of 4 fetches, works (no simulated work), commits
the ledger row and acks: publish + consume + ledger + ack. Bare: nats-py
`publish_async` for the same batches (gathered), while one pull consumer
does `fetch(100)` + `ack`, with message bodies of the same bytes. Both on
uvloop (what the services run), against the same nats-server, on a fresh
stream; CPU is this process's `time.process_time()` over the run, so the
broker's own CPU is in neither.

    python -m experiments.bench.cpu_cost [--rounds N] [--messages N]

runs only this comparison, in interleaved rounds on fresh nats-servers
(what `diplom bench-services` prints as "queue work CPU per message"), to
evaluate a lever in a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import nats
import uvloop

from backends.contract import Message
from backends.nats import NatsConfig, NatsJetStreamBackend, consumer_config, stream_config
from experiments.runtime.nats.process import ProcessNats
from services.ledger import Ledger
from services.worker_pool import PoolConfig, WorkerPool

BATCH = 100
PAYLOAD = "x" * 64


def _messages(n: int, prefix: str) -> list[Message]:
    now = time.time_ns()
    return [
        Message(id=f"{prefix}-{i}", source="bench", payload={"n": i, "pad": PAYLOAD}, created_at=now,
                stamps={"gateway": now, "processor": now})
        for i in range(n)
    ]  # fmt: skip


async def _fresh_stream(cfg: NatsConfig, with_consumer: bool) -> None:
    nc = await nats.connect(cfg.url)
    js = nc.jetstream(timeout=10.0)
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_stream(cfg.stream)
    await js.add_stream(stream_config(cfg))
    if with_consumer:
        await js.add_consumer(cfg.stream, consumer_config(cfg))
    await nc.close()


async def _ours(url: str, n: int) -> float:
    cfg = NatsConfig(url=url, publish_timeout=10.0, max_ack_pending=20_000)
    await _fresh_stream(cfg, with_consumer=False)
    backend = NatsJetStreamBackend(cfg)
    await backend.connect()
    messages = _messages(n, f"ours{time.monotonic_ns()}")
    with tempfile.TemporaryDirectory(prefix="cpu-cost-") as tmp:
        ledger = Ledger(Path(tmp) / "ledger.sqlite")
        await ledger.start()
        pool = WorkerPool(backend, ledger, PoolConfig(workers=4, fetch_batch=BATCH, fetch_timeout=0.5))
        t0 = time.process_time()
        pool.start()
        for i in range(0, n, BATCH):
            await backend.publish_many(messages[i : i + BATCH])
        # The pool has no "all done" event; a 20 ms poll costs next to no CPU (idle time is not process time).
        while pool.processed_count < n:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        used = time.process_time() - t0
        await pool.stop(5.0)
        await ledger.close()
    await backend.close()
    return used * 1e6 / n


async def _bare(url: str, n: int, body_size: int) -> float:
    cfg = NatsConfig(url=url)
    await _fresh_stream(cfg, with_consumer=True)
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=10.0)
    body = b"x" * body_size
    psub = await js.pull_subscribe_bind(durable=cfg.durable, stream=cfg.stream)
    got = 0

    async def consume() -> None:
        nonlocal got
        while got < n:
            with contextlib.suppress(nats.errors.TimeoutError):
                for m in await psub.fetch(BATCH, timeout=0.5):
                    await m.ack()
                    got += 1

    t0 = time.process_time()
    consumer = asyncio.create_task(consume())
    for i in range(0, n, BATCH):
        chunk = range(i, min(i + BATCH, n))
        await asyncio.gather(*[await js.publish_async(cfg.subject, body) for _ in chunk])
    await consumer
    used = time.process_time() - t0
    await nc.close()
    return used * 1e6 / n


def wire_size() -> int:
    """Bytes one of our messages takes on the wire (the bare run sends bodies of this size)."""
    return len(_messages(1, "size-probe")[0].to_json())


def ours_us_per_message(url: str, n: int) -> float:
    return uvloop.run(_ours(url, n))


def bare_us_per_message(url: str, n: int) -> float:
    return uvloop.run(_bare(url, n, wire_size()))


def round_pair(work: Path, index: int, n: int) -> tuple[float, float]:
    """(ours, bare) µs per message on one fresh nats-server; which goes first alternates by round."""
    with ProcessNats(work / "cpu-nats") as server:
        if index % 2 == 0:
            bare = bare_us_per_message(server.url, n)
            ours = ours_us_per_message(server.url, n)
        else:
            ours = ours_us_per_message(server.url, n)
            bare = bare_us_per_message(server.url, n)
    return ours, bare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--messages", type=int, default=20_000, help="messages per run (ours, bare)")
    args = parser.parse_args(argv)
    pairs = []
    with tempfile.TemporaryDirectory(prefix="cpu-cost-") as tmp:
        for i in range(args.rounds):
            pairs.append(round_pair(Path(tmp) / f"round-{i}", i, args.messages))
            print(f"round {i + 1}/{args.rounds}: ours {pairs[-1][0]:.1f} µs, bare {pairs[-1][1]:.1f} µs", flush=True)
    ours, bare = [p[0] for p in pairs], [p[1] for p in pairs]
    ratios = [o / b for o, b in pairs]
    print(
        f"queue work CPU per message, batches of {BATCH}: ours {statistics.median(ours):.1f} µs "
        f"({min(ours):.1f}..{max(ours):.1f}), bare nats-py {statistics.median(bare):.1f} µs "
        f"({min(bare):.1f}..{max(bare):.1f}): ratio {statistics.median(ratios):.2f}x "
        f"({min(ratios):.2f}..{max(ratios):.2f}), {args.rounds} interleaved rounds"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
