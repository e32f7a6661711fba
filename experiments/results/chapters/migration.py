"""07_migration's claims: a planned switch under load loses nothing and refuses nothing; a naive one costs."""

from __future__ import annotations

from experiments.results.chapters.common import ZERO_DOWNTIME, fault_is
from experiments.results.claims import HYPOTHESIS, Claim, Evidence, Finding, decide, fmt, inconclusive

EXPERIMENT = "07_migration"


def _planned(ev: Evidence) -> Finding:
    planned = ev.rows[fault_is(ev.rows["fault"], "switch")]
    if planned.empty:
        return inconclusive("not run: no planned switch", "modes without planned")
    sent, acked = int(planned["sent"].sum()), int(planned["acknowledged"].sum())
    lost, errors = int(planned["lost"].sum()), int(planned["errors"].sum())
    text = f"planned: {fmt(acked)} of {fmt(sent)} acknowledged, lost {fmt(lost)}, errors {fmt(errors)}"
    if acked == 0:
        return inconclusive("nothing at stake: acknowledged = 0", text)
    return decide(lost == 0 and errors == 0 and acked == sent, text, lost=lost, errors=errors, sent=sent)


def _naive(ev: Evidence) -> Finding:
    naive = ev.rows[fault_is(ev.rows["fault"], "naive-switch")]
    if naive.empty:
        return inconclusive("not run: no naive switch", "modes without naive")
    cost = naive["lost"] + naive["errors"]
    text = ", ".join(f"{r.phase}: lost {fmt(r.lost)}, errors {fmt(r.errors)}" for r in naive.itertuples())
    return decide(bool((cost > 0).all()), text, lost=int(naive["lost"].sum()), errors=int(naive["errors"].sum()))


def _accounted(ev: Evidence) -> Finding:
    if not ev.records:
        return inconclusive("no records", "no series")
    off = [(r.row.phase, sum(r.series.status_counts.values()), r.row.sent) for r in ev.records
           if sum(r.series.status_counts.values()) != r.row.sent]  # fmt: skip
    text = f"{len(ev.records) - len(off)} of {len(ev.records)} phases: HTTP statuses add up to the messages sent"
    return decide(not off, text + ("" if not off else f"; off: {off}"), phases=len(ev.records))


CLAIMS = (
    Claim(
        "migration.planned-keeps",
        EXPERIMENT,
        "A planned switch (new processor beside the old, reroute, drain, stop) under load loses nothing and "
        "refuses nothing.",
        ZERO_DOWNTIME,
        _planned,
        ("ingest rerouted before the new processor was ready", "the old processor stopped before its drain ended"),
    ),
    Claim(
        "migration.naive-costs",
        EXPERIMENT,
        "A naive switch (stop, start on the other queue) loses or refuses messages under load.",
        HYPOTHESIS,
        _naive,
        ("no backlog at the switch and no request in flight (raise the rate or processing_ms)",),
    ),
    Claim(
        "migration.every-request-answered",
        EXPERIMENT,
        "Every message sent during a switch is accounted for by an HTTP status (or no answer), none forgotten.",
        HYPOTHESIS,
        _accounted,
        ("the load generator dropped requests it could not schedule",),
    ),
)
