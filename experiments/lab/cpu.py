"""CPU per message by process, and whether a phase measured the system or the load generator.

psutil reads each process's CPU seconds (user + system, children excluded)
at the start and the end of the load window; divided by the messages
processed in it, that is µs of CPU per message. The load generator is this
process (the notebook's kernel). It shares the machine's cores with the
stack, so a phase where it, or the machine as a whole, was busy at least
`CLIENT_BOUND_PCT` % is flagged client-bound: its throughput is the client's
ceiling, not the system's.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from experiments.runtime.broker import BrokerServer
from experiments.runtime.stack import Stack

CLIENT_BOUND_PCT = 90.0  # % of one core (load generator) or of all cores (machine)
CLIENT = "load generator"


def _cpu_s(proc: psutil.Process) -> float | None:
    try:
        t = proc.cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return float(t.user + t.system)


def _container_pid(container_id: str) -> int | None:
    """A container's main process as the host sees it (docker inspect), or None."""
    with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
        out = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Pid}}", container_id],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        pid = int(out.stdout.strip())
        return pid or None
    return None


def broker_process_name(broker: BrokerServer | None) -> str:
    """What a broker's process is called in the CPU and memory tables: nats-server, or kafka (the JVM)."""
    return "kafka" if hasattr(broker, "bootstrap_servers") else "nats-server"


def measured_processes(stack: Stack, broker: BrokerServer | None) -> dict[str, int]:
    """name -> pid of every process a phase costs: gateway, ingest, each processor, each broker node, the client.

    The broker is nats-server or Kafka's JVM, each node by its pid: a queue's
    cost per message includes the broker it needs, whichever it is.
    """
    pids: dict[str, int] = {}
    for name, service in (("gateway", stack.gateway), ("ingest", stack.ingest)):
        if (pid := service.serving_pid) is not None:
            pids[name] = pid
    for i, p in enumerate(stack.processors, start=1):
        if p.pid is not None:
            pids[f"processor-{i}" if len(stack.processors) > 1 else "processor"] = p.pid
    nodes = getattr(broker, "nodes", None) or ([broker] if broker is not None else [])
    base = broker_process_name(broker)
    for i, node in enumerate(nodes, start=1):
        pid = getattr(node, "pid", None)
        container = getattr(node, "container_id", None)
        if pid is None and container:
            pid = _container_pid(container)
        if pid is not None:
            pids[f"{base}-{i}" if len(nodes) > 1 else base] = pid
    pids[CLIENT] = psutil.Process().pid
    return pids


@dataclass
class CpuWindow:
    """CPU seconds of named processes from `start()` to `stop()`; busy shares up to `load_done()`.

    Per-message cost runs to the end of the drain (a saturated phase's
    backlog is worked off after the load), the busy shares only over the load.
    """

    pids: dict[str, int]
    _procs: dict[str, psutil.Process] = field(default_factory=dict)
    _start: dict[str, float] = field(default_factory=dict)
    _end: dict[str, float] = field(default_factory=dict)
    _machine: list[Any] = field(default_factory=list)  # psutil.cpu_times() at start and load_done
    _client: list[float] = field(default_factory=list)  # the load generator's CPU s at start and load_done
    _wall: list[float] = field(default_factory=list)

    def _mark(self) -> None:
        self._machine.append(psutil.cpu_times())
        self._wall.append(time.perf_counter())
        self._client.append(_cpu_s(psutil.Process()) or 0.0)

    def start(self) -> None:
        for name, pid in self.pids.items():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                proc = psutil.Process(pid)
                cpu = _cpu_s(proc)
                if cpu is not None:
                    self._procs[name], self._start[name] = proc, cpu
        self._mark()

    def load_done(self) -> None:
        self._mark()

    def stop(self) -> None:
        for name, proc in self._procs.items():
            cpu = _cpu_s(proc)
            if cpu is not None:  # a process killed by a fault drops out
                self._end[name] = cpu

    def seconds(self) -> dict[str, float]:
        """CPU seconds per process from start to stop."""
        return {name: self._end[name] - self._start[name] for name in self._end}

    def machine_pct(self) -> float | None:
        """Busy share of all cores over the load, in %."""
        if len(self._machine) < 2:
            return None
        a, b = self._machine[0], self._machine[1]
        idle = (b.idle + getattr(b, "iowait", 0.0)) - (a.idle + getattr(a, "iowait", 0.0))
        total = sum(b) - sum(a)
        return round(100.0 * (1.0 - idle / total), 1) if total > 0 else None

    def client_pct(self) -> float | None:
        """The load generator's CPU over the load, in % of one core."""
        if len(self._wall) < 2 or self._wall[1] <= self._wall[0]:
            return None
        return round(100.0 * (self._client[1] - self._client[0]) / (self._wall[1] - self._wall[0]), 1)


@dataclass(frozen=True)
class CpuSummary:
    """What a result row and its series keep of a window."""

    per_process_us: dict[str, float]
    total_us: float | None
    client_pct: float | None
    machine_pct: float | None

    @property
    def client_bound(self) -> bool | None:
        if self.client_pct is None and self.machine_pct is None:
            return None
        return (self.client_pct or 0.0) >= CLIENT_BOUND_PCT or (self.machine_pct or 0.0) >= CLIENT_BOUND_PCT


def summarize(window: CpuWindow, messages: int) -> CpuSummary:
    """µs of CPU per message for each process and in all, over `messages` processed in the window."""
    seconds = window.seconds()
    per = {name: round(s * 1e6 / messages, 2) for name, s in seconds.items()} if messages > 0 else {}
    total = round(sum(per.values()), 2) if per else None
    return CpuSummary(per, total, window.client_pct(), window.machine_pct())
