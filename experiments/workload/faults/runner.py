"""The one fault runner: resolve the victim, wait for the trigger, run the fault in a thread, keep its report.

`FaultRunner` is also a plain callable (the tests hand it to the load as
code); `inject` is the measured phase's form: it waits for the step's time
or progress trigger first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from experiments.workload.faults.base import Deployment, FaultReport
from experiments.workload.faults.step import NO_FAULT, FaultStep


class Progress:
    """Requests issued so far, with a waitable threshold (fed by the load generator's `on_sent`)."""

    def __init__(self) -> None:
        self.count = 0
        self._waiters: list[tuple[int, asyncio.Event]] = []

    def __call__(self, n: int) -> None:
        self.count = n
        for threshold, event in self._waiters:
            if n >= threshold:
                event.set()

    async def reached(self, threshold: int) -> None:
        event = asyncio.Event()
        if self.count >= threshold:
            return
        self._waiters.append((threshold, event))
        await event.wait()


class FaultRunner:
    """One step against one deployment: the victim is resolved at once (a fault the run cannot take fails now)."""

    def __init__(self, step: FaultStep, deployment: Deployment) -> None:
        self.step = step
        self.victim = None if step.kind == NO_FAULT else step.fault.resolve(step, deployment)
        self.report: FaultReport | None = None

    def __call__(self) -> FaultReport:
        """Run the fault to completion (blocking); the report is kept on `self.report` too."""
        if self.victim is None:
            now = time.perf_counter()
            self.report = FaultReport(started=now, ended=now, returned=now)
        else:
            self.report = self.step.fault.run(self.step, self.victim)
        return self.report


class CodeFault:
    """A fault written as code (a test's callable) run the same way: its report has only the times."""

    def __init__(self, action: Callable[[], object]) -> None:
        self.action = action
        self.report: FaultReport | None = None

    def __call__(self) -> FaultReport:
        started = time.perf_counter()
        try:
            self.action()
        finally:
            now = time.perf_counter()
            self.report = FaultReport(started=started, ended=now, returned=now)
        return self.report


Injectable = FaultRunner | CodeFault


async def inject(
    runner: Injectable, progress: Progress, *, at_s: float | None, after_requests: int | None, t0: float
) -> FaultReport:
    """Wait for the trigger (`after_requests` issued, else `at_s` after `t0`), then run the fault in a thread."""
    if after_requests is not None:
        await progress.reached(after_requests)
    elif at_s is not None:
        await asyncio.sleep(max(0.0, t0 + at_s - time.perf_counter()))
    return await asyncio.to_thread(runner)
