"""nats-server with its JetStream store on a lazy file system: a node that can lose power.

`LazyNats` is a `ProcessNats` whose JetStream store (`js/` on the mount;
its config and log stay beside it, on the real disk: they are the
harness's, not the server's state) lives on a `LazyFS` mount, so
`power_off()` (SIGKILL, then drop every unsynced write) followed by
`start()` is the power loss JetStream's `sync_interval` is about. One
object per node: a cluster provider gives each node its own mount and the
fault takes a list of them. The mount's life and the power loss are shared
with Kafka's lazy node (`experiments.runtime.lazyfs.power`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.runtime.lazyfs.mount import Writeback
from experiments.runtime.lazyfs.power import OnLazyDisk, power_off_all
from experiments.runtime.nats.process import ProcessNats

__all__ = ["LazyNats", "power_off_all"]


class LazyNats(ProcessNats, OnLazyDisk):
    """A local nats-server whose JetStream store is on a lazy FUSE mount (`writeback_s` None = never)."""

    kind = "process-lazyfs"

    def __init__(self, store_dir: str | Path | None = None, *, writeback_s: Writeback = None, **kwargs: Any) -> None:
        super().__init__(store_dir, **kwargs)
        self._init_lazy_disk(self.store_dir / "lazy", writeback_s)
        self.jetstream_dir = self.disk / "js"

    def start(self) -> None:
        """Mount the lazy store (once), then start the server on it."""
        self.mount()
        super().start()

    def close(self) -> None:
        """Stop the server, unmount, and remove a store dir this object created."""
        self.unmount()
        super().close()
