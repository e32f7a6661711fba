"""The FUSE operations: a passthrough of a backing directory with file data held in a `PendingLayer`.

What is lazy (lost by `lose` unless made durable first): the *contents* of
regular files, that is writes and truncations (including O_TRUNC at open).
They become durable by fsync / fdatasync, by a write on an O_SYNC / O_DSYNC
handle (the whole file's pending data, as an fsync would: Linux promises only
the written range, so this is kinder), by `flush`, or by the writeback timer.

What passes straight through and is durable at once (so kinder than a real
crash, where an un-fsynced directory can lose them): create, mknod, mkdir,
rmdir, unlink, rename, symlink, link, chmod, chown, utimens. A file created
and written but never fsynced is therefore still there after `lose`, empty
(or at its last durable length); a renamed file keeps its new name. Not
supported: xattrs, locks (local to the mount, not forwarded).

Shared mmap works (Kafka maps its index files): a page written through a
mapping stays in the kernel's page cache until it is written back here as an
ordinary write (pending like any other), by msync / fsync (then durable),
by the kernel's writeback, or by `LazyFS.lose`, which writes the mount's
dirty pages back before it drops the pending layer: a mapped write never
synced is lost like any other.

A write on an O_SYNC / O_DSYNC handle is made durable here (the flags are
remembered at open), whether or not the kernel also sends an fsync after it
(it does not with direct_io, which this mount once used).
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from dataclasses import dataclass
from typing import Any

import mfusepy as fuse

from experiments.runtime.lazyfs.pending import PendingLayer

_SYNC_FLAGS = os.O_SYNC | os.O_DSYNC
_STAT_KEYS = ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size", "st_blocks", "st_blksize")


@dataclass
class _Handle:
    fd: int
    ino: int
    sync: bool
    append: bool


def _stat_dict(st: os.stat_result, size: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {k: getattr(st, k) for k in _STAT_KEYS}
    out.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
    if size is not None and size != st.st_size:
        out["st_size"] = size
        out["st_blocks"] = (size + 511) // 512
    return out


class LazyOperations(fuse.Operations):  # type: ignore[misc]
    """Passthrough of `backing` with file contents kept pending until synced."""

    use_ns = True

    def __init__(self, backing: str, *, fsync_backing: bool = True) -> None:
        self.backing = os.path.realpath(backing)
        self.fsync_backing = fsync_backing  # a durable write costs a real fsync, so sync_always costs what it costs
        self.layer = PendingLayer()
        self._mutex = threading.RLock()
        self.handles: dict[int, _Handle] = {}
        self._next_fh = 1

    # -- helpers ---------------------------------------------------------------

    def _full(self, path: str) -> str:
        return os.path.join(self.backing, path.lstrip("/"))

    def _new_handle(self, fd: int, flags: int) -> int:
        h = _Handle(fd, os.fstat(fd).st_ino, bool(flags & _SYNC_FLAGS), bool(flags & os.O_APPEND))
        with self._mutex:
            fh = self._next_fh
            self._next_fh += 1
            self.handles[fh] = h
        return fh

    def _sync_ino(self, ino: int, fd: int) -> int:
        return self.layer.sync(ino, fd, fsync=self.fsync_backing)

    # -- control (called from the control thread) -------------------------------

    def lose(self) -> int:
        with self._mutex:
            return self.layer.lose()

    def flush_all(self, only_older_than_s: float | None = None) -> int:
        """Make pending data durable (all of it, or what the writeback timer picks)."""
        written = 0
        with self._mutex:
            inos = list(self.layer.files) if only_older_than_s is None else self.layer.expired(only_older_than_s)
            for ino in inos:
                fd = self._fd_for(ino)
                if fd is None:
                    self.layer.forget(ino)  # no open handle and no name: unreachable, as good as deleted
                    continue
                try:
                    written += self.layer.sync(ino, fd, fsync=False)
                finally:
                    os.close(fd)
        return written

    def _fd_for(self, ino: int) -> int | None:
        """A new read-write descriptor of the backing inode: through an open handle, else by a name found for it."""
        for h in self.handles.values():
            if h.ino == ino:
                return os.open(f"/proc/self/fd/{h.fd}", os.O_RDWR)
        for root, _dirs, files in os.walk(self.backing):
            for name in files:
                full = os.path.join(root, name)
                try:
                    if os.lstat(full).st_ino == ino:
                        return os.open(full, os.O_RDWR)
                except OSError:
                    continue
        return None

    def report(self) -> dict[str, int]:
        with self._mutex:
            return {"pending_bytes": self.layer.pending_bytes(), "pending_files": len(self.layer.files)}

    # -- files -------------------------------------------------------------------

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        with self._mutex:
            if fh is not None and fh in self.handles:
                st = os.fstat(self.handles[fh].fd)
            elif path is not None:
                st = os.lstat(self._full(path))
            else:
                raise fuse.FuseOSError(errno.EBADF)
            size = self.layer.size(st.st_ino, st.st_size) if stat.S_ISREG(st.st_mode) else None
            return _stat_dict(st, size)

    def open(self, path: str, flags: int) -> int:
        acc = flags & os.O_ACCMODE
        fd = os.open(self._full(path), (flags & ~(os.O_TRUNC | os.O_ACCMODE | os.O_CREAT | os.O_EXCL)) | os.O_RDWR)
        fh = self._new_handle(fd, flags)
        if flags & os.O_TRUNC and acc != os.O_RDONLY:
            self.truncate(path, 0, fh)
        return fh

    def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
        full = self._full(path)
        fd = os.open(full, os.O_CREAT | os.O_RDWR | (flags & os.O_EXCL), mode)
        fh = self._new_handle(fd, flags)
        if flags & os.O_TRUNC:
            self.truncate(path, 0, fh)
        return fh

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        with self._mutex:
            h = self.handles[fh]
            return self.layer.read(h.ino, h.fd, size, offset)

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        with self._mutex:
            h = self.handles[fh]
            if h.append:
                offset = self.layer.size(h.ino, os.fstat(h.fd).st_size)
            n = self.layer.write(h.ino, h.fd, data, offset)
            if h.sync:
                self._sync_ino(h.ino, h.fd)
            return n

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        with self._mutex:
            if fh is not None and fh in self.handles:
                h = self.handles[fh]
                self.layer.truncate(h.ino, h.fd, length)
                if h.sync:
                    self._sync_ino(h.ino, h.fd)
                return 0
            if path is None:
                raise fuse.FuseOSError(errno.EBADF)
            fd = os.open(self._full(path), os.O_RDWR)
            try:
                self.layer.truncate(os.fstat(fd).st_ino, fd, length)
            finally:
                os.close(fd)
            return 0

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        with self._mutex:
            h = self.handles[fh]
            self._sync_ino(h.ino, h.fd)
            return 0

    def flush(self, path: str | None, fh: int) -> int:
        return 0  # close(2) promises nothing durable

    def release(self, path: str | None, fh: int) -> int:
        with self._mutex:
            h = self.handles.pop(fh)
            os.close(h.fd)  # pending data stays in the layer, keyed by inode
            return 0

    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        if self.fsync_backing and path is not None:
            fd = os.open(self._full(path), os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return 0

    # -- names and metadata: straight through -----------------------------------

    def _forget_if_last_link(self, full: str) -> None:
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return
        if stat.S_ISREG(st.st_mode) and st.st_nlink <= 1 and not any(h.ino == st.st_ino for h in self.handles.values()):
            self.layer.forget(st.st_ino)

    def unlink(self, path: str) -> int:
        full = self._full(path)
        with self._mutex:
            self._forget_if_last_link(full)
            os.unlink(full)
        return 0

    def rename(self, old: str, new: str) -> int:
        with self._mutex:
            self._forget_if_last_link(self._full(new))  # a file replaced by the rename is gone
            os.rename(self._full(old), self._full(new))
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._full(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._full(path))
        return 0

    def mknod(self, path: str, mode: int, dev: int) -> int:
        os.mknod(self._full(path), mode, dev)
        return 0

    def symlink(self, target: str, source: str) -> int:
        os.symlink(source, self._full(target))
        return 0

    def link(self, target: str, source: str) -> int:
        os.link(self._full(source), self._full(target))
        return 0

    def readlink(self, path: str) -> str:
        return os.readlink(self._full(path))

    def chmod(self, path: str | None, mode: int) -> int:
        if path is None:
            raise fuse.FuseOSError(errno.EBADF)
        os.chmod(self._full(path), mode)
        return 0

    def chown(self, path: str | None, uid: int, gid: int) -> int:
        if path is None:
            raise fuse.FuseOSError(errno.EBADF)
        os.lchown(self._full(path), uid, gid)
        return 0

    def utimens(self, path: str | None, times: tuple[int, int] | None = None) -> int:
        if path is None:
            raise fuse.FuseOSError(errno.EBADF)
        if times is None:
            os.utime(self._full(path))
        else:
            os.utime(self._full(path), ns=times)
        return 0

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._full(path), amode):
            raise fuse.FuseOSError(errno.EACCES)
        return 0

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._full(path))]

    def statfs(self, path: str) -> dict[str, int]:
        stv = os.statvfs(self._full(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag",
                "f_frsize", "f_namemax")  # fmt: skip
        return {k: getattr(stv, k) for k in keys}
