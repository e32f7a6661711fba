"""Ledger group commit and the pool's Go-style duration, without HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from backends.contract import Message
from backends.memory import MemoryBackend, MemoryConfig
from services.ledger import Ledger, LedgerRow, LedgerTail, Row, read_ledger
from services.worker_pool import PoolConfig, WorkerPool, go_duration


async def test_concurrent_records_are_all_committed(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite")
    await ledger.start()

    async def writer(w: int) -> None:
        for i in range(50):
            await ledger.record(
                [(f"{w}-{i}", "s", 1, 2, 1, f"w{w}", "inst", "processed", None, None, None, None, None, None)]
            )

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


async def _pool_on(backend: MemoryBackend, ledger: Ledger, **config: object) -> WorkerPool:
    await backend.connect()
    await ledger.start()
    pool = WorkerPool(backend, ledger, PoolConfig(fetch_timeout=0.1, **config))  # type: ignore[arg-type]
    pool.start()
    return pool


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if check():
            return
        await asyncio.sleep(0.02)


async def test_redelivery_of_a_committed_result_is_acked_not_redone(tmp_path: Path) -> None:
    """A process that died between the ledger commit and the ack: the redelivery must not record a second result."""
    backend = MemoryBackend(MemoryConfig(ack_wait=0.2))
    ledger = Ledger(tmp_path / "l.sqlite")
    await ledger.start()
    # committed, ack never sent
    await ledger.record([("m1", "s", 1, 2, 1, "w0", "before-crash", "processed", None, None, None, None, None, None)])
    await ledger.close()
    await backend.connect()
    await backend.publish(Message(id="m1", source="s", payload=1))
    await backend.publish(Message(id="m2", source="s", payload=2))
    first = await backend.fetch(10, 1.0)  # delivered to the "dead" process, never settled
    assert [d.message.id for d in first] == ["m1", "m2"]
    pool = await _pool_on(backend, ledger, workers=1, ack_wait=0.2)
    await _until(lambda: pool.processed_count + pool.duplicates_skipped == 2)
    await pool.stop(timeout=2)
    await ledger.close()
    s = await backend.stats()
    await backend.close()
    rows = sorted((r.id, r.outcome, r.delivery_count) for r in read_ledger(tmp_path / "l.sqlite"))
    assert rows == [("m1", "duplicate", 2), ("m1", "processed", 1), ("m2", "processed", 2)]
    assert (pool.processed_count, pool.duplicates_skipped, pool.redelivered) == (1, 1, 2)
    assert (s.current_size, s.acked) == (0, 2)


async def test_work_longer_than_ack_wait_signals_progress_and_is_not_redelivered(tmp_path: Path) -> None:
    """1 s of work per message against a 0.3 s ack_wait: heartbeats hold the deliveries, nothing is redone."""
    backend = MemoryBackend(MemoryConfig(ack_wait=0.3))
    ledger = Ledger(tmp_path / "l.sqlite")
    pool = await _pool_on(backend, ledger, workers=2, processing_ms=1000, ack_wait=0.3)
    await backend.publish_many([Message(id=f"long{i}", source="s", payload=i) for i in range(3)])
    await _until(lambda: pool.processed_count == 3, timeout=10)
    await asyncio.sleep(0.5)  # a redelivery, if any, would be picked up by now
    await pool.stop(timeout=3)
    await ledger.close()
    s = await backend.stats()
    await backend.close()
    rows = read_ledger(tmp_path / "l.sqlite")
    assert sorted((r.id, r.outcome) for r in rows) == [(f"long{i}", "processed") for i in range(3)]
    assert (s.redelivered, s.current_size, pool.redelivered) == (0, 0, 0)


async def test_ledger_tail_reads_each_committed_row_once_while_the_processor_writes(tmp_path: Path) -> None:
    """Before the file, before the table, during writes and after: every row once, in commit order, read-only."""
    path = tmp_path / "l.sqlite"
    tail = LedgerTail(path)
    assert tail.poll() == []  # no file yet
    sqlite3.connect(path).close()  # a file without the table (the processor is starting)
    assert tail.poll() == []
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []  # the tail created nothing
    ledger = Ledger(path)
    await ledger.start()
    seen: list[LedgerRow] = []
    for batch in range(5):
        rows: list[Row] = [(f"m{batch}-{i}", "s", batch, batch + 1, 1, "w0", "p", "processed",
                            None, None, None, None, None, None) for i in range(40)]  # fmt: skip
        await ledger.record(rows)
        new = tail.poll()
        assert [r.id for r in new] == [f"m{batch}-{i}" for i in range(40)]  # only what is new, in order
        seen.extend(new)
    assert tail.poll() == []
    await ledger.record([("late", "s", 7, 8, 2, "w1", "p", "duplicate", None, None, None, None, None, None)])
    await ledger.close()
    assert tail.poll() == [LedgerRow("late", "s", 7, 8, 2, "w1", "p", "duplicate")]
    assert len(seen) == 200
    assert [*seen, LedgerRow("late", "s", 7, 8, 2, "w1", "p", "duplicate")] == read_ledger(path)
