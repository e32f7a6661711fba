"""What the stage stamps cost per message, on the paths they touch, against the same path without them.

    python -m experiments.bench.stamp_cost [--n 20000] [--rounds 5]

Each pair runs the same work twice, interleaved, with and without what the
stamps add: the internal hop's wire form (encode at ingest, decode at the
processor), the queue's message form (`Message.to_json` / `from_json`), and
the ledger (8 columns as before vs 12 columns plus the `settlements` row
written after the ack). Medians of the rounds, in µs per message; the
`time.time_ns()` calls themselves are timed too.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from backends.contract import Message
from services.ledger import INSERT, INSERT_SETTLED, SCHEMA
from services.models import wire_to_message

PAD = "x" * 64
SCHEMA_BEFORE_STAMPS = """
CREATE TABLE deliveries (id TEXT NOT NULL, source TEXT NOT NULL, created_at INTEGER NOT NULL,
    processed_at INTEGER NOT NULL, delivery_count INTEGER NOT NULL, worker TEXT NOT NULL,
    instance TEXT NOT NULL, outcome TEXT NOT NULL);
"""


def _wire(n: int, stamps: bool) -> list[dict[str, object]]:
    now = time.time_ns()
    extra = {"stamps": {"gateway": now}} if stamps else {}
    base = {"source": "bench", "created_at": now, "attributes": {}, **extra}
    return [{"id": f"m{i}", "payload": {"n": i, "pad": PAD}, **base} for i in range(n)]


def hop(n: int, stamps: bool) -> float:
    """ingest encodes a batch, the processor decodes and checks it (plus its received stamp)."""
    wire = _wire(n, stamps)
    t0 = time.process_time()
    for i in range(0, n, 100):
        body = orjson.dumps(wire[i : i + 100])
        received = time.time_ns() if stamps else None
        [wire_to_message(d, received) for d in orjson.loads(body)]
    return (time.process_time() - t0) * 1e6 / n


def queue_form(n: int, stamps: bool) -> float:
    now = time.time_ns()
    extra = {"gateway": now, "processor": now} if stamps else {}
    messages = [Message(id=f"m{i}", source="b", payload={"n": i, "pad": PAD}, created_at=now, stamps=extra)
                for i in range(n)]  # fmt: skip
    t0 = time.process_time()
    for m in messages:
        Message.from_json(m.to_json())
    return (time.process_time() - t0) * 1e6 / n


def ledger(n: int, stamps: bool) -> float:
    """Group commits of 100 rows, as the writer does under load; with stamps also the settlements rows."""
    with tempfile.TemporaryDirectory(prefix="stamp-cost-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "l.sqlite", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.executescript(SCHEMA if stamps else SCHEMA_BEFORE_STAMPS)
        now = time.time_ns()
        t0 = time.process_time()
        for i in range(0, n, 100):
            ids = range(i, min(i + 100, n))
            conn.execute("BEGIN")
            if stamps:
                conn.executemany(INSERT, [(f"m{j}", "b", now, now, 1, "w0", "p", "processed", now, now, now, now)
                                          for j in ids])  # fmt: skip
                conn.executemany(INSERT_SETTLED, [(f"m{j}", 1, "p", now, time.time_ns()) for j in ids])
            else:
                conn.executemany("INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                 [(f"m{j}", "b", now, now, 1, "w0", "p", "processed") for j in ids])  # fmt: skip
            conn.execute("COMMIT")
        elapsed = time.process_time() - t0
        conn.close()
    return elapsed * 1e6 / n


def clock(n: int, stamps: bool) -> float:
    """The stamps' own clock reads: 5 per message (gateway, processor, delivered, acked, commit share)."""
    t0 = time.process_time()
    if stamps:
        for _ in range(n * 5):
            time.time_ns()
    else:
        for _ in range(n * 5):
            pass
    return (time.process_time() - t0) * 1e6 / n


CASES: dict[str, Callable[[int, bool], float]] = {
    "wire hop (encode + check)": hop,
    "queue form (to/from JSON)": queue_form,
    "ledger (commit groups of 100)": ledger,
    "clock reads (time_ns x5)": clock,
}


def measure(n: int, rounds: int) -> list[tuple[str, float, float]]:
    """(case, µs/msg without stamps, µs/msg with stamps), medians of interleaved rounds."""
    out = []
    for name, fn in CASES.items():
        without: list[float] = []
        with_: list[float] = []
        for r in range(rounds):
            pair = (False, True) if r % 2 == 0 else (True, False)
            for stamps in pair:
                (with_ if stamps else without).append(fn(n, stamps))
        out.append((name, statistics.median(without), statistics.median(with_)))
    return out


def render(rows: list[tuple[str, float, float]]) -> str:
    head = f"{'path':<32} {'without µs/msg':>14} {'with µs/msg':>12} {'added µs/msg':>13}"
    lines = [head, "-" * len(head)]
    for name, without, with_ in rows:
        lines.append(f"{name:<32} {without:>14.2f} {with_:>12.2f} {with_ - without:>13.2f}")
    lines.append(f"{'all of it':<32} {'':>14} {'':>12} {sum(w - o for _, o, w in rows):>13.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="messages per run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved with/without pairs; medians shown")
    args = parser.parse_args(argv)
    print(render(measure(args.n, args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
