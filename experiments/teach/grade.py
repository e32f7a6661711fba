"""`diplom grade ASSIGNMENT SUBMISSION`: grade a student's chapter notebook offline, from its own run.

What is checked, and why each part cannot be satisfied by typing:

- executed: every code cell has run, top to bottom in one kernel (execution
  counts rising in cell order), and no cell ended in an error;
- locked cells: the code the assignment locked (nbgrader checksums) comes back
  unchanged, so the verdict cell is still `chapter.verdict_table(ctx)`;
- verdicts: the verdict cell's output holds the verdicts as data, naming the
  run and its run document; the grader reads that document (what the run
  measured) and recomputes every claim's verdict with the same claims
  (`experiments.results.chapters`). Outcomes and evidence (with its
  numbers) must match exactly: a verdict typed or edited into the output
  does not;
- answers: the prediction, explanation and try-this cells count only when
  written in (their nbgrader checksum differs from the assignment's, as
  nbgrader's autograde scores an unchanged answer cell zero) and more than
  the placeholder remains.

Points are nbgrader's (`metadata.nbgrader.points`) for the answers, and fixed
below for the checks. Nothing is executed: grading reads the notebook and the
run document only, so it is offline, quick and deterministic.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nbformat import NotebookNode
from nbgrader.utils import compute_checksum

from experiments.results import verdicts
from experiments.results.chapters import CLAIMS
from experiments.results.schema import RunDocument
from experiments.teach import nbio
from experiments.teach.assignment import ANSWER_POINTS, VERDICTS

CHECK_POINTS = {"executed": 1.0, "locked cells": 1.0, "verdicts": 2.0}
PLACEHOLDER = "…"
MIN_ANSWER_WORDS = 3  # an answer is at least a short sentence


@dataclass(frozen=True)
class Part:
    name: str
    points: float
    max_points: float
    why: str


@dataclass(frozen=True)
class Grade:
    submission: str
    parts: list[Part]

    @property
    def score(self) -> float:
        return sum(p.points for p in self.parts)

    @property
    def max_score(self) -> float:
        return sum(p.max_points for p in self.parts)

    def text(self) -> str:
        lines = [f"{self.submission}: {self.score:g} / {self.max_score:g}"]
        lines += [f"  {p.points:g}/{p.max_points:g}  {p.name:<13} {p.why}" for p in self.parts]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {"submission": self.submission, "score": self.score, "max_score": self.max_score,
                "parts": [asdict(p) for p in self.parts]}  # fmt: skip


def _grade_id(cell: NotebookNode) -> str:
    return str(cell.metadata.get("nbgrader", {}).get("grade_id", ""))


def _by_id(nb: NotebookNode) -> dict[str, NotebookNode]:
    return {_grade_id(c): c for c in nb.cells if _grade_id(c)}


def _part(name: str, ok: bool, why: str, max_points: float | None = None) -> Part:
    top = CHECK_POINTS[name] if max_points is None else max_points
    return Part(name, top if ok else 0.0, top, why)


def executed(nb: NotebookNode) -> Part:
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.get("execution_count") for c in code]
    if not code or any(n is None for n in counts):
        missing = sum(n is None for n in counts)
        return _part("executed", False, f"{missing} of {len(code)} code cells not executed")
    ints = [int(n) for n in counts if n is not None]
    if any(b <= a for a, b in itertools.pairwise(ints)):
        return _part("executed", False, "cells ran out of order or in several kernels (execution counts not rising)")
    errors = [c for c in code if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    if errors:
        first = next(o for o in errors[0].outputs if o.get("output_type") == "error")
        return _part("executed", False, f"{len(errors)} cell(s) ended in an error, first: {first.get('ename')}")
    return _part("executed", True, f"{len(code)} code cells ran in order, no errors")


def locked(assignment: NotebookNode, submission: NotebookNode) -> Part:
    """The locked cells came back unchanged, and ran (an untouched blank notebook earns nothing here)."""
    mine = _by_id(submission)
    if not any(c.get("execution_count") for c in submission.cells if c.cell_type == "code"):
        return _part("locked cells", False, "nothing ran")
    changed, gone = [], []
    for gid, cell in _by_id(assignment).items():
        info = cell.metadata["nbgrader"]
        if not info.get("locked"):
            continue
        if gid not in mine:
            gone.append(gid)
        elif compute_checksum(mine[gid]) != info.get("checksum"):
            changed.append(gid)
    if gone or changed:
        return _part("locked cells", False, f"changed: {', '.join(changed) or '-'}; missing: {', '.join(gone) or '-'}")
    return _part("locked cells", True, "every locked cell unchanged (nbgrader checksums)")


def _verdict_data(cell: NotebookNode | None) -> dict[str, Any] | None:
    for out in cell.get("outputs", []) if cell is not None else []:
        data = out.get("data", {}).get(verdicts.VERDICTS_MIME)
        if data is not None:
            return dict(data)
    return None


def computed_verdicts(submission: NotebookNode, runs_dir: Path | None = None) -> Part:
    """The verdicts in the notebook's output equal those recomputed from the run document it names."""
    shown = _verdict_data(_by_id(submission).get(VERDICTS))
    if shown is None:
        return _part("verdicts", False, "no verdict table in the output (the verdict cell did not run)")
    run_id, experiment = str(shown.get("run_id", "")), str(shown.get("experiment", ""))
    path = runs_dir / f"{run_id}.json" if runs_dir else Path(str(shown.get("run_document", "")))
    if not path.is_file():
        return _part("verdicts", False, f"the run document of run {run_id} is not there ({path})")
    doc = RunDocument.model_validate_json(path.read_text())
    if doc.run.run_id != run_id or doc.run.notebook != experiment:
        return _part("verdicts", False, f"{path} is run {doc.run.run_id} of {doc.run.notebook}, "
                                        f"not run {run_id} of {experiment}")  # fmt: skip
    if experiment not in CLAIMS:
        return _part("verdicts", False, f"no claims known for experiment {experiment!r}")
    recomputed = verdicts.payload(verdicts.of_docs([doc], CLAIMS[experiment]))
    if shown.get("verdicts") != recomputed:
        theirs = {v.get("claim"): v.get("verdict") for v in shown.get("verdicts", [])}
        differ = [v["claim"] for v in recomputed if theirs.get(v["claim"]) != v["verdict"]]
        what = f"outcomes differ for {', '.join(differ)}" if differ else "evidence differs from the run's numbers"
        return _part("verdicts", False, f"not what run {run_id} measured: {what}")
    counts = verdicts.summary(verdicts.of_docs([doc], CLAIMS[experiment]))
    return _part("verdicts", True, f"{counts}, as recomputed from {path.name}")


