"""A batch's report from its raw run documents only: verdicts, results.csv, tables, figures, report.html.

Nothing here measures: every number is read from `runs/*.json` or is a
median / min / max / sum over them, and the output is written in a fixed
order without timestamps, so running the report again on the same raw files
gives the same tables and figures byte for byte.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from experiments.results import plots, power_loss, thesis, verdicts
from experiments.results.claims import Verdict
from experiments.results.registry import EXPERIMENTS
from experiments.results.schema import PLAN_FILE, ROW_COLUMNS, ResultRecord, RunDocument, planned_run_ids, read_runs

FLOAT_FORMAT = "%.6g"
GLOSSARY = "../../notebooks/GLOSSARY.md"  # from results/<batch>/report.html


@dataclass
class Report:
    batch_dir: Path
    rows: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, list[Path]] = field(default_factory=dict)
    html_path: Path | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    figure_captions: list[thesis.Numbered] = field(default_factory=list)
    table_captions: list[thesis.Numbered] = field(default_factory=list)


def load_rows(docs: list[RunDocument]) -> pd.DataFrame:
    """Every row of every run, in a fixed column and row order."""
    rows = [rec.row.model_dump() for doc in docs for rec in doc.results]
    df = pd.DataFrame(rows, columns=list(ROW_COLUMNS))
    return df.sort_values(["experiment", "run_id", "backend", "phase"], kind="stable").reset_index(drop=True)


def _records(docs: list[RunDocument], experiment: str) -> list[ResultRecord]:
    return [rec for doc in docs for rec in doc.results if rec.row.experiment == experiment]


def tables(
    df: pd.DataFrame, docs: list[RunDocument] | None = None, owners: dict[str, str] | None = None
) -> dict[str, pd.DataFrame]:
    """The summary tables of every registered experiment that has rows, in registry order.

    With `docs`, also the tables built from the records' series (latency by stage, CPU by process).
    `owners`, when given, is filled with each table's experiment.
    """
    out: dict[str, pd.DataFrame] = {}
    for exp in EXPERIMENTS.values():
        rows = df[df["experiment"] == exp.name]
        made: dict[str, pd.DataFrame] = {}
        if exp.tables is not None and not rows.empty:
            made.update(exp.tables(rows))
        if exp.record_tables is not None and docs is not None and not rows.empty:
            made.update(exp.record_tables(_records(docs, exp.name)))
        if exp.name == power_loss.EXPERIMENT and docs is not None:
            made.update(power_loss.tables(df, docs))
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


def figures(df: pd.DataFrame, docs: list[RunDocument], directory: Path) -> dict[str, list[Path]]:
    """Every registered experiment's figures (PNG, SVG, PDF; 16 cm wide) for the experiments that have rows."""
    return {name: paths for name, _, paths in _figures(df, docs, directory)}


def _figures(df: pd.DataFrame, docs: list[RunDocument], directory: Path) -> list[tuple[str, str, list[Path]]]:
    """(name, experiment, files) per figure, in registry order."""
    made: list[tuple[str, str, list[Path]]] = []
    for exp in EXPERIMENTS.values():
        rows = df[df["experiment"] == exp.name]
        if rows.empty:
            continue
        records = _records(docs, exp.name)
        drawn = [(spec.name, spec.draw(rows, records)) for spec in exp.figures]
        if exp.name == power_loss.EXPERIMENT:
            power = power_loss.figure(df, docs)  # needs the documents' publish rates, not only rows
            drawn += [("power_loss", power)] if power is not None else []
        for name, fig in drawn:
            thesis.size_for_page(fig)
            made.append((name, exp.name, plots.save(fig, directory, name)))
            plt.close(fig)
    return made


def headlines(report: Report) -> str:
    """One line per experiment: its title, its verdict counts, and the evidence of its first decided claim."""
    items = []
    for exp in EXPERIMENTS.values():
        mine = [v for v in report.verdicts if v.claim.experiment == exp.name]
        decided = [v for v in mine if v.outcome != "inconclusive"]
        if not mine or not (report.rows["experiment"] == exp.name).any():
            continue
        lead = decided[0] if decided else mine[0]
        items.append(
            f"<li><b>{html.escape(exp.title)}</b> ({html.escape(verdicts.summary(mine))}): "
            f"{html.escape(lead.finding.evidence)}</li>"
        )
    return f"<ul class='headlines'>{''.join(items)}</ul>"


def _html(batch: str, report: Report, env: pd.DataFrame, runs: pd.DataFrame, left_out: int = 0) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>queue lab: {html.escape(batch)}</title>",
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:0.85em;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px;"
        "text-align:right}th{background:#f3f3f3}img{max-width:100%}</style></head><body>",
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
    parts.append(verdicts.html(report.verdicts, GLOSSARY))
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


def build(batch_dir: str | Path) -> Report:
    """Read `runs/`, write results.csv, tables/*.csv, figures/*.{png,svg} and report.html."""
    batch_dir = Path(batch_dir)
    planned = planned_run_ids(batch_dir)
    docs = read_runs(batch_dir / "runs", only=planned)
    if not docs:
        raise FileNotFoundError(f"no run documents of the batch's plan in {batch_dir / 'runs'}")
    left_out = len(list((batch_dir / "runs").glob("*.json"))) - len(docs)
    df = load_rows(docs)
    df.to_csv(batch_dir / "results.csv", index=False, float_format=FLOAT_FORMAT)
    owners: dict[str, str] = {}
    report = Report(batch_dir, df, tables(df, docs, owners))
    report.verdicts = verdicts.of_docs(docs)
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
    made = _figures(df, docs, batch_dir / "figures")
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
