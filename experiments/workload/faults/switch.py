"""A queue switch as a fault step: `switch:<queue>` (planned, zero downtime) or `naive-switch:<queue>`.

The target names the queue switched to (`experiments.runtime.migration`);
switching to a broker queue needs its broker running beside the first queue
(`Setup(standby=...)`), which the deployment lists in `Deployment.brokers`.
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
        to = step.target
        switch_queue(victim.stack, to, victim.brokers.get(to), naive=self.naive)  # type: ignore[arg-type]
        report = finish(report, victim)
        report.victims = [f"queue -> {step.target}"]
        return report


class NaiveSwitch(Switch):
    """Naive: stop the processor, start it on the other queue (what it held is gone)."""

    kind: ClassVar[str] = "naive-switch"
    naive: ClassVar[bool] = True


FAULTS = (Switch(), NaiveSwitch())
