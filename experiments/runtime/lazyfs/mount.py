"""Start, command and stop a lazy file system mount from the harness (or a test).

`LazyFS(backing, mountpoint, writeback_s=None)` starts the daemon
(`experiments.runtime.lazyfs.daemon`) as a child process in its own session,
waits until the mount answers, and offers `lose()`, `flush()` and
`pending_bytes()`. `stop()` always unmounts (`fusermount3 -u`, lazily if
busy) and stops the daemon by its pid; it runs at interpreter exit too
(atexit) and on leaving the `with` block. A run killed outright leaves
nothing either: the daemon unmounts when its parent is gone, and
`auto_unmount` covers a SIGKILL of the daemon itself.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from experiments.runtime.lazyfs.availability import require_fuse
from experiments.runtime.lazyfs.control import send_command
from experiments.runtime.lifetime import Managed
from experiments.runtime.processes import die_with_parent, register_child, register_mount, signal_and_wait

Writeback = float | None  # seconds, or None for "never"
_libc = ctypes.CDLL(None, use_errno=True)


class LazyFSNotReady(RuntimeError):
    """The daemon did not mount in time (its log is in the message)."""


def is_mounted(path: str | Path) -> bool:
    """Whether `path` is a mount point in the mount table (a dead FUSE mount counts too: it needs unmounting)."""
    target = os.path.realpath(path)
    return any(part.mountpoint == target for part in psutil.disk_partitions(all=True))


def write_back_dirty_pages(mountpoint: str | Path) -> None:
    """syncfs(2) on the mount: the kernel sends its dirty (mapped) pages to the daemon as writes."""
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs {mountpoint}: {os.strerror(err)}")
    finally:
        os.close(fd)


def drop_page_cache(mountpoint: str | Path) -> None:
    """Forget the kernel's cached pages of every file on the mount (clean after syncfs; FUSE refetches them)."""
    for root, _dirs, files in os.walk(mountpoint):
        for name in files:
            with contextlib.suppress(OSError):  # gone meanwhile, or not a regular file
                fd = os.open(os.path.join(root, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)


def writeback_arg(writeback_s: Writeback) -> str:
    return "never" if writeback_s is None else repr(float(writeback_s))


class LazyFS(Managed):
    """A lazy FUSE mount of `backing` on `mountpoint`, run by a child process."""

    def __init__(
        self,
        backing: str | Path,
        mountpoint: str | Path,
        *,
        writeback_s: Writeback = None,
        fsync_backing: bool = True,
        ready_timeout: float = 10.0,
    ) -> None:
        self.backing = Path(backing)
        self.mountpoint = Path(mountpoint)
        self.writeback_s = writeback_s
        self.fsync_backing = fsync_backing
        self.ready_timeout = ready_timeout
        self.control_path = self.backing.parent / f".{self.backing.name}.lazyfs.sock"
        self.log_path = self.backing.parent / f"{self.backing.name}.lazyfs.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> None:
        require_fuse()
        if self.pid is not None:
            raise RuntimeError(f"lazyfs already running as pid {self.pid}")
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "experiments.runtime.lazyfs", str(self.backing), str(self.mountpoint),
               "--control", str(self.control_path), "--writeback-s", writeback_arg(self.writeback_s),
               "--parent-pid", str(os.getpid())]  # fmt: skip
        if not self.fsync_backing:
            cmd.append("--no-fsync-backing")
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent()
            )
        register_child(self._proc.pid)
        register_mount(str(self.mountpoint))
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                break
            if is_mounted(self.mountpoint):
                with contextlib.suppress(OSError, ValueError):
                    send_command(self.control_path, "ping", timeout=1.0)
                    return
            time.sleep(0.02)
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        raise LazyFSNotReady(f"lazyfs on {self.mountpoint} not ready within {self.ready_timeout}s\n--- log ---\n{tail}")

    def command(self, name: str) -> dict[str, Any]:
        if self.pid is None:
            raise RuntimeError("lazyfs is not running")
        return send_command(self.control_path, name)

    def lose(self) -> int:
        """The power loss: drop every write not yet durable. Returns the bytes dropped.

        Pages written through a shared mapping and not yet written back sit in
        the kernel's page cache, not in the pending layer: they are written back
        first (syncfs: FUSE writes, no fsync reaches the daemon), so they are
        lost too, and none reaches the layer after the loss. Then the page
        cache of every file is dropped, so even a descriptor kept open across
        the loss reads what is durable.
        """
        if self.pid is None:  # no daemon: a syncfs on its dead mount would hang
            raise RuntimeError("lazyfs is not running")
        write_back_dirty_pages(self.mountpoint)
        lost = int(self.command("lose")["lost_bytes"])
        drop_page_cache(self.mountpoint)
        return lost

    def flush(self) -> int:
        """Make every pending write durable. Returns the bytes written."""
        return int(self.command("flush")["written_bytes"])

    def report(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.command("report").items()}

    def pending_bytes(self) -> int:
        return self.report()["pending_bytes"]

    def stop(self) -> None:
        """Unmount and stop the daemon, by pid; safe to call twice, and at exit."""
        with contextlib.suppress(ValueError):
            atexit.unregister(self.stop)
        if is_mounted(self.mountpoint):
            done = subprocess.run(["fusermount3", "-u", str(self.mountpoint)], capture_output=True, check=False)
            if done.returncode != 0 and is_mounted(self.mountpoint):
                subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], capture_output=True, check=False)
        if self._proc is not None:
            signal_and_wait(self._proc, signal.SIGTERM, 5.0)
            self._proc = None
        self.control_path.unlink(missing_ok=True)
        deadline = time.monotonic() + 5.0
        while is_mounted(self.mountpoint) and time.monotonic() < deadline:
            time.sleep(0.02)  # auto_unmount's watcher finishing

    def close(self) -> None:
        """`stop`: what leaving `with` does."""
        self.stop()
