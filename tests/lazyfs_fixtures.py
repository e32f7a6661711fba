"""A lazy FUSE mount per test; without FUSE: skip with the reason, or fail when CI is set."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from experiments.runtime.lazyfs import LazyFS, fuse_problem, is_mounted
from experiments.runtime.processes import alive
from tests.ci import ci_is_set


def require_fuse_or_skip() -> None:
    problem = fuse_problem()
    if problem is None:
        return
    if ci_is_set():
        pytest.fail(f"CI is set and FUSE is unavailable: {problem}")
    pytest.skip(f"FUSE unavailable: {problem}. With CI=true this is a failure.")


@pytest.fixture
def lazyfs(tmp_path: Path) -> Iterator[LazyFS]:
    """A mounted lazy FS (writeback never) on tmp_path/mnt over tmp_path/backing; unmounted and stopped after."""
    require_fuse_or_skip()
    fs = LazyFS(tmp_path / "backing", tmp_path / "mnt")
    fs.start()
    try:
        yield fs
    finally:
        pid = fs._proc.pid if fs._proc is not None else None
        fs.stop()
        assert not is_mounted(fs.mountpoint)
        assert pid is None or not alive(pid)
        _wait_no_process_naming(fs.mountpoint)


def _wait_no_process_naming(mnt: Path, timeout: float = 5.0) -> None:
    """The daemon's watchdog exits right after the daemon: wait for it, fail if it lingers."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p.pid for p in psutil.process_iter(["cmdline"]) if str(mnt) in (p.info["cmdline"] or [])
                and alive(p.pid)]  # fmt: skip
        if not left:
            return
        assert time.monotonic() < deadline, f"processes naming {mnt} outlived the mount: {left}"
        time.sleep(0.05)
