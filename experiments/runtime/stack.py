"""The deployment as real processes: NATS (optional), processor(s), ingest, gateway.

Each service is its own uvicorn process on 127.0.0.1 (uvloop + httptools),
started with its environment, waited for on `/health`, and stopped by pid:
SIGTERM first (the processor drains in-flight work), SIGKILL if it hangs.
Used by `diplom up`, the benchmarks and the end-to-end tests alike.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from experiments.runtime.nats.process import ProcessNats, free_port
from experiments.runtime.nats.provider import NatsServer
from experiments.runtime.processes import register_child, signal_and_wait


class ServiceNotReady(RuntimeError):
    """A service process did not answer HTTP in time (its log tail is attached)."""


@dataclass
class ServiceProcess:
    """One uvicorn process serving one app factory."""

    name: str
    app: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self, ready_timeout: float = 20.0) -> None:
        self.spawn()
        self.wait_ready(ready_timeout)

    def spawn(self) -> None:
        """Start the process without waiting for it (a stack spawns all, then waits for all)."""
        if self.pid is not None:
            raise RuntimeError(f"{self.name} already running as pid {self.pid}")
        cmd = [
            sys.executable, "-m", "uvicorn", "--factory", self.app,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning",
            "--timeout-graceful-shutdown", "15",
        ]  # fmt: skip
        env = {**os.environ, **self.env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        register_child(self.proc.pid)

    def wait_ready(self, timeout: float) -> None:
        """Until /health answers at all (a processor whose backend is down answers 503)."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    break
                try:
                    client.get(f"{self.url}/health")
                    return
                except httpx.HTTPError:
                    time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
        self.kill()
        raise ServiceNotReady(f"{self.name} on {self.url} not ready within {timeout}s\n--- log ---\n{tail}")

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        signal_and_wait(self.proc, sig, timeout)
        self.proc = None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM: uvicorn finishes requests, the processor drains its workers."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        self._signal(signal.SIGKILL, 5.0)


@dataclass
class StackConfig:
    queue: str = "memory"
    workers: int = 4
    processors: int = 1
    gateway_port: int = 0
    ingest_port: int = 0
    processor_ports: list[int] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # for every service
    processor_env: dict[str, str] = field(default_factory=dict)
    gateway_env: dict[str, str] = field(default_factory=dict)


class Stack:
    """gateway -> ingest -> processor(s) [-> NATS], all on 127.0.0.1."""

    def __init__(self, config: StackConfig, workdir: str | Path | None = None, nats: NatsServer | None = None) -> None:
        """`nats`: a broker the caller started and stops (any provider); else one is made here."""
        self.config = config
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="queue-lab-stack-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._own_nats = nats is None and config.queue == "nats"
        self.nats: NatsServer | None = nats
        if nats is None and config.queue == "nats":
            self.nats = ProcessNats(self.workdir / "nats")
        ports = config.processor_ports or [free_port() for _ in range(config.processors)]
        self.processors = [
            ServiceProcess(
                f"processor-{i}",
                "services.processor:create_app",
                port,
                {},
                self.workdir / f"processor-{i}.log",
            )
            for i, port in enumerate(ports)
        ]
        self.ingest = ServiceProcess(
            "ingest", "services.ingest:create_app", config.ingest_port or free_port(), {}, self.workdir / "ingest.log"
        )
        self.gateway = ServiceProcess(
            "gateway",
            "services.gateway:create_app",
            config.gateway_port or free_port(),
            {},
            self.workdir / "gateway.log",
        )
        self._wire()

    def _wire(self) -> None:
        cfg = self.config
        common = {"QUEUE_TYPE": cfg.queue, **cfg.env}
        if self.nats is not None:
            common["NATS_URL"] = self.nats.url
            common["NATS_MONITOR_URL"] = self.nats.monitor_url
        for i, p in enumerate(self.processors):
            p.env = {
                **common,
                "WORKERS": str(cfg.workers),
                "LEDGER_PATH": str(self.ledger_paths[i]),
                "INSTANCE": p.name,
                **cfg.processor_env,
            }
        self.ingest.env = {**common, "PROCESSOR_URL": ",".join(p.url for p in self.processors)}
        self.gateway.env = {
            **common,
            "INGEST_URL": self.ingest.url,
            "PROCESSOR_URL": self.processors[0].url,
            **cfg.gateway_env,
        }

    @property
    def ledger_paths(self) -> list[Path]:
        return [self.workdir / f"ledger-{p.name}.sqlite" for p in self.processors]

    @property
    def services(self) -> list[ServiceProcess]:
        return [*self.processors, self.ingest, self.gateway]

    @property
    def gateway_url(self) -> str:
        return self.gateway.url

    @property
    def processor_url(self) -> str:
        return self.processors[0].url

    def start(self) -> None:
        try:
            if self.nats is not None and self._own_nats:
                self.nats.start()
            # All at once: each spends most of its start importing, and none
            # needs another to be up before it answers /health.
            for s in self.services:
                s.spawn()
            for s in self.services:
                s.wait_ready(20.0)
        except BaseException:
            self.stop()
            raise

    def stop(self, together: bool = False) -> None:
        """Stop in reverse data-flow order so nothing accepted is left unanswered.

        `together`: signal every service at once, then wait for each (about a
        second faster); only for a stack with no request in flight, since a
        hop's downstream may then go away before it answers.
        """
        if together:
            for s in self.services:
                if s.pid is not None:
                    os.kill(s.pid, signal.SIGTERM)
        for s in reversed(self.services):
            s.stop()
        if self.nats is not None and self._own_nats:
            self.nats.close()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
