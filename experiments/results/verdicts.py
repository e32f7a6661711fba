"""Verdicts of a batch or of one notebook run: every claim evaluated on the run documents, as text, HTML or a table.

`diplom check results/<batch>` prints `text(...)` and exits 1 when any claim
is contradicted; the report opens with `html(...)`; a notebook shows
`frame(...)` for its own claims.
"""

from __future__ import annotations

import html as _html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from experiments.results.chapters import CLAIMS, all_claims
from experiments.results.claims import Claim, Verdict, counts, evaluate, verdict_table
from experiments.results.schema import (
    ROW_COLUMNS,
    PublishRate,
    ResultRecord,
    RunDocument,
    planned_run_ids,
    read_runs,
)

COLOURS = {"holds": "#d9f2d9", "contradicted": "#f8d0d0", "inconclusive": "#fff2cc"}
MARKS = {"holds": "✔ holds", "contradicted": "✘ CONTRADICTED", "inconclusive": "? inconclusive"}


def publish_frame(rates: Sequence[PublishRate]) -> pd.DataFrame:
    """Raw publish-rate measurements (06's cost of fsync) as rows."""
    return pd.DataFrame([r.model_dump() for r in rates], columns=list(PublishRate.model_fields))


def rows_of(docs: Sequence[RunDocument]) -> pd.DataFrame:
    return pd.DataFrame([rec.row.model_dump() for d in docs for rec in d.results], columns=list(ROW_COLUMNS))


def of_docs(docs: Sequence[RunDocument], claims: Sequence[Claim] | None = None) -> list[Verdict]:
    """Every claim (or `claims`) on these run documents."""
    records: list[ResultRecord] = [rec for d in docs for rec in d.results]
    publish = publish_frame([p for d in docs for p in d.publish_rates])
    return evaluate(all_claims() if claims is None else claims, rows_of(docs), records, publish)


def batch_docs(batch_dir: str | Path) -> list[RunDocument]:
    """A batch's planned run documents (`runs/*.json`)."""
    batch_dir = Path(batch_dir)
    docs = read_runs(batch_dir / "runs", only=planned_run_ids(batch_dir))
    if not docs:
        raise FileNotFoundError(f"no run documents in {batch_dir / 'runs'}")
    return docs


def of_batch(batch_dir: str | Path) -> list[Verdict]:
    """Every claim on a batch's planned run documents (`runs/*.json`)."""
    return of_docs(batch_docs(batch_dir))


def of_run(experiment: str, records: Sequence[ResultRecord], publish: pd.DataFrame | None = None) -> list[Verdict]:
    """One notebook's claims on the records it just measured (what its verdict cell shows)."""
    rows = pd.DataFrame([r.row.model_dump() for r in records], columns=list(ROW_COLUMNS))
    return evaluate(CLAIMS.get(experiment, ()), rows, records, publish)


def summary(verdicts: Sequence[Verdict]) -> str:
    c = counts(verdicts)
    return (f"{len(verdicts)} claims: {c['holds']} hold, {c['contradicted']} contradicted, "
            f"{c['inconclusive']} inconclusive")  # fmt: skip


def text(verdicts: Sequence[Verdict], rows: pd.DataFrame | None = None) -> str:
    """Plain text for a terminal: one block per claim, contradictions with their likely causes."""
    lines = [summary(verdicts), ""]
    ran = queues_run(rows) if rows is not None else {}
    for v in verdicts:
        queues = f"; queues run: {ran.get(v.claim.experiment, 'not run')}" if rows is not None else ""
        lines.append(f"{MARKS[v.outcome]:<16} {v.claim.id}  ({v.claim.experiment}{queues})")
        lines.append(f"    {v.claim.statement}")
        lines.append(f"    evidence: {v.finding.evidence}")
        if v.finding.guard:
            lines.append(f"    guard: {v.finding.guard}")
        for cause in v.causes():
            lines.append(f"    likely cause: {cause}")
        lines.append(f"    source: {v.claim.source.cite()}")
    return "\n".join(lines)


# The verdicts as data in a notebook's saved output (beside the HTML table): what `diplom grade` reads.
VERDICTS_MIME = "application/vnd.queue-lab.verdicts+json"


