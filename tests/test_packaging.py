"""Packaging agrees with itself: one source of pins (pyproject.toml), and what a package should carry.

In process, reading files only (~0.1 s).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_SPEC = importlib.util.spec_from_file_location("docker_requirements", ROOT / "docker" / "requirements.py")
assert _SPEC is not None
assert _SPEC.loader is not None
docker_requirements = importlib.util.module_from_spec(_SPEC)  # docker/requirements.py: a script, not a package
_SPEC.loader.exec_module(docker_requirements)

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _lock_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", line)
        if m:
            pins[docker_requirements.canonical(m.group(1))] = m.group(2)
    return pins


def _project_pins(*, dev: bool) -> dict[str, str]:
    reqs = list(PYPROJECT["project"]["dependencies"])
    if dev:
        reqs += PYPROJECT["project"]["optional-dependencies"]["dev"]
    pins: dict[str, str] = docker_requirements.pins(reqs)
    assert len(pins) == len(reqs), "every dependency is pinned exactly (==)"
    return pins


def test_docker_requirements_in_is_what_pyproject_gives() -> None:
    assert (ROOT / "docker" / "requirements.in").read_text() == docker_requirements.derive(), (
        "docker/requirements.in is stale: run `python docker/requirements.py` and `bash docker/lock.sh`"
    )


def test_docker_lock_pins_the_image_packages_at_pyprojects_versions() -> None:
    lock = _lock_pins(ROOT / "docker" / "requirements.lock")
    want = _project_pins(dev=False)
    for name in PYPROJECT["tool"]["queue-lab"]["docker"]["packages"]:
        key = docker_requirements.canonical(name)
        assert lock.get(key) == want[key], f"{name}: lock {lock.get(key)} != pyproject {want[key]} (docker/lock.sh)"


def test_the_dev_lock_agrees_with_every_pin_of_pyproject() -> None:
    lock = _lock_pins(ROOT / "requirements-dev.lock")
    wrong = {n: (v, lock.get(n)) for n, v in _project_pins(dev=True).items() if lock.get(n) != v}
    assert wrong == {}, f"pyproject pin vs requirements-dev.lock: {wrong} (bash scripts/lock-dev.sh)"


def test_the_build_backend_is_pinned_and_bootstrap_installs_with_the_dev_lock() -> None:
    assert PYPROJECT["build-system"]["requires"] == ["setuptools==84.2.1"]
    assert "-c requirements-dev.lock" in (ROOT / "scripts" / "bootstrap.sh").read_text()


def test_license_and_type_markers_ship() -> None:
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert PYPROJECT["project"]["license"] == "MIT"
    for package in ("backends", "services", "experiments"):
        assert (ROOT / package / "py.typed").exists(), package
        assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"][package]


@pytest.mark.spawns
def test_no_secret_is_tracked() -> None:
    """The compose stack's secrets are made at first start (scripts/compose.sh), per clone; git carries none."""
    secrets = ["docker/.admin-token", "docker/.api-key", "docker/.nats-password"]
    tracked = subprocess.run(
        ["git", "ls-files", "--", *secrets, ".env", "docker/.env"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert not set(secrets) & set(tracked)
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *secrets], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.split()
    assert ignored == secrets, f"not git-ignored: {sorted(set(secrets) - set(ignored))}"
