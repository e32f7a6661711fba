"""HTTP load generators: closed loop (find the max) and open loop (measure latency).

Both are bounded in requests and time and stop by themselves. The open-loop
generator sends on a fixed schedule and measures each request from its
*scheduled* start, so a slow server shows up as latency instead of silently
lowering the offered rate (no coordinated omission).

Both run with the process's heap frozen (`frozen_heap`): a full garbage
collection of the generator's process, which imports the whole harness
(pandas and matplotlib in a notebook's kernel), took 65-90 ms for 145 k
objects here, and every request due in that time starts late. The open
loop counts that lateness into the client's latency, which no service
caused: it was the generator's send lag p99 of 40-60 ms in the services
bench at ~700 msg/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from services.percentile import nearest_rank

BodyFactory = Callable[[int], bytes]


@dataclass
class RequestRecord:
    """One request: when it was due, how long it took from then, and what came back."""

    seq: int
    scheduled: float  # perf_counter seconds
    latency: float  # seconds, from scheduled start to response
    status: int  # HTTP status, 0 for a transport error
    ids: list[str] = field(default_factory=list)
    send_lag: float = 0.0  # s from scheduled to its task running (open loop): the generator's own lateness


@dataclass
class LoadResult:
    records: list[RequestRecord]
    duration: float  # seconds the generator ran

    @property
    def ok(self) -> list[RequestRecord]:
        return [r for r in self.records if 200 <= r.status < 300]

    def latency_ms(self, q: float) -> float:
        """Percentile of successful requests' latency in ms (nearest rank)."""
        return 1000 * nearest_rank(sorted(r.latency for r in self.ok), q)

    def send_lag_ms(self, q: float) -> float:
        """Percentile of how late the generator itself started each request, in ms (every request counts).

        Part of every request's latency: what of a client p99 is the
        generator (sharing the cores with the system) rather than the system.
        """
        return 1000 * nearest_rank(sorted(r.send_lag for r in self.records), q)


def request_ids(prefix: str, seq: int, batch_size: int = 1) -> list[str]:
    """The client-given ids of request `seq`: `prefix-seq`, or `prefix-seq-k` for each message of a batch."""
    if batch_size == 1:
        return [f"{prefix}-{seq}"]
    return [f"{prefix}-{seq}-{k}" for k in range(batch_size)]


def id_bodies(prefix: str, *, batch_size: int = 1, payload_bytes: int = 0, source: str = "lab") -> BodyFactory:
    """Request bodies whose ids the client chooses (`request_ids`), so what was sent is known exactly by id.

    `payload_bytes` pads each payload to about that many bytes of JSON; a
    batch is a JSON list of `batch_size` messages.
    """
    pad = "x" * max(0, payload_bytes - 16)

    def message(seq: int, mid: str) -> dict[str, Any]:
        payload: dict[str, Any] = {"seq": seq, "pad": pad} if pad else {"seq": seq}
        return {"source": source, "payload": payload, "id": mid}

    if batch_size == 1:
        return lambda seq: orjson.dumps(message(seq, f"{prefix}-{seq}"))
    return lambda seq: orjson.dumps([message(seq, mid) for mid in request_ids(prefix, seq, batch_size)])


def _session(connections: int, timeout: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=timeout),
        trust_env=False,
    )


async def _send(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.read()
    except (aiohttp.ClientError, TimeoutError):
        return 0, b""


def _ids(status: int, payload: bytes) -> list[str]:
    if not 200 <= status < 300:
        return []
    try:
        return list(orjson.loads(payload).get("ids", []))
    except (orjson.JSONDecodeError, AttributeError):
        return []


_frozen = 0  # generators running with the heap frozen (two may overlap: bench-tail drives two stacks at once)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Objects alive at the start are left out of garbage collection until the last overlapping load ends.

    `gc.freeze` moves them to the permanent generation (a list splice, no
    traversal), so a collection during the load walks only what the load
    allocated: a few ms instead of a full pass over the harness. What they
    hold stays alive a little longer; `gc.unfreeze` hands them back to the
    oldest generation.
    """
    global _frozen
    if _frozen == 0:
        gc.freeze()
    _frozen += 1
    try:
        yield
    finally:
        _frozen -= 1
        if _frozen == 0:
            gc.unfreeze()


async def closed_loop(
    url: str,
    make_body: BodyFactory,
    *,
    concurrency: int,
    duration: float,
    max_requests: int = 10_000_000,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    keep_ids: bool = False,
    freeze_heap: bool = True,
) -> LoadResult:
    """`concurrency` clients each sending back to back, for `duration` s at most (`freeze_heap`: see the module)."""
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    records: list[RequestRecord] = []
    counter = iter(range(max_requests))
    started = time.perf_counter()
    stop_at = started + duration

    async def client(session: aiohttp.ClientSession) -> None:
        for seq in counter:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            status, payload = await _send(session, url, make_body(seq), hdrs)
            records.append(
                RequestRecord(seq, t0, time.perf_counter() - t0, status, _ids(status, payload) if keep_ids else [])
            )

    with frozen_heap() if freeze_heap else contextlib.nullcontext():
        async with _session(concurrency, timeout) as session:
            await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return LoadResult(records, time.perf_counter() - started)


async def open_loop(
    url: str,
    make_body: BodyFactory,
    *,
    rate: float,
    duration: float,
    max_in_flight: int = 512,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    keep_ids: bool = True,
    on_sent: Callable[[int], None] | None = None,
    freeze_heap: bool = True,
) -> LoadResult:
    """Send `rate` requests/s on a fixed schedule for `duration` s.

    `on_sent(n)` is called with the number of requests issued so far, so a
    fault can be timed by progress ("after N messages") instead of the clock.

    Latency runs from each request's scheduled time. If `max_in_flight`
    requests are outstanding the next ones wait (their latency grows), so
    memory stays bounded; none is skipped. `freeze_heap=False` runs it with
    the heap as it is, for the comparison (see the module).
    """
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be > 0")
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    total = max(1, int(rate * duration))
    interval = 1.0 / rate
    records: list[RequestRecord] = []
    gate = asyncio.Semaphore(max_in_flight)

    async def one(session: aiohttp.ClientSession, seq: int, scheduled: float) -> None:
        lag = time.perf_counter() - scheduled
        try:
            status, payload = await _send(session, url, make_body(seq), hdrs)
        finally:
            gate.release()
        ids = _ids(status, payload) if keep_ids else []
        records.append(RequestRecord(seq, scheduled, time.perf_counter() - scheduled, status, ids, lag))

    with frozen_heap() if freeze_heap else contextlib.nullcontext():
        async with _session(max_in_flight, timeout) as session:
            started = time.perf_counter()
            tasks = []
            for seq in range(total):
                scheduled = started + seq * interval
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await gate.acquire()
                tasks.append(asyncio.create_task(one(session, seq, scheduled)))
                if on_sent is not None:
                    on_sent(seq + 1)
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - started
    return LoadResult(records, elapsed)
