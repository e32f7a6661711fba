"""A batch's report from its raw run documents only: results.csv, tables, figures, report.html.

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
from matplotlib.figure import Figure

from experiments.results import plots
from experiments.results.schema import ROW_COLUMNS, ResultRecord, RunDocument, read_runs
from experiments.results.stats import spread

FLOAT_FORMAT = "%.6g"
EXPERIMENT_TITLES = {
    "00_tour": "Tour",
    "01_latency": "Latency at fixed offered rates",
    "02_throughput": "Throughput: saturation sweep",
    "03_durability": "Durability across faults",
    "04_scaling": "Scaling: workers and processor instances",
}


@dataclass
class Report:
    batch_dir: Path
    rows: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, list[Path]] = field(default_factory=dict)
    html_path: Path | None = None


def load_rows(docs: list[RunDocument]) -> pd.DataFrame:
    """Every row of every run, in a fixed column and row order."""
    rows = [rec.row.model_dump() for doc in docs for rec in doc.results]
    df = pd.DataFrame(rows, columns=list(ROW_COLUMNS))
    return df.sort_values(["experiment", "run_id", "backend", "phase"], kind="stable").reset_index(drop=True)


def _records(docs: list[RunDocument], experiment: str) -> list[ResultRecord]:
    return [rec for doc in docs for rec in doc.results if rec.row.experiment == experiment]


def _median_table(df: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    g = df.groupby(keys, sort=True)
    out = g[values].median()
    out.insert(0, "repetitions", g.size())
    return out.reset_index()


def tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The summary tables (medians over repetitions, sums of counts)."""
    out: dict[str, pd.DataFrame] = {}
    lat = df[df["experiment"] == "01_latency"]
    if not lat.empty:
        out["latency"] = _median_table(
            lat,
            ["backend", "payload_bytes", "offered_rate"],
            ["achieved_rate", "client_p50_ms", "client_p99_ms", "e2e_p50_ms", "e2e_p90_ms", "e2e_p99_ms",
             "e2e_p999_ms", "e2e_max_ms"],
        )  # fmt: skip
        rep = []
        for (backend, payload, rate), part in lat.groupby(["backend", "payload_bytes", "offered_rate"], sort=True):
            for metric in ("e2e_p50_ms", "client_p50_ms"):
                s = spread(part[metric].dropna().tolist())
                rep.append({"backend": backend, "payload_bytes": payload, "offered_rate": rate, "metric": metric, **s})
        out["repeatability"] = pd.DataFrame(rep)
    thr = df[df["experiment"] == "02_throughput"]
    if not thr.empty:
        out["throughput"] = _median_table(
            thr,
            ["backend", "batch_size", "offered_rate"],
            ["achieved_rate", "processed_rate", "client_p50_ms", "client_p99_ms", "e2e_p99_ms", "rejected", "errors"],
        )
    dur = df[df["experiment"] == "03_durability"]
    if not dur.empty:
        g = dur.groupby(["fault", "backend"], sort=True)
        counts = ["sent", "acknowledged", "processed", "lost", "duplicated", "extra_deliveries", "unacked_processed",
                  "errors"]  # fmt: skip
        t = g[counts].sum()
        t.insert(0, "runs", g.size())
        out["durability"] = t.reset_index()
    sca = df[df["experiment"] == "04_scaling"]
    if not sca.empty:
        out["scaling"] = _median_table(
            sca, ["backend", "processors", "workers"], ["offered_rate", "processed_rate", "e2e_p99_ms"]
        )
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
    made: dict[str, list[Path]] = {}

    def keep(name: str, fig: Figure) -> None:
        made[name] = plots.save(fig, directory, name)
        plt.close(fig)

    lat_records = _records(docs, "01_latency")
    if lat_records:
        keep("latency_cdf_e2e", plots.latency_cdf(lat_records, "e2e"))
        keep("latency_cdf_client", plots.latency_cdf(lat_records, "client"))
        keep("latency_vs_rate", plots.latency_vs_rate(df[df["experiment"] == "01_latency"]))
    if (df["experiment"] == "02_throughput").any():
        keep("throughput", plots.throughput_curve(df[df["experiment"] == "02_throughput"]))
    dur_records = _records(docs, "03_durability")
    if dur_records:
        keep("durability_counts", plots.durability_bars(df[df["experiment"] == "03_durability"]))
        keep("durability_timeline", plots.durability_timeline(dur_records))
    if (df["experiment"] == "04_scaling").any():
        keep("scaling", plots.scaling_curve(df[df["experiment"] == "04_scaling"]))
    return made


def _html(batch: str, report: Report, env: pd.DataFrame, runs: pd.DataFrame) -> str:
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
    for name, table in report.tables.items():
        parts.append(f"<h2>{html.escape(name.capitalize())}</h2>")
        parts.append(table.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="n/a"))
    for name, paths in report.figures.items():
        png = next(p for p in paths if p.suffix == ".png")
        data = base64.b64encode(png.read_bytes()).decode()
        parts.append(f"<h3>{html.escape(name)}</h3><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>")
        parts.append(f"<p>SVG: <code>figures/{html.escape(name)}.svg</code></p>")
    parts.append("<h2>Environment</h2>")
    parts.append(env.to_html(index=False))
    parts.append("<h2>Runs</h2>")
    parts.append(runs.to_html(index=False, float_format=lambda v: f"{v:.4g}"))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def build(batch_dir: str | Path) -> Report:
    """Read `runs/`, write results.csv, tables/*.csv, figures/*.{png,svg} and report.html."""
    batch_dir = Path(batch_dir)
    docs = read_runs(batch_dir / "runs")
    if not docs:
        raise FileNotFoundError(f"no run documents in {batch_dir / 'runs'}")
    df = load_rows(docs)
    df.to_csv(batch_dir / "results.csv", index=False, float_format=FLOAT_FORMAT)
    report = Report(batch_dir, df, tables(df))
    (batch_dir / "tables").mkdir(exist_ok=True)
    for name, table in report.tables.items():
        table.to_csv(batch_dir / "tables" / f"{name}.csv", index=False, float_format=FLOAT_FORMAT)
    report.figures = figures(df, docs, batch_dir / "figures")
    env, runs = environment_table(docs), runs_table(docs)
    report.html_path = batch_dir / "report.html"
    report.html_path.write_text(_html(batch_dir.name, report, env, runs))
    return report
