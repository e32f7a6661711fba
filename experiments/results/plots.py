"""Thesis-ready figures: both backends on one figure, units on every axis, repetitions as error bars.

Every function takes rows (a DataFrame of `ResultRow`s) or records (with
their series) and returns a matplotlib Figure; `save` writes it as PNG and
SVG with fixed metadata, so the same results give byte-identical files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import ScalarFormatter

from experiments.results.schema import ResultRecord
from experiments.results.stages import STAGES, TOTAL, stage_frame

STYLE = {
    "memory": {"color": "#1f77b4", "marker": "o", "label": "memory queue"},
    "nats": {"color": "#d62728", "marker": "s", "label": "NATS JetStream"},
    "nats-sync": {"color": "#9467bd", "marker": "^", "label": "JetStream, sync_always"},
}
plt.rcParams.update(
    {
        "figure.dpi": 100,
        "savefig.dpi": 150,
        "font.size": 10,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "svg.hashsalt": "queue-lab",  # stable ids inside SVGs
        "svg.fonttype": "none",
    }
)


def _style(backend: str) -> dict[str, str]:
    return STYLE.get(backend, {"color": "black", "marker": "x", "label": backend})


def save(fig: Figure, directory: str | Path, name: str) -> list[Path]:
    """`name.png`, `name.svg` and `name.pdf`, without timestamps (reproducible bytes)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{name}.png", directory / f"{name}.svg", directory / f"{name}.pdf"]
    fig.savefig(paths[0], bbox_inches="tight", metadata={"Software": None})
    fig.savefig(paths[1], bbox_inches="tight", metadata={"Date": None, "Creator": None})
    fig.savefig(paths[2], bbox_inches="tight", metadata={"CreationDate": None, "Creator": None, "Producer": None})
    return paths


