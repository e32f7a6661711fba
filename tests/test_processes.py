"""Process helpers (psutil underneath) on real child processes: freeze, registry and reaping, trees, memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from experiments.runtime.processes import (
    CHILDREN_ENV,
    alive,
    all_threads_stopped,
    descendants,
    freeze,
    reap_registered,
    register_child,
    rss_mib,
)

pytestmark = pytest.mark.spawns

# Four threads spinning on the CPU.
BUSY = """
import threading, time
def spin():
    while True:
        pass
for _ in range(4):
    threading.Thread(target=spin, daemon=True).start()
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def child() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait(timeout=5)


def _cpu_s(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def test_freeze_returns_once_every_thread_is_stopped_and_nothing_runs(child: subprocess.Popen[str]) -> None:
    assert not all_threads_stopped(child.pid)
    freeze(child.pid)
    assert all_threads_stopped(child.pid)
    frozen_at = _cpu_s(child.pid)
    time.sleep(0.3)
    assert _cpu_s(child.pid) == frozen_at  # no thread ran
    os.kill(child.pid, signal.SIGCONT)
    time.sleep(0.3)
    assert not all_threads_stopped(child.pid)
    assert _cpu_s(child.pid) > frozen_at  # and it runs again once continued


def test_freeze_of_a_process_that_is_not_there_fails_loudly() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=10)
    with pytest.raises(ProcessLookupError):
        freeze(proc.pid)


def test_alive_tells_running_from_zombie_and_gone(child: subprocess.Popen[str]) -> None:
    assert alive(child.pid)
    child.kill()
    deadline = time.monotonic() + 5
    while alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive(child.pid)  # a zombie until reaped: not alive
    child.wait(timeout=5)
    assert not alive(child.pid)


def test_descendants_finds_grandchildren() -> None:
    code = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while len(descendants(proc.pid)) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        found = descendants(proc.pid)
        assert len(found) == 1
        assert proc.pid not in found
        assert psutil.Process(found[0]).ppid() == proc.pid
    finally:
        for pid in [*descendants(proc.pid), proc.pid]:
            os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=5)
    assert descendants(proc.pid) == []


def test_rss_counts_what_a_process_holds() -> None:
    code = "import sys; b = bytearray(80 * 2**20); b[::4096] = b'x' * 20480; print('ok', flush=True); sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ok"
        assert rss_mib(proc.pid) > 80
        assert rss_mib(os.getpid()) < 80 * 20  # a sane figure for this process too
    finally:
        proc.kill()
        proc.wait(timeout=5)


def test_reap_kills_registered_children_and_spares_a_reused_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, child: subprocess.Popen[str]
) -> None:
    registry = tmp_path / "children.pids"
    monkeypatch.setenv(CHILDREN_ENV, str(registry))
    register_child(child.pid)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        # `other` under a start time it does not have: a pid reused by another process since.
        registry.write_text(registry.read_text() + f"{other.pid} 12345.0\n")
        assert reap_registered(str(registry)) == [child.pid]
        assert not alive(child.pid)
        assert alive(other.pid)
    finally:
        other.kill()
        other.wait(timeout=5)
    assert reap_registered(str(tmp_path / "missing.pids")) == []
