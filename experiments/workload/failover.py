"""What a client sees of a failover: when publishes failed, when they came back, and who led.

One cluster fault runs in a thread beside the load (the one fault runner,
`faults.runner`); from the load's records and the fault's report follow the failover timeline (per
`BIN_S`: publishes ok, failed, client latency) and the time to recover: from
the fault's start to the first acknowledged publish after the first refused
one (0 when nothing was refused: the clients never saw the fault).
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.workload.load import RequestRecord
from services.percentile import nearest_rank

BIN_S = 0.1  # the failover timeline's resolution


def recovery_s(records: list[RequestRecord], fault_start: float) -> float:
    """Seconds from `fault_start` to the first 2xx answer after the first refusal (0 if none was refused)."""
    after = [r for r in records if r.scheduled >= fault_start]
    failed = [r.scheduled for r in after if not 200 <= r.status < 300]
    if not failed:
        return 0.0
    first_fail = min(failed)
    answers = [r.scheduled + r.latency for r in after if 200 <= r.status < 300 and r.scheduled >= first_fail]
    if not answers:
        return float("nan")  # never recovered within the load
    return min(answers) - fault_start


@dataclass(frozen=True)
class FailoverTimeline:
    """Per bin from the load's start: publishes answered 2xx, refused, and client latency of the 2xx ones."""

    t_s: list[float]
    ok: list[int]
    failed: list[int]
    p50_ms: list[float | None]
    max_ms: list[float | None]


def failover_timeline(records: list[RequestRecord], t0: float, bin_s: float = BIN_S) -> FailoverTimeline:
    """Bins by scheduled time; a refused request counts where it was due, as the client saw it."""
    if not records:
        return FailoverTimeline([], [], [], [], [])
    n = int((max(r.scheduled for r in records) - t0) / bin_s) + 1
    ok, failed = [0] * n, [0] * n
    lat: list[list[float]] = [[] for _ in range(n)]
    for r in records:
        i = min(n - 1, max(0, int((r.scheduled - t0) / bin_s)))
        if 200 <= r.status < 300:
            ok[i] += 1
            lat[i].append(r.latency * 1000)
        else:
            failed[i] += 1
    p50 = [round(nearest_rank(sorted(v), 0.5), 3) if v else None for v in lat]
    top = [round(max(v), 3) if v else None for v in lat]
    return FailoverTimeline([round(i * bin_s, 3) for i in range(n)], ok, failed, p50, top)
