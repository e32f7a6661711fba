"""Building a backlog fast: batches through the gateway, a few requests in flight, bounded.

The footprint experiment needs N messages waiting in the queue, not a rate:
batches are the quickest way through the three HTTP hops. Every batch is
all or nothing (a full memory queue answers it 429), so the counts here are
exact per message.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

# The gateway's and ingest's default body limit is 1 MiB and ingest forwards
# at most half of it in one call: a batch stays under that with its JSON overhead.
MAX_BATCH_BYTES = 400_000
MAX_BATCH = 1000  # the services' default MAX_BATCH


def batch_size_for(payload_bytes: int) -> int:
    """Messages per request for payloads of `payload_bytes`, inside the services' default limits."""
    return max(1, min(MAX_BATCH, MAX_BATCH_BYTES // (payload_bytes + 64)))


@dataclass
class FillResult:
    """Per message: sent, answered 2xx, answered 4xx (429: queue full), or 5xx / no answer."""

    sent: int = 0
    acknowledged: int = 0
    rejected: int = 0
    errors: int = 0
    seconds: float = 0.0
    request_latencies_s: list[float] = field(default_factory=list)  # of 2xx requests

    def add(self, other: FillResult) -> None:
        self.sent += other.sent
        self.acknowledged += other.acknowledged
        self.rejected += other.rejected
        self.errors += other.errors
        self.seconds += other.seconds
        self.request_latencies_s += other.request_latencies_s


async def fill(
    url: str,
    count: int,
    *,
    payload_bytes: int,
    prefix: str,
    start_seq: int = 0,
    in_flight: int = 4,
    timeout_s: float = 60.0,
) -> FillResult:
    """POST `count` messages (ids `prefix-<seq>`, payload a string of `payload_bytes`) to `url` in batches."""
    size = batch_size_for(payload_bytes)
    data = "x" * payload_bytes
    result = FillResult()
    seqs = iter(range(start_seq, start_seq + count, size))
    end = start_seq + count
    started = time.perf_counter()

    async def worker(http: aiohttp.ClientSession) -> None:
        for first in seqs:
            n = min(size, end - first)
            body = orjson.dumps([{"source": "footprint", "payload": data, "id": f"{prefix}-{s}"}
                                 for s in range(first, first + n)])  # fmt: skip
            t0 = time.perf_counter()
            try:
                async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            result.sent += n
            if 200 <= status < 300:
                result.acknowledged += n
                result.request_latencies_s.append(time.perf_counter() - t0)
            elif 400 <= status < 500:
                result.rejected += n
            else:
                result.errors += n

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as http:
        await asyncio.gather(*(worker(http) for _ in range(in_flight)))
    result.seconds = time.perf_counter() - started
    return result
