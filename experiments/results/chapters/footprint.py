"""08_footprint's claims: where each queue keeps its backlog; a full memory queue refuses, never drops."""

from __future__ import annotations

import pandas as pd

from experiments.results.chapters.common import KAFKA_PAGECACHE, LOSS_CAUSES, no_loss
from experiments.results.claims import HYPOTHESIS, SPEC, Claim, Evidence, Finding, Source, decide, fmt, inconclusive

EXPERIMENT = "08_footprint"
MIB = 1024 * 1024
DISK_SHARE = 0.9  # JetStream's store holds at least this share of the payload bytes held
RSS_SHARE = 0.5  # the memory queue's processor grows by at least this share of them
QUEUE_SIZE = Source("spec", "QUEUE_SIZE | 1000 | Buffer size (memory queue only)", SPEC)


def _grow(rows: pd.DataFrame, backend: str, column: str, share: float, roomy: bool) -> Finding:
    lines, worst = [], float("inf")
    part = rows[rows["backend"] == backend]
    if backend == "memory":
        part = part[part["queue_size"] > part["sent"].max()] if roomy else part
    for (payload,), g in part.groupby(["payload_bytes"]):
        g = g.sort_values("sent")
        empty, full = g.iloc[0], g.iloc[-1]
        volume = full["backlog"] * payload / MIB
        grew = full[column] - (empty[column] if column == "processor_rss_mib" else 0.0)
        if volume > 0:
            worst = min(worst, grew / volume)
        lines.append(f"{fmt(payload)} B x {fmt(full['backlog'])} held = {fmt(volume)} MiB: {column} +{fmt(grew)}")
    if not lines:
        return inconclusive("not run", f"no {backend} deployment with room for its backlog")
    if worst == float("inf"):
        return inconclusive("nothing at stake: no backlog held", "; ".join(lines))
    return decide(worst >= share, "; ".join(lines) + f" (worst share {fmt(worst)})", worst_share=worst)


def _refuses(ev: Evidence) -> Finding:
    rows = ev.rows[(ev.rows["backend"] == "memory") & (ev.rows["queue_size"] < ev.rows["sent"])]
    if rows.empty:
        return inconclusive("the fault did not bite: no memory queue was offered more than its QUEUE_SIZE",
                            "no full memory queue")  # fmt: skip
    ok = (
        (rows["backlog"] <= rows["queue_size"])
        & (rows["rejected"] > 0)
        & (rows["acknowledged"] + rows["rejected"] == rows["sent"])
    )
    text = ", ".join(f"{fmt(r.sent)} sent to QUEUE_SIZE {fmt(r.queue_size)}: {fmt(r.acknowledged)} held, "
                     f"{fmt(r.rejected)} refused" for r in rows.itertuples())  # fmt: skip
    return decide(bool(ok.all()), text, refused=int(rows["rejected"].sum()))


CLAIMS = (
    Claim(
        "footprint.no-loss",
        EXPERIMENT,
        "Holding a backlog loses nothing acknowledged.",
        HYPOTHESIS,
        lambda ev: no_loss(ev.rows, "every queue"),
        LOSS_CAUSES,
    ),
    Claim(
        "footprint.nats-on-disk",
        EXPERIMENT,
        f"JetStream keeps its backlog on disk: the store holds at least {DISK_SHARE:.0%} of the payload bytes held.",
        HYPOTHESIS,
        lambda ev: _grow(ev.rows, "nats", "store_mib", DISK_SHARE, True),
        ("the store size was read from the wrong directory", "the stream was drained before the sample"),
    ),
    Claim(
        "footprint.kafka-on-disk",
        EXPERIMENT,
        f"Kafka keeps its backlog in its log on disk, not in the JVM's heap: the log dir holds at least "
        f"{DISK_SHARE:.0%} of the payload bytes held.",
        KAFKA_PAGECACHE,
        lambda ev: _grow(ev.rows, "kafka", "store_mib", DISK_SHARE, True),
        ("the log dir's size was read from the wrong directory", "the topic was consumed before the sample"),
    ),
    Claim(
        "footprint.memory-in-rss",
        EXPERIMENT,
        f"The memory queue keeps its backlog in the processor's RSS: it grows by at least {RSS_SHARE:.0%} of the "
        "payload bytes held.",
        HYPOTHESIS,
        lambda ev: _grow(ev.rows, "memory", "processor_rss_mib", RSS_SHARE, True),
        ("the RSS was read from the wrong pid (a granian master, not its worker)",),
    ),
    Claim(
        "footprint.full-queue-refuses",
        EXPERIMENT,
        "A full memory queue refuses (429) what exceeds QUEUE_SIZE; it never drops what it acknowledged.",
        QUEUE_SIZE,
        _refuses,
        ("the processor answered 2xx for a message the full queue dropped",),
    ),
)
