"""Claims as data: what an experiment expects, where the expectation comes from, and a verdict from its run.

A claim is a statement an experiment tests (Jepsen's way: quote what a system
or a document says, run a checker, print a verdict). Its `check` reads only
the run's rows (one `ResultRow` each), records (with their series) and raw
publish rates, and answers one of three outcomes:

- holds: the run supports the statement, with the numbers that show it;
- contradicted: the run shows the opposite, with the numbers and the likely
  causes (what to look at first);
- inconclusive: the run cannot decide, and the guard that said so: nothing
  was at stake, too few samples for the percentile quoted, the point was
  client-bound, the fault did not bite, or the experiment did not run that
  setting.

Guards come first: a claim never "holds" on evidence that could not have
contradicted it. Every number a verdict states is read from the run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from experiments.results.schema import ResultRecord

Outcome = Literal["holds", "contradicted", "inconclusive"]
OUTCOMES: tuple[Outcome, ...] = ("holds", "contradicted", "inconclusive")
SourceKind = Literal["nats-docs", "kafka-docs", "spec", "jepsen", "hypothesis"]

# A percentile is only a percentile when at least this many samples lie at or above it:
# a p99.9 over 600 samples is the maximum, a p99 over 300 is the third-largest value.
MIN_TAIL_SAMPLES = 5

# Where the lab's expectations come from (quoted in the claims that use them).
NATS_JETSTREAM_DOCS = "https://docs.nats.io/nats-concepts/jetstream"
NATS_CONFIG_DOCS = "https://docs.nats.io/running-a-nats-service/configuration#jetstream"
NATS_PUBACK_DOCS = "https://docs.nats.io/using-nats/developer/develop_jetstream/model_deep_dive#acknowledgement-models"
NATS_CLUSTERING_DOCS = "https://docs.nats.io/running-a-nats-service/configuration/clustering/jetstream_clustering"
JEPSEN_NATS = "https://jepsen.io/analyses/nats-2.12.1"
SPEC = "SPEC-phase2.md"  # /work/shared/SPEC-phase2.md in the lab's design; the Go original's Phase 2 README


@dataclass(frozen=True)
class Source:
    """Where a claim comes from: a quote and a link, or this lab's own hypothesis."""

    kind: SourceKind
    quote: str
    link: str = ""

    def cite(self) -> str:
        if self.kind == "hypothesis":
            return "this lab's hypothesis"
        return f"“{self.quote}” ({self.link})"


HYPOTHESIS = Source("hypothesis", "this lab's hypothesis")


@dataclass(frozen=True)
class Evidence:
    """What a claim may read: one experiment's rows, records and raw publish rates, from the run documents."""

    rows: pd.DataFrame
    records: Sequence[ResultRecord] = ()
    publish: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True)
class Finding:
    """What a check found: the outcome, the evidence as a sentence with its numbers, and the guard that decided."""

    outcome: Outcome
    evidence: str
    numbers: dict[str, float] = field(default_factory=dict)
    guard: str = ""  # the guard that made it inconclusive ("" when the measurement decided)


def holds(evidence: str, **numbers: float) -> Finding:
    return Finding("holds", evidence, dict(numbers))


def contradicted(evidence: str, **numbers: float) -> Finding:
    return Finding("contradicted", evidence, dict(numbers))


def inconclusive(guard: str, evidence: str, **numbers: float) -> Finding:
    return Finding("inconclusive", evidence, dict(numbers), guard)


def decide(ok: bool, evidence: str, **numbers: float) -> Finding:
    """holds when `ok`, else contradicted, with the same evidence."""
    return holds(evidence, **numbers) if ok else contradicted(evidence, **numbers)


Check = Callable[[Evidence], Finding]


