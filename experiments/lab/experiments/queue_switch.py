"""07 migration: a queue switch under steady open-loop load, naive against planned.

Generator: load with a switch step (`workload.faults.switch`) mid-load.
Checker: counts by id and HTTP statuses. Figures: counts per switch, and
the timeline around it.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from experiments.lab.context import RunContext
from experiments.lab.experiment import (
    Experiment,
    ExperimentParams,
    FigureSpec,
    records_figure,
    rows_figure,
)
from experiments.lab.setup import Setup
from experiments.results.chapters import migration as migration_claims
from experiments.results.schema import ResultRecord
from experiments.runtime.migration import QUEUES, Queue
from experiments.workload.faults import FaultStep
from experiments.workload.faults.switch import NaiveSwitch, Switch

# memory <-> nats <-> kafka <-> memory: every ordered pair of the three queues
QUEUE_SWITCHES = tuple(f"{a}->{b}" for a in QUEUES for b in QUEUES if a != b)


def parse_direction(direction: str) -> tuple[Queue, Queue]:
    """'memory->kafka' -> ('memory', 'kafka'); refuses an unknown queue or a switch to the same one."""
    source, sep, target = direction.partition("->")
    if not sep or source not in QUEUES or target not in QUEUES or source == target:
        raise ValueError(f"direction {direction!r}: expected two different queues of {', '.join(QUEUES)}, as a->b")
    return source, target


class Params(ExperimentParams):
    directions: tuple[str, ...] = QUEUE_SWITCHES
    modes: tuple[str, ...] = ("naive", "planned")
    rate: float = 200.0  # msg/s offered
    duration_s: float = 8.0
    switch_at_s: float = 2.0  # s after the load started
    processing_ms: float = 0.0  # slow workers leave the old queue a backlog at the switch
    workers: int = 4


MIGRATION_MODES = {"naive": NaiveSwitch.kind, "planned": Switch.kind}  # mode -> the switch fault's kind
MIGRATION_BIN_S = 0.1  # the timeline's resolution: a switch lasts seconds


async def run(ctx: RunContext, params: Params) -> pd.DataFrame:
    """A queue switch under steady open-loop load, each direction x mode in a fresh deployment.

    `directions`: "a->b" for two of memory, nats, kafka. `modes`: "naive" (stop
    the processor, start it on the other queue) and "planned" (a processor on
    the new queue beside the old, ingest rerouted, the old drained, then
    stopped). The target's broker runs beside the source queue (`Setup.standby`).
    `processing_ms` slows the workers below the offered rate, so the old queue
    holds a backlog at the switch: what the naive switch drops and the planned
    one finishes.
    """
    for direction in params.directions:
        source, target = parse_direction(direction)
        for mode in params.modes:
            if mode not in MIGRATION_MODES:
                raise ValueError(f"mode {mode!r}: expected naive or planned")
            step = FaultStep.parse(f"{MIGRATION_MODES[mode]}:{target}", at_s=params.switch_at_s)
            setup = Setup(
                backend=source,
                workers=params.workers,
                processing_ms=params.processing_ms,
                standby=None if target == "memory" else target,
            )
            async with ctx.session(setup) as session:
                await session.measure(
                    f"{mode} {direction}", rate=params.rate, duration_s=params.duration_s, fault=step,
                    bin_s=MIGRATION_BIN_S,
                )  # fmt: skip
    return ctx.frame()


MIGRATION_COUNTS = ["sent", "acknowledged", "processed", "lost", "duplicated", "extra_deliveries", "rejected", "errors"]


def tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
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


MIGRATION_BARS = (
    ("acknowledged", "#2ca02c"),
    ("processed", "#1f77b4"),
    ("lost", "#d62728"),
    ("duplicated", "#ff7f0e"),
    ("errors", "#7f7f7f"),
)


def migration_counts(df: pd.DataFrame) -> Figure:
    """Per switch (mode and direction): acknowledged, processed, lost, duplicated, client 5xx/no answer."""
    phases = sorted(df["phase"].unique())
    sums = df.groupby("phase")[[c for c, _ in MIGRATION_BARS]].sum()
    fig, ax = plt.subplots(figsize=(9.0, 3.8))
    width = 0.8 / len(MIGRATION_BARS)
    for i, (col, color) in enumerate(MIGRATION_BARS):
        xs = [j + (i - (len(MIGRATION_BARS) - 1) / 2) * width for j in range(len(phases))]
        label = "client 5xx / no answer" if col == "errors" else col
        bars = ax.bar(xs, [int(sums[col].get(p, 0)) for p in phases], width=width, color=color, label=label)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(range(len(phases)), phases)
    ax.set_xlabel("switch (mode, direction)")
    ax.set_ylabel("messages")
    ax.set_title("Queue switch under steady load: what the clients got and what was processed", fontsize=10)
    ax.legend(fontsize=8, ncols=3)
    fig.tight_layout()
    return fig


def migration_timeline(records: Sequence[ResultRecord]) -> Figure:
    """Per switch: messages processed and client errors per bin over time, the switch window shaded."""
    recs = sorted((r for r in records if r.row.repetition == 0), key=lambda r: r.row.phase)
    fig, axes = plt.subplots(len(recs), 1, figsize=(8.0, 2.3 * len(recs)), sharex=True, squeeze=False)
    for ax, rec in zip(axes[:, 0], recs, strict=True):
        tl = rec.series.timeline
        bin_s = tl.t_s[1] - tl.t_s[0] if len(tl.t_s) > 1 else 1.0
        per_bin = [v * bin_s for v in tl.processed_per_s]
        ax.step(tl.t_s, per_bin, where="post", color="#1f77b4", linewidth=1.1, label="processed")
        if tl.errors_per_s:
            errs = [v * bin_s for v in tl.errors_per_s]
            ax.step(tl.t_s[: len(errs)], errs, where="post", color="#d62728", linewidth=1.1,
                    label="client errors (non-2xx, by send time)")  # fmt: skip
        for w in rec.series.faults:
            ax.axvspan(w.start_s, w.end_s, color="grey", alpha=0.2, label="switch (start to old processor gone)")
        r = rec.row
        ax.set_title(f"{r.phase}: lost {r.lost}, duplicated {r.duplicated}, errors {r.errors}", fontsize=9)
        ax.set_ylabel(f"messages per {bin_s * 1000:.0f} ms", fontsize=8)
    axes[-1, 0].set_xlabel("time since load start [s]")
    fig.tight_layout()
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3, fontsize=8)
    return fig


EXPERIMENT = Experiment(
    name="07_migration",
    title="Queue switch under load: naive vs planned, memory, NATS and Kafka",
    params=Params,
    run=run,
    columns=("phase", "fault", "sent", "acknowledged", "processed", "lost", "duplicated", "extra_deliveries",
             "rejected", "errors", "client_p99_ms", "e2e_p99_ms"),
    tables=tables,
    figures=(
        FigureSpec("migration_counts", rows_figure(migration_counts)),
        FigureSpec("migration_timeline", records_figure(migration_timeline)),
    ),
    record_tables=migration_statuses,
    claims=migration_claims.CLAIMS,
)  # fmt: skip
