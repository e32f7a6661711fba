"""02 throughput: a saturation sweep, offered rate upwards until the stack delivers under half of it.

Generator: open-loop load per batch size, payload size and rate. Checker:
achieved and processed rates, CPU per message and whether the client was the
bottleneck. Figures: the throughput curve and CPU per message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

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
from experiments.lab.setup import Setup
from experiments.results.chapters import throughput as throughput_claims
from experiments.results.client_bound import cpu_table, measures_table
from experiments.results.plots import (
    CLIENT_BOUND_LABEL,
    backend_style,
    mark_client_bound,
    median_errorbar,
    median_range,
)
from experiments.results.schema import Backend, ResultRecord
from experiments.results.tables import median_table
from services.settings import HttpSettings


class Params(ExperimentParams):
    backends: tuple[Backend, ...] = ("memory", "nats")
    rates: tuple[float, ...] = (500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0)  # msg/s offered
    batch_sizes: tuple[int, ...] = (1, 20)  # messages per request
    duration_s: float = 5.0
    payload_bytes: int | tuple[int, ...] = (128,)  # bytes per message; a list sweeps sizes
    workers: int = 4
    stop_below: float = 0.5  # the sweep stops once achieved < stop_below x offered


def fits_one_request(batch: int, payload: int) -> bool:
    """Whether `batch` messages of `payload` bytes fit the gateway's default body limit (else: 413, not a rate)."""
    limit = int(HttpSettings.model_fields["max_body_bytes"].default)
    return batch * (payload + 64) <= limit


async def run(ctx: RunContext, params: Params) -> pd.DataFrame:
    """Saturation sweep: offered rate upwards until the stack delivers under `stop_below` of it.

    Once achieved < stop_below x offered the knee is behind us; higher rates
    would only pile up timeouts and cost minutes, so the sweep for that batch
    size and payload stops there (the rows say which rates were measured). A
    batch of payloads larger than the gateway's body limit is not measured.
    """
    payloads = payload_list(params.payload_bytes)
    for backend in params.backends:
        async with ctx.session(Setup(backend=backend, workers=params.workers)) as session:
            for payload in payloads:
                for batch in params.batch_sizes:
                    if not fits_one_request(batch, payload):
                        continue
                    for rate in sorted(params.rates):
                        rec = await session.measure(
                            phase_name(payloads, payload, batch=batch, rate=rate),
                            rate=rate,
                            duration_s=params.duration_s,
                            payload_bytes=payload,
                            batch_size=batch,
                            drain_timeout_s=20.0,
                        )
                        if rec.row.achieved_rate < params.stop_below * rate:
                            break
    return ctx.frame()


def tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    values = ["achieved_rate", "processed_rate", "client_p50_ms", "client_p99_ms", "e2e_p99_ms", "rejected", "errors"]
    return {
        "throughput": median_table(df, ["backend", "payload_bytes", "batch_size", "offered_rate"], values),
        "client_bound": measures_table(df),
    }


def throughput_curve(df: pd.DataFrame) -> Figure:
    """Achieved vs offered rate (top) and client p99 vs offered rate (bottom), a column per payload size.

    Where the knee is; client-bound points (the load generator or the machine
    was the limit) are ringed. One payload size: the two panels side by side.
    """
    payloads = sorted(int(p) for p in df["payload_bytes"].unique())
    if len(payloads) == 1:
        fig, flat = plt.subplots(1, 2, figsize=(9.6, 3.8))
        grid = [[flat[0]], [flat[1]]]
    else:
        fig, axs = plt.subplots(2, len(payloads), figsize=(3.4 * len(payloads), 6.4), squeeze=False)
        grid = [list(axs[0]), list(axs[1])]
    marked: set[int] = set()  # axes that already have the client-bound legend entry
    for j, payload in enumerate(payloads):
        at_size = df[df["payload_bytes"] == payload]
        rate_ax, p99_ax = grid[0][j], grid[1][j]
        top = float(at_size["offered_rate"].max())
        rate_ax.plot([0, top], [0, top], color="grey", linewidth=0.8, linestyle=":", label="achieved = offered")
        for (backend, batch), part in at_size.groupby(["backend", "batch_size"], sort=True):
            st = backend_style(str(backend))
            ls = "-" if batch == 1 else "--"
            label = f"{st['label']}, {batch} msg/request"
            for ax, col in ((rate_ax, "achieved_rate"), (p99_ax, "client_p99_ms")):
                agg = median_range(part, ["offered_rate"], col)
                median_errorbar(ax, agg["offered_rate"], agg, str(backend), linestyle=ls, label=label)
                mark_client_bound(ax, part, agg, marked)
        size = f", {payload:,} B payload" if len(payloads) > 1 else ""
        rate_ax.set_ylabel("achieved rate [msg/s acknowledged]")
        p99_ax.set_ylabel("client latency p99 [ms]")
        p99_ax.set_yscale("log")
        for ax in (rate_ax, p99_ax):
            ax.set_xlabel("offered rate [msg/s]")
        rate_ax.set_title(f"Throughput{size}", fontsize=9)
        p99_ax.set_title(f"Latency as load rises (the knee){size}", fontsize=9)
    entries: dict[str, Any] = {}
    for ax in (grid[0][0], grid[1][0]):
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(text, handle)
    fig.tight_layout(rect=(0, 0.12 if len(payloads) == 1 else 0.07, 1, 1))
    fig.legend(list(entries.values()), list(entries), loc="lower center", ncol=3, fontsize=7, frameon=False)
    return fig


