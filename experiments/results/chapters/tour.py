"""00_tour's claims: switching the queue changes nothing a client sees."""

from __future__ import annotations

from experiments.results.chapters.common import TRANSPARENT
from experiments.results.claims import Claim, Evidence, Finding, decide, fmt, inconclusive

EXPERIMENT = "00_tour"


def _transparent(ev: Evidence) -> Finding:
    rows = ev.rows
    sent, acked, processed = int(rows["sent"].sum()), int(rows["acknowledged"].sum()), int(rows["processed"].sum())
    backends = sorted(set(rows["backend"]))
    text = f"{', '.join(backends)}: {fmt(acked)} of {fmt(sent)} sent acknowledged, {fmt(processed)} processed"
    if sent == 0:
        return inconclusive("nothing at stake: sent = 0", text, sent=sent)
    if len(backends) < 2:
        return inconclusive("one queue only: nothing to compare", text, sent=sent)
    ok = bool(((rows["acknowledged"] == rows["sent"]) & (rows["processed"] == rows["acknowledged"])).all())
    return decide(ok, text, sent=sent, acknowledged=acked, processed=processed)


CLAIMS = (
    Claim(
        "tour.transparent",
        EXPERIMENT,
        "Either queue acknowledges and processes every message of the tour's short phase: the client cannot tell "
        "which queue runs.",
        TRANSPARENT,
        _transparent,
        ("a service failed to start on one queue (see the run's logs)", "the phase ended before the drain"),
    ),
)
