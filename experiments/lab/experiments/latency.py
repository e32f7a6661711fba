"""01 latency: end-to-end and client latency at fixed offered rates (and payload sizes), one session per backend.

Generator: open-loop load per rate and payload size through `Session.measure`.
Checker: the record's percentiles (client: scheduled send to 2xx; end to end:
stamped at ingest to processed). Figures: CDFs, latency against rate, and
latency by stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from experiments.lab.context import RunContext
from experiments.lab.experiment import (
    Experiment,
    ExperimentParams,
    FigureSpec,
    payload_list,
    phase_name,
    records_figure,
    rows_figure,
)
from experiments.lab.phase import WARMUP_S
from experiments.lab.setup import Setup
from experiments.results.chapters import latency as latency_claims
from experiments.results.plots import (
    STAGE_COLORS,
    STYLE,
    backend_style,
    median_errorbar,
    median_range,
)
from experiments.results.schema import Backend, ResultRecord
from experiments.results.stages import STAGES, TOTAL, stage_frame, stage_table
from experiments.results.stats import spread
from experiments.results.tables import median_table


class Params(ExperimentParams):
    backends: tuple[Backend, ...] = ("memory", "nats")
    rates: tuple[float, ...] = (200.0, 500.0, 1000.0)  # msg/s offered
    duration_s: float = 10.0  # per rate
    payload_bytes: int | tuple[int, ...] = (128,)  # bytes per message; a list sweeps sizes
    workers: int = 4
    warmup_s: float = WARMUP_S  # unmeasured load at the first rate before each deployment's first phase (0: none)


async def run(ctx: RunContext, params: Params) -> pd.DataFrame:
    """End-to-end and client latency at fixed offered rates (and payload sizes): one session per backend."""
    payloads = payload_list(params.payload_bytes)
    for backend in params.backends:
        async with ctx.session(Setup(backend=backend, workers=params.workers)) as session:
            if params.warmup_s > 0:  # else the first phase measures the deployment's start (a JVM's JIT)
                await session.warm_up(rate=params.rates[0], duration_s=params.warmup_s)
            for payload in payloads:
                for rate in params.rates:
                    await session.measure(
                        phase_name(payloads, payload, rate=rate),
                        rate=rate,
                        duration_s=params.duration_s,
                        payload_bytes=payload,
                    )
    return ctx.frame()


def tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    keys = ["backend", "payload_bytes", "offered_rate"]
    values = ["achieved_rate", "client_p50_ms", "client_p99_ms", "e2e_p50_ms", "e2e_p90_ms", "e2e_p99_ms",
              "e2e_p999_ms", "e2e_max_ms"]  # fmt: skip
    rep = []
    for (backend, payload, rate), part in df.groupby(keys, sort=True):
        for metric in ("e2e_p50_ms", "client_p50_ms"):
            s = spread(part[metric].dropna().tolist())
            rep.append({"backend": backend, "payload_bytes": payload, "offered_rate": rate, "metric": metric, **s})
    return {"latency": median_table(df, keys, values), "repeatability": pd.DataFrame(rep)}


def latency_cdf(records: Sequence[ResultRecord], which: str = "e2e") -> Figure:
    """CDF of end-to-end (or client) latency, one curve per backend and offered rate (first repetition)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    seen: set[tuple[str, float]] = set()
    styles = ["-", "--", ":", "-."]
    rates = sorted({r.row.offered_rate for r in records})
    for rec in sorted(records, key=lambda r: (r.row.backend, r.row.offered_rate, r.row.repetition)):
        key = (rec.row.backend, rec.row.offered_rate)
        curve = rec.series.e2e_quantiles_ms if which == "e2e" else rec.series.client_quantiles_ms
        if key in seen or not curve:
            continue
        seen.add(key)
        q = [i / (len(curve) - 1) for i in range(len(curve))]
        st = backend_style(rec.row.backend)
        ls = styles[rates.index(rec.row.offered_rate) % len(styles)]
        ax.plot(curve, q, color=st["color"], linestyle=ls, label=f"{st['label']}, {rec.row.offered_rate:g} msg/s")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel(f"{'end-to-end' if which == 'e2e' else 'client (publish)'} latency [ms]")
    ax.set_ylabel("cumulative fraction of messages")
    ax.set_ylim(0, 1.01)
    ax.set_title(f"{'End-to-end' if which == 'e2e' else 'Client'} latency distribution")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def latency_vs_rate(df: pd.DataFrame) -> Figure:
    """p50 (top) and p99 (bottom) end-to-end latency against offered rate, one column per payload size.

    Each payload size has its own scale: one 256 KiB point at hundreds of ms
    would otherwise flatten every small-payload point onto the axis. Bars span
    the repetitions (min..max).
    """
    payloads = sorted(int(p) for p in df["payload_bytes"].unique()) or [0]
    fig, grid = plt.subplots(2, len(payloads), figsize=(max(6.3, 2.6 * len(payloads)), 5.2), squeeze=False)
    for col, payload in enumerate(payloads):
        part_p = df[df["payload_bytes"] == payload]
        size = f"{payload // 1024} KiB" if payload >= 1024 and payload % 1024 == 0 else f"{payload} B"
        for row, pct in enumerate(("p50", "p99")):
            ax = grid[row][col]
            for backend, part in part_p.groupby("backend", sort=True):
                agg = median_range(part, ["offered_rate"], f"e2e_{pct}_ms")
                median_errorbar(ax, agg["offered_rate"], agg, str(backend))
            ax.set_ylim(bottom=0)
            ax.set_title(f"{pct}, {size} payload", fontsize=9)
            if col == 0:
                ax.set_ylabel(f"end-to-end {pct} [ms]", fontsize=8)
            if row == 1:
                ax.set_xlabel("offered rate [msg/s]", fontsize=8)
            ax.tick_params(labelsize=7)
    grid[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def stage_bars(records: Sequence[ResultRecord]) -> Figure:
    """Latency by stage, stacked: medians (left) and p99s (right) per backend and offered rate, a row per payload.

    The marker is the measured total (gateway received -> acked) of the same
    messages: per message the stages add up to it exactly; their medians add
    up to about its median, their p99s to more than its p99 (the slowest of
    each stage are different messages). Each payload size has its own scale.
    """
    long = stage_frame(records)
    payloads = sorted(int(p) for p in long["payload_bytes"].unique()) if not long.empty else [0]
    fig, grid = plt.subplots(len(payloads), 2, figsize=(10.4, 1.0 + 3.2 * len(payloads)), squeeze=False)
    if long.empty:
        for ax in grid[0]:
            ax.set_title("no stage stamps in these records")
        return fig
    med = long.groupby(["backend", "payload_bytes", "offered_rate", "stage"], sort=True)[["p50_ms", "p99_ms"]].median()
    order = {b: i for i, b in enumerate(STYLE)}
    for row, payload in zip(grid, payloads, strict=True):
        phases = sorted({k[:3] for k in med.index if k[1] == payload}, key=lambda k: (order.get(k[0], 9), k[2]))
        labels = [f"{backend_style(b)['label'].replace('NATS ', '')}\n{r:g} msg/s" for b, _, r in phases]
        size = f", {payload:,} B payload" if len(payloads) > 1 else ""
        for ax, col, what in zip(row, ("p50_ms", "p99_ms"), ("median", "p99"), strict=True):
            bottom = [0.0] * len(phases)
            for color, stage in zip(STAGE_COLORS, STAGES, strict=True):
                values = [float(med[col].get((*ph, stage), 0.0) or 0.0) for ph in phases]
                ax.bar(range(len(phases)), values, bottom=bottom, color=color, label=stage, width=0.7)
                bottom = [b + v for b, v in zip(bottom, values, strict=True)]
            totals = [med[col].get((*ph, TOTAL)) for ph in phases]
            ax.plot(range(len(phases)), totals, linestyle="none", marker="D", color="black", markersize=5,
                    label="measured total (gateway → acked)")  # fmt: skip
            ax.set_xticks(range(len(phases)), labels, fontsize=7)
            ax.set_ylabel(f"{what} per stage, stacked [ms]", fontsize=8)
            ax.set_title(f"Where the time goes: {what} of each stage{size}", fontsize=9)
            ax.set_ylim(bottom=0)
    for ax in grid[-1]:
        ax.set_xlabel("backend and offered rate")
    handles, labels = grid[0][0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.6 / (1.0 + 3.2 * len(payloads)), 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    return fig


EXPERIMENT = Experiment(
    name="01_latency",
    title="Latency at fixed offered rates",
    params=Params,
    run=run,
    columns=("backend", "payload_bytes", "offered_rate", "achieved_rate", "client_p50_ms", "client_p99_ms",
             "e2e_p50_ms", "e2e_p90_ms", "e2e_p99_ms", "e2e_p999_ms", "e2e_max_ms", "sent", "lost", "client_bound"),
    tables=tables,
    figures=(
        FigureSpec("latency_cdf_e2e", records_figure(lambda r: latency_cdf(r, "e2e"))),
        FigureSpec("latency_cdf_client", records_figure(lambda r: latency_cdf(r, "client"))),
        FigureSpec("latency_vs_rate", rows_figure(latency_vs_rate)),
        FigureSpec("latency_by_stage", records_figure(stage_bars)),
    ),
    record_tables=lambda records: {"latency_by_stage": stage_table(records)},
    claims=latency_claims.CLAIMS,
)  # fmt: skip
