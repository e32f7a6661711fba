"""Unmount a lazy FS whose daemon died without unmounting (SIGKILL): started by the daemon, outlives it briefly.

`python -m experiments.runtime.lazyfs.watchdog PID MOUNTPOINT` polls until
PID is gone (or a zombie), then runs `fusermount3 -uz MOUNTPOINT` if it is
still mounted, and exits. libfuse's `auto_unmount` does the same job, but
was seen (rarely) to leave the mount behind; this does not depend on it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from experiments.runtime.lazyfs.mount import is_mounted

POLL_S = 0.05


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    pid, mountpoint = int(args[0]), args[1]
    while alive(pid):
        time.sleep(POLL_S)
    if is_mounted(mountpoint):
        subprocess.run(["fusermount3", "-uz", mountpoint], capture_output=True, check=False)


if __name__ == "__main__":
    main()
