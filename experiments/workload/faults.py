"""Fault steps that run inside a measured phase: restart, kill, pause or power-loss a component.

A step names *what* fails by role, not by process, so one notebook compares
backends fairly: `target="queue"` is where the queue lives (the NATS server
for JetStream, the processor itself for the memory queue), `"nats"` and
`"processor"` name the process directly. It fires at a time or after the
load generator issued N requests, whichever the step sets.

`power-loss` is a kill that also drops what the victim wrote but never
fsynced: SIGKILL, `lose` on its lazy file system, `down_s`, start. It needs
NATS on a lazy store (`LazyNats`); for the memory queue the machine's power
loss is the processor's death, so it is a kill. `power_loss()` takes a list
of nodes, so a cluster can lose power on one node or several at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from experiments.runtime.nats.provider import NatsServer
from experiments.runtime.processes import freeze
from experiments.runtime.stack import ServiceProcess, Stack
from experiments.workload.load import LoadResult, id_bodies, open_loop

FaultKind = Literal["none", "restart", "kill", "pause", "power-loss"]
FAULT_KINDS: tuple[str, ...] = ("none", "restart", "kill", "pause", "power-loss")
FaultTarget = Literal["queue", "nats", "processor"]


@dataclass(frozen=True)
class FaultStep:
    """One fault: `kind` on `target`, `down_s` long, triggered by time or progress."""

    kind: FaultKind = "none"
    target: FaultTarget = "queue"
    at_s: float | None = 2.0  # seconds after the load started
    after_requests: int | None = None  # or: once this many requests were issued
    down_s: float = 1.0  # how long the target stays down (or frozen)

    @property
    def label(self) -> str:
        return "none" if self.kind == "none" else f"{self.kind}:{self.target}"

    @classmethod
    def parse(cls, text: str, **kwargs: float | int | None) -> FaultStep:
        """'none', 'kill', 'pause:nats', 'restart:processor', 'power-loss' ... (target defaults to the queue)."""
        kind, _, target = text.partition(":")
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault {text!r}: kind must be one of {', '.join(FAULT_KINDS)}")
        if target not in ("", "queue", "nats", "processor"):
            raise ValueError(f"fault {text!r}: target must be queue, nats or processor")
        return cls(kind=kind, target=target or "queue", **kwargs)  # type: ignore[arg-type]


@runtime_checkable
class PowerLossable(Protocol):
    """A node whose power can fail: `power_off` kills it and drops its unsynced writes."""

    def power_off(self) -> int: ...
    def start(self) -> None: ...


def power_loss(nodes: Sequence[PowerLossable], down_s: float) -> int:
    """Every node loses power at once, stays off `down_s`, and starts again; returns the bytes lost."""
    lost = sum(node.power_off() for node in nodes)
    time.sleep(down_s)
    for node in nodes:
        node.start()
    return lost


class _ProcessorHandle:
    """A processor service seen through the same verbs as a NATS server."""

    def __init__(self, service: ServiceProcess) -> None:
        self.service = service

    def stop(self, timeout: float = 20.0) -> None:
        self.service.stop(timeout)

    def kill(self) -> None:
        self.service.kill()

    def start(self) -> None:
        self.service.start()

    def pause(self) -> None:
        pid = self.service.pid
        if pid is None:
            raise RuntimeError(f"{self.service.name} is not running")
        freeze(pid)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def power_off(self) -> int:
        """The memory queue's machine loses power: the processor dies with its queue (a kill)."""
        self.service.kill()
        return 0

    def _signal(self, sig: signal.Signals) -> None:
        pid = self.service.pid
        if pid is None:
            raise RuntimeError(f"{self.service.name} is not running")
        os.kill(pid, sig)


def resolve_target(step: FaultStep, stack: Stack, nats: NatsServer | None) -> NatsServer | _ProcessorHandle:
    target = step.target
    if target == "queue":
        target = "nats" if nats is not None else "processor"
    if target == "nats":
        if nats is None:
            raise ValueError(f"fault {step.label}: this run has no NATS server")
        return nats
    return _ProcessorHandle(stack.processors[0])


def apply(step: FaultStep, victim: NatsServer | _ProcessorHandle) -> None:
    """Run the fault to completion (blocking): down for `down_s`, then back."""
    if step.kind == "restart":
        victim.stop()
        time.sleep(step.down_s)
        victim.start()
    elif step.kind == "kill":
        victim.kill()
        time.sleep(step.down_s)
        victim.start()
    elif step.kind == "power-loss":
        if not isinstance(victim, PowerLossable):
            raise ValueError(
                f"fault {step.label}: {type(victim).__name__} has no lazy store; use Setup(store='lazyfs')"
            )
        power_loss([victim], step.down_s)
    elif step.kind == "pause":
        victim.pause()
        try:
            time.sleep(step.down_s)
        finally:
            victim.resume()


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


async def inject(
    step: FaultStep, stack: Stack, nats: NatsServer | None, progress: Progress, t0: float
) -> tuple[float, float] | None:
    """Wait for the step's trigger, run it in a thread; return its (start, end) in s after `t0` (perf_counter)."""
    if step.kind == "none":
        return None
    victim = resolve_target(step, stack, nats)
    if step.after_requests is not None:
        await progress.reached(step.after_requests)
    elif step.at_s is not None:
        await asyncio.sleep(max(0.0, t0 + step.at_s - time.perf_counter()))
    start = time.perf_counter() - t0
    await asyncio.to_thread(apply, step, victim)
    return start, time.perf_counter() - t0


async def load_with_fault(
    gateway_url: str,
    *,
    rate: float,
    duration: float,
    fault: Callable[[], None] | None,
    fault_at: float,
    prefix: str | None = None,
) -> tuple[LoadResult, set[str], str]:
    """Open-loop load with client-given ids for `duration` s; `fault` (a callable) runs in a thread at `fault_at` s.

    The fault tests' form of `inject`: the fault is code, not a `FaultStep`.
    Returns the load result, the ids sent, and the id prefix used.
    """
    prefix = prefix or uuid.uuid4().hex[:8]

    async def run_fault() -> None:
        await asyncio.sleep(fault_at)
        if fault is not None:
            await asyncio.to_thread(fault)

    injector = asyncio.create_task(run_fault())
    result = await open_loop(
        f"{gateway_url}/api/v1/ingest",
        id_bodies(prefix, source="durability"),
        rate=rate,
        duration=duration,
        timeout=10.0,
        keep_ids=True,
    )
    await injector
    return result, {f"{prefix}-{r.seq}" for r in result.records}, prefix
