"""A server process whose data lives on a lazy disk: the power loss, shared by every broker that has one.

A process kill loses nothing a server wrote (the page cache keeps it); a
power loss loses what was written but not fsynced. `OnLazyDisk` is what a
process node (`LazyNats`, `LazyKafkaNode`) adds to its `kill`: one `LazyFS`
mount, mounted once and kept across restarts, `power_off()` (SIGKILL, then
drop every unsynced write) and `unmount()` for its `close`. `power_off_all`
is the coordinated power failure of several nodes at one moment.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from experiments.runtime.lazyfs.mount import LazyFS, Writeback


class PowerLossNode(Protocol):
    def power_off(self) -> int: ...


class OnLazyDisk:
    """Mixin for a process node (listed after it, so its `kill` wins): its store on a lazy FUSE mount.

    `root` holds the mount's backing dir and mount point; what the node keeps
    on the mount is its own choice (`disk` is the mount point).
    """

    lazyfs: LazyFS

    def _init_lazy_disk(self, root: Path, writeback_s: Writeback) -> None:
        self.lazyfs = LazyFS(root / "backing", root / "mnt", writeback_s=writeback_s)

    @property
    def disk(self) -> Path:
        return self.lazyfs.mountpoint

    @property
    def writeback_s(self) -> Writeback:
        return self.lazyfs.writeback_s

    def kill(self) -> None:
        """The node's SIGKILL (the process class's own, which comes first in the MRO)."""
        raise NotImplementedError

    def mount(self) -> None:
        """Mount the lazy disk unless it is: once per object, a restart keeps the mount and what it holds."""
        if self.lazyfs.pid is None:
            self.lazyfs.start()

    def power_off(self) -> int:
        """SIGKILL the server, then drop what it wrote but never fsynced; returns the bytes lost."""
        self.kill()
        return self.lazyfs.lose()

    def pending_bytes(self) -> int:
        """Bytes written and not yet durable: what a power loss now would drop."""
        return self.lazyfs.pending_bytes()

    def unmount(self) -> None:
        """Kill the server (it holds files open on the mount), then unmount and stop the daemon."""
        self.kill()
        self.lazyfs.stop()


def power_off_all(nodes: Sequence[PowerLossNode]) -> int:
    """These nodes lose power at the same moment (one thread each); the bytes they lose, summed."""
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        return sum(pool.map(lambda n: n.power_off(), nodes))
