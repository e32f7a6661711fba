"""Which points of a sweep measure the system and which the load generator, and their CPU per message by process.

A phase is client-bound when the load generator (one Python process on the
same cores) or the whole machine was at least ~90 % busy during the load
(`ResultRow.client_bound`): its achieved rate is then the client's ceiling
or the machine's, and says nothing about the stack's own limit.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from experiments.results.schema import ResultRecord

KEYS = ["backend", "payload_bytes", "batch_size", "offered_rate"]


def measures_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per point (median over repetitions): achieved rate, client and machine CPU %, and what it measures."""
    if df.empty or "client_bound" not in df:
        return pd.DataFrame(columns=[*KEYS, "achieved_rate", "client_cpu_pct", "machine_cpu_pct", "measures"])
    g = df.groupby(KEYS, sort=True)
    out = g[["achieved_rate", "client_cpu_pct", "machine_cpu_pct", "cpu_us_per_msg"]].median()
    flagged = g["client_bound"].apply(lambda s: bool(s.fillna(False).astype(bool).any()))
    known = g["client_bound"].apply(lambda s: bool(s.notna().any()))
    out["measures"] = [
        ("client" if f else "system") if k else "unknown (v1)" for f, k in zip(flagged, known, strict=True)
    ]
    return out.reset_index()


def cpu_table(records: Iterable[ResultRecord]) -> pd.DataFrame:
    """µs of CPU per processed message by process (columns), one row per point (median over repetitions)."""
    rows = [
        {**{k: getattr(r.row, k) for k in KEYS}, **r.series.cpu_us_per_msg, "client_bound": r.row.client_bound}
        for r in records
        if r.series.cpu_us_per_msg
    ]
    if not rows:
        return pd.DataFrame(columns=KEYS)
    df = pd.DataFrame(rows)
    processes = [c for c in df.columns if c not in (*KEYS, "client_bound")]
    out = df.groupby(KEYS, sort=True)[processes].median()
    out["total"] = out.sum(axis=1)
    out["client_bound"] = df.groupby(KEYS, sort=True)["client_bound"].apply(lambda s: bool(s.fillna(False).any()))
    return out.reset_index().round(1)


def highest_unsaturated(records: Iterable[ResultRecord], backend: str, batch_size: int = 1) -> ResultRecord | None:
    """The highest offered rate of `backend` that was neither client-bound nor short of its offered rate (>= 95 %)."""
    ok = [
        r
        for r in records
        if r.row.backend == backend
        and r.row.batch_size == batch_size
        and r.row.client_bound is False
        and r.row.achieved_rate >= 0.95 * r.row.offered_rate
        and r.series.cpu_us_per_msg
    ]
    return max(ok, key=lambda r: (r.row.offered_rate, r.row.payload_bytes == 128), default=None)
