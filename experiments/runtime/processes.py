"""Stopping child processes by pid: a signal, a bounded wait, then SIGKILL.

What the kernel knows of a process (threads and their states, start time,
zombie or not, resident memory) comes from psutil, not from parsing /proc.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable

import psutil

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for Popen: the child gets SIGKILL when this process dies, even by SIGKILL.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, so it
    is set only for children started from the main thread (which ends with
    the process); a child started from a worker thread (`asyncio.to_thread`)
    would die when the pool's thread does. Those are covered by the run's
    registry and reaper (`register_child`, `experiments.runtime.reaper`).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork: the child only calls it
    kill = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl: no signal will come
            os._exit(1)

    return preexec


def signal_and_wait(proc: subprocess.Popen[bytes] | None, sig: signal.Signals, timeout: float) -> None:
    """Send `sig` to a running child and wait for it; SIGKILL it if it outlives `timeout`.

    A stopped (SIGSTOP) process is continued first, so it can act on the signal.
    Never by name: only the pid this harness started.
    """
    if proc is None or proc.poll() is not None:
        return
    if sig != signal.SIGKILL:
        os.kill(proc.pid, signal.SIGCONT)
    os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def freeze(pid: int, timeout: float = 2.0) -> None:
    """SIGSTOP and return once every thread of `pid` is stopped.

    kill() only queues the signal: a thread busy in a syscall (an fsync, say)
    stops when it returns, and until then the "frozen" broker can still
    answer. Tests and experiments that freeze a process need it frozen.
    """
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all_threads_stopped(pid):
            return
        time.sleep(0.001)
    raise TimeoutError(f"pid {pid} not stopped {timeout} s after SIGSTOP")


_STOPPED = (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)


def all_threads_stopped(pid: int) -> bool:
    """Whether every thread of `pid` is in the stopped state (a process is stopped only when all are)."""
    try:
        threads = psutil.Process(pid).threads()
    except psutil.NoSuchProcess:
        return False
    states = []
    for t in threads:
        with contextlib.suppress(psutil.NoSuchProcess):  # a thread that just ended
            states.append(psutil.Process(t.id).status())
    return bool(states) and all(s in _STOPPED for s in states)


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB."""
    return psutil.Process(pid).memory_info().rss / 2**20


def alive(pid: int) -> bool:
    """Running (or stopped), not gone and not a zombie."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


def descendants(pid: int) -> list[int]:
    """Children, grandchildren... of `pid` (none if it is gone)."""
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


# A batch runs each notebook in a kernel it does not control: if a run times out
# and its kernel dies, the servers the notebook started would outlive it. So
# every child the harness starts is noted (pid and start time, which tells a
# reused pid apart) in the file CHILDREN_ENV names, and the batch runner stops
# the ones still alive after each run.
CHILDREN_ENV = "QUEUE_LAB_CHILDREN_FILE"


def _started_at(pid: int) -> float | None:
    """When `pid` started (s since the epoch): with the pid, it tells a reused pid apart."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None


def register_child(pid: int, path: str | None = None) -> None:
    """Note a started child in the registry file `path`, or the one a batch runner set (CHILDREN_ENV)."""
    path = path or os.environ.get(CHILDREN_ENV)
    started = _started_at(pid)
    if path and started is not None:
        with open(path, "a") as f:
            f.write(f"{pid} {started!r}\n")


def register_mount(mountpoint: str, path: str | None = None) -> None:
    """Note a FUSE mount in the registry, so a reaper unmounts it when its daemon (and watchdog) were killed."""
    path = path or os.environ.get(CHILDREN_ENV)
    if path:
        with open(path, "a") as f:
            f.write(f"mount {os.path.realpath(mountpoint)}\n")


def register_container(container_id: str, path: str | None = None) -> None:
    """Note a container (by id) in the registry, so a reaper removes it: a container's processes are the
    engine's children, not the run's, so neither PR_SET_PDEATHSIG nor a pid reaches them."""
    path = path or os.environ.get(CHILDREN_ENV)
    if path:
        with open(path, "a") as f:
            f.write(f"container {container_id}\n")


def reap_registered(path: str) -> list[int]:
    """SIGKILL every registered child that still runs (same pid, same start time), remove every registered
    container (by id), then lazily unmount every registered mount still in the mount table; returns the pids
    killed."""
    try:
        lines = open(path).read().split("\n")  # noqa: SIM115 (one read)
    except OSError:
        return []
    killed, mounts, containers = [], [], []
    for line in filter(None, lines):
        first, rest = line.split(maxsplit=1)
        if first == "mount":
            mounts.append(rest)
            continue
        if first == "container":
            containers.append(rest)
            continue
        pid, started = int(first), _started_at(int(first))
        if started is not None and abs(started - float(rest)) < 0.05 and pid not in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    _wait_gone(killed, timeout=5.0)
    if containers:  # one call for all; an id already gone is only an error line in its output
        subprocess.run(["docker", "rm", "-f", *containers], capture_output=True, check=False, timeout=60)
    table = {part.mountpoint for part in psutil.disk_partitions(all=True)} if mounts else set()
    for mountpoint in mounts:
        if mountpoint in table:
            subprocess.run(["fusermount3", "-uz", mountpoint], capture_output=True, check=False)
    return killed


def _wait_gone(pids: list[int], timeout: float) -> None:
    """Until each pid is gone or a zombie: SIGKILL is delivered at once, the exit takes a moment."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.02)
