"""04_scaling's claims: processor instances on one durable consumer share the work; more workers, more throughput."""

from __future__ import annotations

import pandas as pd

from experiments.results.chapters.common import LOSS_CAUSES, SCALES, no_loss
from experiments.results.claims import HYPOTHESIS, Claim, Finding, client_bound, decide, fmt, inconclusive

EXPERIMENT = "04_scaling"
SCALE_GAIN = 1.5  # twice the instances (or workers) give at least this much more processed throughput


def _gain(rows: pd.DataFrame, axis: str, other: str) -> Finding:
    lines, worst, compared = [], float("inf"), 0
    for (backend, fixed), part in rows.groupby(["backend", other]):
        rates = part.groupby(axis)["processed_rate"].median().sort_index()
        if len(rates) < 2:
            continue
        lo, hi = rates.index[0], rates.index[-1]
        gain = rates.iloc[-1] / rates.iloc[0] if rates.iloc[0] else float("nan")
        need = min(SCALE_GAIN, hi / lo)
        worst = min(worst, gain / need)
        compared += 1
        lines.append(f"{backend} ({other}={fmt(fixed)}): {axis} {fmt(lo)} -> {fmt(hi)}: "
                     f"{fmt(rates.iloc[0])} -> {fmt(rates.iloc[-1])} msg/s (x{fmt(gain)})")  # fmt: skip
    if not compared:
        return inconclusive(f"not run: one value of {axis} only", f"{axis} did not vary")
    text = "; ".join(lines)
    guard = client_bound(rows)
    if guard:
        return inconclusive(guard, text)
    return decide(worst >= 1.0, text, worst_gain_over_needed=worst)


CLAIMS = (
    Claim(
        "scaling.no-loss",
        EXPERIMENT,
        "Scaling out loses nothing acknowledged.",
        HYPOTHESIS,
        lambda ev: no_loss(ev.rows, "every setup"),
        LOSS_CAUSES,
    ),
    Claim(
        "scaling.instances-share-load",
        EXPERIMENT,
        f"Processor instances sharing one durable consumer raise the processed throughput at least {SCALE_GAIN:g}x "
        "from the fewest to the most instances.",
        SCALES,
        lambda ev: _gain(ev.rows, "processors", "workers"),
        (
            "the offered rate was capped below capacity (max_rate)",
            "the instances did not share the consumer",
            "the machine's 2 cores were the limit, not the workers",
        ),
    ),
    Claim(
        "scaling.workers-scale",
        EXPERIMENT,
        f"More workers per processor raise the processed throughput at least {SCALE_GAIN:g}x from the fewest to "
        "the most, while the work is simulated waiting.",
        HYPOTHESIS,
        lambda ev: _gain(ev.rows, "workers", "processors"),
        ("the fetch batch is smaller than the worker count", "the offered rate was capped (max_rate)"),
    ),
)
