"""What a result was measured on: stored with every run so a thesis table can cite it."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from functools import cache
from pathlib import Path

from experiments.runtime.nats.base import nats_server_version
from experiments.runtime.paths import REPO


def _package(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_sha() -> str:
    """HEAD of the checkout, with `-dirty` when the tree has uncommitted changes ('unknown' outside git)."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@cache
def environment() -> dict[str, str | int]:
    """Versions and machine facts (cached: one probe per process)."""
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "nats_server": nats_server_version(),
        "nats_py": _package("nats-py"),
        "fastapi": _package("fastapi"),
        "uvicorn": _package("uvicorn"),
        "queue_lab": _package("queue-lab"),
        "git_sha": git_sha(),
        "cpu_count": os.cpu_count() or 0,
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "nats_provider": os.environ.get("HARNESS_NATS", "auto"),
    }
