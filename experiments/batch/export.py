"""Executed notebooks as HTML without code: what a reader of the thesis or a student's report sees.

nbconvert's HTML exporter with the inputs excluded: markdown, tables,
figures, verdicts and captions stay; the code cells' sources go.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbconvert import HTMLExporter


def notebooks_to_html(notebooks_dir: Path, out_dir: Path) -> list[Path]:
    """`out_dir/<name>.html` for every executed `notebooks_dir/*.ipynb`, code hidden; returns what it wrote."""
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)  # type: ignore[no-untyped-call]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(notebooks_dir.glob("*.ipynb")):
        book = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
        body, _ = exporter.from_notebook_node(book)
        target = out_dir / f"{path.stem}.html"
        target.write_text(body, encoding="utf-8")
        written.append(target)
    return written