def _agg(df: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Median with min and max across repetitions, per group."""
    g = df.groupby(keys, sort=True)[value]
    return pd.DataFrame({"median": g.median(), "lo": g.min(), "hi": g.max(), "n": g.count()}).reset_index()


def _errorbar(ax: Axes, x: Any, agg: pd.DataFrame, backend: str, **kw: Any) -> None:
    """Median with a min..max bar, in the backend's colour and marker (`kw` overrides, e.g. label, linestyle)."""
    st = _style(backend)
    yerr = [agg["median"] - agg["lo"], agg["hi"] - agg["median"]]
    style: dict[str, Any] = {"color": st["color"], "marker": st["marker"], "capsize": 3, "label": st["label"], **kw}
    ax.errorbar(x, agg["median"], yerr=yerr, **style)


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
        st = _style(rec.row.backend)
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
        for row, pct in enumerate(("p50", "p99")):
            ax = grid[row][col]
            for backend, part in part_p.groupby("backend", sort=True):
                agg = _agg(part, ["offered_rate"], f"e2e_{pct}_ms")
                _errorbar(ax, agg["offered_rate"], agg, str(backend))
            ax.set_ylim(bottom=0)
            ax.set_title(f"{pct}, {_size(payload)}", fontsize=9)
            if col == 0:
                ax.set_ylabel(f"end-to-end {pct} [ms]", fontsize=8)
            if row == 1:
                ax.set_xlabel("offered rate [msg/s]", fontsize=8)
            ax.tick_params(labelsize=7)
    grid[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _mark_client_bound(ax: Any, part: pd.DataFrame, agg: pd.DataFrame, marked: set[int]) -> None:
    """Ring the points where any repetition was client-bound (v1 rows have no flag: never ringed)."""
    if "client_bound" not in part:
        return
    flagged = set(part.loc[part["client_bound"].fillna(False).astype(bool), "offered_rate"])
    hits = agg[agg["offered_rate"].isin(flagged)]
    if hits.empty:
        return
    label = None if id(ax) in marked else CLIENT_BOUND_LABEL
    marked.add(id(ax))
    ax.plot(hits["offered_rate"], hits["median"], linestyle="none", marker="o", markersize=12,
            markerfacecolor="none", markeredgecolor="black", label=label)  # fmt: skip


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
            st = _style(str(backend))
            ls = "-" if batch == 1 else "--"
            label = f"{st['label']}, {batch} msg/request"
            for ax, col in ((rate_ax, "achieved_rate"), (p99_ax, "client_p99_ms")):
                agg = _agg(part, ["offered_rate"], col)
                _errorbar(ax, agg["offered_rate"], agg, str(backend), linestyle=ls, label=label)
                _mark_client_bound(ax, part, agg, marked)
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
            st = _style(backend)
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
            st = _style(rec.row.backend)
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


def scaling_curve(df: pd.DataFrame) -> Figure:
    """Processed throughput against workers per processor, one line per backend and instance count."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for (backend, procs_key), part in df.groupby(["backend", "processors"], sort=True):
        st = _style(str(backend))
        procs = int(str(procs_key))
        agg = _agg(part, ["workers"], "processed_rate")
        label = f"{st['label']}, {procs} processor{'s' if procs > 1 else ''}"
        _errorbar(ax, agg["workers"], agg, str(backend), linestyle="-" if procs == 1 else "--", label=label)
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


def footprint_label(backend: str, queue_size: Any) -> str:
    """A deployment of the footprint runs by its queue: NATS, or the memory queue with its QUEUE_SIZE."""
    if backend == "memory" and queue_size == queue_size and queue_size is not None:  # not NaN
        return f"memory queue, QUEUE_SIZE={int(queue_size):,}"
    return str(_style(backend)["label"])


def footprint_curve(df: pd.DataFrame) -> Figure:
    """Resident memory against the backlog built, one line per process x queue x payload size (and the store on disk).

    x is what was sent (with the memory queue at its default QUEUE_SIZE most
    of it was refused with 429, so its backlog stays at QUEUE_SIZE).
    """
    fig, ax = plt.subplots(figsize=(7.2, 6.4))
    payloads = sorted(int(p) for p in df["payload_bytes"].unique())
    dashes = ["-", "--", ":", "-."]
    shades = {"memory": ["#1f77b4", "#17becf"], "nats": ["#d62728"], "nats-sync": ["#9467bd"]}
    queues = sorted({(str(b), q if q == q else None) for b, q in zip(df["backend"], df["queue_size"], strict=True)},
                    key=lambda k: (k[0], -(k[1] or 0)))  # fmt: skip
    for i_q, (backend, qsize) in enumerate(queues):
        same = df[
            (df["backend"] == backend) & ((df["queue_size"] == qsize) if qsize is not None else df["queue_size"].isna())
        ]
        colour = shades.get(backend, ["black"])[min(sum(1 for b, _ in queues[:i_q] if b == backend), 1)]
        for process, column, marker in (
            ("processor", "processor_rss_mib", "o"),
            ("nats-server", "nats_rss_mib", "s"),
            ("on disk, JetStream store", "store_mib", "^"),
        ):
            for i_p, payload in enumerate(payloads):
                part = same[(same["payload_bytes"] == payload) & same[column].notna()]
                if part.empty:
                    continue
                agg = _agg(part, ["sent"], column)
                yerr = [agg["median"] - agg["lo"], agg["hi"] - agg["median"]]
                label = f"{process}: {footprint_label(backend, qsize)}, {_size(payload)}"
                ax.errorbar(agg["sent"], agg["median"], yerr=yerr, color=colour, marker=marker, capsize=3,
                            linestyle=dashes[i_p % len(dashes)], markersize=4, label=label)  # fmt: skip
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.ticklabel_format(axis="x", style="plain")
    ax.set_xlabel("backlog built [messages sent, none processed]")
    ax.set_ylabel("resident memory (RSS), or store on disk [MiB]")
    ax.set_title("Where the backlog lives: memory queue vs NATS JetStream")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def _size(n: int) -> str:
    return f"{n // 1024} KiB payload" if n >= 1024 and n % 1024 == 0 else f"{n} B payload"


POWER_LOSS_PARTS = (
    ("recovered", "#2ca02c", "recovered (acked before, processed after)"),
    ("lost_prefix", "#ff9896", "lost-prefix"),
    ("lost_middle", "#d62728", "lost-middle"),
    ("lost_postfix", "#8c564b", "lost-postfix"),
    ("duplicated", "#ffbb78", "duplicated"),
)


FAULT_NAMES = {
    "power-loss": "power loss",
    "power-loss:leader": "leader\nloses power",
    "power-loss:follower": "a follower\nloses power",
    "power-loss:quorum": "two nodes\nlose power",
    "power-loss:queue": "all three\nlose power",
    "lagging-majority": "lagging\nmajority",
}


def setting_label(backend: str, phase: str, replicas: int = 1) -> str:
    """'JetStream default fsync, writeback never' (R1), with the fault's name on three nodes (R3).

    From a row's backend, its `FAULT,writeback=...` phase and its replicas.
    """
    names = {"memory": "memory queue", "nats": "JetStream\ndefault fsync", "nats-sync": "JetStream\nsync_always"}
    writeback = phase.split("writeback=", 1)[1] if "writeback=" in phase else "-"
    fault = phase.split(",", 1)[0]
    name = names.get(backend, backend)
    if backend == "nats":
        name = f"{name}\nwriteback {writeback}" + ("" if writeback == "never" else " s")
    if replicas > 1:
        name = f"R{replicas}, {FAULT_NAMES.get(fault, fault)}\n{name}"
    return name


def power_loss_figure(df: pd.DataFrame, publish: pd.DataFrame) -> Figure:
    """Durability against speed: what a power loss did per setting (left), what each fsync policy costs (right).

    Left: acknowledged messages at stake, as counted by id (sums over
    repetitions): recovered, lost split by send order, duplicated; one node
    (R1) first, then three nodes (R3) per fault. Right: raw JetStream
    publish rate, one at a time and pipelined, on the lazy FS and on a plain
    dir, per replica count (median, min..max bar over rounds and repetitions).
    """
    replicas = df["replicas"].clip(lower=1) if "replicas" in df else pd.Series(1, index=df.index)
    df = df.assign(_r=replicas)
    order = {"memory": 0, "nats": 1, "nats-sync": 2}
    faults = list(FAULT_NAMES)  # simple faults first

    def rank(group: tuple[int, str, str]) -> tuple[int, int, int, str]:
        r, backend, phase = group
        fault = phase.split(",", 1)[0]
        return r, faults.index(fault) if fault in faults else len(faults), order.get(backend, 9), phase

    groups = sorted({(int(r), b, p) for r, b, p in zip(df["_r"], df["backend"], df["phase"], strict=True)}, key=rank)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(max(12.5, 6.5 + 1.1 * len(groups)), 5.4), gridspec_kw={"width_ratios": [1.4, 1]}
    )
    labels = [setting_label(b, p, r) for r, b, p in groups]

    def pick(r: int, b: str, p: str) -> pd.DataFrame:
        return df[(df["_r"] == r) & (df["backend"] == b) & (df["phase"] == p)]

    width = 0.8 / len(POWER_LOSS_PARTS)
    for i, (col, color, name) in enumerate(POWER_LOSS_PARTS):
        values = [int(pick(*g)[col].sum()) for g in groups]
        xs = [j + (i - (len(POWER_LOSS_PARTS) - 1) / 2) * width for j in range(len(groups))]
        bars = left.bar(xs, values, width=width, color=color, label=name)
        left.bar_label(bars, fontsize=6)
    acked = [int(pick(*g)["acknowledged"].sum()) for g in groups]
    left.set_xticks(range(len(groups)), [f"{lab}\n({a} acked)" for lab, a in zip(labels, acked, strict=True)],
                    fontsize=6.5)  # fmt: skip
    r3_from = next((j for j, g in enumerate(groups) if g[0] > 1), None)
    if r3_from is not None and r3_from > 0:
        left.axvline(r3_from - 0.5, color="0.6", lw=0.8, ls="--")
    left.set_xlabel("setting (one node, R1" + (" | three nodes, R3)" if r3_from is not None else ")"))
    left.set_ylabel("messages (sum over repetitions)")
    left.set_title("Power loss mid-load: acknowledged messages by fate", fontsize=9)
    left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.36), ncol=3)
    if publish.empty:
        right.text(0.5, 0.5, "no publish-rate measurements", ha="center", va="center", transform=right.transAxes)
    else:
        reps = sorted(int(r) for r in publish["replicas"].unique())
        present = set(zip(publish["replicas"], publish["backend"], publish["store"], strict=True))
        cases = [(r, b, s) for r in reps for b in ("nats", "nats-sync") for s in ("plain", "lazyfs")
                 if (r, b, s) in present]  # fmt: skip
        modes = ["single", "pipelined"]
        width = 0.8 / len(cases)
        for i, (r, backend, store) in enumerate(cases):
            part = publish[(publish["replicas"] == r) & (publish["backend"] == backend) & (publish["store"] == store)]
            agg = _agg(part, ["mode"], "rate").set_index("mode").reindex(modes)
            xs = [j + (i - (len(cases) - 1) / 2) * width for j in range(len(modes))]
            st = _style(backend)
            yerr = [agg["median"] - agg["lo"], agg["hi"] - agg["median"]]
            prefix = f"R{r} " if len(reps) > 1 else ""
            right.bar(xs, agg["median"], width=width, yerr=yerr, capsize=3, color=st["color"],
                      alpha=(1.0 if store == "plain" else 0.55) * (1.0 if r == reps[0] else 0.7),
                      hatch=("" if store == "plain" else "//") + ("" if r == reps[0] else ".."),
                      edgecolor="black" if r != reps[0] else None, linewidth=0.5,
                      label=f"{prefix}{st['label']}, {'plain dir' if store == 'plain' else 'lazy FS'}")  # fmt: skip
        right.set_xticks(range(len(modes)), ["one at a time", "pipelined (publish_async)"])
        right.set_xlabel("publish mode (raw nats-py, 128 B)")
        right.set_yscale("log")
        right.set_ylabel("acknowledged publishes [msg/s, log scale]")
        right.set_title("What each fsync policy costs", fontsize=9)
        right.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    fig.tight_layout()
    return fig


STAGE_COLORS = ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974", "#64b5cd", "#8c8c8c"]
CLIENT_BOUND_LABEL = "client-bound (load generator or machine ≥ 90 % CPU)"


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
        labels = [f"{_style(b)['label'].replace('NATS ', '')}\n{r:g} msg/s" for b, _, r in phases]
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
            ax.set_title(f"{_style(backend)['label']}, {batch} msg/request, {payload:,} B", fontsize=8)
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


VARIANT_STYLE = {
    "memory": {"color": "#1f77b4", "marker": "o", "label": "memory queue"},
    "R1": {"color": "#d62728", "marker": "s", "label": "JetStream R1, 1 node"},
    "R3": {"color": "#2ca02c", "marker": "D", "label": "JetStream R3, 3 nodes"},
}


def _variant_key(backend: str, replicas: int) -> str:
    return "memory" if backend == "memory" else f"R{int(replicas)}"


def cluster_comparison(df: pd.DataFrame) -> Figure:
    """Memory vs R1 vs R3 at the same offered rates: achieved rate, client p50 and p99 (median, bars min..max)."""
    calm = df[df["fault"] == "none"]
    fig, axes = plt.subplots(1, 3, figsize=(12.0, 3.8))
    cols = (("achieved_rate", "achieved [msg/s acknowledged]"), ("client_p50_ms", "client latency p50 [ms]"),
            ("client_p99_ms", "client latency p99 [ms]"))  # fmt: skip
    for (backend, replicas), part in calm.groupby(["backend", "replicas"], sort=True):
        key = _variant_key(str(backend), int(str(replicas)))
        st = VARIANT_STYLE.get(key, {"color": "black", "marker": "x", "label": key})
        for ax, (col, _) in zip(axes, cols, strict=True):
            agg = _agg(part, ["offered_rate"], col)
            yerr = [agg["median"] - agg["lo"], agg["hi"] - agg["median"]]
            ax.errorbar(agg["offered_rate"], agg["median"], yerr=yerr, capsize=3, **st)
    for ax, (_, ylabel) in zip(axes, cols, strict=True):
        ax.set_xlabel("offered rate [msg/s, one message per request]")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
    top = float(calm["offered_rate"].max()) if not calm.empty else 1.0
    axes[0].plot([0, top], [0, top], color="grey", linewidth=0.8, linestyle=":", label="achieved = offered")
    axes[0].set_title("Throughput")
    axes[1].set_title("Median publish latency")
    axes[2].set_title("p99 publish latency")
    axes[0].legend(fontsize=7)
    fig.suptitle("Memory vs JetStream R1 vs R3 (median of repetitions, bars: min..max)", fontsize=10)
    fig.tight_layout()
    return fig


def failover_timeline(records: Sequence[ResultRecord]) -> Figure:
    """Per bin: publishes acknowledged / refused (bars) and client p50 (line), fault shaded, leader change marked."""
    chosen = [r for r in records if r.series.failover is not None and r.row.repetition == 0]
    firsts: dict[str, ResultRecord] = {}
    for r in chosen:
        firsts.setdefault(r.row.fault, r)
    runs = list(firsts.values())
    fig, axes = plt.subplots(max(1, len(runs)), 1, figsize=(9.0, 2.6 * max(1, len(runs))), squeeze=False)
    for ax, rec in zip(axes[:, 0], runs, strict=False):
        fo = rec.series.failover
        assert fo is not None
        per_s = 1.0 / fo.bin_s
        ax.bar(fo.t_s, [v * per_s for v in fo.ok], width=fo.bin_s, align="edge", color="#2ca02c", label="acknowledged")
        ax.bar(fo.t_s, [v * per_s for v in fo.failed], width=fo.bin_s, align="edge", color="#d62728",
               bottom=[v * per_s for v in fo.ok], label="refused / no answer")  # fmt: skip
        for w in rec.series.faults:
            ax.axvspan(w.start_s, w.end_s, facecolor="none", edgecolor="black", hatch="//", alpha=0.5,
                       zorder=3, label="fault window")  # fmt: skip
            if w.leader_change_s is not None:
                ax.axvline(w.leader_change_s, color="black", linestyle="--", linewidth=1.0, label="new leader seen")
        lat = ax.twinx()
        lat.plot([t + fo.bin_s / 2 for t in fo.t_s], fo.p50_ms, color="black", linewidth=0.9, label="client p50")
        lat.set_yscale("log")
        lat.set_ylabel("client p50 [ms], line", fontsize=8)
        lat.grid(False)
        recover = "" if rec.row.recover_s is None else f", recovered after {rec.row.recover_s:.2f} s"
        ax.set_title(f"{rec.row.fault} on {rec.row.nats_nodes} nodes, R{rec.row.replicas}{recover}", fontsize=9)
        ax.set_ylabel(f"publishes [per s, {fo.bin_s * 1000:g} ms bins]", fontsize=8)
        ax.set_xlabel("time since load start [s]")
        handles, labels = ax.get_legend_handles_labels()
        h2, l2 = lat.get_legend_handles_labels()
        ax.legend(handles + h2, labels + l2, fontsize=7, loc="lower left")
    if not runs:
        axes[0, 0].set_title("no cluster fault in these results")
    fig.tight_layout()
    return fig


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
