"""What a process or a store costs right now: resident memory by pid (psutil), bytes on disk.

Used by the footprint experiment to say where a backlog lives: in the
processor's heap (memory queue), or in nats-server and its store (JetStream).
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil

MIB = 1024 * 1024


def rss_bytes(pid: int | None) -> int | None:
    """Resident set size of `pid`, or None when there is no such process (any more)."""
    if pid is None:
        return None
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None


def disk_bytes(path: str | Path) -> int:
    """Bytes the files under `path` occupy on disk (allocated blocks, as `du`), 0 if it is absent."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:  # a block file compacted away while walking
                continue
    return total
