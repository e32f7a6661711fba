"""The processor's ledger: one SQLite row per handled delivery.

Experiments compute end-to-end latency, loss and duplicates by message id
from it, so a row is committed before the delivery is acked: a crash between
the two causes a redelivery (a duplicate row, counted), never an acked
message without a row (a false loss). Rows from concurrent workers are
written in group commits by one task that owns the connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at INTEGER NOT NULL,      -- ns since epoch, stamped at ingest
    processed_at INTEGER NOT NULL,    -- ns since epoch, when the work finished
    delivery_count INTEGER NOT NULL,
    worker TEXT NOT NULL,
    instance TEXT NOT NULL,
    outcome TEXT NOT NULL,            -- processed | failed | dead_lettered | duplicate
    gateway_at INTEGER,               -- stage stamps, ns since epoch, one clock (time.time_ns()):
    processor_at INTEGER,             --   received by gateway / by the publishing processor,
    stored_at INTEGER,                --   stored (memory put, JetStream's stream timestamp),
    delivered_at INTEGER,             --   handed to a worker by fetch
    payload_digest TEXT,              -- the payload's digest as the first hop stamped it
    processed_digest TEXT             -- the digest of the payload this worker processed (differs: altered)
);
CREATE TABLE IF NOT EXISTS settlements (
    id TEXT NOT NULL,                 -- one row per deliveries row that was acked, written after the ack
    delivery_count INTEGER NOT NULL,
    instance TEXT NOT NULL,
    committed_at INTEGER NOT NULL,    -- ns: the deliveries row's group commit returned
    acked_at INTEGER NOT NULL         -- ns: the ack returned
);
"""  # no index: it would tax every insert; readers load the table whole

