"""The experiment registry and the fault registry hold what they promise, read from the code (in process, ~2 s).

Every registered experiment has its notebook, a full batch entry and a
quick one; every notebook's parameters cell is a valid `Params` of its
experiment; a typo or an unknown fault kind in a batch file is refused
before anything starts, naming what is known; and no fault kind is matched
as a string outside the fault plug-ins (the registry is the only list).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from experiments.batch.runner import load_batch, run_batch
from experiments.lab import registry
from experiments.runtime.paths import DEFAULT_BATCH, NOTEBOOKS, REPO
from experiments.workload.faults import FAULTS

PAPERMILL_SET = {"run_id", "repetition", "results_dir"}  # set by the batch runner, not an experiment's parameter


def _parameters_cell(name: str) -> dict[str, object]:
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    values: dict[str, object] = {}
    exec(compile("".join(cell["source"]), f"{name}:parameters", "exec"), {}, values)  # literals: the defaults
    return {k: v for k, v in values.items() if k not in PAPERMILL_SET}


def test_the_registry_finds_every_experiment_module_by_itself() -> None:
    modules = {p.stem for p in (REPO / "experiments" / "lab" / "experiments").glob("*.py") if p.stem != "__init__"}
    assert len(registry.EXPERIMENTS) == len(modules)
    assert list(registry.EXPERIMENTS) == sorted(registry.EXPERIMENTS)


@pytest.mark.parametrize("name", list(registry.EXPERIMENTS))
def test_every_experiment_has_a_notebook_a_full_and_a_quick_batch_entry(name: str) -> None:
    assert (NOTEBOOKS / f"{name}.ipynb").exists()
    raw = yaml.safe_load(DEFAULT_BATCH.read_text())
    assert name in [r["notebook"] for r in raw["runs"]], f"{name}: no entry in the full batch"
    assert name in raw["quick"]["runs"], f"{name}: no entry in the quick profile"
    for quick in (False, True):
        for spec in load_batch(DEFAULT_BATCH, quick=quick).runs:
            if spec.notebook == name:
                registry.check_parameters(name, spec.parameters)


@pytest.mark.parametrize("name", list(registry.EXPERIMENTS))
def test_every_notebooks_parameters_cell_is_its_experiments_params(name: str) -> None:
    cell = _parameters_cell(name)
    entry = registry.experiment(name)
    assert set(cell) <= set(entry.params.model_fields), set(cell) - set(entry.params.model_fields)
    entry.check(cell)


def test_a_typo_in_a_notebooks_parameters_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match=r"01_latency: rate: Extra inputs are not permitted \(its parameters: backends"
    ):
        registry.check_parameters("01_latency", {"rate": [200]})


def _batch(tmp_path: Path, parameters: str) -> Path:
    path = tmp_path / "b.yaml"
    path.write_text(f"batch: b\nruns:\n  - notebook: 03_durability\n    parameters: {parameters}\n")
    return path


def test_an_unknown_fault_kind_in_a_batch_file_fails_before_anything_starts(tmp_path: Path) -> None:
    path = _batch(tmp_path, "{faults: [kill, explode:leader], rate: 100}")
    known = ", ".join(["none", *FAULTS])
    with pytest.raises(ValueError, match=re.escape(f"kind must be one of {known}")):
        run_batch(path, results_root=tmp_path / "results", check=registry.check_parameters)
    assert not (tmp_path / "results").exists(), "something started before the batch file was refused"


def test_a_misspelt_parameter_in_a_batch_file_fails_before_anything_starts(tmp_path: Path) -> None:
    path = _batch(tmp_path, "{faults: [kill], rates: 100}")
    with pytest.raises(ValueError, match="rates: Extra inputs are not permitted"):
        run_batch(path, results_root=tmp_path / "results", check=registry.check_parameters)
    assert not (tmp_path / "results").exists()


FAULT_MODULES = REPO / "experiments" / "workload" / "faults"


def _fault_texts(tree: ast.AST, kinds: set[str]) -> list[tuple[int, str]]:
    """Fault kinds written as strings: 'kind:target' anywhere, a bare kind compared against or used as a key."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            kind, sep, target = node.value.partition(":")
            if sep and kind in kinds and target.isidentifier():
                found.append((node.lineno, node.value))
        operands = []
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
        elif isinstance(node, ast.Dict):
            operands = [k for k in node.keys if k is not None]
        for op in operands:
            for c in ast.walk(op):
                if isinstance(c, ast.Constant) and c.value in kinds:
                    found.append((c.lineno, str(c.value)))
    return found


def test_no_fault_kind_is_a_string_outside_the_fault_plug_ins() -> None:
    """`FAULTS` is the only list: code elsewhere asks a fault what it needs, never compares its name."""
    found = [
        f"{path.relative_to(REPO)}:{line}: {text!r}"
        for path in sorted((REPO / "experiments").rglob("*.py"))
        if FAULT_MODULES not in path.parents and path.name != "cli.py"  # `diplom switch`: a command, not a fault
        for line, text in _fault_texts(ast.parse(path.read_text()), set(FAULTS))
    ]
    assert found == []
