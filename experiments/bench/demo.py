"""A short demo of both backends on the embedded NATS, then the quick bench.

    python -m experiments.bench.demo

For each backend: publish a batch, let a few concurrent consumers fetch,
ack, nak one poison message until max_deliver, and print the stats in the
seed's `/stats` queue shape: the backend contract at a glance, in a
minute, without the services or the notebooks (`make main` runs those).
"""

from __future__ import annotations

import asyncio
import json
import time

from backends.contract import Message, QueueBackend
from backends.factory import create_backend, load_settings
from experiments.bench import backends as bench_backends
from experiments.runtime.nats.process import ProcessNats

MESSAGES = 2000
CONSUMERS = 4


async def consume(backend: QueueBackend, processed: list[str], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for d in await backend.fetch(50, timeout=0.2):
            if d.message.payload == "poison":
                await d.nak()
            else:
                processed.append(d.message.id)
                await d.ack()


async def demo(backend: QueueBackend) -> None:
    await backend.connect()
    try:
        started = time.perf_counter()
        msgs = [Message(id=f"demo-{i}", source="demo", payload={"n": i}) for i in range(MESSAGES)]
        for i in range(0, MESSAGES, 100):
            await backend.publish_many(msgs[i : i + 100])
        await backend.publish(Message(id="demo-poison", source="demo", payload="poison"))
        processed: list[str] = []
        stop = asyncio.Event()
        workers = [asyncio.create_task(consume(backend, processed, stop)) for _ in range(CONSUMERS)]
        # polls the queue depth on purpose: that is what the demo shows draining
        while len(processed) < MESSAGES or (await backend.stats()).current_size > 0:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*workers)
        elapsed = time.perf_counter() - started
        s = await backend.stats()
        print(f"\n[{backend.name}] {len(processed)} processed, {len(set(processed))} distinct, in {elapsed:.2f}s")
        print(json.dumps({"queue": s.as_dict()}, indent=2))
    finally:
        await backend.close()


async def main() -> None:
    common = {"max_deliver": 3, "ack_wait": 2.0, "queue_size": MESSAGES + 10}
    await demo(create_backend(load_settings(queue_type="memory", **common)))
    with ProcessNats() as server:
        print(f"\nNATS {server.url} (store {server.store_dir})")
        await demo(create_backend(load_settings(queue_type="nats", nats_url=server.url, **common)))


if __name__ == "__main__":
    asyncio.run(main())
    print()
    bench_backends.main(["--quick"])
