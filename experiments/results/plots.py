"""The figures' shared style and helpers: a colour and marker per backend, medians with min..max bars, `save`.

Each experiment draws its own figures in its module
(`experiments.lab.experiments`), with these: both backends on one figure,
units on every axis, repetitions as error bars. `save` writes PNG and SVG
with fixed metadata, so the same results give byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

STYLE = {
    "memory": {"color": "#1f77b4", "marker": "o", "label": "memory queue"},
    "nats": {"color": "#d62728", "marker": "s", "label": "NATS JetStream"},
    "nats-sync": {"color": "#9467bd", "marker": "^", "label": "JetStream, sync_always"},
    "kafka": {"color": "#2ca02c", "marker": "D", "label": "Kafka"},
    "kafka-flush": {"color": "#8c564b", "marker": "v", "label": "Kafka, flush every message"},
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


def backend_style(backend: str) -> dict[str, str]:
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


def median_range(df: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Median with min and max across repetitions, per group."""
    g = df.groupby(keys, sort=True)[value]
    return pd.DataFrame({"median": g.median(), "lo": g.min(), "hi": g.max(), "n": g.count()}).reset_index()


def median_errorbar(ax: Axes, x: Any, agg: pd.DataFrame, backend: str, **kw: Any) -> None:
    """Median with a min..max bar, in the backend's colour and marker (`kw` overrides, e.g. label, linestyle)."""
    st = backend_style(backend)
    yerr = [agg["median"] - agg["lo"], agg["hi"] - agg["median"]]
    style: dict[str, Any] = {"color": st["color"], "marker": st["marker"], "capsize": 3, "label": st["label"], **kw}
    ax.errorbar(x, agg["median"], yerr=yerr, **style)


def mark_client_bound(ax: Any, part: pd.DataFrame, agg: pd.DataFrame, marked: set[int]) -> None:
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


STAGE_COLORS = ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974", "#64b5cd", "#8c8c8c"]
CLIENT_BOUND_LABEL = "client-bound (load generator or machine ≥ 90 % CPU)"
