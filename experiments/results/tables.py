"""Helpers of the summary tables each experiment module builds: medians over repetitions, counts summed."""

from __future__ import annotations

import pandas as pd


def median_table(df: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    """Median of `values` per group of `keys`, with the number of repetitions first."""
    g = df.groupby(keys, sort=True)
    out = g[values].median()
    out.insert(0, "repetitions", g.size())
    return out.reset_index()
