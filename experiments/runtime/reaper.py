"""The run's reaper: a small process that outlives its runner just long enough to stop what the run started.

    python -m experiments.runtime.reaper PIDS_FILE   (stdin: a pipe whose write end only the runner holds)

The batch runner starts one per run, in its own session, and keeps the
pipe's write end. However the runner ends (done, exception, timeout, SIGKILL)
the kernel closes that end; the reaper reads EOF and SIGKILLs every process
registered in the run's PIDS_FILE that still runs (same pid, same start time:
`processes.reap_registered`). A FUSE daemon killed that way is
unmounted by its own watchdog. Unlike PR_SET_PDEATHSIG this does not depend
on which thread started a process, nor on a kernel noticing its parent died.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from experiments.runtime.processes import reap_registered


def start(pids_file: Path) -> subprocess.Popen[bytes]:
    """The reaper for one run: close its stdin (or die) to make it reap."""
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.runtime.reaper", str(pids_file)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def stop(reaper: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """The runner's normal end: let the reaper reap (nothing, usually) and wait for it."""
    if reaper.stdin is not None:
        reaper.stdin.close()
    reaper.wait(timeout=timeout)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    while sys.stdin.buffer.read(65536):  # nothing is ever written: returns b"" when the runner is gone
        pass
    reap_registered(args[0])


if __name__ == "__main__":
    main()
