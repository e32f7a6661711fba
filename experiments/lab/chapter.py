"""What a notebook shows around its run, so the notebook stays thin: claims under test, the planned cost,
verdicts, an interpretation paragraph and figure captions, all rendered from this run's records.

Nothing here holds a measured number: every figure in the text comes from
`ctx.records` (the rows the run just measured) or the environment record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from experiments.lab.context import RunContext
from experiments.results import thesis, verdicts
from experiments.results.chapters import CLAIMS
from experiments.results.claims import Verdict
from experiments.results.schema import ResultRecord
from experiments.runtime.environment import environment

GLOSSARY = "GLOSSARY.md"  # beside the notebooks


@dataclass(frozen=True)
class Markdown:
    """Text Jupyter renders as Markdown (and papermill keeps in the executed notebook)."""

    text: str

    def _repr_markdown_(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class HTML:
    text: str

    def _repr_html_(self) -> str:
        return self.text


def claims(experiment: str) -> Any:
    """The claims this chapter tests: id, statement and where the claim comes from (a table, never truncated)."""
    return (
        pd.DataFrame(
            [{"claim": c.id, "statement": c.statement, "source": c.source.cite()} for c in CLAIMS.get(experiment, ())]
        )
        .style.hide(axis="index")
        .set_table_styles([{"selector": "td", "props": [("text-align", "left")]}])
    )


def planned(phases: int, load_s: float, deployments: int) -> Markdown:
    """What the parameters cost before any start-up: phases, seconds of load, fresh deployments."""
    return Markdown(
        f"**Planned:** {phases} measured phase(s), {load_s:g} s of load in total, {deployments} fresh "
        "deployment(s) (each starts the services, and NATS where used, in a few seconds; a three-node cluster "
        "takes longer). The batch file's quick profile (`experiments/batches/default.yaml`, `quick:`) shows "
        "the short values CI uses; shorter phases give fewer samples, and the verdicts say *inconclusive* "
        "when a percentile has too few samples behind it."
    )


def run_verdicts(ctx: RunContext) -> list[Verdict]:
    publish = verdicts.publish_frame(ctx.publish_rates) if ctx.publish_rates else None
    return verdicts.of_run(ctx.experiment, ctx.records, publish)


@dataclass(frozen=True)
class VerdictDisplay:
    """The verdict table as Jupyter shows it, plus the same verdicts as data in the saved output.

    The data (`VERDICTS_MIME`) names the run and its run document, so a grader
    (`diplom grade`) can recompute the verdicts from that document and tell a
    table this run computed from one typed in.
    """

    html: str
    data: dict[str, Any]

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/html": self.html, verdicts.VERDICTS_MIME: self.data,
                "text/plain": f"{self.data['summary']} (run {self.data['run_id']})"}  # fmt: skip


def verdict_table(ctx: RunContext) -> Any:
    """This run's verdicts, coloured: holds (green), contradicted (red, with likely causes), inconclusive (yellow)."""
    found = run_verdicts(ctx)
    if not found:
        return Markdown("This chapter states no claims.")
    styler: Any = verdicts.styled(found)
    data = {
        "experiment": ctx.experiment,
        "run_id": ctx.run_id,
        "run_document": str((ctx.results_dir / "runs" / f"{ctx.run_id}.json").resolve()),
        "summary": verdicts.summary(found),
        "verdicts": verdicts.payload(found),
    }
    return VerdictDisplay(styler.to_html(), data)


def _sum(records: Sequence[ResultRecord], field: str) -> int:
    return sum(int(getattr(r.row, field)) for r in records)


def interpretation(ctx: RunContext) -> Markdown:
    """A paragraph on what this run showed, from its verdicts and counts (never typed in)."""
    found = run_verdicts(ctx)
    recs = ctx.records
    wall = sum(r.row.wall_time_s for r in recs)
    lines = [
        f"**What this run showed.** {len(recs)} phase(s) sent {_sum(recs, 'sent')} messages, "
        f"{_sum(recs, 'acknowledged')} acknowledged, {_sum(recs, 'processed')} processed, {_sum(recs, 'lost')} "
        f"lost, {_sum(recs, 'duplicated')} duplicated (phases took {wall:.0f} s including drains). "
        f"{verdicts.summary(found)}."
    ]
    for v in found:
        if v.outcome == "holds":
            lines.append(f"As claimed (`{v.claim.id}`): {v.finding.evidence}.")
        elif v.outcome == "contradicted":
            causes = "; ".join(v.causes()[:2])
            lines.append(f"**Contrary to `{v.claim.id}`**: {v.finding.evidence}. Look first at: {causes}.")
        else:
            lines.append(f"This run cannot decide `{v.claim.id}` ({v.finding.guard}): {v.finding.evidence}.")
    bound = [r for r in recs if r.row.client_bound]
    if bound:
        lines.append(
            f"{len(bound)} of {len(recs)} phase(s) were client-bound: their rates and tails measure the load "
            f"generator or the machine (see the [glossary]({GLOSSARY}))."
        )
    return Markdown(" ".join(lines))


def caption(ctx: RunContext, *names: str) -> Markdown:
    """The captions of the figure(s) above: what each plots (fixed), then what this run measured it from."""
    env = environment()
    reps = {r.row.repetition for r in ctx.records}
    providers = sorted({r.row.broker_provider for r in ctx.records} - {"none"}) or ["none"]
    source = (
        f"From {len(ctx.records)} phase(s) of this run ({len(reps)} repetition(s)); {env['cpu_count']} CPUs "
        f"({env['cpu_model']}), Python {env['python']}, nats-server {env['nats_server']} ({', '.join(providers)})."
    )
    parts = []
    for name in names:
        title, what = thesis.FIGURE_TEXT.get(name, (name, name.replace("_", " ")))
        parts.append(f"*{title}*: {what}.")
    return Markdown(("Figures above: " if len(names) > 1 else "Figure above: ") + " ".join(parts) + " " + source)


def diagram(session: Any) -> HTML:
    """The stack as it runs now, with the ports this run picked (free ports, not the spec's 8080-8082)."""
    stack = session.stack
    nats = f"NATS {session.nats.url}" if getattr(session, "nats", None) is not None else "memory queue"
    text = (
        f"client ──HTTP──▶ gateway {stack.gateway.url} ──HTTP──▶ ingest {stack.ingest.url} ──HTTP──▶ "
        f"processor {stack.processor_url}\n"
        f"                 auth, size limits                  validate, stamp id and created_at    "
        f"publish ─▶ {nats}; worker pool ◀─ fetch, process, record, ack"
    )
    return HTML(f"<pre>{text}</pre>")


def duration(seconds: float) -> str:
    """`181 µs`, `12.3 ms`, `4.5 s`: a duration for a reader (the µs sign, not an escape)."""
    if math.isnan(seconds):
        return "n/a"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.1f} s"
