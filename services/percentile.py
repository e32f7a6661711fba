"""The one percentile definition of the project: nearest rank, no interpolation.

It lives at the bottom of the import graph so that the processor's `/stats`,
the load generator and the experiment tables all call the same function and
report only values that were really observed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def nearest_rank(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) of already sorted values: the ceil(q*n)-th smallest; nan when empty."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    return float(sorted_values[min(n - 1, max(0, math.ceil(q * n) - 1))])
