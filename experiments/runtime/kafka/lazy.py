"""A KRaft Kafka node whose data dir is on a lazy file system: a broker that can lose power.

What is on the lazy disk: the node's whole data dir (`log.dirs`), which in
combined mode holds both the partitions' logs and the KRaft metadata log
(`__cluster_metadata-0`), with `meta.properties` and the checkpoints. A
power loss hits a machine's disk, not a chosen directory, so both lose what
they never fsynced: the partition logs under Kafka's flush policy (by
default Kafka never fsyncs them and relies on replication), the metadata log
under KRaft's (it fsyncs what it appends before it counts it committed).
What stays on the real disk: server.properties and the server's own logs,
the harness's files rather than the broker's state.

The storage tool's output (format) is made durable at once (`flush`): a
machine that was installed and then lost power still has its installation.
After that only Kafka's own fsyncs make anything durable.

Kafka maps its index files (shared mmap); the lazy file system supports that
(see `experiments.runtime.lazyfs.ops`): mapped pages reach the pending layer
when written back and are lost like any write never synced; Kafka rebuilds
the indexes of the segments past its recovery point after an unclean
shutdown anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.runtime.kafka.config import NodePlan
from experiments.runtime.kafka.process import ProcessKafkaNode
from experiments.runtime.lazyfs.mount import Writeback
from experiments.runtime.lazyfs.power import OnLazyDisk, power_off_all

__all__ = ["LazyKafkaNode", "power_off_all"]


class LazyKafkaNode(ProcessKafkaNode, OnLazyDisk):
    """A KRaft node (broker + controller) with its data dir on a lazy FUSE mount (`writeback_s` None = never)."""

    kind = "process-lazyfs"

    def __init__(
        self, plan: NodePlan, voters: list[NodePlan], node_dir: Path, *, writeback_s: Writeback = None, **kwargs: Any
    ) -> None:
        super().__init__(plan, voters, node_dir, **kwargs)
        self._init_lazy_disk(node_dir / "lazy", writeback_s)

    @property
    def data_dir(self) -> Path:
        return self.disk / "data"

    def prepare(self, like: ProcessKafkaNode | None = None) -> None:
        """Mount (once), write the config and format; a fresh format is made durable (see the module doc)."""
        self.mount()
        was_formatted = self.formatted
        super().prepare(like)
        if not was_formatted:
            self.lazyfs.flush()

    def close(self) -> None:
        """Kill the JVM, unmount (by mount point) and stop the lazy FS daemon (by pid)."""
        self.unmount()
