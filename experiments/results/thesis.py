"""Thesis-ready output of a batch: numbered figures (PDF + SVG, 16 cm wide) with generated captions, numbered
tables (CSV + LaTeX booktabs), and a methods section, all from the run documents.

A caption says what is plotted (fixed text per figure, no numbers), then what
this batch measured it from: runs, repetitions, the machine and the servers,
read from the documents. Nothing is typed in that a run measured.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.text import Text

from experiments.results.schema import RunDocument
from experiments.results.stats import PERCENTILES

TEXT_WIDTH_IN = 16 / 2.54  # a thesis page's text width: 16 cm

# What each figure plots (no measured numbers here: the caption adds what the batch measured).
FIGURE_TEXT: dict[str, tuple[str, str]] = {
    "latency_cdf_e2e": ("End-to-end latency distribution",
                        "CDF of end-to-end latency (stamped at ingest to processed by a worker), one curve per "
                        "queue and offered rate, first repetition"),
    "latency_cdf_client": ("Client latency distribution",
                           "CDF of client latency (scheduled send to the 2xx answer, open loop), one curve per queue "
                           "and offered rate, first repetition"),
    "latency_vs_rate": ("Latency against offered rate",
                        "end-to-end p50 and p99 against the offered rate, one panel per payload size (each its own "
                        "scale); points: median over repetitions, bars: min..max"),
    "latency_by_stage": ("Where the time goes",
                         "median and p99 of each stage of a message's way, stacked, per queue and rate; diamonds: "
                         "the measured total of the same messages; one row per payload size"),
    "throughput": ("Saturation sweep",
                   "acknowledged rate against offered rate per queue, batch size and payload; ringed points were "
                   "client-bound (the load generator or the machine saturated)"),
    "cpu_per_message": ("CPU per message",
                        "CPU time per processed message by process, at each measured point"),
    "durability_counts": ("Durability across faults",
                          "acknowledged, processed and lost messages (by id) per fault and queue"),
    "durability_timeline": ("Faults over time",
                            "processed and acknowledged messages per second and queue depth around each fault; "
                            "shaded: the fault window"),
    "scaling": ("Scaling out", "processed throughput against workers, per number of processor instances"),
    "power_loss": ("Power loss",
                   "left: acknowledged messages lost (prefix, middle, postfix) and recovered per setting; right: "
                   "raw publish rate per fsync policy on the lazy file system and on a plain directory"),
    "migration_counts": ("Queue switch under load", "messages per outcome for the naive and the planned switch"),
    "migration_timeline": ("A switch over time",
                           "acknowledged, refused and processed messages per bin around the switch"),
    "footprint": ("Footprint against backlog",
                  "resident memory of the processor and nats-server, and the store on disk, against the backlog held"),
    "cluster_comparison": ("R1 against R3",
                           "client latency and achieved rate of the memory queue, JetStream R1 and R3 per offered "
                           "rate"),
    "failover_timeline": ("Failover",
                          "publishes answered and refused per bin, and their latency, around each cluster fault"),
}  # fmt: skip


@dataclass(frozen=True)
class Numbered:
    number: int
    name: str
    title: str
    caption: str


def environment_phrase(docs: Sequence[RunDocument]) -> str:
    """ "2 CPUs (AMD EPYC), Python 3.11.7, nats-server v2.15.1 (process)": what the runs recorded."""

    def values(key: str) -> str:
        return "/".join(sorted({str(d.environment.get(key, "")) for d in docs} - {""})) or "?"

    return (f"{values('cpu_count')} CPUs ({values('cpu_model')}), Python {values('python')}, nats-server "
            f"{values('nats_server')} ({values('broker_provider')})")  # fmt: skip


def runs_phrase(docs: Sequence[RunDocument], experiment: str) -> str:
    mine = [d for d in docs if d.run.notebook == experiment]
    reps = len({d.run.repetition for d in mine})
    phases = sum(len(d.results) for d in mine)
    return f"{len(mine)} run(s), {reps} repetition(s), {phases} measured phases"


def caption(name: str, experiment: str, docs: Sequence[RunDocument]) -> tuple[str, str]:
    """(title, caption) of a figure: what it plots, then what this batch measured it from."""
    title, what = FIGURE_TEXT.get(name, (name.replace("_", " ").capitalize(), name.replace("_", " ")))
    return title, f"{title}: {what}. From {runs_phrase(docs, experiment)}; {environment_phrase(docs)}."


def size_for_page(fig: Figure) -> None:
    """Scale to the text width with every text alike, as LaTeX would scale it: the layout stays as drawn.

    Re-laying out a multi-panel figure at a smaller size overlaps its labels;
    scaling the fonts with the figure keeps it the figure it was, at 16 cm.
    """
    w, h = fig.get_size_inches()
    if w <= TEXT_WIDTH_IN:
        return
    factor = TEXT_WIDTH_IN / w
    for text in fig.findobj(Text):
        text.set_fontsize(text.get_fontsize() * factor)
    fig.set_size_inches(TEXT_WIDTH_IN, h * factor)


def write_captions(path: Path, figures: Sequence[Numbered], tables: Sequence[Numbered]) -> Path:
    data = {"figures": [asdict(f) for f in figures], "tables": [asdict(t) for t in tables]}
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return path


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}  # fmt: skip


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.4g}"
    return latex_escape(str(value))


def booktabs(table: pd.DataFrame, number: int, name: str, caption_text: str) -> str:
    """A LaTeX table (booktabs rules, numeric columns right-aligned), with its caption and a label."""
    align = "".join("r" if pd.api.types.is_numeric_dtype(table[c]) else "l" for c in table.columns)
    lines = [
        "% generated by queue-lab from the batch's run documents; needs \\usepackage{booktabs}",
        "\\begin{table}[htbp]",
        "\\centering\\small",
        f"\\caption{{{latex_escape(caption_text)}}}",
        f"\\label{{tab:{name}}}",
        f"\\begin{{tabular}}{{{align}}}",
        "\\toprule",
        " & ".join(latex_escape(str(c)) for c in table.columns) + r" \\",
        "\\midrule",
        *(" & ".join(_cell(v) for v in row) + r" \\" for row in table.itertuples(index=False)),
        "\\bottomrule",
        "\\end{tabular}",
        "\\end{table}",
        f"% Table {number}",
        "",
    ]
    return "\n".join(lines)


def methods(docs: Sequence[RunDocument], batch: str) -> str:
    """methods.md: providers, versions, machine, each notebook's parameters and repetitions, percentile method."""
    env_keys = ("cpu_count", "cpu_model", "platform", "python", "nats_server", "nats_py", "broker_provider",
                "nats_sync", "fastapi", "uvicorn", "queue_lab", "git_sha")  # fmt: skip
    env = {k: sorted({str(d.environment.get(k, "")) for d in docs} - {""}) for k in env_keys}
    lines = [
        f"# Methods (batch `{batch}`)",
        "",
        "Generated from the batch's run documents (`runs/*.json`); every value below was recorded by the runs.",
        "",
        "## Environment",
        "",
        *(f"- {k}: {', '.join(v) or 'n/a'}" for k, v in env.items()),
        "",
        "## Load and measurement",
        "",
        "An open-loop generator sends on a fixed schedule and measures each request from its scheduled send "
        "time (no coordinated omission). Client latency: scheduled send to the 2xx answer. End-to-end latency: "
        "`created_at` stamped at ingest to processed by a worker (from the processor's ledger). Accounting is by "
        "message id: lost = acknowledged (2xx) but never processed; duplicated = processed more than once.",
        "",
        "Percentiles: nearest rank ("
        + ", ".join(name for name, _ in PERCENTILES)
        + "): each reported value was observed; a percentile over n samples is only quoted in a verdict when "
        "enough samples lie beyond it. Repetitions: medians over repetitions, bars and ranges min..max; counts "
        "summed over repetitions.",
        "",
        "## Experiments",
        "",
        "| notebook | runs | repetitions | wall time [s] | parameters |",
        "|---|---|---|---|---|",
    ]
    for notebook in sorted({d.run.notebook for d in docs}):
        mine = [d for d in docs if d.run.notebook == notebook]
        wall = sum(d.run.wall_time_s for d in mine)
        params = json.dumps(mine[0].run.parameters, sort_keys=True).replace("|", "\\|")
        lines.append(
            f"| {notebook} | {len(mine)} | {len({d.run.repetition for d in mine})} | {wall:.0f} | `{params}` |"
        )
    return "\n".join(lines) + "\n"
