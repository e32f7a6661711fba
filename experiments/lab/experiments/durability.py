"""03 durability: each fault on each backend in a fresh deployment, counted by message id.

Generator: open-loop load with one fault step (any plug-in of
`workload.faults`) mid-load. A fault aimed at `queue` (the default) hits
where the queue lives: the processor for the memory queue, the nats-server
for JetStream, the KRaft broker's JVM for Kafka (`kafka`: the default flush
policy, no fsync; `kafka-flush`: an fsync per message). Checker: sent,
acknowledged, processed, lost and duplicated by id. Figures: counts per
fault, and throughput and backlog around each fault.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from experiments.lab.context import RunContext
from experiments.lab.experiment import (
    Experiment,
    ExperimentParams,
    FaultText,
    FigureSpec,
    records_figure,
    rows_figure,
)
from experiments.lab.setup import Setup
from experiments.results.chapters import durability as durability_claims
from experiments.results.plots import (
    STYLE,
    backend_style,
)
from experiments.results.schema import Backend, ResultRecord
from experiments.workload.faults import FaultStep


class Params(ExperimentParams):
    backends: tuple[Backend, ...] = ("memory", "nats", "nats-sync")
    faults: tuple[FaultText, ...]  # e.g. restart, kill, pause (any fault kind, optionally kind:target)
    rate: float = 150.0  # msg/s
    duration_s: float = 8.0
    fault_at_s: float = 3.0
    down_s: float = 1.5  # down (or frozen) this long
    processing_ms: float = 0.0  # per message per worker: slow workers build a backlog before the fault
    workers: int = 4
    # Kafka's consumer buffer (KAFKA_PREFETCH) in this chapter: at the backend's default (1000) the processor has
    # fetched the whole backlog and works through it while the broker is down, so nothing acknowledged waits in
    # the broker alone when the fault hits it and "lost 0" would prove nothing (recovered 0, measured 2026-12-06).
    kafka_prefetch: int = 20


def setup_for(backend: Backend, params: Params) -> Setup:
    """One deployment of `backend` as this chapter runs it (a small consumer buffer for Kafka, see Params)."""
    env = {"KAFKA_PREFETCH": str(params.kafka_prefetch)} if backend.startswith("kafka") else {}
    return Setup(backend=backend, workers=params.workers, processing_ms=params.processing_ms, env=env)


async def run(ctx: RunContext, params: Params) -> pd.DataFrame:
    """Each fault on each backend in a fresh deployment (fresh store), counted by message id.

    `processing_ms` slows the workers so a backlog builds up before the fault:
    that backlog is what a memory queue loses on a kill.
    """
    for fault in params.faults:
        step = FaultStep.parse(fault, at_s=params.fault_at_s, down_s=params.down_s)
        for backend in params.backends:
            async with ctx.session(setup_for(backend, params)) as session:
                await session.measure(f"fault={step.label}", rate=params.rate, duration_s=params.duration_s, fault=step)
    return ctx.frame()


def tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    g = df.groupby(["fault", "backend"], sort=True)
    counts = ["sent", "acknowledged", "processed", "lost", "duplicated", "extra_deliveries", "unacked_processed",
              "errors"]  # fmt: skip
    t = g[counts].sum()
    t.insert(0, "runs", g.size())
    return {"durability": t.reset_index()}


def durability_bars(df: pd.DataFrame) -> Figure:
    """Lost and duplicated messages per fault and backend, with acknowledged counts above the bars."""
    faults = sorted(df["fault"].unique())
    backends = [b for b in STYLE if b in set(df["backend"])]
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.8), sharey=False)
    width = 0.8 / max(1, len(backends))
    for ax, col, title in zip(
        axes, ("lost", "duplicated"), ("acknowledged but never processed", "processed more than once"), strict=True
    ):
        for i, backend in enumerate(backends):
            part = df[df["backend"] == backend].groupby("fault")[[col, "acknowledged"]].sum()
            values = [int(part[col].get(f, 0)) for f in faults]
            xs = [j + (i - (len(backends) - 1) / 2) * width for j in range(len(faults))]
            st = backend_style(backend)
            bars = ax.bar(xs, values, width=width, color=st["color"], label=st["label"])
            ax.bar_label(bars, fontsize=7)
        ax.set_xticks(range(len(faults)), faults, rotation=15)
        ax.set_xlabel("fault")
        ax.set_ylabel(f"{col} [messages]")
        ax.set_title(f"{col.capitalize()}: {title}", fontsize=9)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def durability_timeline(records: Sequence[ResultRecord]) -> Figure:
    """Messages processed per second (solid) and queue backlog (dotted) around each fault, the fault window shaded."""
    faults = sorted({r.row.fault for r in records})
    backlog_axes: dict[str, Axes] = {}
    fig, axes = plt.subplots(len(faults), 1, figsize=(8.0, 2.4 * len(faults)), sharex=True, squeeze=False)
    for ax, fault in zip(axes[:, 0], faults, strict=True):
        shaded = False
        for rec in sorted(records, key=lambda r: (r.row.backend, r.row.repetition)):
            if rec.row.fault != fault or rec.row.repetition != 0:
                continue
            st = backend_style(rec.row.backend)
            tl = rec.series.timeline
            ax.plot(tl.t_s, tl.processed_per_s, color=st["color"], label=f"{st['label']}: processed", linewidth=1.2)
            if tl.backlog:
                if fault not in backlog_axes:
                    backlog_axes[fault] = ax.twinx()
                backlog_ax = backlog_axes[fault]
                backlog_ax.plot(tl.backlog_t_s, tl.backlog, color=st["color"], linestyle=":", linewidth=1.0,
                                label=f"{st['label']}: backlog")  # fmt: skip
                backlog_ax.set_ylabel("backlog [messages], dotted", fontsize=8)
                backlog_ax.grid(False)
            for w in rec.series.faults:
                if not shaded:
                    ax.axvspan(w.start_s, w.end_s, color="grey", alpha=0.2, label="fault window")
                    shaded = True
        ax.set_title(f"fault: {fault}", fontsize=9)
        ax.set_ylabel("processed [msg/s]")
        ax.legend(fontsize=7, loc="best")
    axes[-1, 0].set_xlabel("time since load start [s]")
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    name="03_durability",
    title="Durability across faults",
    params=Params,
    run=run,
    columns=("fault", "backend", "sent", "acknowledged", "processed", "lost", "duplicated", "extra_deliveries",
             "unacked_processed", "errors", "e2e_p99_ms"),
    tables=tables,
    figures=(
        FigureSpec("durability_counts", rows_figure(durability_bars)),
        FigureSpec("durability_timeline", records_figure(durability_timeline)),
    ),
    claims=durability_claims.CLAIMS,
)  # fmt: skip
