"""The experiments the lab knows: one entry each, the only place their names, titles, tables and figures meet.

A notebook (`lab.suites.table`) shows `columns`; the report (`report.build`)
writes `tables(rows)` and draws `figures` for every experiment that has rows,
in registry order. Adding an experiment is adding an entry here and its
notebook; nothing else keys on the name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
from matplotlib.figure import Figure

from experiments.results import client_bound, plots, stages, tables
from experiments.results.schema import ResultRecord

TablesFn = Callable[[pd.DataFrame], dict[str, pd.DataFrame]]
RecordTablesFn = Callable[[Sequence[ResultRecord]], dict[str, pd.DataFrame]]
DrawFn = Callable[[pd.DataFrame, Sequence[ResultRecord]], Figure]


@dataclass(frozen=True)
class FigureSpec:
    """One figure of an experiment: its file name and how to draw it from the rows and records."""

    name: str
    draw: DrawFn


@dataclass(frozen=True)
class Experiment:
    name: str  # the notebook's name, also `ResultRow.experiment`
    title: str
    columns: tuple[str, ...]  # the notebook's table
    tables: TablesFn | None = None
    figures: tuple[FigureSpec, ...] = field(default_factory=tuple)
    record_tables: RecordTablesFn | None = None  # tables that need the series (stages, CPU by process)


def _rows(draw: Callable[[pd.DataFrame], Figure]) -> DrawFn:
    return lambda df, _records: draw(df)


def _records(draw: Callable[[Sequence[ResultRecord]], Figure]) -> DrawFn:
    return lambda _df, records: draw(records)


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            "00_tour",
            "Tour",
            ("backend", "nats_provider", "offered_rate", "achieved_rate", "sent", "acknowledged", "processed",
             "lost", "e2e_p50_ms", "e2e_p99_ms"),
        ),
        Experiment(
            "01_latency",
            "Latency at fixed offered rates",
            ("backend", "payload_bytes", "offered_rate", "achieved_rate", "client_p50_ms", "client_p99_ms",
             "e2e_p50_ms", "e2e_p90_ms", "e2e_p99_ms", "e2e_p999_ms", "e2e_max_ms", "sent", "lost", "client_bound"),
            tables.latency,
            (
                FigureSpec("latency_cdf_e2e", _records(lambda r: plots.latency_cdf(r, "e2e"))),
                FigureSpec("latency_cdf_client", _records(lambda r: plots.latency_cdf(r, "client"))),
                FigureSpec("latency_vs_rate", _rows(plots.latency_vs_rate)),
                FigureSpec("latency_by_stage", _records(plots.stage_bars)),
            ),
            lambda records: {"latency_by_stage": stages.stage_table(records)},
        ),
        Experiment(
            "02_throughput",
            "Throughput: saturation sweep",
            ("backend", "payload_bytes", "batch_size", "offered_rate", "achieved_rate", "processed_rate",
             "client_p50_ms", "client_p99_ms", "e2e_p99_ms", "rejected", "errors", "lost", "cpu_us_per_msg",
             "client_cpu_pct", "machine_cpu_pct", "client_bound"),
            tables.throughput,
            (
                FigureSpec("throughput", _rows(plots.throughput_curve)),
                FigureSpec("cpu_per_message", _records(plots.cpu_per_message)),
            ),
            lambda records: {"cpu_per_message": client_bound.cpu_table(records)},
        ),
        Experiment(
            "03_durability",
            "Durability across faults",
            ("fault", "backend", "sent", "acknowledged", "processed", "lost", "duplicated", "extra_deliveries",
             "unacked_processed", "errors", "e2e_p99_ms"),
            tables.durability,
            (
                FigureSpec("durability_counts", _rows(plots.durability_bars)),
                FigureSpec("durability_timeline", _records(plots.durability_timeline)),
            ),
        ),
        Experiment(
            "04_scaling",
            "Scaling: workers and processor instances",
            ("backend", "processors", "workers", "offered_rate", "processed_rate", "e2e_p50_ms", "e2e_p99_ms",
             "lost"),
            tables.scaling,
            (FigureSpec("scaling", _rows(plots.scaling_curve)),),
        ),
        # Its tables and figure also need the run documents' publish rates: `report.build`
        # adds them from `results/power_loss.py`.
        Experiment(
            "06_power_loss",
            "Power loss: what fsync buys, and what it costs",
            ("replicas", "backend", "nats_provider", "phase", "sent", "acknowledged", "processed", "lost",
             "lost_prefix", "lost_middle", "lost_postfix", "duplicated", "recovered", "errors"),
        ),
        Experiment(
            "07_migration",
            "Queue switch under load: naive vs planned",
            ("phase", "fault", "sent", "acknowledged", "processed", "lost", "duplicated", "extra_deliveries",
             "rejected", "errors", "client_p99_ms", "e2e_p99_ms"),
            tables.migration,
            (
                FigureSpec("migration_counts", _rows(plots.migration_counts)),
                FigureSpec("migration_timeline", _records(plots.migration_timeline)),
            ),
            tables.migration_statuses,
        ),
        Experiment(
            "05_cluster",
            "A three-node JetStream cluster: R1 vs R3 vs memory, and failover",
            ("phase", "nats_nodes", "replicas", "offered_rate", "achieved_rate", "client_p50_ms", "client_p99_ms",
             "e2e_p99_ms", "sent", "acknowledged", "processed", "lost", "duplicated", "unacked_processed",
             "recover_s"),
            tables.cluster,
            (
                FigureSpec("cluster_comparison", _rows(plots.cluster_comparison)),
                FigureSpec("failover_timeline", _records(plots.failover_timeline)),
            ),
        ),
        Experiment(
            "08_footprint",
            "Footprint: resident memory against backlog",
            ("backend", "queue_size", "payload_bytes", "sent", "acknowledged", "rejected", "errors", "backlog",
             "processor_rss_mib", "nats_rss_mib", "store_mib", "lost"),
            tables.footprint,
            (FigureSpec("footprint", _rows(plots.footprint_curve)),),
        ),
    )
}  # fmt: skip


def experiment(name: str) -> Experiment:
    """The entry for `name`, or a KeyError that lists the known ones."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise KeyError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}") from None
