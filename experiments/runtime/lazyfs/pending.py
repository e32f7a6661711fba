"""The pending layer: what a file holds now (C) against what survives a power loss (D).

D is the backing file on a real file system. C is D plus the writes and
truncations not yet made durable, kept in memory as whole dirty pages. A
read sees C; `sync` writes C into D (fsync, fdatasync, an O_SYNC write,
`flush`, the writeback timer); `lose` forgets C (the power loss).

No FUSE here, so the logic is tested on its own against a plain model.
Reading C at offset x: a dirty page if there is one; else D below
`base_limit` (the smallest size the file had since it was last durable:
what lies in D past a pending truncation is gone from C); else zeros.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

PAGE = 4096


@dataclass
class PendingFile:
    """Unsynced state of one file (one inode): logical size and dirty pages."""

    size: int
    base_limit: int
    pages: dict[int, bytearray] = field(default_factory=dict)
    since: float = field(default_factory=time.monotonic)  # when the oldest pending change was made

    @property
    def pending_bytes(self) -> int:
        """Bytes of dirty pages, clipped to the size (a pending truncation alone counts 0)."""
        return sum(max(0, min(PAGE, self.size - p * PAGE)) for p in self.pages)


def _pread_exact(fd: int, size: int, offset: int) -> bytes:
    """`size` bytes of D at `offset`, zero-padded past its end."""
    data = os.pread(fd, size, offset) if size > 0 else b""
    return data + b"\0" * (size - len(data))


class PendingLayer:
    """Pending state of every file with unsynced changes, keyed by inode number.

    Keyed by inode, not path, so renames, hard links and open-then-unlinked
    files need no bookkeeping: a rename moves the name, the pending data
    stays with the file. The caller passes a descriptor of the backing
    file (opened read-write) with every call and serialises the calls.
    """

    def __init__(self) -> None:
        self.files: dict[int, PendingFile] = {}

    def _state(self, ino: int, fd: int) -> PendingFile:
        st = self.files.get(ino)
        if st is None:
            durable = os.fstat(fd).st_size
            st = self.files[ino] = PendingFile(size=durable, base_limit=durable)
        return st

    def size(self, ino: int, durable_size: int) -> int:
        """Size of C (what stat shows), given D's size."""
        st = self.files.get(ino)
        return durable_size if st is None else st.size

    def _page_now(self, st: PendingFile, fd: int, page: int) -> bytearray:
        """Page `page` of C as it reads now (made dirty by the caller)."""
        if page in st.pages:
            return st.pages[page]
        start = page * PAGE
        from_d = max(0, min(PAGE, st.base_limit - start))
        buf = bytearray(_pread_exact(fd, from_d, start))
        buf.extend(b"\0" * (PAGE - len(buf)))
        return buf

    def read(self, ino: int, fd: int, size: int, offset: int) -> bytes:
        st = self.files.get(ino)
        if st is None:
            return os.pread(fd, size, offset)
        end = min(offset + size, st.size)
        if end <= offset:
            return b""
        out = bytearray()
        pos = offset
        while pos < end:
            page, within = divmod(pos, PAGE)
            n = min(PAGE - within, end - pos)
            if page in st.pages:
                out += st.pages[page][within : within + n]
            else:
                from_d = max(0, min(n, st.base_limit - pos))
                out += _pread_exact(fd, from_d, pos)
                out += b"\0" * (n - from_d)
            pos += n
        return bytes(out)

    def write(self, ino: int, fd: int, data: bytes, offset: int) -> int:
        st = self._state(ino, fd)
        pos, view = offset, memoryview(data)
        while view:
            page, within = divmod(pos, PAGE)
            n = min(PAGE - within, len(view))
            buf = self._page_now(st, fd, page)
            buf[within : within + n] = view[:n]
            st.pages[page] = buf
            pos += n
            view = view[n:]
        if offset > st.size:
            self._zero_gap(st, fd, st.size, offset)
        st.size = max(st.size, offset + len(data))
        return len(data)

    def _zero_gap(self, st: PendingFile, fd: int, start: int, end: int) -> None:
        """Bytes between an old end of file and a write past it read as zeros, whatever D holds there."""
        st.base_limit = min(st.base_limit, start)
        first, last = start // PAGE, (end - 1) // PAGE
        for page in range(first, last + 1):
            if page in st.pages:
                lo = max(start, page * PAGE) - page * PAGE
                hi = min(end, (page + 1) * PAGE) - page * PAGE
                st.pages[page][lo:hi] = b"\0" * (hi - lo)

    def truncate(self, ino: int, fd: int, length: int) -> None:
        st = self._state(ino, fd)
        if length < st.size:
            st.base_limit = min(st.base_limit, length)
            keep = (length + PAGE - 1) // PAGE
            for page in [p for p in st.pages if p >= keep]:
                del st.pages[page]
            within = length % PAGE
            if within and (length // PAGE) in st.pages:
                st.pages[length // PAGE][within:] = b"\0" * (PAGE - within)
        elif length > st.size:
            self._zero_gap(st, fd, st.size, length)
        st.size = length

    def sync(self, ino: int, fd: int, *, fsync: bool = True) -> int:
        """Make C durable: D := C. Returns the bytes written; `fsync` also fsyncs the backing file."""
        st = self.files.pop(ino, None)
        if st is None:
            return 0
        written = 0
        if os.fstat(fd).st_size > st.base_limit:
            os.ftruncate(fd, st.base_limit)
        for page in sorted(st.pages):
            n = max(0, min(PAGE, st.size - page * PAGE))
            if n:
                written += os.pwrite(fd, bytes(st.pages[page][:n]), page * PAGE)
        os.ftruncate(fd, st.size)
        if fsync:
            os.fsync(fd)
        return written

    def forget(self, ino: int) -> None:
        """Drop a file's pending state (its last link is gone)."""
        self.files.pop(ino, None)

    def lose(self) -> int:
        """The power loss: every file reads as D again. Returns the pending bytes dropped."""
        lost = self.pending_bytes()
        self.files.clear()
        return lost

    def pending_bytes(self) -> int:
        return sum(st.pending_bytes for st in self.files.values())

    def expired(self, older_than_s: float) -> list[int]:
        """Inodes whose oldest pending change is older than `older_than_s` (the writeback timer's pick)."""
        now = time.monotonic()
        return [ino for ino, st in self.files.items() if now - st.since >= older_than_s]
