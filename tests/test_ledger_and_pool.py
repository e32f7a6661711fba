"""Ledger group commit and the pool's Go-style duration, without HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backends.contract import Message
from backends.memory import MemoryBackend, MemoryConfig
from services.ledger import Ledger, read_ledger
from services.worker_pool import PoolConfig, WorkerPool, go_duration


async def test_concurrent_records_are_all_committed(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite")
    await ledger.start()

    async def writer(w: int) -> None:
        for i in range(50):
            await ledger.record([(f"{w}-{i}", "s", 1, 2, 1, f"w{w}", "inst", "processed")])

    await asyncio.gather(*(writer(w) for w in range(8)))
    await ledger.close()
    rows = read_ledger(tmp_path / "l.sqlite")
    assert len(rows) == 400
    assert len({r.id for r in rows}) == 400
    assert ledger.rows_written == 400


async def test_pool_acks_after_recording_and_parks_poison(tmp_path: Path) -> None:
    backend = MemoryBackend(MemoryConfig(max_deliver=2, ack_wait=5))
    await backend.connect()
    ledger = Ledger(tmp_path / "p.sqlite")
    await ledger.start()
    pool = WorkerPool(backend, ledger, PoolConfig(workers=3, failure_id_prefix="bad", max_deliver=2, fetch_timeout=0.1))
    pool.start()
    await backend.publish_many([Message(id=f"ok{i}", source="t", payload=i) for i in range(30)])
    await backend.publish(Message(id="bad1", source="t", payload=None))
    for _ in range(100):
        if pool.processed_count == 30 and pool.dead_lettered == 1:
            break
        await asyncio.sleep(0.02)
    await pool.stop(timeout=2)
    await ledger.close()
    s = await backend.stats()
    await backend.close()
    rows = read_ledger(tmp_path / "p.sqlite")
    assert sorted(r.outcome for r in rows if r.id == "bad1") == ["dead_lettered", "failed"]
    assert sum(r.outcome == "processed" for r in rows) == 30
    assert (s.current_size, s.acked, s.dead_lettered) == (0, 30, 1)
    assert pool.error_count == 2


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (9.95, "9.95s"), (0.0015, "1.5ms"), (0.000012, "12µs"), (61.5, "1m1.5s"), (3723, "1h2m3s")],
)
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text