def cpu_per_message(records: Sequence[ResultRecord]) -> Figure:
    """µs of CPU per processed message, stacked by process, per point of a sweep (a row per payload size).

    Columns are backend x messages per request; client-bound points are hatched.
    """
    recs = sorted(
        (r for r in records if r.series.cpu_us_per_msg),
        key=lambda r: (r.row.backend, r.row.batch_size, r.row.payload_bytes, r.row.offered_rate, r.row.repetition),
    )
    groups: list[tuple[str, int]] = sorted({(r.row.backend, r.row.batch_size) for r in recs}) or [("memory", 1)]
    payloads = sorted({r.row.payload_bytes for r in recs}) or [0]
    height = 1.0 + 2.9 * len(payloads)
    fig, grid = plt.subplots(len(payloads), len(groups), figsize=(3.4 * len(groups), height), squeeze=False)
    names = sorted({n for r in recs for n in r.series.cpu_us_per_msg}, key=lambda n: (n == "load generator", n))
    colors = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(names)}
    for row, payload in zip(grid, payloads, strict=True):
        for ax, (backend, batch) in zip(row, groups, strict=True):
            first: dict[float, ResultRecord] = {}
            for r in recs:  # first repetition of each point
                if (r.row.backend, r.row.batch_size, r.row.payload_bytes) == (backend, batch, payload):
                    first.setdefault(r.row.offered_rate, r)
            rates = sorted(first)
            bottom = [0.0] * len(rates)
            for n in names:
                values = [first[x].series.cpu_us_per_msg.get(n, 0.0) for x in rates]
                ax.bar(range(len(rates)), values, bottom=bottom, color=colors[n], label=n, width=0.7)
                bottom = [b + v for b, v in zip(bottom, values, strict=True)]
            for i, x in enumerate(rates):
                if first[x].row.client_bound:
                    ax.bar(i, bottom[i], width=0.7, fill=False, hatch="//", edgecolor="black", linewidth=0)
            ax.set_xticks(range(len(rates)), [f"{x:g}" for x in rates], fontsize=7)
            ax.set_ylabel("CPU per message [µs]", fontsize=8)
            ax.set_title(f"{backend_style(backend)['label']}, {batch} msg/request, {payload:,} B", fontsize=8)
            if not rates:
                ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, fontsize=8)
                ax.set_yticks([])
    for ax in grid[-1]:
        ax.set_xlabel("offered rate [msg/s]")
    handles = [Rectangle((0, 0), 1, 1, color=colors[n]) for n in names]
    handles.append(Rectangle((0, 0), 1, 1, fill=False, hatch="//", edgecolor="black"))
    labels = [*names, CLIENT_BOUND_LABEL]
    fig.suptitle("CPU per processed message by process (hatched: the point measures the client)", fontsize=10)
    fig.tight_layout(rect=(0, 0.5 / height, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7, frameon=False)
    return fig


EXPERIMENT = Experiment(
    name="02_throughput",
    title="Throughput: saturation sweep",
    params=Params,
    run=run,
    columns=("backend", "payload_bytes", "batch_size", "offered_rate", "achieved_rate", "processed_rate",
             "client_p50_ms", "client_p99_ms", "e2e_p99_ms", "rejected", "errors", "lost", "cpu_us_per_msg",
             "client_cpu_pct", "machine_cpu_pct", "client_bound"),
    tables=tables,
    figures=(
        FigureSpec("throughput", rows_figure(throughput_curve)),
        FigureSpec("cpu_per_message", records_figure(cpu_per_message)),
    ),
    record_tables=lambda records: {"cpu_per_message": cpu_table(records)},
    claims=throughput_claims.CLAIMS,
)  # fmt: skip
