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

from experiments.runtime.lazyfs.mount import is_mounted
from experiments.runtime.processes import alive

POLL_S = 0.05


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    pid, mountpoint = int(args[0]), args[1]
    while alive(pid):
        time.sleep(POLL_S)
    if is_mounted(mountpoint):
        subprocess.run(["fusermount3", "-uz", mountpoint], capture_output=True, check=False)


if __name__ == "__main__":
    main()
