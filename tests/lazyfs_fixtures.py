"""A lazy FUSE mount per test; without FUSE: skip with the reason, or fail when CI is set."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments.runtime.lazyfs import LazyFS, fuse_problem, is_mounted


def require_fuse_or_skip() -> None:
    problem = fuse_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
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
        assert pid is None or not Path(f"/proc/{pid}").exists() or _zombie(pid)
        _wait_no_process_naming(fs.mountpoint)


def _wait_no_process_naming(mnt: Path, timeout: float = 5.0) -> None:
    """The daemon's watchdog exits right after the daemon: wait for it, fail if it lingers."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _names(p, mnt) and not _zombie(int(p.name))]
        if not left:
            return
        assert time.monotonic() < deadline, f"processes naming {mnt} outlived the mount: {[p.name for p in left]}"
        time.sleep(0.05)


def _names(proc: Path, mnt: Path) -> bool:
    try:
        return str(mnt).encode() in (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True
