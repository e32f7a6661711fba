"""A queue switch as a fault step: `switch:<queue>` (planned, zero downtime) or `naive-switch:<queue>`.

The target names the queue switched to (`experiments.runtime.migration`);
switching to a broker needs one running beside the first queue.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from experiments.runtime.migration import QUEUES, switch_queue
from experiments.workload.faults.base import Deployment, FaultBase, FaultReport, Need, StepLike, finish


class Switch(FaultBase):
    """Planned: a processor on the new queue beside the old, ingest rerouted, the old drained, then stopped."""

    kind: ClassVar[str] = "switch"
    family: ClassVar[str] = "switch"
    needs: ClassVar[frozenset[Need]] = frozenset({"second-queue"})
    default_target: ClassVar[str] = ""  # a switch names the queue it switches to
    targets: ClassVar[tuple[str, ...]] = QUEUES
    naive: ClassVar[bool] = False

    def resolve(self, step: StepLike, deployment: Deployment) -> object:
        return deployment

    def run(self, step: StepLike, victim: Any) -> FaultReport:
        assert isinstance(victim, Deployment)
        report = FaultReport(started=time.perf_counter())
        switch_queue(victim.stack, step.target, victim.broker, naive=self.naive)  # type: ignore[arg-type]
        report = finish(report, victim)
        report.victims = [f"queue -> {step.target}"]
        return report


class NaiveSwitch(Switch):
    """Naive: stop the processor, start it on the other queue (what it held is gone)."""

    kind: ClassVar[str] = "naive-switch"
    naive: ClassVar[bool] = True


FAULTS = (Switch(), NaiveSwitch())
