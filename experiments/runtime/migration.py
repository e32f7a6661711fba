"""Switching a running stack's queue (memory, nats, kafka; any to any): planned, or naive for comparison.

Planned (zero downtime): a processor on the new queue starts beside the old
one; ingest is told to forward to it (`PUT /admin/processors`); the old one
is told to drain (`POST /admin/drain`: it refuses new publishes with 503 +
`X-Processor-Draining`, which ingest retries on the new one with the same
ids), its workers finish everything it still holds, and only then is it
stopped. Naive (the old path, what `scripts/switch-queue.sh --naive` does):
stop the processor, start one on the new queue on the same port; what a
memory queue held is gone, what a broker held stays there unread, and
clients get 503s while no processor answers.

A broker queue needs its broker running beside the stack: the callers pass
it (any `BrokerServer`); `queue_wiring` names it to the new processors.

Both run blocking (threads in the harness: `asyncio.to_thread`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import httpx

from experiments.runtime.broker import BrokerServer
from experiments.runtime.ports import free_port
from experiments.runtime.queue_wiring import backend_fields
from experiments.runtime.stack import ServiceProcess, Stack, kafka_member
from services.settings import BackendSettings, IngestSettings, ProcessorSettings

Queue = Literal["memory", "nats", "kafka"]
QUEUES: tuple[Queue, ...] = ("memory", "nats", "kafka")
DRAIN_POLL_S = 0.1
S = TypeVar("S")


class SwitchFailed(RuntimeError):
    """A switch step did not complete in time; the old processor is left running (nothing is dropped)."""


@dataclass
class SwitchReport:
    """What one switch did and when (perf_counter seconds)."""

    mode: Literal["planned", "naive"]
    source: str
    target: str
    old: list[str]
    new: list[str]
    steps: list[tuple[str, float]] = field(default_factory=list)
    queued_at_drain: int | None = None  # what the old processors still held when they began draining

    def mark(self, step: str) -> None:
        self.steps.append((step, time.perf_counter()))

    def summary(self) -> str:
        t0 = self.steps[0][1] if self.steps else 0.0
        marks = ", ".join(f"{name} +{t - t0:.2f}s" for name, t in self.steps)
        return f"{self.mode} {self.source} -> {self.target}: {', '.join(self.old)} -> {', '.join(self.new)} ({marks})"


def _settings(service: ServiceProcess, model: type[S]) -> S:
    found = [s for s in service.settings if isinstance(s, model)]
    if not found:
        raise ValueError(f"{service.name} has no {model.__name__}")
    return found[0]


def current_queue(stack: Stack) -> str:
    return str(_settings(stack.processors[0], BackendSettings).queue_type)


def _next_index(stack: Stack) -> int:
    numbers = [int(m.group(1)) for p in stack.processors if (m := re.search(r"-(\d+)$", p.name))]
    return max(numbers, default=-1) + 1


def _new_processor(
    stack: Stack, like: ServiceProcess, to: Queue, broker: BrokerServer | None, port: int, position: int
) -> ServiceProcess:
    """A processor with `like`'s settings on queue `to` (at `broker`), its own ledger and name.

    On Kafka it is the static group member of its `position` (`kafka_member`), as the
    processor there before it was: a switch back to Kafka gets the partitions at once.
    """
    name = f"processor-{_next_index(stack)}"
    processor = _settings(like, ProcessorSettings).model_copy(
        update={"instance": name, "ledger_path": str(stack.workdir / f"ledger-{name}.sqlite")}
    )
    member = kafka_member(position) if to == "kafka" else ""
    queue = {"queue_type": to, **backend_fields(to, broker), "kafka_group_instance_id": member}
    backend = _settings(like, BackendSettings).model_copy(update=queue)
    return ServiceProcess(
        name, like.app, port or free_port(), dict(like.env), stack.workdir / f"{name}.log", (processor, backend)
    )


def _admin(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.admin_token}"}


def _wait_healthy(client: httpx.Client, service: ServiceProcess, timeout: float) -> None:
    """Until /health is 200 (the backend connected), not just answering."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.get(f"{service.url}/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SwitchFailed(f"{service.name} on {service.url} not healthy within {timeout}s")


def _route(client: httpx.Client, stack: Stack, processors: list[ServiceProcess]) -> None:
    urls = [p.url for p in processors]
    resp = client.put(f"{stack.ingest.url}/admin/processors", json={"urls": urls}, headers=_admin(stack))
    if resp.status_code != 200:
        raise SwitchFailed(f"ingest refused the processor list: HTTP {resp.status_code} {resp.text[:300]}")
    ingest = _settings(stack.ingest, IngestSettings).model_copy(update={"processor_url": ",".join(urls)})
    stack.ingest.settings = (ingest,)  # a restarted ingest keeps the new route