# Columns added after the first release: a ledger file from before gets them by ALTER TABLE.
STAGE_COLUMNS = ("gateway_at", "processor_at", "stored_at", "delivered_at")
DIGEST_COLUMNS = ("payload_digest", "processed_digest")
INSERT = (
    "INSERT INTO deliveries (id, source, created_at, processed_at, delivery_count, worker, instance, outcome, "
    "gateway_at, processor_at, stored_at, delivered_at, payload_digest, processed_digest) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_SETTLED = "INSERT INTO settlements VALUES (?, ?, ?, ?, ?)"

Row = tuple[
    str, str, int, int, int, str, str, str, int | None, int | None, int | None, int | None, str | None, str | None
]
Settled = tuple[str, int, str, int, int]  # id, delivery_count, instance, committed_at, acked_at
GATHER_ROWS = 64  # a commit with fewer pending rows waits GATHER_SECONDS for more
GATHER_SECONDS = 0.002


@dataclass(frozen=True, slots=True)
class LedgerRow:
    id: str
    source: str
    created_at: int
    processed_at: int
    delivery_count: int
    worker: str
    instance: str
    outcome: str


class Ledger:
    """Async facade over one SQLite file with group commit."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._pending: list[Row] = []
        self._settled: list[Settled] = []
        self._waiters: list[asyncio.Future[int]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.rows_written = 0

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # OFF: no fsync, so no multi-millisecond stall of the event loop at WAL
        # checkpoints. Committed rows are in the OS as soon as COMMIT returns,
        # so they survive a crash of the process (what the experiments do to
        # it); only a power loss could cost the newest rows.
        conn.execute("PRAGMA synchronous=OFF")
        conn.executescript(SCHEMA)
        have = {r[1] for r in conn.execute("PRAGMA table_info(deliveries)")}
        for column in STAGE_COLUMNS:
            if column not in have:  # a ledger written before the stage stamps
                conn.execute(f"ALTER TABLE deliveries ADD COLUMN {column} INTEGER")
        for column in DIGEST_COLUMNS:
            if column not in have:  # a ledger written before the digests
                conn.execute(f"ALTER TABLE deliveries ADD COLUMN {column} TEXT")
        self._conn = conn

    def _write(self, rows: list[Row], settled: list[Settled]) -> None:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN")
        if rows:
            conn.executemany(INSERT, rows)
        if settled:
            conn.executemany(INSERT_SETTLED, settled)
        conn.execute("COMMIT")

    def processed_among(self, ids: list[str]) -> set[str]:
        """Which of `ids` already have a committed `processed` row.

        Asked only for redeliveries (rare outside faults), so the table scan
        it costs without an index is cheaper than an index taxing every
        insert. Synchronous on purpose: the writer commits inline on this
        same loop and connection, so no transaction is half done here.
        """
        if not ids or self._conn is None:
            return set()
        marks = ",".join("?" * len(ids))
        rows = self._conn.execute(
            f"SELECT DISTINCT id FROM deliveries WHERE outcome = 'processed' AND id IN ({marks})", ids
        ).fetchall()
        return {r[0] for r in rows}

    async def start(self) -> None:
        self._open()
        self._writer = asyncio.create_task(self._write_loop(), name="ledger-writer")

    async def record(self, rows: list[Row]) -> int:
        """Returns once the rows are committed (shared with concurrent callers): the commit's time_ns().

        Rows are plain tuples in `LedgerRow` field order: built for every
        delivery, so no object per row on the hot path.
        """
        if not rows:
            return time.time_ns()
        if self._writer is None:
            raise RuntimeError("ledger not started")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.extend(rows)
        self._waiters.append(fut)
        self._wake.set()
        return await fut

    def settled(self, rows: list[Settled]) -> None:
        """Note when recorded rows were committed and acked; written with the next group commit.

        Nobody waits for these: they are the stage stamps that exist only after
        the ack, which itself waits for the deliveries row.
        """
        if rows and self._writer is not None:
            self._settled.extend(rows)
            self._wake.set()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            if len(self._pending) < GATHER_ROWS and not self._closing:
                # At low rates each commit would carry one row: wait a moment so
                # concurrent workers share it (their acks wait; clients do not).
                await asyncio.sleep(GATHER_SECONDS)
            self._wake.clear()
            rows, self._pending = self._pending, []
            settled, self._settled = self._settled, []
            waiters, self._waiters = self._waiters, []
            if not rows and not settled:
                if self._closing:
                    return
                continue
            try:
                # Inline, not in a thread: a group commit of a few hundred rows in
                # WAL mode takes well under a millisecond, less than the thread
                # hand-off and GIL contention cost (measured under load).
                self._write(rows, settled)
            except Exception as exc:
                for w in waiters:
                    if not w.done():
                        w.set_exception(exc)
                continue
            committed_at = time.time_ns()
            self.rows_written += len(rows)
            for w in waiters:
                if not w.done():
                    w.set_result(committed_at)
            await asyncio.sleep(0)  # let the next group gather while we yield
            if self._pending or self._settled or self._closing:
                self._wake.set()

    async def close(self) -> None:
        """Write what is pending, then close the file."""
        if self._writer is not None:
            self._closing = True
            self._wake.set()  # the writer flushes what is pending, then returns
            await self._writer
            self._writer = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()


_COLUMNS = "id, source, created_at, processed_at, delivery_count, worker, instance, outcome"
_ALTERED = "payload_digest IS NOT NULL AND processed_digest IS NOT NULL AND processed_digest != payload_digest"


class LedgerTail:
    """Incremental, read-only reader of one ledger file: each `poll` returns the rows added since the last.

    By rowid, so a poll costs only the new rows however long the run. A file
    or table the processor has not created yet reads as no rows.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.last_rowid = 0

    def poll(self) -> list[LedgerRow]:
        if not self.path.exists():
            return []
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        try:
            new = conn.execute(
                f"SELECT rowid, {_COLUMNS} FROM deliveries WHERE rowid > ? ORDER BY rowid", (self.last_rowid,)
            ).fetchall()
        except sqlite3.OperationalError as exc:
            # Not created yet, or busy for longer than the timeout: nothing new this time.
            if "no such table" in str(exc) or "locked" in str(exc):
                return []
            raise
        finally:
            conn.close()
        if new:
            self.last_rowid = new[-1][0]
        return [LedgerRow(*r[1:]) for r in new]


def altered_rows(path: str | Path) -> list[str]:
    """Ids of rows whose processed payload's digest differs from the one stamped at the first hop (read-only).

    Rows written without a stamped digest (a ledger from before) are not counted.
    """
    conn = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        have = {r[1] for r in conn.execute("PRAGMA table_info(deliveries)")}
        if not set(DIGEST_COLUMNS) <= have:
            return []
        return [r[0] for r in conn.execute(f"SELECT id FROM deliveries WHERE {_ALTERED}")]
    finally:
        conn.close()


def read_ledger(path: str | Path) -> list[LedgerRow]:
    """All rows of a ledger file (for experiments and tests; read-only)."""
    conn = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM deliveries").fetchall()
    finally:
        conn.close()
    return [LedgerRow(*r) for r in rows]
