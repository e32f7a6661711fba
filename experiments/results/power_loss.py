"""The power-loss experiment's tables and figure, from run documents only (for notebook 06 and the report).

Counts are summed over repetitions (with the number of runs); publish
rates are medians with min..max; the cost ratios are taken per round (the
two settings measured back to back in one run) and then summarised, so a
slow moment of a shared machine hits both sides of a ratio alike.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from experiments.results import plots
from experiments.results.schema import PublishRate, RunDocument

EXPERIMENT = "06_power_loss"
COUNTS = ["sent", "acknowledged", "processed", "lost", "lost_prefix", "lost_middle", "lost_postfix", "duplicated",
          "recovered", "errors"]  # fmt: skip
PUBLISH_COLUMNS = list(PublishRate.model_fields)


def publish_frame(rates: list[PublishRate]) -> pd.DataFrame:
    """Rates as rows; a run document from before R3 (no `replicas`) reads as R1."""
    return pd.DataFrame([r.model_dump() for r in rates], columns=PUBLISH_COLUMNS)


def publish_rates(docs: list[RunDocument]) -> pd.DataFrame:
    """Every publish-rate measurement of every run, in a fixed order."""
    df = publish_frame([p for d in docs for p in d.publish_rates])
    return df.sort_values(["run_id", "replicas", "backend", "store", "mode", "round"], kind="stable").reset_index(
        drop=True
    )


def loss_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per setting: runs, and the counts by id summed over them."""
    part = rows[rows["experiment"] == EXPERIMENT]
    g = part.groupby(["replicas", "backend", "nats_provider", "phase"], sort=True)
    t = g[COUNTS].sum()
    t.insert(0, "runs", g.size())
    t.insert(1, "lost_per_run", g["lost"].apply(lambda s: " ".join(str(int(v)) for v in s)))
    return t.reset_index()


def publish_table(publish: pd.DataFrame) -> pd.DataFrame:
    """Median publish rate (min..max, n) per replicas, policy, store and mode."""
    g = publish.groupby(["replicas", "backend", "store", "mode"], sort=True)["rate"]
    return pd.DataFrame({"median_msg_s": g.median(), "min": g.min(), "max": g.max(), "n": g.count()}).reset_index()


def _ratios(publish: pd.DataFrame, vary: str, num: str, den: str, keep: str) -> pd.DataFrame:
    key = ["run_id", "round", "replicas", keep, "mode"]
    a = publish[publish[vary] == num].set_index(key)["rate"]
    b = publish[publish[vary] == den].set_index(key)["rate"]
    r = (a / b).dropna().rename("ratio").reset_index()
    g = r.groupby(["replicas", keep, "mode"], sort=True)["ratio"]
    out = pd.DataFrame({"median": g.median(), "min": g.min(), "max": g.max(), "n": g.count()}).reset_index()
    out.insert(0, "ratio", f"{num} / {den}")
    return out.rename(columns={keep: "at"})


def cost_table(publish: pd.DataFrame) -> pd.DataFrame:
    """sync_always / default at each store, and lazy FS / plain dir at each policy: per-round ratios."""
    if publish.empty:
        return pd.DataFrame(columns=["ratio", "replicas", "at", "mode", "median", "min", "max", "n"])
    return pd.concat(
        [
            _ratios(publish, "backend", "nats-sync", "nats", "store"),
            _ratios(publish, "store", "lazyfs", "plain", "backend"),
        ],
        ignore_index=True,
    )


def tables(rows: pd.DataFrame, docs: list[RunDocument]) -> dict[str, pd.DataFrame]:
    if not (rows["experiment"] == EXPERIMENT).any():
        return {}
    publish = publish_rates(docs)
    return {
        "power_loss": loss_table(rows),
        "publish_cost": publish_table(publish),
        "publish_ratios": cost_table(publish),
    }


def figure(rows: pd.DataFrame, docs: list[RunDocument]) -> Figure | None:
    part = rows[rows["experiment"] == EXPERIMENT]
    if part.empty:
        return None
    return plots.power_loss_figure(part, publish_rates(docs))
