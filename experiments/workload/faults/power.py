"""Power loss: a kill that also drops what the victim wrote but never fsynced.

SIGKILL, `lose` on its lazy file system, `down_s`, start. A broker needs
its store on a lazy file system (`Setup(store="lazyfs")`); for the memory
queue the machine's power loss is the processor's death, so it is a kill.
On a lazy cluster `power-loss:leader` (or `follower`, `quorum`) hits those
nodes, `power-loss:queue` every node at once (Jepsen's coordinated power
failure).
"""

from __future__ import annotations

from typing import Any, ClassVar

from experiments.workload.faults.base import (
    NEED_HINTS,
    FaultBase,
    FaultReport,
    Need,
    PowerLossable,
    StepLike,
    power_loss,
    run_on,
)
from experiments.workload.faults.nodes import ClusterNodes


class PowerLoss(FaultBase):
    """Every victim node loses power at once, stays off `down_s`, starts again; the report has the bytes lost."""

    kind: ClassVar[str] = "power-loss"
    family: ClassVar[str] = "power"
    needs: ClassVar[frozenset[Need]] = frozenset({"lazy-store"})  # of a broker; the memory queue's is a kill
    plot_names: ClassVar[dict[str, str]] = {
        "": "power loss",
        "leader": "leader\nloses power",
        "follower": "a follower\nloses power",
        "quorum": "two nodes\nlose power",
        "queue": "all three\nlose power",
    }

    def run(self, step: StepLike, victim: Any) -> FaultReport:
        if not isinstance(victim, ClusterNodes | PowerLossable):
            raise ValueError(
                f"fault {step.label}: {type(victim).__name__} has no lazy store; use {NEED_HINTS['lazy-store']}"
            )
        return run_on(victim, lambda: power_loss([victim], step.down_s), step)


FAULTS = (PowerLoss(),)
