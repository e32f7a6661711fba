"""nbformat's untyped calls behind typed functions (one place for the `type: ignore`s)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat import NotebookNode


def read(path: Path) -> NotebookNode:
    nb: NotebookNode = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    return nb


def write(nb: NotebookNode, path: Path) -> None:
    nbformat.write(nb, path)  # type: ignore[no-untyped-call]


def markdown_cell(text: str) -> NotebookNode:
    cell: NotebookNode = nbformat.v4.new_markdown_cell(text)  # type: ignore[no-untyped-call]
    return cell


def code_cell(text: str) -> NotebookNode:
    cell: NotebookNode = nbformat.v4.new_code_cell(text)  # type: ignore[no-untyped-call]
    return cell


def notebook(cells: list[NotebookNode]) -> NotebookNode:
    nb: NotebookNode = nbformat.v4.new_notebook(cells=cells)  # type: ignore[no-untyped-call]
    return nb
