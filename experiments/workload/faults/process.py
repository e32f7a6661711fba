"""Process faults: a graceful restart, a crash (SIGKILL) or a freeze (SIGSTOP) of whatever the role names.

The victim is a broker, the processor, or cluster nodes picked by role; it
is down (or frozen) for `down_s` and started (or thawed) again whatever
happens meanwhile.
"""

from __future__ import annotations

from typing import Any, ClassVar

from experiments.workload.faults.base import FaultBase, FaultReport, StepLike, held_down, run_on


class Restart(FaultBase):
    """Graceful stop, `down_s`, start: the victim flushes what it holds."""

    kind: ClassVar[str] = "restart"
    family: ClassVar[str] = "process"

    def run(self, step: StepLike, victim: Any) -> FaultReport:
        return run_on(victim, lambda: held_down(victim.stop, victim.start, step.down_s), step)


class Kill(FaultBase):
    """SIGKILL, `down_s`, start: a crash, nothing flushed."""

    kind: ClassVar[str] = "kill"
    family: ClassVar[str] = "process"

    def run(self, step: StepLike, victim: Any) -> FaultReport:
        return run_on(victim, lambda: held_down(victim.kill, victim.start, step.down_s), step)


class Pause(FaultBase):
    """Frozen for `down_s` (SIGSTOP .. SIGCONT): connections stay open, nothing answers."""

    kind: ClassVar[str] = "pause"
    family: ClassVar[str] = "process"

    def run(self, step: StepLike, victim: Any) -> FaultReport:
        return run_on(victim, lambda: held_down(victim.pause, victim.resume, step.down_s), step)


FAULTS = (Restart(), Kill(), Pause())
