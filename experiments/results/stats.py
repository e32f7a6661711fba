"""Percentiles and spreads, computed one way for every table and plot.

Nearest-rank percentiles (`services.percentile`, the one definition): every reported figure is a value
that was really observed, and p50 <= p90 <= p99 <= p99.9 <= max holds by
construction, which the batch checks assert.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from services.percentile import nearest_rank

__all__ = ["PERCENTILES", "QUANTILE_POINTS", "nearest_rank", "percentiles", "quantile_curve", "spread"]

PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p999", 0.999),
    ("max", 1.0),
)
QUANTILE_POINTS = 101  # stored per row for CDF plots: q = 0.00, 0.01, ..., 1.00


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, p999, max of `values` (nan for each when empty)."""
    ordered = sorted(values)
    return {name: nearest_rank(ordered, q) for name, q in PERCENTILES}


def quantile_curve(values: Sequence[float], points: int = QUANTILE_POINTS) -> list[float]:
    """Values at evenly spaced quantiles 0..1: enough to draw a CDF without storing every sample."""
    ordered = sorted(values)
    if not ordered:
        return []
    return [nearest_rank(ordered, i / (points - 1)) if i else float(ordered[0]) for i in range(points)]


def spread(values: Sequence[float]) -> dict[str, float]:
    """min, median, max and (max - min) / median of repeated measurements."""
    finite = sorted(v for v in values if not math.isnan(v))
    if not finite:
        return {"n": 0, "min": math.nan, "median": math.nan, "max": math.nan, "rel_spread": math.nan}
    mid = len(finite) // 2
    median = finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2
    rel = (finite[-1] - finite[0]) / median if median else math.nan
    return {"n": len(finite), "min": finite[0], "median": median, "max": finite[-1], "rel_spread": rel}
