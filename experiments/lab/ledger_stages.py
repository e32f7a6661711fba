"""Reading a phase's stage stamps from the processors' ledgers, joined with the load generator's times.

The ledger keeps a delivery's stamps in its `deliveries` row and the two that
exist only after the ack (committed, acked) in `settlements`; the first
processed delivery of each id counts (a redelivery's queue wait is the
ack_wait, not the system's latency).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from experiments.results.schema import StageStat
from experiments.results.stages import Stamps, stage_stats
from experiments.workload.load import LoadResult

_QUERY = """
SELECT d.id, d.delivery_count, d.gateway_at, d.created_at, d.processor_at, d.stored_at, d.delivered_at,
       d.processed_at, s.committed_at, s.acked_at
FROM deliveries d JOIN settlements s
  ON s.id = d.id AND s.delivery_count = d.delivery_count AND s.instance = d.instance
WHERE d.outcome = 'processed' AND substr(d.id, 1, ?) = ?
"""


def ledger_stamps(paths: Iterable[Path], prefix: str) -> dict[str, tuple[int | None, ...]]:
    """id -> its first processed delivery's stamps (`MARKS` order), for ids starting with `prefix`."""
    first: dict[str, tuple[int, tuple[int | None, ...]]] = {}
    for path in paths:
        if not path.exists():
            continue
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute(_QUERY, (len(prefix), prefix)).fetchall()
        except sqlite3.OperationalError:  # a ledger from before the stage stamps
            rows = []
        finally:
            conn.close()
        for mid, count, *marks in rows:
            seen = first.get(mid)
            if seen is None or count < seen[0]:
                first[mid] = (count, tuple(marks))
    return {mid: marks for mid, (_, marks) in first.items()}


def phase_stages(
    paths: Iterable[Path],
    prefix: str,
    result: LoadResult,
    ids_of: dict[int, list[str]],
    t0: float,
    t0_ns: int,
) -> list[StageStat]:
    """Stage statistics of one phase: ledger stamps plus each 2xx request's scheduled and answer times.

    `ids_of` maps a request's seq to its message ids; `t0` (perf_counter) and
    `t0_ns` (time_ns) were read together, to put the generator's times on
    the ledger's clock.
    """
    stamps = ledger_stamps(paths, prefix + "-")
    client: dict[str, tuple[int, int]] = {}
    for r in result.records:
        if 200 <= r.status < 300:
            scheduled = t0_ns + round((r.scheduled - t0) * 1e9)
            answered = scheduled + round(r.latency * 1e9)
            for mid in ids_of.get(r.seq, ()):
                client[mid] = (scheduled, answered)
    messages: list[Stamps] = [marks + client.get(mid, (None, None)) for mid, marks in stamps.items()]
    return stage_stats(messages)
