"""A batch's report from its raw run documents only: verdicts, results.csv, tables, figures, report.html.

Nothing here measures: every number is read from `runs/*.json` or is a
median / min / max / sum over them, and the output is written in a fixed
order without timestamps, so running the report again on the same raw files
gives the same tables and figures byte for byte.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from experiments.results import plots, thesis, verdicts
from experiments.results.claims import Claim, Verdict
from experiments.results.schema import PLAN_FILE, ROW_COLUMNS, RunDocument, planned_run_ids, read_runs

FLOAT_FORMAT = "%.6g"
GLOSSARY = "../../notebooks/GLOSSARY.md"  # from results/<batch>/report.html


class ReportEntry(Protocol):
    """One experiment as the report sees it (`experiments.lab.experiment.Experiment` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def claims(self) -> tuple[Claim, ...]: ...
    def report_tables(self, rows: pd.DataFrame, docs: Sequence[RunDocument]) -> dict[str, pd.DataFrame]: ...
    def report_figures(self, rows: pd.DataFrame, docs: Sequence[RunDocument]) -> Iterator[tuple[str, Figure]]: ...


@dataclass
class Report:
    batch_dir: Path
    rows: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, list[Path]] = field(default_factory=dict)
    html_path: Path | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    figure_captions: list[thesis.Numbered] = field(default_factory=list)
    titles: dict[str, str] = field(default_factory=dict)  # experiment name -> its title
    table_captions: list[thesis.Numbered] = field(default_factory=list)


def load_rows(docs: list[RunDocument]) -> pd.DataFrame:
    """Every row of every run, in a fixed column and row order."""
    rows = [rec.row.model_dump() for doc in docs for rec in doc.results]
    df = pd.DataFrame(rows, columns=list(ROW_COLUMNS))
    return df.sort_values(["experiment", "run_id", "backend", "phase"], kind="stable").reset_index(drop=True)


def tables(
    df: pd.DataFrame, docs: list[RunDocument], experiments: Iterable[ReportEntry], owners: dict[str, str] | None = None
) -> dict[str, pd.DataFrame]:
    """The summary tables of every experiment that has rows, in the order given.

    `owners`, when given, is filled with each table's experiment.
    """
    out: dict[str, pd.DataFrame] = {}
    for exp in experiments:
        made = exp.report_tables(df[df["experiment"] == exp.name], docs)
        out.update(made)
        if owners is not None:
            owners.update(dict.fromkeys(made, exp.name))
    return out


def environment_table(docs: list[RunDocument]) -> pd.DataFrame:
    keys = sorted({k for d in docs for k in d.environment})
    return pd.DataFrame(
        [{"key": k, "value": ", ".join(sorted({str(d.environment.get(k, "")) for d in docs}))} for k in keys]
    )


def runs_table(docs: list[RunDocument]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "run_id": d.run.run_id,
                "notebook": d.run.notebook,
                "repetition": d.run.repetition,
                "rows": len(d.results),
                "wall_time_s": d.run.wall_time_s,
                "started_at": d.run.started_at,
            }
            for d in docs
        ]
    )


def figures(
    df: pd.DataFrame, docs: list[RunDocument], directory: Path, experiments: Iterable[ReportEntry]
) -> dict[str, list[Path]]:
    """Every experiment's figures (PNG, SVG, PDF; 16 cm wide) for the experiments that have rows."""
    return {name: paths for name, _, paths in _figures(df, docs, directory, experiments)}


def _figures(
    df: pd.DataFrame, docs: list[RunDocument], directory: Path, experiments: Iterable[ReportEntry]
) -> list[tuple[str, str, list[Path]]]:
    """(name, experiment, files) per figure, in the order given."""
    made: list[tuple[str, str, list[Path]]] = []
    for exp in experiments:
        for name, fig in exp.report_figures(df[df["experiment"] == exp.name], docs):
            thesis.size_for_page(fig)
            made.append((name, exp.name, plots.save(fig, directory, name)))
            plt.close(fig)
    return made


def headlines(report: Report) -> str:
    """One line per experiment: its title, its verdict counts, and the evidence of its first decided claim."""
    items = []
    for name, title in report.titles.items():
        mine = [v for v in report.verdicts if v.claim.experiment == name]
        decided = [v for v in mine if v.outcome != "inconclusive"]
        if not mine or not (report.rows["experiment"] == name).any():
            continue
        lead = decided[0] if decided else mine[0]
        items.append(
            f"<li><b>{html.escape(title)}</b> ({html.escape(verdicts.summary(mine))}): "
            f"{html.escape(lead.finding.evidence)}</li>"
        )
    return f"<ul class='headlines'>{''.join(items)}</ul>"


