"""The report's summary tables, one function per experiment: medians over repetitions, counts summed.

Each takes the rows of one experiment (already filtered) and returns named
tables; `registry` says which function belongs to which experiment.
"""

from __future__ import annotations

import pandas as pd

from experiments.results.stats import spread


def median_table(df: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    """Median of `values` per group of `keys`, with the number of repetitions first."""
    g = df.groupby(keys, sort=True)
    out = g[values].median()
    out.insert(0, "repetitions", g.size())
    return out.reset_index()


def latency(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    keys = ["backend", "payload_bytes", "offered_rate"]
    values = ["achieved_rate", "client_p50_ms", "client_p99_ms", "e2e_p50_ms", "e2e_p90_ms", "e2e_p99_ms",
              "e2e_p999_ms", "e2e_max_ms"]  # fmt: skip
    rep = []
    for (backend, payload, rate), part in df.groupby(keys, sort=True):
        for metric in ("e2e_p50_ms", "client_p50_ms"):
            s = spread(part[metric].dropna().tolist())
            rep.append({"backend": backend, "payload_bytes": payload, "offered_rate": rate, "metric": metric, **s})
    return {"latency": median_table(df, keys, values), "repeatability": pd.DataFrame(rep)}


def throughput(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    values = ["achieved_rate", "processed_rate", "client_p50_ms", "client_p99_ms", "e2e_p99_ms", "rejected", "errors"]
    return {"throughput": median_table(df, ["backend", "batch_size", "offered_rate"], values)}


def durability(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    g = df.groupby(["fault", "backend"], sort=True)
    counts = ["sent", "acknowledged", "processed", "lost", "duplicated", "extra_deliveries", "unacked_processed",
              "errors"]  # fmt: skip
    t = g[counts].sum()
    t.insert(0, "runs", g.size())
    return {"durability": t.reset_index()}


def scaling(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    values = ["offered_rate", "processed_rate", "e2e_p99_ms"]
    return {"scaling": median_table(df, ["backend", "processors", "workers"], values)}