def _drain(client: httpx.Client, stack: Stack, old: list[ServiceProcess], shared_consumer: bool, timeout: float) -> int:
    """Tell each old processor to drain; wait until each is done (idle only, when the new ones share its consumer).

    Returns how many messages the old processors held when told (their backlog).
    """
    queued = 0
    for p in old:
        resp = client.post(f"{p.url}/admin/drain", headers=_admin(stack))
        if resp.status_code != 200:
            raise SwitchFailed(f"{p.name} refused to drain: HTTP {resp.status_code} {resp.text[:300]}")
        queued += int(resp.json().get("queued") or 0)
    key = "idle" if shared_consumer else "drained"
    deadline = time.monotonic() + timeout
    waiting = list(old)
    last: dict[str, object] = {}
    while waiting:
        if time.monotonic() > deadline:
            raise SwitchFailed(f"not drained within {timeout}s: {', '.join(p.name for p in waiting)} ({last})")
        p = waiting[0]
        last = client.get(f"{p.url}/admin/drain", headers=_admin(stack)).json()
        if last.get(key):
            waiting.pop(0)
        else:
            time.sleep(DRAIN_POLL_S)
    return queued


def planned_switch(
    stack: Stack,
    to: Queue,
    broker: BrokerServer | None = None,
    *,
    ports: list[int] | None = None,
    drain_timeout: float = 120.0,
    ready_timeout: float | None = None,
) -> SwitchReport:
    """New processors beside the old, ingest rerouted, the old drained and then stopped.

    `ready_timeout` None: the stack's own (`StackConfig.ready_timeout_s`; a fresh Kafka's first group join is slow).
    """
    ready_timeout = ready_timeout or stack.config.ready_timeout_s
    old = list(stack.processors)
    report = SwitchReport("planned", current_queue(stack), to, [p.name for p in old], [])
    report.mark("start")
    new: list[ServiceProcess] = []
    for i, like in enumerate(old):
        p = _new_processor(stack, like, to, broker, (ports or [])[i] if ports and i < len(ports) else 0, i)
        stack.processors.append(p)  # stopped with the stack if anything below fails
        new.append(p)
    report.new = [p.name for p in new]
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        for p in new:
            p.spawn()
        for p in new:
            p.wait_ready(ready_timeout)
            _wait_healthy(client, p, ready_timeout)
        report.mark("new ready")
        _route(client, stack, new)
        report.mark("rerouted")
        # the same broker queue on both sides: the new processors share the old ones' consumer (group)
        shared = report.source == to != "memory"
        report.queued_at_drain = _drain(client, stack, old, shared, drain_timeout)
        report.mark("old drained")
    for p in old:
        p.stop()
        stack.processors.remove(p)
    stack.config.queue = to
    report.mark("old stopped")
    return report


def naive_switch(
    stack: Stack, to: Queue, broker: BrokerServer | None = None, ready_timeout: float | None = None
) -> SwitchReport:
    """The old path: stop the processors, start them again on `to` at the same ports."""
    ready_timeout = ready_timeout or stack.config.ready_timeout_s
    old = list(stack.processors)
    report = SwitchReport("naive", current_queue(stack), to, [p.name for p in old], [])
    report.mark("start")
    for p in old:
        p.stop()
    report.mark("old stopped")
    for i, like in enumerate(old):
        p = _new_processor(stack, like, to, broker, like.port, i)
        stack.processors[stack.processors.index(like)] = p
        report.new.append(p.name)
        p.spawn()
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        for p in stack.processors:
            p.wait_ready(ready_timeout)
            _wait_healthy(client, p, ready_timeout)
    stack.config.queue = to
    report.mark("new ready")
    return report


def switch_queue(
    stack: Stack, to: Queue, broker: BrokerServer | None = None, *, naive: bool = False, keep_ports: bool = False
) -> list[SwitchReport]:
    """Switch every processor of `stack` to queue `to` (a broker queue: at `broker`, running).

    `keep_ports` (planned only): a second planned hop moves the work back onto
    the original ports, so URLs others know (the gateway's status probe, the
    spec's :8082/stats) stay right.
    """
    if to not in QUEUES:
        raise ValueError(f"queue {to!r}: expected one of {', '.join(QUEUES)}")
    backend_fields(to, broker)  # a broker queue without its broker: refused before anything stops
    if naive:
        return [naive_switch(stack, to, broker)]
    ports = [p.port for p in stack.processors]
    reports = [planned_switch(stack, to, broker)]
    if keep_ports:
        reports.append(planned_switch(stack, to, broker, ports=ports))
    return reports
