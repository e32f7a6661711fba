"""Each experiment's claims (and, with them, what its chapter renders), keyed by the experiment's name.

One module per experiment; `CLAIMS` is the only list. The report, the
notebooks, `diplom check` and the tests all read it, so each expectation
lives in one place.
"""

from __future__ import annotations

from experiments.results.chapters import (
    cluster,
    durability,
    footprint,
    latency,
    migration,
    power_loss,
    scaling,
    throughput,
    tour,
)
from experiments.results.claims import Claim

CLAIMS: dict[str, tuple[Claim, ...]] = {
    m.EXPERIMENT: m.CLAIMS
    for m in (tour, latency, throughput, durability, scaling, cluster, power_loss, migration, footprint)
}


def all_claims() -> list[Claim]:
    return [c for claims in CLAIMS.values() for c in claims]


def claim(claim_id: str) -> Claim:
    for c in all_claims():
        if c.id == claim_id:
            return c
    raise KeyError(f"unknown claim {claim_id!r}; known: {', '.join(c.id for c in all_claims())}")