def answered(assignment: NotebookNode, submission: NotebookNode, grade_id: str) -> Part:
    given = _by_id(assignment).get(grade_id)
    top = float(ANSWER_POINTS[grade_id]) if given is None else float(given.metadata["nbgrader"].get("points", 0))
    cell = _by_id(submission).get(grade_id)
    if given is None:
        return Part(grade_id, 0.0, 0.0, "not in this assignment")
    if cell is None:
        return Part(grade_id, 0.0, top, "answer cell missing")
    if compute_checksum(cell) == given.metadata["nbgrader"].get("checksum"):
        return Part(grade_id, 0.0, top, "left as given (same checksum)")
    words = len(cell.source.replace(PLACEHOLDER, " ").split()) - len(given.source.replace(PLACEHOLDER, " ").split())
    if words < MIN_ANSWER_WORDS:
        return Part(grade_id, 0.0, top, f"nothing written beyond the prompt ({max(words, 0)} words)")
    return Part(grade_id, top, top, f"answered ({words} words beyond the prompt)")


def grade(assignment: NotebookNode, submission: NotebookNode, name: str, runs_dir: Path | None = None) -> Grade:
    parts = [executed(submission), locked(assignment, submission), computed_verdicts(submission, runs_dir)]
    parts += [answered(assignment, submission, gid) for gid in ANSWER_POINTS]
    return Grade(name, parts)


def main(argv: list[str] | None = None) -> int:
    """`diplom grade ASSIGNMENT SUBMISSION... [--runs DIR] [--json]`: each submission's points, part by part."""
    parser = argparse.ArgumentParser(prog="diplom grade", description=main.__doc__)
    parser.add_argument("assignment", type=Path, help="the student version `diplom assignment` wrote")
    parser.add_argument("submissions", type=Path, nargs="+", help="students' executed notebooks")
    parser.add_argument("--runs", type=Path, default=None,
                        help="where the run documents are (default: the path the verdict output names)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON object per submission")
    args = parser.parse_args(argv)
    try:
        given = nbio.read(args.assignment)
        grades = [grade(given, nbio.read(s), str(s), args.runs) for s in args.submissions]
    except (OSError, ValueError) as e:
        print(f"diplom grade: {e}")
        return 2
    for g in grades:
        print(json.dumps(g.as_json()) if args.json else g.text())
    return 0
