"""What an experiment is: typed parameters, a run, its tables and figures, and its claims, in one module.

Each module of `experiments.lab.experiments` defines a frozen `Params`
(an `ExperimentParams`: an unknown or mistyped parameter is refused when it
is made, naming the known ones), `run(ctx, params)`, its tables and figures,
and `EXPERIMENT = Experiment(...)`; `lab.registry` finds the modules by
itself. A notebook builds `Params` from its parameters cell and calls `run`;
the batch runner checks every batch entry against `Params` before anything
starts; the report asks every entry for its tables and figures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import pandas as pd
from matplotlib.figure import Figure
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from experiments.results.claims import Claim
from experiments.results.schema import ResultRecord, RunDocument
from experiments.workload.faults import FaultStep

TablesFn = Callable[[pd.DataFrame], dict[str, pd.DataFrame]]
RecordTablesFn = Callable[[Sequence[ResultRecord]], dict[str, pd.DataFrame]]
DocTablesFn = Callable[[pd.DataFrame, Sequence[RunDocument]], dict[str, pd.DataFrame]]
DrawFn = Callable[[pd.DataFrame, Sequence[ResultRecord], Sequence[RunDocument]], Figure | None]


class ExperimentParams(BaseModel):
    """Base of every experiment's `Params`: frozen, and an unknown name is an error, not a silent default."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _fault_text(text: str) -> str:
    FaultStep.parse(text)  # an unknown kind or target fails here, naming the known ones
    return text


FaultText = Annotated[str, AfterValidator(_fault_text)]  # a fault as written: 'kill', 'kill:leader', 'stepdown'


@dataclass(frozen=True)
class FigureSpec:
    """One figure of an experiment: its file name and how to draw it (rows, records, run documents; None: none)."""

    name: str
    draw: DrawFn


def rows_figure(draw: Callable[[pd.DataFrame], Figure]) -> DrawFn:
    return lambda df, _records, _docs: draw(df)


def records_figure(draw: Callable[[Sequence[ResultRecord]], Figure]) -> DrawFn:
    return lambda _df, records, _docs: draw(records)


@dataclass(frozen=True)
class Experiment:
    """One experiment: its notebook's name, parameters, run, and what the notebook and the report show of it.

    `claims`: what the experiment states and checks against its own run
    (`experiments.results.claims.Claim`: a statement, its quoted source, a
    check with guards); the notebook, the report and `diplom check` show
    their verdicts.
    """

    name: str  # the notebook's name, also `ResultRow.experiment`
    title: str
    params: type[ExperimentParams]
    run: Callable[[Any, Any], Awaitable[pd.DataFrame]]  # (RunContext, Params) -> this run's rows
    columns: tuple[str, ...]  # the notebook's table
    tables: TablesFn | None = None
    figures: tuple[FigureSpec, ...] = field(default_factory=tuple)
    record_tables: RecordTablesFn | None = None  # tables that need the series (stages, CPU by process)
    doc_tables: DocTablesFn | None = None  # tables that need more of the run documents (publish rates)
    claims: tuple[Claim, ...] = ()

    def check(self, parameters: Mapping[str, Any]) -> ExperimentParams:
        """`Params` from a notebook's or a batch entry's parameters; a ValueError naming the bad ones."""
        try:
            return self.params(**parameters)
        except ValidationError as exc:
            known = ", ".join(self.params.model_fields)
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"{self.name}: {problems} (its parameters: {known})") from None

    def table(self, df: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
        """The columns the notebook shows, rounded for reading."""
        return df[list(self.columns)].round(digits)

    def report_tables(self, rows: pd.DataFrame, docs: Sequence[RunDocument]) -> dict[str, pd.DataFrame]:
        """Its summary tables from its rows and run documents (nothing if it has no rows)."""
        if rows.empty:
            return {}
        records = [rec for doc in docs for rec in doc.results if rec.row.experiment == self.name]
        out: dict[str, pd.DataFrame] = {}
        if self.tables is not None:
            out.update(self.tables(rows))
        if self.record_tables is not None:
            out.update(self.record_tables(records))
        if self.doc_tables is not None:
            out.update(self.doc_tables(rows, docs))
        return out

    def report_figures(self, rows: pd.DataFrame, docs: Sequence[RunDocument]) -> Iterator[tuple[str, Figure]]:
        """Its figures, by file name (nothing if it has no rows)."""
        if rows.empty:
            return
        records = [rec for doc in docs for rec in doc.results if rec.row.experiment == self.name]
        for spec in self.figures:
            fig = spec.draw(rows, records, docs)
            if fig is not None:
                yield spec.name, fig


def payload_list(payload_bytes: int | Sequence[int]) -> list[int]:
    return [payload_bytes] if isinstance(payload_bytes, int) else list(payload_bytes)


def phase_name(payloads: list[int], payload: int, **keys: float) -> str:
    """`rate=200` (one payload size) or `payload=1024,rate=200` (a sweep over sizes)."""
    parts = ([f"payload={payload}"] if len(payloads) > 1 else []) + [f"{k}={v:g}" for k, v in keys.items()]
    return ",".join(parts)