def _html(batch: str, report: Report, env: pd.DataFrame, runs: pd.DataFrame, left_out: int = 0) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>queue lab: {html.escape(batch)}</title>",
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:0.85em;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px;"
        "text-align:right}th{background:#f3f3f3}img{max-width:100%}"
        "table.verdicts td{text-align:left;vertical-align:top}table.verdicts td:nth-child(6){min-width:12em}"
        "table.verdicts th{text-align:left}</style></head><body>",
        f"<h1>Memory queue vs NATS JetStream: batch <code>{html.escape(batch)}</code></h1>",
        f"<p>{len(runs)} notebook runs, {len(report.rows)} measured phases. Every number below comes from "
        "<code>runs/*.json</code> (medians over repetitions; counts summed); <code>results.csv</code> has every "
        "row. Latency: client = scheduled send to 2xx (open loop, no coordinated omission); end-to-end = stamped "
        "at ingest to processed by a worker. Lost = acknowledged (2xx) but never processed, by message id.</p>",
    ]
    if left_out:
        parts.append(
            f"<p>{left_out} run document(s) in <code>runs/</code> are of parameters the batch file no longer plans "
            f"(<code>{PLAN_FILE}</code>) and are left out.</p>"
        )
    parts.append("<h2>Verdicts</h2>")
    parts.append(verdicts.html(report.verdicts, GLOSSARY, report.rows))
    parts.append("<h2>Headlines</h2>")
    parts.append(headlines(report))
    parts.append(
        "<p>Methods: <code>methods.md</code>. Figures as PDF/SVG (16 cm wide) in <code>figures/</code>, tables as "
        "CSV and LaTeX in <code>tables/</code>, numbers and captions in <code>captions.json</code>.</p>"
    )
    parts.append("<h2>Tables</h2>")
    for cap in report.table_captions:
        table = report.tables[cap.name]
        parts.append(f"<h3>Table {cap.number}: {html.escape(cap.title)}</h3><p>{html.escape(cap.caption)}</p>")
        parts.append(table.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="n/a"))
    parts.append("<h2>Figures</h2>")
    for cap in report.figure_captions:
        name = cap.name
        png = next(p for p in report.figures[name] if p.suffix == ".png")
        data = base64.b64encode(png.read_bytes()).decode()
        parts.append(
            f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>"
            f"<figcaption><b>Figure {cap.number}.</b> {html.escape(cap.caption)} "
            f"(<code>figures/{html.escape(name)}.pdf</code>, <code>.svg</code>)</figcaption></figure>"
        )
    parts.append("<h2>Environment</h2>")
    parts.append(env.to_html(index=False))
    parts.append("<h2>Runs</h2>")
    parts.append(runs.to_html(index=False, float_format=lambda v: f"{v:.4g}"))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def build(batch_dir: str | Path, experiments: Iterable[ReportEntry]) -> Report:
    """Read `runs/`, write results.csv, tables/*.csv, figures/*.{png,svg} and report.html.

    `experiments`: what the lab knows (`experiments.lab.registry.build_report` passes them all).
    """
    experiments = list(experiments)
    batch_dir = Path(batch_dir)
    planned = planned_run_ids(batch_dir)
    docs = read_runs(batch_dir / "runs", only=planned)
    if not docs:
        raise FileNotFoundError(f"no run documents of the batch's plan in {batch_dir / 'runs'}")
    left_out = len(list((batch_dir / "runs").glob("*.json"))) - len(docs)
    df = load_rows(docs)
    df.to_csv(batch_dir / "results.csv", index=False, float_format=FLOAT_FORMAT)
    owners: dict[str, str] = {}
    report = Report(batch_dir, df, tables(df, docs, experiments, owners))
    report.verdicts = verdicts.of_docs(docs, [c for e in experiments for c in e.claims])
    report.titles = {e.name: e.title for e in experiments}
    (batch_dir / "tables").mkdir(exist_ok=True)
    for number, (name, table) in enumerate(report.tables.items(), start=1):
        table.to_csv(batch_dir / "tables" / f"{name}.csv", index=False, float_format=FLOAT_FORMAT)
        title = name.replace("_", " ").capitalize()
        exp = owners.get(name, "")
        cap = (
            f"{title}. " + (f"From {thesis.runs_phrase(docs, exp)}; " if exp else "") + thesis.environment_phrase(docs)
        )
        report.table_captions.append(thesis.Numbered(number, name, title, cap + "."))
        (batch_dir / "tables" / f"{name}.tex").write_text(thesis.booktabs(table, number, name, cap + "."))
    made = _figures(df, docs, batch_dir / "figures", experiments)
    report.figures = {name: paths for name, _, paths in made}
    for number, (name, exp, _) in enumerate(made, start=1):
        title, cap = thesis.caption(name, exp, docs)
        report.figure_captions.append(thesis.Numbered(number, name, title, cap))
    thesis.write_captions(batch_dir / "captions.json", report.figure_captions, report.table_captions)
    (batch_dir / "methods.md").write_text(thesis.methods(docs, batch_dir.name))
    env, runs = environment_table(docs), runs_table(docs)
    report.html_path = batch_dir / "report.html"
    report.html_path.write_text(_html(batch_dir.name, report, env, runs, left_out))
    return report
