"""04 scaling: processed throughput as workers and processor instances grow, with simulated work per message.

Generator: each setup offered `overload` x its nominal capacity. Checker:
processed rate and latency per setup, and who did the work (messages
processed per processor instance, from each one's ledger). Kafka's classic
consumer group gives each partition to one member, so with fewer partitions
than processors the rest sit idle: `partitions` is swept for Kafka only.
Figure: the scaling curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from experiments.lab.context import RunContext
from experiments.lab.experiment import (
    Experiment,
    ExperimentParams,
    FigureSpec,
    rows_figure,
)
from experiments.lab.setup import Setup
from experiments.results.chapters import scaling as scaling_claims
from experiments.results.plots import (
    backend_style,
    median_errorbar,
    median_range,
)
from experiments.results.schema import Backend, ResultRecord
from experiments.results.tables import median_table
from services.ledger import read_ledger


class Params(ExperimentParams):
    backends: tuple[Backend, ...] = ("memory", "nats")
    workers: tuple[int, ...] = (1, 2, 4, 8)
    processors: tuple[int, ...] = (1, 2)
    processing_ms: float = 10.0
    max_rate: float = 2000.0  # msg/s cap on the offered rate
    duration_s: float = 4.0
    overload: float = 1.25
    partitions: tuple[int, ...] = (1,)  # Kafka topic partitions (KAFKA_PARTITIONS); other backends ignore it


async def run(ctx: RunContext, params: Params) -> pd.DataFrame:
    """Processed throughput as workers and processor instances grow, with simulated work per message.

    Each setup is offered `overload` x its nominal capacity (workers x
    instances x 1000 / processing_ms, capped at `max_rate`): enough to keep
    every worker busy, little enough that the backlog drains in seconds, so
    every acknowledged message is still accounted for. NATS instances share
    one durable consumer (the spec's load balancing); memory instances each
    own a queue, fed round-robin by ingest.
    """
    for backend in params.backends:
        partition_counts = params.partitions if backend.startswith("kafka") else (None,)
        for n_part in partition_counts:
            env = {"KAFKA_PARTITIONS": str(n_part)} if n_part is not None else {}
            for n_proc in params.processors:
                for n_workers in params.workers:
                    setup = Setup(backend=backend, workers=n_workers, processors=n_proc,
                                  processing_ms=params.processing_ms, env=env)  # fmt: skip
                    nominal = n_workers * n_proc * 1000.0 / params.processing_ms
                    phase = f"processors={n_proc},workers={n_workers}" + (f",partitions={n_part}" if n_part else "")
                    async with ctx.session(setup) as session:
                        record = await session.measure(
                            phase,
                            rate=min(params.max_rate, params.overload * nominal),
                            duration_s=params.duration_s,
                            drain_timeout_s=30.0,
                        )
                        record.series.processed_by = processed_by(session.stack.ledger_paths)
    return ctx.frame()


def processed_by(ledger_paths: list[Path]) -> dict[str, int]:
    """Messages each processor instance processed (its own ledger: one per instance, one phase per session)."""
    return {
        f"processor-{i}": sum(1 for row in read_ledger(path) if row.outcome == "processed")
        for i, path in enumerate(ledger_paths, start=1)
    }


def work_split(records: Sequence[ResultRecord]) -> pd.DataFrame:
    """Who did the work: processed messages per processor instance, and how many instances processed none."""
    rows = []
    for rec in records:
        by = rec.series.processed_by
        if not by:
            continue
        r = rec.row
        rows.append({
            "backend": r.backend, "partitions": r.partitions, "processors": r.processors, "workers": r.workers,
            "repetition": r.repetition, "processed": r.processed,
            "per_processor": " / ".join(str(by[k]) for k in sorted(by)),
            "idle_processors": sum(1 for v in by.values() if v == 0),
        })  # fmt: skip
    return pd.DataFrame(rows)


def tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    values = ["offered_rate", "processed_rate", "e2e_p99_ms"]
    df = df.assign(partitions=df["partitions"].fillna(0).astype(int)) if "partitions" in df else df.assign(partitions=0)
    return {"scaling": median_table(df, ["backend", "partitions", "processors", "workers"], values)}


def scaling_curve(df: pd.DataFrame) -> Figure:
    """Processed throughput against workers per processor, one line per backend and instance count."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    parts = df["partitions"].fillna(0).astype(int) if "partitions" in df else pd.Series(0, index=df.index)
    for (backend, procs_key, part_key), part in df.assign(_p=parts).groupby(["backend", "processors", "_p"], sort=True):
        st = backend_style(str(backend))
        procs, n_part = int(str(procs_key)), int(str(part_key))
        agg = median_range(part, ["workers"], "processed_rate")
        label = f"{st['label']}, {procs} processor{'s' if procs > 1 else ''}"
        label += f", {n_part} partition{'s' if n_part > 1 else ''}" if n_part else ""
        median_errorbar(ax, agg["workers"], agg, str(backend), linestyle="-" if procs == 1 else "--", label=label)
    ms = sorted(df["processing_ms"].unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(int(w) for w in df["workers"].unique()))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("workers per processor")
    ax.set_ylabel("processed [msg/s]")
    ax.set_title(f"Scaling with {', '.join(f'{m:g}' for m in ms)} ms of work per message")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    name="04_scaling",
    title="Scaling: workers and processor instances",
    params=Params,
    run=run,
    columns=("backend", "partitions", "processors", "workers", "offered_rate", "processed_rate", "e2e_p50_ms",
             "e2e_p99_ms", "lost"),
    tables=tables,
    figures=(FigureSpec("scaling", rows_figure(scaling_curve)),),
    record_tables=lambda records: {"work_split": work_split(records)},
    claims=scaling_claims.CLAIMS,
)  # fmt: skip
