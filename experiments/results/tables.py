"""The report's summary tables, one function per experiment: medians over repetitions, counts summed.

Each takes the rows of one experiment (already filtered) and returns named
tables; `registry` says which function belongs to which experiment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from experiments.results.client_bound import measures_table
from experiments.results.plots import footprint_label
from experiments.results.schema import ResultRecord
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
    return {
        "throughput": median_table(df, ["backend", "payload_bytes", "batch_size", "offered_rate"], values),
        "client_bound": measures_table(df),
    }


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


def footprint(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {"footprint": footprint_table(df), "footprint_cost": footprint_cost(df)}


def footprint_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per queue, payload and backlog built: what was held and refused, and what it cost in RSS and on disk."""
    df = df.assign(queue=[footprint_label(b, q) for b, q in zip(df["backend"], df["queue_size"], strict=True)])
    values = ["acknowledged", "rejected", "errors", "backlog", "processor_rss_mib", "nats_rss_mib", "store_mib", "lost"]
    return median_table(df, ["queue", "payload_bytes", "sent"], values)


_COST_OF = (("processor_rss_mib", "processor"), ("nats_rss_mib", "nats_server"), ("store_mib", "disk"))


def footprint_cost(df: pd.DataFrame) -> pd.DataFrame:
    """Bytes per message held, from the empty deployment to its largest backlog: RSS per process, disk for JetStream.

    The payload size beside it shows the overhead: what a message costs
    beyond its payload, and in which process.
    """
    rows: list[dict[str, Any]] = []
    for (queue, payload), part in footprint_table(df).groupby(["queue", "payload_bytes"], sort=True):
        ordered = part.sort_values("sent")
        empty, full = ordered.iloc[0], ordered.iloc[-1]
        held = full["backlog"] - empty["backlog"]
        row: dict[str, Any] = {"queue": queue, "payload_bytes": payload, "backlog": full["backlog"]}
        for column, name in (
            ("processor_rss_mib", "processor"),
            ("nats_rss_mib", "nats_server"),
            ("store_mib", "disk"),
        ):
            grew = (full[column] - empty[column]) * 1024 * 1024
            row[f"{name}_bytes_per_msg"] = grew / held if held > 0 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _variant(row: pd.Series) -> str:
    if row["backend"] == "memory":
        return "memory"
    return f"R{int(row['replicas'])} ({int(row['nats_nodes'])} node{'s' if row['nats_nodes'] > 1 else ''})"


def cluster(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """R1 vs R3 vs memory at each rate, the R3/R1 ratios (median, min..max over repetitions), and each fault."""
    df = df.assign(variant=df.apply(_variant, axis=1))
    calm = df[df["fault"] == "none"]
    faults = df[df["fault"] != "none"]
    out: dict[str, pd.DataFrame] = {}
    if not calm.empty:
        values = ["achieved_rate", "client_p50_ms", "client_p99_ms", "e2e_p50_ms", "e2e_p99_ms"]
        out["cluster_latency"] = median_table(calm, ["variant", "offered_rate"], values)
        out["cluster_ratios"] = replica_ratios(calm)
    if not faults.empty:
        g = faults.groupby(["fault", "variant"], sort=True)
        t = g[["sent", "acknowledged", "processed", "lost", "duplicated", "unacked_processed"]].sum()
        # the "recovered": refused or timed out at the client, stored after all (not the row's `recovered`)
        t = t.rename(columns={"unacked_processed": "recovered_unacked"})
        t.insert(0, "runs", g.size())
        rec = g["recover_s"].agg(["median", "min", "max"]).add_prefix("recover_s_")
        out["cluster_faults"] = t.join(rec).reset_index()
    return out


def replica_ratios(calm: pd.DataFrame) -> pd.DataFrame:
    """R_high / R1 per repetition: max achieved rate over the rates, and client p50 / p99 at each rate."""
    nats = calm[calm["backend"] != "memory"]
    high = int(nats["replicas"].max()) if not nats.empty else 1
    rows: list[dict[str, object]] = []
    if high <= 1:
        return pd.DataFrame(rows)
    per_rep: dict[str, list[float]] = {}
    for _, part in nats.groupby("repetition"):
        one, many = part[part["replicas"] == 1], part[part["replicas"] == high]
        if one.empty or many.empty:
            continue
        per_rep.setdefault("max achieved rate", []).append(many["achieved_rate"].max() / one["achieved_rate"].max())
        for rate in sorted(set(one["offered_rate"]) & set(many["offered_rate"])):
            for col in ("client_p50_ms", "client_p99_ms"):
                a = one[one["offered_rate"] == rate][col].median()
                b = many[many["offered_rate"] == rate][col].median()
                if a and a == a and b == b:
                    per_rep.setdefault(f"{col} at {rate:g} msg/s", []).append(b / a)
    for metric, values in per_rep.items():
        rows.append({"ratio": f"R{high}/R1 {metric}", **spread(values)})
    return pd.DataFrame(rows)


MIGRATION_COUNTS = ["sent", "acknowledged", "processed", "lost", "duplicated", "extra_deliveries", "rejected", "errors"]


def migration(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    g = df.groupby(["phase", "fault"], sort=True)
    t = g[MIGRATION_COUNTS].sum()
    t.insert(0, "runs", g.size())
    return {"migration": t.reset_index()}


def status_counts(records: Sequence[ResultRecord]) -> pd.DataFrame:
    """Client answers by HTTP status, summed per phase (messages; status 0 = no answer at all)."""
    sums: dict[str, dict[str, int]] = {}
    for rec in records:
        row = sums.setdefault(rec.row.phase, {})
        for status, n in rec.series.status_counts.items():
            row[f"HTTP {status}"] = row.get(f"HTTP {status}", 0) + n
    columns = sorted({c for r in sums.values() for c in r})
    return pd.DataFrame([{"phase": p, **{c: sums[p].get(c, 0) for c in columns}} for p in sorted(sums)])


def migration_statuses(records: Sequence[ResultRecord]) -> dict[str, pd.DataFrame]:
    return {"migration_statuses": status_counts(records)}