def payload(verdicts: Sequence[Verdict]) -> list[dict[str, str]]:
    """Each verdict as plain data: claim, outcome, evidence (with its numbers) and guard."""
    return [{"claim": v.claim.id, "verdict": v.outcome, "evidence": v.finding.evidence, "guard": v.finding.guard}
            for v in verdicts]  # fmt: skip


def frame(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    return verdict_table(verdicts)


def styled(verdicts: Sequence[Verdict]) -> object:
    """The verdict table coloured by outcome (a pandas Styler: what a notebook displays)."""
    df = frame(verdicts).drop(columns=["experiment", "source"])
    return df.style.apply(lambda col: [f"background-color: {COLOURS[v]}" for v in col], subset=["verdict"]).hide(
        axis="index"
    )


def queues_run(rows: pd.DataFrame) -> dict[str, str]:
    """Per experiment, the backends (queues) its rows ran, in a fixed order: "memory, nats, kafka, ..."."""
    if rows.empty or "backend" not in rows:
        return {}
    return {str(exp): ", ".join(sorted(map(str, part["backend"].unique()), key=_backend_order))
            for exp, part in rows.groupby("experiment", sort=False)}  # fmt: skip


def _backend_order(backend: str) -> tuple[int, str]:
    family = ("memory", "nats", "kafka")
    return next((i for i, f in enumerate(family) if backend.startswith(f)), len(family)), backend


def html(verdicts: Sequence[Verdict], glossary: str = "", rows: pd.DataFrame | None = None) -> str:
    """One table of every claim's verdict across chapters (the report's first section): red rows first, then
    in chapter order; each with its evidence, the guard that decided an inconclusive one, and the queues
    (backends) its chapter ran in this batch, whichever they were (memory, nats*, kafka*, ...)."""
    order = {"contradicted": 0, "inconclusive": 1, "holds": 2}
    ran = queues_run(rows) if rows is not None else {}
    out = []
    for v in sorted(verdicts, key=lambda v: order[v.outcome]):
        causes = "".join(f"<li>{_html.escape(c)}</li>" for c in v.causes())
        link = v.claim.source.link
        src = _html.escape(v.claim.source.cite())
        if link.startswith("http"):
            src = f"<a href='{_html.escape(link)}'>{src}</a>"
        out.append(
            f"<tr style='background:{COLOURS[v.outcome]}'><td><b>{MARKS[v.outcome]}</b></td>"
            f"<td>{_html.escape(v.claim.experiment)}</td>"
            f"<td><code>{_html.escape(v.claim.id)}</code></td><td>{_html.escape(v.claim.statement)}"
            f"<br><small>{src}</small></td><td>{_html.escape(v.finding.evidence)}"
            + (f"<ul>{causes}</ul>" if causes else "")
            + f"</td><td><em>{_html.escape(v.finding.guard)}</em></td>"
            f"<td>{_html.escape(ran.get(v.claim.experiment, 'not run'))}</td></tr>"
        )
    head = ("<tr><th>verdict</th><th>chapter</th><th>claim</th><th>statement and source</th>"
            "<th>evidence (this run)</th><th>guard</th><th>queues run</th></tr>")  # fmt: skip
    note = f" Words: <a href='{_html.escape(glossary)}'>glossary</a>." if glossary else ""
    return f"<p><b>{_html.escape(summary(verdicts))}.</b>{note}</p><table class='verdicts'>{head}{''.join(out)}</table>"


def check_main(argv: list[str] | None = None) -> int:
    """`diplom check results/<batch>`: print every verdict; exit 1 if any claim is contradicted, 2 if no runs."""
    import argparse

    parser = argparse.ArgumentParser(prog="diplom check", description=check_main.__doc__)
    parser.add_argument("batch_dir")
    args = parser.parse_args(argv)
    try:
        docs = batch_docs(args.batch_dir)
    except FileNotFoundError as e:
        print(f"diplom check: {e}")
        return 2
    verdicts = of_docs(docs)
    print(text(verdicts, rows_of(docs)))
    return 1 if counts(verdicts)["contradicted"] else 0