@dataclass(frozen=True)
class Claim:
    """One expectation of one experiment: id, statement, source, the check, and where to look when it fails."""

    id: str
    experiment: str
    statement: str
    source: Source
    check: Check
    causes: tuple[str, ...] = ()  # likely causes of a contradiction, most likely first

    def evaluate(self, rows: pd.DataFrame, records: Sequence[ResultRecord] = (),
                 publish: pd.DataFrame | None = None) -> Verdict:  # fmt: skip
        """The verdict on this experiment's rows (others are ignored); no rows: inconclusive, not run."""
        mine = rows[rows["experiment"] == self.experiment] if "experiment" in rows else rows.iloc[0:0]
        if mine.empty:
            finding = inconclusive("not run", f"no rows of {self.experiment} in this batch")
        else:
            recs = [r for r in records if r.row.experiment == self.experiment]
            pub = publish if publish is not None else pd.DataFrame()
            if not pub.empty and "experiment" in pub:
                pub = pub[pub["experiment"] == self.experiment]
            finding = self.check(Evidence(mine, recs, pub))
        return Verdict(self, finding)


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    finding: Finding

    @property
    def outcome(self) -> Outcome:
        return self.finding.outcome

    def causes(self) -> tuple[str, ...]:
        return self.claim.causes if self.outcome == "contradicted" else ()

    def as_row(self) -> dict[str, str]:
        return {
            "experiment": self.claim.experiment,
            "claim": self.claim.id,
            "verdict": self.outcome,
            "statement": self.claim.statement,
            "evidence": self.finding.evidence,
            "guard": self.finding.guard,
            "likely causes": "; ".join(self.causes()),
            "source": self.claim.source.cite(),
        }


def evaluate(claims: Iterable[Claim], rows: pd.DataFrame, records: Sequence[ResultRecord] = (),
             publish: pd.DataFrame | None = None) -> list[Verdict]:  # fmt: skip
    """Every claim's verdict, in the given order."""
    return [c.evaluate(rows, records, publish) for c in claims]


VERDICT_COLUMNS = ("experiment", "claim", "verdict", "statement", "evidence", "guard", "likely causes", "source")


def verdict_table(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    return pd.DataFrame([v.as_row() for v in verdicts], columns=list(VERDICT_COLUMNS))


def counts(verdicts: Sequence[Verdict]) -> dict[Outcome, int]:
    return {o: sum(v.outcome == o for v in verdicts) for o in OUTCOMES}


# --- guards: each answers a reason to say "inconclusive", or None when the evidence can decide ---


def too_few_samples(n: int, quantile: float, min_tail: int = MIN_TAIL_SAMPLES) -> str | None:
    """A percentile over `n` samples needs `min_tail` of them at or above it, else it is (nearly) the maximum."""
    if quantile >= 1.0:
        return None if n > 0 else "no samples"
    need = math.ceil(min_tail / (1.0 - quantile))
    if n < need:
        return f"too few samples: p{_pct(quantile)} over {n} samples (needs {need} for {min_tail} beyond it)"
    return None


def client_bound(rows: pd.DataFrame) -> str | None:
    """Rows whose load generator or machine was saturated measure the client, not the system."""
    if "client_bound" not in rows:
        return None
    flagged = rows["client_bound"].fillna(False).astype(bool)
    if flagged.any():
        return f"client-bound: {int(flagged.sum())} of {len(rows)} phases had the load generator or machine saturated"
    return None


def nothing_at_stake(at_stake: int, what: str) -> str | None:
    """Lost = 0 means nothing when nothing could have been lost."""
    return f"nothing at stake: {what} = 0" if at_stake <= 0 else None


def fault_did_not_bite(bit: bool, what: str) -> str | None:
    return None if bit else f"the fault did not bite: {what}"


def first_guard(*guards: str | None) -> str | None:
    return next((g for g in guards if g), None)


def _pct(q: float) -> str:
    return f"{q * 100:g}".replace(".", "")


def phase_samples(row: pd.Series) -> int:
    """Acknowledged messages of a phase: the client latency's sample count (and end to end's, where processed)."""
    return int(row["acknowledged"])


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a sentence: 3 significant digits, integers as plain digits ("n/a" for a missing one)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "n/a"
    if abs(v) >= 100 or (v.is_integer() and abs(v) >= 1):
        return f"{v:.0f}"
    return f"{v:.{digits}g}"
