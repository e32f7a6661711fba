"""The lazy file system's own process: mount, serve the control socket, write back, watch the parent.

Run as `python -m experiments.runtime.lazyfs BACKING MOUNTPOINT --control SOCK
[--writeback-s N|never] [--parent-pid PID]`. It runs in the foreground until
unmounted (`fusermount3 -u MOUNTPOINT`) or sent SIGTERM/SIGINT; libfuse then
unmounts. Even a SIGKILL leaves no mount: a watchdog process (`watchdog.py`) unmounts
when this process is gone, and libfuse's `auto_unmount` tries the same.
When the process that started it is gone (its parent pid changed), it
unmounts and exits by itself: a timed-out notebook kernel leaves nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from experiments.runtime.lazyfs.availability import require_fuse

if TYPE_CHECKING:  # mfusepy loads libfuse at import: only after require_fuse() said it is there
    from experiments.runtime.lazyfs.ops import LazyOperations

WATCH_PARENT_EVERY_S = 0.25
log = logging.getLogger("lazyfs")


def parse_writeback(text: str) -> float | None:
    """'never' -> None (pending data stays pending until fsync or lose), else seconds > 0."""
    if text.strip().lower() == "never":
        return None
    value = float(text)
    if value <= 0:
        raise ValueError(f"writeback_s={text!r}: expected seconds > 0 or 'never'")
    return value


def _serve_control(sock_path: str, ops: LazyOperations) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(8)
    while True:
        conn, _ = server.accept()
        with conn:
            try:
                line = conn.makefile("rb").readline().decode().strip()
                if line == "lose":
                    answer: dict[str, object] = {"lost_bytes": ops.lose()}
                elif line == "flush":
                    answer = {"written_bytes": ops.flush_all()}
                elif line == "report":
                    answer = dict(ops.report())
                elif line == "ping":
                    answer = {"ok": True}
                else:
                    answer = {"error": f"unknown command {line!r}"}
            except Exception as exc:  # the answer carries it; the server goes on
                answer = {"error": repr(exc)}
            conn.sendall(json.dumps(answer).encode() + b"\n")


def _writeback(ops: LazyOperations, writeback_s: float) -> None:
    period = min(0.5, writeback_s / 4)
    while True:
        time.sleep(period)
        try:
            ops.flush_all(only_older_than_s=writeback_s)
        except OSError:
            log.exception("writeback failed")


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(WATCH_PARENT_EVERY_S)
    log.warning("parent %d is gone: unmounting", parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)  # libfuse's handler ends the loop and unmounts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m experiments.runtime.lazyfs", description=__doc__)
    ap.add_argument("backing")
    ap.add_argument("mountpoint")
    ap.add_argument("--control", required=True, help="Unix socket path for lose/flush/report")
    ap.add_argument("--writeback-s", default="never", help="seconds, or 'never' (default)")
    ap.add_argument("--parent-pid", type=int, default=None)
    ap.add_argument("--no-fsync-backing", action="store_true", help="durable = written to the backing dir, no fsync")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="lazyfs %(levelname)s %(message)s")
    writeback_s = parse_writeback(args.writeback_s)
    require_fuse()
    import mfusepy

    from experiments.runtime.lazyfs.ops import LazyOperations

    ops = LazyOperations(args.backing, fsync_backing=not args.no_fsync_backing)
    Path(args.control).unlink(missing_ok=True)
    threading.Thread(target=_serve_control, args=(args.control, ops), daemon=True).start()
    if writeback_s is not None:
        threading.Thread(target=_writeback, args=(ops, writeback_s), daemon=True).start()
    if args.parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True).start()
    # Outlives a SIGKILL of this process just long enough to unmount (stdio closed: it holds no pipe open).
    subprocess.Popen(
        [sys.executable, "-m", "experiments.runtime.lazyfs.watchdog", str(os.getpid()), args.mountpoint],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    log.info("mounting %s on %s (writeback_s=%s)", args.backing, args.mountpoint, args.writeback_s)
    try:
        mfusepy.FUSE(
            ops,
            args.mountpoint,
            foreground=True,
            # No direct_io: it forbids shared mmap (ENODEV), and Kafka maps its index files. Without
            # writeback_cache every write(2) still reaches the pending layer at once (write-through); reads
            # may come from the page cache, which FUSE drops at each open (no keep_cache); a mapped page
            # reaches the layer when written back (msync, fsync, the kernel's writeback, `LazyFS.lose`).
            attr_timeout=0,
            entry_timeout=0,
            negative_timeout=0,
            auto_unmount=True,
            fsname="lazyfs",
        )
    except RuntimeError as exc:
        # libfuse's loop reports an error (8) when the mount was taken away by `fusermount3 -u`:
        # that is the ordinary way to stop it. Anything else is a real failure.
        if str(exc) != "8":
            raise
    log.info("unmounted %s", args.mountpoint)
