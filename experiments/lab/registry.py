"""The experiments the lab knows, found by themselves: every module of `experiments.lab.experiments` with an
`EXPERIMENT`, in the order of their notebooks' names.

Adding an experiment is its notebook, its module and its batch entry;
nothing else keys on the name. The batch runner checks entries with
`check_parameters`; the report asks every entry for its tables and figures.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.lab import experiments as _package
from experiments.lab.experiment import Experiment, ExperimentParams
from experiments.results import report


def _discover() -> dict[str, Experiment]:
    found: list[Experiment] = []
    for info in pkgutil.iter_modules(_package.__path__):
        module = importlib.import_module(f"{_package.__name__}.{info.name}")
        entry = getattr(module, "EXPERIMENT", None)
        if isinstance(entry, Experiment):
            found.append(entry)
    return {e.name: e for e in sorted(found, key=lambda e: e.name)}


EXPERIMENTS: dict[str, Experiment] = _discover()


def experiment(name: str) -> Experiment:
    """The entry for `name`, or a KeyError that lists the known ones."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise KeyError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}") from None


def check_parameters(notebook: str, parameters: Mapping[str, Any]) -> ExperimentParams:
    """A batch entry's (or a notebook's) parameters as the experiment's `Params`; ValueError naming what is wrong."""
    try:
        entry = experiment(notebook)
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from None
    return entry.check(parameters)


def table(df: pd.DataFrame, name: str, digits: int = 2) -> pd.DataFrame:
    """The columns a notebook shows for its experiment, rounded for reading."""
    return experiment(name).table(df, digits)


def build_report(batch_dir: str | Path) -> report.Report:
    """The batch's report (results.csv, tables, figures, report.html) over every registered experiment."""
    return report.build(batch_dir, EXPERIMENTS.values())
