"""Shared steps of the fault tests: a stack per test, drain, accounting, the checks every row must pass.

Each fault test runs bounded load through the gateway with unique ids,
injects one fault, heals, drains, and accounts by id (see `fault_matrix`).
What is common to all of them lives here, so each test reads as its fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import nats
import orjson

from experiments.runtime import processes
from experiments.runtime.nats.provider import NatsServer
from experiments.runtime.stack import Stack, StackConfig
from experiments.workload.accounting import Accounting, wait_processed
from services.ledger import LedgerRow, read_ledger

# Short timers so faults show within seconds; the same knobs as in production.
BASE_ENV = {
    "ACK_WAIT": "2",
    "PUBLISH_TIMEOUT": "1",
    "NATS_RECONNECT_WAIT": "0.2",
    "NATS_CONNECT_TIMEOUT": "2",
    "HTTP_TIMEOUT": "5",
    "MAX_DELIVER": "5",
}


@contextlib.contextmanager
def fault_stack(
    workdir: Path,
    queue: str = "nats",
    *,
    nats: NatsServer | None = None,
    env: Mapping[str, str] | None = None,
    processor_env: Mapping[str, str] | None = None,
    gateway_env: Mapping[str, str] | None = None,
    workers: int = 4,
    start: bool = True,
) -> Iterator[Stack]:
    """The three services (and NATS, unless `nats` is given) as processes; every pid gone after."""
    cfg = StackConfig(
        queue=queue,
        workers=workers,
        env={**BASE_ENV, **(env or {})},
        processor_env=dict(processor_env or {}),
        gateway_env=dict(gateway_env or {}),
    )
    stack = Stack(cfg, workdir, nats=nats)
    try:
        if start:
            stack.start()
        yield stack
    finally:
        stack.close()
        assert all(s.pid is None for s in stack.services), "a service outlived its stack"


def ledger_rows(stack: Stack) -> list[LedgerRow]:
    return [row for path in stack.ledger_paths if path.exists() for row in read_ledger(path)]


async def stats(stack: Stack) -> dict[str, Any]:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        return dict((await client.get(f"{stack.processor_url}/stats")).json())


async def drain(stack: Stack, sent: set[str], acked: set[str], timeout: float = 40.0) -> Accounting:
    """Wait until every acknowledged id is processed (or `timeout`), then account by id."""
    processed = await wait_processed(stack.ledger_paths, acked, timeout=timeout)
    return Accounting(sent, acked, processed)


async def work_queue_empty(stack: Stack, timeout: float = 15.0) -> dict[str, Any]:
    """The work queue drains to 0 (the DLQ does not count); JetStream applies acks a little late."""
    deadline = time.monotonic() + timeout
    while True:
        s = await stats(stack)
        if s["queue"]["current_size"] == 0 or time.monotonic() > deadline:
            assert s["queue"]["current_size"] == 0, f"work queue not empty after the drain: {s['queue']}"
            return s
        await asyncio.sleep(0.2)


def assert_nothing_lost(acc: Accounting, max_duplicated: int) -> None:
    """The NATS promise: G ⊆ P, P ⊆ A, duplicates bounded."""
    assert acc.lost == set(), f"{len(acc.lost)} acknowledged but never processed, e.g. {sorted(acc.lost)[:5]}"
    assert acc.invented == set(), f"processed but never sent: {sorted(acc.invented)[:5]}"
    assert len(acc.duplicated) <= max_duplicated, f"{len(acc.duplicated)} ids processed more than once"


async def wait_status(url: str, want: int, timeout: float) -> int:
    """Poll GET `url` until it answers `want`; the last status seen."""
    deadline = time.monotonic() + timeout
    code = 0
    async with httpx.AsyncClient(trust_env=False, timeout=2) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                code = (await client.get(url)).status_code
                if code == want:
                    return code
            await asyncio.sleep(0.2)
    return code


@dataclass
class Retried:
    """What retrying clients saw: every status per key (0 = transport error) and keys answered as duplicates."""

    statuses: dict[str, list[int]]
    duplicate_keys: set[str] = field(default_factory=set)

    @property
    def stored(self) -> set[str]:
        return {k for k, st in self.statuses.items() if st and 200 <= st[-1] < 300}


async def send_until_stored(
    url: str,
    bodies: Mapping[str, bytes],
    *,
    deadline: float,
    concurrency: int = 16,
    headers: Mapping[str, str] | None = None,
    pace: float = 0.0,
) -> Retried:
    """Clients that retry each request with the same Idempotency-Key until a 2xx or `deadline`.

    `bodies` maps key -> body. Bounded: each client stops at `deadline`
    (a `time.monotonic()` value); a request times out after 6 s. `pace`:
    seconds each client rests between two keys, to stretch the load in time.
    """
    todo = list(bodies)
    out = Retried({k: [] for k in bodies})
    timeout = aiohttp.ClientTimeout(total=6)

    async def client(session: aiohttp.ClientSession) -> None:
        while todo and time.monotonic() < deadline:
            key = todo.pop()
            while time.monotonic() < deadline:
                hdrs = {"Content-Type": "application/json", "Idempotency-Key": key, **(headers or {})}
                answer = b""
                try:
                    async with session.post(url, data=bodies[key], headers=hdrs) as resp:
                        status = resp.status
                        answer = await resp.read()
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                out.statuses[key].append(status)
                if 200 <= status < 300:
                    if orjson.loads(answer).get("duplicates"):
                        out.duplicate_keys.add(key)
                    break
                await asyncio.sleep(0.1)
            if pace:
                await asyncio.sleep(pace)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return out


async def dlq_ids(nats_url: str, stream: str = "DIPLOM_DLQ") -> list[str]:
    """Ids of the messages parked in the DLQ stream, read straight from NATS."""
    nc = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                raw = await js.get_msg(stream, seq)
                if raw.data:
                    out.append(orjson.loads(raw.data)["id"])
        return out
    finally:
        await nc.close()


def rss_mib(pid: int | None) -> float:
    """Resident memory of a process in MiB."""
    assert pid is not None
    return processes.rss_mib(pid)
