"""The teacher kit: `diplom assignment` makes a student version of every chapter, `diplom grade` grades it.

The round trip runs one real, tiny chapter run: 01_latency's student version
through papermill (memory queue only, one rate, 1 s of load; about 15 s on 2
cores) in a kernel, which starts the real services and writes its run
document. Then four submissions are graded offline from that one run: the
filled-in one (full marks), the same run with its answers left blank, the
assignment as handed out (zero), and the filled one with a verdict typed over
what the run computed (loses the verdict points). The structure test for all
nine chapters is in process (under a second).
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
from nbformat import NotebookNode

from experiments.results import verdicts
from experiments.teach import assignment, grade, nbio
from tests.test_chapters import CHAPTERS, NOTEBOOKS

ANSWERS = {
    assignment.PREDICTION: "JetStream's median will be about a millisecond above memory's; the p99s further apart.",
    assignment.EXPLANATION: "The overhead claim holds because the PubAck adds one round trip; the tail claims are "
    "inconclusive because a one-second run has too few samples beyond the p99.",
    assignment.TRY_THIS: "I set duration_s = 30 and the tail claim went from inconclusive to holds.",
}


def _ids(nb: NotebookNode) -> dict[str, NotebookNode]:
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if "nbgrader" in c.metadata}


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_chapter_makes_an_assignment(name: str) -> None:
    nb = assignment.make(nbio.read(NOTEBOOKS / f"{name}.ipynb"))
    cells = _ids(nb)
    answers = [gid for gid, c in cells.items() if c.metadata["nbgrader"]["solution"]]
    assert answers == [assignment.PREDICTION, assignment.EXPLANATION, assignment.TRY_THIS]
    assert all(cells[a].metadata["nbgrader"]["points"] > 0 and not cells[a].metadata["nbgrader"]["locked"]
               for a in answers)  # fmt: skip
    verdict_cell = cells[assignment.VERDICTS]
    assert assignment.VERDICT_CALL in verdict_cell.source
    assert verdict_cell.metadata["nbgrader"]["locked"]
    assert all(c.metadata["nbgrader"].get("checksum") for c in cells.values())
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # handed out without outputs
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assert "nbgrader" not in params[0].metadata


def test_a_notebook_that_is_not_a_chapter_is_refused() -> None:
    nb = nbio.notebook([nbio.code_cell("1 + 1")])
    with pytest.raises(ValueError, match="not a chapter notebook"):
        assignment.make(nb)


def _fill(nb: NotebookNode) -> NotebookNode:
    filled = copy.deepcopy(nb)
    for gid, cell in _ids(filled).items():
        if gid in ANSWERS:
            cell.source = cell.source.replace("…", ANSWERS[gid])
    return filled


@pytest.mark.spawns
def test_assignment_round_trip_grades_from_the_run(tmp_path: Path) -> None:
    handed_out = tmp_path / "assignment"
    assert assignment.main([str(NOTEBOOKS / "01_latency.ipynb"), "-o", str(handed_out)]) == 0
    given_path = handed_out / "01_latency.ipynb"
    params = tmp_path / "params.yaml"
    params.write_text(f"backends: [memory]\nrates: [200.0]\nduration_s: 1.0\nrun_id: student-a\n"
                      f"results_dir: {tmp_path / 'results'}\n")  # fmt: skip
    ran = tmp_path / "ran.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(given_path), str(ran), "-k", "python3", "--cwd", str(NOTEBOOKS),
           "-f", str(params), "--no-progress-bar"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "results" / "runs" / "student-a.json").is_file()

    given = nbio.read(given_path)
    executed = nbio.read(ran)
    filled = _fill(executed)
    typed = copy.deepcopy(filled)  # a verdict typed over what the run computed
    out = next(o for o in _ids(typed)[assignment.VERDICTS].outputs if verdicts.VERDICTS_MIME in o.get("data", {}))
    first = out["data"][verdicts.VERDICTS_MIME]["verdicts"][0]
    first["verdict"] = "contradicted" if first["verdict"] != "contradicted" else "holds"

    full = grade.grade(given, filled, "filled")
    blank_answers = grade.grade(given, executed, "ran, answers blank")
    untouched = grade.grade(given, given, "as handed out")
    forged = grade.grade(given, typed, "verdict typed")
    print("\n".join(g.text() for g in (full, blank_answers, untouched, forged)))

    parts = {g.submission: {p.name: p for p in g.parts} for g in (full, blank_answers, untouched, forged)}
    assert full.score == full.max_score == 7, full.text()
    assert "as recomputed from student-a.json" in parts["filled"]["verdicts"].why
    assert blank_answers.score == 4
    assert all(parts["ran, answers blank"][a].points == 0 and "left as given" in parts["ran, answers blank"][a].why
               for a in ANSWERS)  # fmt: skip
    assert untouched.score == 0, untouched.text()
    assert "did not run" in parts["as handed out"]["verdicts"].why
    assert forged.score == full.score - 2
    assert f"outcomes differ for {first['claim']}" in parts["verdict typed"]["verdicts"].why

    # a number typed over the evidence, the outcomes left alone, is caught too
    retyped = copy.deepcopy(filled)
    out = next(o for o in _ids(retyped)[assignment.VERDICTS].outputs if verdicts.VERDICTS_MIME in o.get("data", {}))
    claim = out["data"][verdicts.VERDICTS_MIME]["verdicts"][0]
    claim["evidence"] = claim["evidence"].replace("lost 0", "lost 1") + " (edited)"
    assert "evidence differs" in grade.computed_verdicts(retyped).why

    # the same through the command line, and a missing run document is named
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    cli = grade.main([str(given_path), str(ran), "--runs", str(moved)])
    assert cli == 0
    assert grade.computed_verdicts(executed, moved).points == 0
    assert "is not there" in grade.computed_verdicts(executed, moved).why
