"""nats-server with its JetStream store on a lazy file system: a node that can lose power.

A process kill loses nothing a server wrote (the page cache keeps it); a
power loss loses what was written but not fsynced. `LazyNats` is a
`ProcessNats` whose store lives on a `LazyFS` mount, so `power_off()`
(SIGKILL, then drop every unsynced write) followed by `start()` is the power
loss JetStream's `sync_interval` is about. One object per node: a cluster
provider gives each node its own mount and the fault takes a list of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from experiments.runtime.lazyfs import LazyFS
from experiments.runtime.lazyfs.mount import Writeback
from experiments.runtime.nats.process import ProcessNats


class LazyNats(ProcessNats):
    """A local nats-server whose JetStream store is on a lazy FUSE mount (`writeback_s` None = never)."""

    kind = "process-lazyfs"

    def __init__(self, store_dir: str | Path | None = None, *, writeback_s: Writeback = None, **kwargs: Any) -> None:
        super().__init__(store_dir, **kwargs)
        lazy = self.store_dir / "lazy"
        self.lazyfs = LazyFS(lazy / "backing", lazy / "mnt", writeback_s=writeback_s)
        self.jetstream_dir = lazy / "mnt" / "js"

    @property
    def writeback_s(self) -> Writeback:
        return self.lazyfs.writeback_s

    def start(self) -> None:
        """Mount the lazy store (once), then start the server on it."""
        if self.lazyfs.pid is None:
            self.lazyfs.start()
        super().start()

    def power_off(self) -> int:
        """SIGKILL the server, then drop what it wrote but never fsynced; returns the bytes lost."""
        self.kill()
        return self.lazyfs.lose()

    def pending_bytes(self) -> int:
        return self.lazyfs.pending_bytes()

    def close(self) -> None:
        """Stop the server, unmount, and remove a store dir this object created."""
        self.kill()
        self.lazyfs.stop()
        super().close()


def power_off_all(nodes: Sequence[LazyNats]) -> int:
    """These nodes lose power at the same moment (one thread each); the bytes they lose, summed."""
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        return sum(pool.map(lambda n: n.power_off(), nodes))
