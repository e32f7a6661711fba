"""Stopping child processes by pid: a signal, a bounded wait, then SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess


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
