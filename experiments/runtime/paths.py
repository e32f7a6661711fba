"""Where the checkout's folders are: one definition, whatever module asks."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
RESULTS = REPO / "results"
DEFAULT_BATCH = REPO / "experiments" / "batches" / "default.yaml"
