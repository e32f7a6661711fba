"""04_scaling's claims: processor instances on one durable consumer share the work; more workers, more throughput.

For Kafka, a classic consumer group shares partitions, not messages: the
instance claim reads only the setups with at least as many partitions as
processors, and its own claim checks that the processors beyond the
partition count processed nothing.
"""

from __future__ import annotations

import pandas as pd

from experiments.results.chapters.common import LOSS_CAUSES, SCALES, no_loss
from experiments.results.claims import (
    HYPOTHESIS,
    Claim,
    Evidence,
    Finding,
    Source,
    client_bound,
    decide,
    fmt,
    inconclusive,
)

EXPERIMENT = "04_scaling"
SCALE_GAIN = 1.5  # twice the instances (or workers) give at least this much more processed throughput
KAFKA_CONSUMERS_DOCS = "https://kafka.apache.org/27/documentation.html#kafka_mq"
PARTITION_PER_CONSUMER = Source(
    "kafka-docs",
    "This is achieved by assigning the partitions in the topic to the consumers in the consumer group so that each "
    "partition is consumed by exactly one consumer in the group. [...] Note however that there cannot be more "
    "consumer instances in a consumer group than partitions.",
    KAFKA_CONSUMERS_DOCS,
)


def _enough_partitions(rows: pd.DataFrame) -> pd.DataFrame:
    """Setups where every processor can own work: all non-Kafka ones, Kafka ones with partitions >= processors."""
    if "partitions" not in rows:
        return rows
    return rows[rows["partitions"].isna() | (rows["partitions"] >= rows["processors"])]


def _idle_beyond_partitions(ev: Evidence) -> Finding:
    """Kafka setups: processors with no message processed, against max(0, processors - partitions)."""
    checked, wrong, lines = 0, 0, []
    for rec in ev.records:
        r, by = rec.row, rec.series.processed_by
        if r.partitions is None or not by or r.processed == 0:
            continue
        idle = sum(1 for v in by.values() if v == 0)
        expected = max(0, r.processors - r.partitions)
        checked += 1
        wrong += idle != expected
        split = " / ".join(str(by[k]) for k in sorted(by))
        lines.append(f"{r.backend} {r.partitions} partition(s), {r.processors} processors, {r.workers} workers: "
                     f"processed {split} (idle {idle}, expected {expected})")  # fmt: skip
    if not checked:
        return inconclusive("not run: no Kafka setup with processed messages per processor", "no Kafka rows")
    return decide(wrong == 0, "; ".join(lines), setups=checked, mismatched=wrong)


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
        lambda ev: _gain(_enough_partitions(ev.rows), "processors", "workers"),
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
    Claim(
        "scaling.kafka-partitions-bound",
        EXPERIMENT,
        "In a Kafka consumer group, processors beyond the topic's partition count process nothing; up to it, each "
        "processes its share.",
        PARTITION_PER_CONSUMER,
        _idle_beyond_partitions,
        (
            "a rebalance during the phase moved a partition between processors",
            "the backend uses a share group, not a classic consumer group",
        ),
    ),
)
