"""Every notebook 00-08 has a chapter's shape, types no measured number, and renders its text from a run.

In process, no kernel, no servers: about 2 s. The notebooks themselves run
in `test_notebooks.py` (papermill, quick profile) and in the browser test.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from experiments.lab import chapter, registry
from experiments.lab.context import RunContext
from experiments.results.chapters import CLAIMS
from experiments.results.schema import read_runs
from tests.test_claims import SAVED

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CHAPTERS = ["00_tour", "01_latency", "02_throughput", "03_durability", "04_scaling", "05_cluster", "06_power_loss",
            "07_migration", "08_footprint"]  # fmt: skip
# A measured quantity typed into prose: a number with a unit this lab measures (latency, rates, sizes held, shares).
MEASURED = re.compile(r"\b\d+(?:[.,]\d+)?\s*(?:ms|µs|us|msg/s|req/s|MiB|GiB|%)(?![\w/])")
HEADINGS = ["## Objectives", "## Claims under test", "## Verdicts", "## Try this", "## Keypoints", "## Further reading"]


@dataclass(frozen=True)
class Cell:
    cell_type: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _notebook(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    return data


def _cells(name: str) -> list[Cell]:
    return [
        Cell(c["cell_type"], "".join(c["source"]) if isinstance(c["source"], list) else c["source"], c["metadata"])
        for c in _notebook(name)["cells"]
    ]


def _markdown(name: str) -> str:
    return "\n".join(c.source for c in _cells(name) if c.cell_type == "markdown")


@pytest.mark.parametrize("name", CHAPTERS)
def test_a_chapter_has_its_parts_in_order(name: str) -> None:
    cells = _cells(name)
    text = [c.source for c in cells]
    positions = [next(i for i, t in enumerate(text) if t.startswith(h)) for h in HEADINGS]
    assert positions == sorted(positions), dict(zip(HEADINGS, positions, strict=True))
    prediction = [c for c in cells if "prediction" in c.metadata.get("tags", [])]
    params = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    assert len(prediction) == 1
    assert prediction[0].cell_type == "markdown"  # papermill never executes it
    assert positions[1] < cells.index(prediction[0]) < params < positions[2]
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    assert f'chapter.claims("{name}")' in code
    assert "chapter.planned(" in code
    assert "chapter.verdict_table(ctx)" in code
    assert "chapter.interpretation(ctx)" in code
    assert "GLOSSARY.md" in _markdown(name)
    assert _notebook(name)["metadata"]["kernelspec"]["name"] == "queue-lab"


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_figure_of_the_experiment_has_a_generated_caption(name: str) -> None:
    captions = [c.source for c in _cells(name) if c.source.startswith("chapter.caption(ctx, ")]
    named = {n for c in captions for n in re.findall(r'"(\w+)"', c)}
    figures = {f.name for f in registry.experiment(name).figures}
    assert named == figures, (named, figures)


@pytest.mark.parametrize("name", CHAPTERS)
def test_try_this_names_at_least_three_changes_each_with_a_claim_of_the_chapter(name: str) -> None:
    section = next(c.source for c in _cells(name) if c.source.startswith("## Try this"))
    items = re.findall(r"^\d+\. .*$", section, flags=re.M)
    assert len(items) >= 3
    ids = {c.id for c in CLAIMS[name]}
    for item in items:
        named = set(re.findall(r"`([a-z]+\.[a-z0-9-]+)`", item))
        assert named, item
        assert named <= ids, (item, named - ids)


@pytest.mark.parametrize("name", [*CHAPTERS, "99_report"])
def test_no_measured_number_is_typed_into_a_notebooks_text(name: str) -> None:
    typed = MEASURED.findall(_markdown(name))
    assert typed == [], typed


def test_glossary_defines_the_words_the_verdicts_use() -> None:
    glossary = (NOTEBOOKS / "GLOSSARY.md").read_text()
    for word in ("Acknowledged", "Processed", "Lost", "lost-prefix", "lost-middle", "lost-postfix", "Duplicated",
                 "Recovered", "Open loop", "Coordinated omission", "Client-bound", "R1 / R3", "fsync policies",
                 "Power loss vs process kill", "Nothing at stake", "The fault did not bite"):  # fmt: skip
        assert f"**{word}" in glossary or word in glossary, word


@pytest.mark.spawns
def test_interpretation_and_captions_are_rendered_from_the_runs_records() -> None:
    doc = next(d for d in read_runs(SAVED / "runs") if d.run.notebook == "03_durability")
    ctx = RunContext("03_durability", run_id="t", results_dir=SAVED)
    ctx.records.extend(doc.results)
    text = str(chapter.interpretation(ctx))
    sent = sum(r.row.sent for r in doc.results)
    lost = sum(r.row.lost for r in doc.results)
    assert f"sent {sent} messages" in text
    assert f"{lost} lost" in text
    assert "As claimed (`durability.nats-keeps-acknowledged`)" in text
    caption = str(chapter.caption(ctx, "durability_counts", "durability_timeline"))
    assert caption.startswith("Figures above: *Durability across faults*")
    assert f"From {len(doc.results)} phase(s)" in caption
    assert chapter.duration(181.128e-6) == "181 µs"
