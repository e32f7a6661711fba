"""Raw JetStream publish rate on a given server: what a storage policy costs, without HTTP in the way.

Two ways a client publishes: one at a time (each publish waits for its
PubAck: what a processor does per single-message request) and pipelined
(`publish_async` in chunks: the library's way; `publish_many` writes a
batch as one joined HPUB write instead). Each measurement uses a stream of
its own (`LAB_PUBLISH_<n>`, file storage), deleted afterwards, so it never
mixes with the services' stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Literal

import nats
import nats.js.errors

PublishMode = Literal["single", "pipelined"]
PUBLISH_MODES: tuple[PublishMode, ...] = ("single", "pipelined")
PIPELINE_CHUNK = 1000
_streams = itertools.count()


async def publish_rate(url: str, mode: PublishMode, n: int, payload_bytes: int = 128, replicas: int = 1) -> float:
    """Messages/s for `n` acknowledged publishes of `payload_bytes` each, one at a time or pipelined.

    `url` may list a cluster's servers (comma-separated); `replicas` > 1 makes the stream replicated.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    stream = f"LAB_PUBLISH_{next(_streams)}_{time.monotonic_ns()}"
    subject = f"lab.publish.{stream}"
    body = b"x" * payload_bytes
    nc = await nats.connect(url.split(","), connect_timeout=5)
    try:
        js = nc.jetstream(timeout=10.0)
        await js.add_stream(name=stream, subjects=[subject], num_replicas=replicas)
        t0 = time.perf_counter()
        if mode == "single":
            for _ in range(n):
                await js.publish(subject, body)
        else:
            for start in range(0, n, PIPELINE_CHUNK):
                futures = [await js.publish_async(subject, body) for _ in range(min(PIPELINE_CHUNK, n - start))]
                await asyncio.gather(*futures)
        elapsed = time.perf_counter() - t0
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await js.delete_stream(stream)
        return n / elapsed
    finally:
        await nc.close()
