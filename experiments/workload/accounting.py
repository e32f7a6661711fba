"""Durability runs: bounded load through the gateway, one fault, accounting by id.

Jepsen's queue workload, in small: A = ids sent, G = ids that got a 2xx,
P = ids processed (from the processors' ledgers). Nothing lost means G ⊆ P;
P ⊆ A always (nothing invented). Duplicates (processed more than once) are
counted, not hidden: at-least-once delivery allows them after a crash.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from experiments.workload.load import LoadResult, open_loop
from services.ledger import read_ledger

Fault = Callable[[], None]


@dataclass
class Accounting:
    """What was sent, acknowledged and processed, by message id."""

    sent: set[str]
    acked: set[str]
    processed: Counter[str] = field(default_factory=Counter)

    @property
    def lost(self) -> set[str]:
        return self.acked - set(self.processed)

    @property
    def duplicated(self) -> dict[str, int]:
        return {i: n for i, n in self.processed.items() if n > 1}

    @property
    def invented(self) -> set[str]:
        return set(self.processed) - self.sent

    def summary(self, label: str) -> str:
        dup = self.duplicated
        return (
            f"{label}: A={len(self.sent)} G={len(self.acked)} P={len(self.processed)} "
            f"lost={len(self.lost)} duplicated={len(dup)} (extra deliveries {sum(dup.values()) - len(dup)})"
        )


def processed_counts(ledgers: Iterable[Path], ids: set[str] | None = None) -> Counter[str]:
    """How often each id was processed, across every processor's ledger."""
    seen: Counter[str] = Counter()
    for path in ledgers:
        if path.exists():
            seen.update(r.id for r in read_ledger(path) if r.outcome == "processed" and (ids is None or r.id in ids))
    return seen


async def wait_processed(ledgers: list[Path], ids: set[str], timeout: float, settle: float = 1.0) -> Counter[str]:
    """Poll the ledgers until every id in `ids` is processed or `timeout` passes.

    Then wait `settle` s more, so late duplicates (a redelivery after
    ack_wait) are counted too.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ids <= set(processed_counts(ledgers, ids)):
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(settle)
    return processed_counts(ledgers)


def id_body(prefix: str) -> Callable[[int], bytes]:
    """Request bodies with client-given ids `prefix-seq`, so A is known exactly."""

    def make(seq: int) -> bytes:
        return orjson.dumps({"source": "durability", "payload": {"seq": seq}, "id": f"{prefix}-{seq}"})

    return make


async def load_with_fault(
    gateway_url: str,
    *,
    rate: float,
    duration: float,
    fault: Fault | None,
    fault_at: float,
    prefix: str | None = None,
) -> tuple[LoadResult, set[str], str]:
    """Open-loop load for `duration` s; `fault` runs (in a thread) after `fault_at` s.

    Returns the load result, the ids sent, and the id prefix used.
    """
    prefix = prefix or uuid.uuid4().hex[:8]

    async def inject() -> None:
        await asyncio.sleep(fault_at)
        if fault is not None:
            await asyncio.to_thread(fault)

    injector = asyncio.create_task(inject())
    result = await open_loop(
        f"{gateway_url}/api/v1/ingest", id_body(prefix), rate=rate, duration=duration, timeout=10.0, keep_ids=True
    )
    await injector
    sent = {f"{prefix}-{r.seq}" for r in result.records}
    return result, sent, prefix


def acked_ids(result: LoadResult) -> set[str]:
    return {i for r in result.ok for i in r.ids}
