"""Open-loop load with a fault beside it: the load-and-fault half of the phase pipeline (`lab.phase.run_phase`).

The fault runs in a thread once its trigger fires (a time after the load
started, or a number of requests issued), through the one fault runner
(`faults.runner`); the load does not wait for it, the result waits for both.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from experiments.workload.faults import CodeFault, FaultReport, FaultRunner, Progress, inject
from experiments.workload.load import BodyFactory, LoadResult, id_bodies, open_loop


@dataclass(frozen=True)
class LoadUnderFault:
    """The load's records and the fault's report (None: no fault ran), on the clock started at `t0`."""

    result: LoadResult
    report: FaultReport | None
    t0: float  # perf_counter when the load started
    t0_ns: int  # time.time_ns() at the same moment


async def load_under_fault(
    url: str,
    bodies: BodyFactory,
    *,
    rate: float,
    duration: float,
    fault: FaultRunner | CodeFault | None,
    at_s: float | None,
    after_requests: int | None = None,
    max_in_flight: int = 512,
    keep_ids: bool = False,
    timeout: float = 10.0,
    t0: tuple[float, int] | None = None,
    on_load_done: Callable[[], None] | None = None,
) -> LoadUnderFault:
    """`rate` requests/s for `duration` s to `url`; `fault` fires at its trigger and is awaited after the load.

    `t0` (perf_counter, time_ns): the phase's clock, if the caller started it already.
    """
    progress = Progress()
    t0_s, t0_ns = t0 if t0 is not None else (time.perf_counter(), time.time_ns())
    injector = (
        asyncio.create_task(inject(fault, progress, at_s=at_s, after_requests=after_requests, t0=t0_s))
        if fault is not None
        else None
    )
    try:
        result = await open_loop(
            url,
            bodies,
            rate=rate,
            duration=duration,
            max_in_flight=max_in_flight,
            timeout=timeout,
            keep_ids=keep_ids,
            on_sent=progress,
        )
        if on_load_done is not None:
            on_load_done()
        report = await injector if injector is not None else None
    finally:
        if injector is not None:
            injector.cancel()
    return LoadUnderFault(result, report, t0_s, t0_ns)


async def load_with_fault(
    gateway_url: str,
    *,
    rate: float,
    duration: float,
    fault: Callable[[], object] | None,
    fault_at: float,
    prefix: str | None = None,
) -> tuple[LoadResult, set[str], str]:
    """Open-loop load with client-given ids for `duration` s; `fault` (code or a `FaultRunner`) runs at `fault_at` s.

    The fault tests' form of the pipeline: they count by id themselves.
    Returns the load result, the ids sent, and the id prefix used.
    """
    prefix = prefix or uuid.uuid4().hex[:8]
    runner = fault if isinstance(fault, FaultRunner | CodeFault) else CodeFault(fault) if fault is not None else None
    done = await load_under_fault(
        f"{gateway_url}/api/v1/ingest",
        id_bodies(prefix, source="durability"),
        rate=rate,
        duration=duration,
        fault=runner,
        at_s=fault_at,
        keep_ids=True,
    )
    return done.result, {f"{prefix}-{r.seq}" for r in done.result.records}, prefix
