"""Stopping child processes by pid: a signal, a bounded wait, then SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time


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
        states = []
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                states.append(open(f"/proc/{pid}/task/{task}/stat").read().rsplit(")", 1)[1].split()[0])  # noqa: SIM115
        if states and all(s in ("T", "t") for s in states):
            return
        time.sleep(0.001)
    raise TimeoutError(f"pid {pid} not stopped {timeout} s after SIGSTOP")


# A batch runs each notebook in a kernel it does not control: if a run times out
# and its kernel dies, the servers the notebook started would outlive it. So
# every child the harness starts is noted (pid and start time, which tells a
# reused pid apart) in the file CHILDREN_ENV names, and the batch runner stops
# the ones still alive after each run.
CHILDREN_ENV = "QUEUE_LAB_CHILDREN_FILE"


def _start_ticks(pid: int) -> str | None:
    try:
        stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 (one read)
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def register_child(pid: int) -> None:
    """Note a started child in the registry file, when a batch runner set one."""
    path = os.environ.get(CHILDREN_ENV)
    ticks = _start_ticks(pid)
    if path and ticks is not None:
        with open(path, "a") as f:
            f.write(f"{pid} {ticks}\n")


def reap_registered(path: str) -> list[int]:
    """SIGKILL every registered child that still runs (same pid, same start time); returns their pids."""
    try:
        lines = open(path).read().split("\n")  # noqa: SIM115 (one read)
    except OSError:
        return []
    killed = []
    for line in filter(None, lines):
        pid_text, ticks = line.split()
        pid = int(pid_text)
        if _start_ticks(pid) == ticks:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    _wait_gone(killed, timeout=5.0)
    return killed


def _wait_gone(pids: list[int], timeout: float) -> None:
    """Until each pid is gone or a zombie: SIGKILL is delivered at once, the exit takes a moment."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]  # noqa: SIM115
            except OSError:
                break
            if state in ("Z", "X"):
                break
            time.sleep(0.02)
