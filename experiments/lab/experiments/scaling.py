"""04 scaling: processed throughput as workers and processor instances grow, with simulated work per message.

Generator: each setup offered `overload` x its nominal capacity. Checker:
processed rate and latency per setup. Figure: the scaling curve.
"""

from __future__ import annotations

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
from experiments.results.schema import Backend
from experiments.results.tables import median_table


class Params(ExperimentParams):
    backends: tuple[Backend, ...] = ("memory", "nats")
    workers: tuple[int, ...] = (1, 2, 4, 8)
    processors: tuple[int, ...] = (1, 2)
    processing_ms: float = 10.0
    max_rate: float = 2000.0  # msg/s cap on the offered rate
    duration_s: float = 4.0
    overload: float = 1.25


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
        for n_proc in params.processors:
            for n_workers in params.workers:
                setup = Setup(backend=backend, workers=n_workers, processors=n_proc, processing_ms=params.processing_ms)
                nominal = n_workers * n_proc * 1000.0 / params.processing_ms
                async with ctx.session(setup) as session:
                    await session.measure(
                        f"processors={n_proc},workers={n_workers}",
                        rate=min(params.max_rate, params.overload * nominal),
                        duration_s=params.duration_s,
                        drain_timeout_s=30.0,
                    )
    return ctx.frame()


def tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    values = ["offered_rate", "processed_rate", "e2e_p99_ms"]
    return {"scaling": median_table(df, ["backend", "processors", "workers"], values)}


def scaling_curve(df: pd.DataFrame) -> Figure:
    """Processed throughput against workers per processor, one line per backend and instance count."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for (backend, procs_key), part in df.groupby(["backend", "processors"], sort=True):
        st = backend_style(str(backend))
        procs = int(str(procs_key))
        agg = median_range(part, ["workers"], "processed_rate")
        label = f"{st['label']}, {procs} processor{'s' if procs > 1 else ''}"
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
    columns=("backend", "processors", "workers", "offered_rate", "processed_rate", "e2e_p50_ms", "e2e_p99_ms",
             "lost"),
    tables=tables,
    figures=(FigureSpec("scaling", rows_figure(scaling_curve)),),
    claims=scaling_claims.CLAIMS,
)  # fmt: skip
