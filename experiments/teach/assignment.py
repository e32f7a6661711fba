"""`diplom assignment NOTEBOOK`: a student version of a chapter, in nbgrader's cell format.

A chapter (00-08) already has the parts of an exercise: the prediction cell
(tagged `prediction`), the run, the verdict table and the "Try this" list.
The assignment marks them with nbgrader's metadata (`metadata.nbgrader`, schema
3) so nbgrader and `diplom grade` agree on what is what:

- the prediction cell and two added answer cells (an explanation of this
  run's verdicts after the interpretation, and the "try this" result) are
  manually graded *solution* cells: the student writes in them; an answer
  left as generated (same nbgrader checksum) scores zero, as nbgrader's own
  autograde rule does;
- the verdict cell is a locked, read-only cell: its source must come back
  unchanged, and its output must be what this run computed (the grader
  recomputes it from the run document);
- every other code cell is locked (the student changes parameters only).

nbgrader's preprocessors do the writing: outputs cleared, cells locked,
checksums computed.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

from nbformat import NotebookNode
from nbgrader.preprocessors import ClearOutput, ComputeChecksums, LockCells

from experiments.teach import nbio

SCHEMA_VERSION = 3
PREDICTION_TAG = "prediction"  # the chapters' own tag (papermill skips the cell)
VERDICT_CALL = "chapter.verdict_table(ctx)"
INTERPRETATION_CALL = "chapter.interpretation(ctx)"
TRY_THIS_HEADING = "## Try this"
PARAMETERS_TAG = "parameters"

# grade ids (and the points each answer is worth); the grader reads them from the cells
PREDICTION = "prediction"
EXPLANATION = "explanation"
TRY_THIS = "try-this"
VERDICTS = "verdicts"
ANSWER_POINTS = {PREDICTION: 1.0, EXPLANATION: 1.0, TRY_THIS: 1.0}

EXPLANATION_TEXT = (
    "**Your explanation** (after the run): for each claim above, say in a sentence why it came out as it did "
    "in *your* run, quoting the number from the verdict's evidence. Where it is *inconclusive*, say what "
    "you would change to decide it.\n\n*My explanation:* …"
)
TRY_THIS_TEXT = (
    "**Your try-this result**: pick one change from the list above, make it in the parameters cell, run all, "
    "and write which claim's verdict changed, from what to what, and the evidence the new run gave.\n\n"
    "*What I changed and what the verdicts did:* …"
)


def _meta(cell: NotebookNode, grade_id: str, *, solution: bool, grade: bool, locked: bool) -> None:
    info: dict[str, Any] = {"grade_id": grade_id, "solution": solution, "grade": grade, "locked": locked,
                            "schema_version": SCHEMA_VERSION}  # fmt: skip
    if grade:
        info["points"] = ANSWER_POINTS.get(grade_id, 0.0)
    cell.metadata["nbgrader"] = info


def _answer(text: str, grade_id: str) -> NotebookNode:
    cell = nbio.markdown_cell(text)
    _meta(cell, grade_id, solution=True, grade=True, locked=False)
    return cell


def make(chapter: NotebookNode) -> NotebookNode:
    """The student version of a chapter notebook (a copy; the chapter is not changed)."""
    nb = copy.deepcopy(chapter)
    cells: list[NotebookNode] = []
    found = {PREDICTION: False, VERDICTS: False, TRY_THIS: False}
    for i, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        source = cell.source
        cells.append(cell)
        if PREDICTION_TAG in tags:
            _meta(cell, PREDICTION, solution=True, grade=True, locked=False)
            found[PREDICTION] = True
        elif cell.cell_type == "code" and PARAMETERS_TAG in tags:
            pass  # the student's to change
        elif cell.cell_type == "code" and VERDICT_CALL in source:
            _meta(cell, VERDICTS, solution=False, grade=False, locked=True)
            found[VERDICTS] = True
        elif cell.cell_type == "code":
            _meta(cell, f"code-{i}", solution=False, grade=False, locked=True)
        if cell.cell_type == "code" and INTERPRETATION_CALL in source:
            cells.append(_answer(EXPLANATION_TEXT, EXPLANATION))
        if cell.cell_type == "markdown" and source.startswith(TRY_THIS_HEADING):
            cells.append(_answer(TRY_THIS_TEXT, TRY_THIS))
            found[TRY_THIS] = True
    missing = [k for k, ok in found.items() if not ok]
    if missing:
        raise ValueError(f"not a chapter notebook: no {', '.join(missing)} cell (see notebooks/README.md)")
    if not any(c.metadata.get("nbgrader", {}).get("grade_id") == EXPLANATION for c in cells):
        raise ValueError(f"not a chapter notebook: no {INTERPRETATION_CALL} cell")
    nb.cells = cells
    resources: dict[str, Any] = {}
    for pre in (ClearOutput(), LockCells(lock_solution_cells=False, lock_grade_cells=True), ComputeChecksums()):
        nb, resources = pre.preprocess(nb, resources)
    return nb


def write(chapter_path: Path, out_dir: Path) -> Path:
    """Write the student version of `chapter_path` into `out_dir` (same file name); its path."""
    nb = make(nbio.read(chapter_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / chapter_path.name
    nbio.write(nb, out)
    return out


def main(argv: list[str] | None = None) -> int:
    """`diplom assignment NOTEBOOK [-o DIR]`: the student version of a chapter (answers to write, cells locked)."""
    parser = argparse.ArgumentParser(prog="diplom assignment", description=main.__doc__)
    parser.add_argument("notebook", type=Path, help="a chapter notebook, e.g. notebooks/01_latency.ipynb")
    parser.add_argument("-o", "--out", type=Path, default=Path("assignments"), help="directory (default: assignments)")
    args = parser.parse_args(argv)
    try:
        out = write(args.notebook, args.out)
    except (OSError, ValueError) as e:
        print(f"diplom assignment: {e}")
        return 2
    nb = nbio.read(out)
    answers = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
               if c.metadata.get("nbgrader", {}).get("solution")]  # fmt: skip
    print(f"{out}: answers to write: {', '.join(answers)}; the verdict cell and the code are locked. "
          f"Students run it in the notebooks/ directory (kernel queue-lab); grade with "
          f"`diplom grade {out} SUBMISSION.ipynb`.")  # fmt: skip
    return 0
