"""The architecture's arrows: notebooks -> experiments -> services -> backends, and the rooms inside experiments.

`scripts/test.sh` runs `lint-imports` on the checkout; these tests show the
contracts bite (a forbidden import added to a copy of the tree fails them)
and hold the one arrow import-linter cannot see: notebooks import only the
experiments library, never a service or a backend.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _tree_copy(tmp_path: Path) -> Path:
    for pkg in ("backends", "services", "experiments"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_checkout_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(_tree_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("backends/contract.py", "import services.ledger", "Top level: experiments -> services -> backends"),
        ("services/ledger.py", "import experiments.results.schema", "A service knows nothing of papermill"),
        ("experiments/runtime/stack.py", "import experiments.lab.setup", "runtime imports nothing above it"),
        ("experiments/results/plots.py", "import experiments.runtime.paths", "results imports nothing of ours"),
        # a cycle: gateway -> bodies, and now bodies -> gateway
        ("services/bodies.py", "import services.gateway", "No import cycles among the modules of services"),
        # a cycle inside the NATS package: backend -> publisher -> connection, and now connection -> backend
        ("backends/nats/connection.py", "import backends.nats.backend", "No import cycles among the modules of"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    tree = _tree_copy(tmp_path)
    target = tree / module
    target.write_text(target.read_text() + f"\n{line}  # a deliberate violation\n")
    result = _lint(tree)
    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout


def _notebook_imports(path: Path) -> set[str]:
    nb = json.loads(path.read_text())
    found: set[str] = set()
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"]).replace("await ", "")  # top-level await is fine in a notebook
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebooks_import_the_experiments_library_only(notebook: Path) -> None:
    imported = _notebook_imports(notebook)
    assert "experiments" in imported
    assert not imported & {"services", "backends"}, f"{notebook.name} reaches past the library: {imported}"
