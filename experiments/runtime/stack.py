"""The deployment as real processes: NATS (optional), processor(s), ingest, gateway.

Each service is its own uvicorn process on 127.0.0.1 (uvloop + httptools),
started with its environment, waited for on `/health`, and stopped by pid:
SIGTERM first (the processor drains in-flight work), SIGKILL if it hangs.
Used by `diplom up`, the benchmarks and the end-to-end tests alike.

A service is configured by settings objects (`services.settings`), validated
here, before any process starts; `to_env` turns them into its environment.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx
import psutil
from pydantic_settings import BaseSettings

from experiments.runtime.lifetime import Managed
from experiments.runtime.nats.process import ProcessNats
from experiments.runtime.nats.provider import NatsServer
from experiments.runtime.ports import free_ports
from experiments.runtime.processes import die_with_parent, register_child, signal_and_wait
from experiments.runtime.queue_wiring import broker_wiring
from services.settings import BackendSettings, GatewaySettings, IngestSettings, ProcessorSettings, load, to_env

if TYPE_CHECKING:
    from experiments.runtime.kafka.provider import KafkaServer

S = TypeVar("S", bound=BaseSettings)


AsgiServer = Literal["uvicorn", "granian"]


class ServiceNotReady(RuntimeError):
    """A service process did not answer HTTP in time (its log tail is attached)."""


@dataclass
class ServiceProcess:
    """One uvicorn process serving one app factory.

    Its environment: this process's, then `settings` (through `to_env`), then
    `env` (variables no settings class knows, or overrides). Not in repr: it
    carries secrets.
    """

    name: str
    app: str
    port: int
    env: dict[str, str] = field(repr=False)
    log_path: Path
    settings: Sequence[BaseSettings] = field(default=(), repr=False)
    server: AsgiServer = "uvicorn"  # or "granian" (the same ASGI app; measured against uvicorn in bench-services)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    @property
    def serving_pid(self) -> int | None:
        """The process that runs the app: granian's one worker under its master; uvicorn's own pid."""
        pid = self.pid
        if pid is None or self.server != "granian":
            return pid
        with contextlib.suppress(psutil.NoSuchProcess):
            children = psutil.Process(pid).children()
            if len(children) == 1:
                return int(children[0].pid)
        return pid

    def start(self, ready_timeout: float = 20.0) -> None:
        self.spawn()
        self.wait_ready(ready_timeout)

    def spawn(self) -> None:
        """Start the process without waiting for it (a stack spawns all, then waits for all)."""
        if self.pid is not None:
            raise RuntimeError(f"{self.name} already running as pid {self.pid}")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                env=self.child_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        register_child(self.proc.pid)

    def command(self) -> list[str]:
        """uvicorn (the default), or granian: one worker process under a master, the same app factory."""
        if self.server == "granian":
            return [
                sys.executable, "-m", "granian", "--interface", "asgi", "--factory",
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                "--loop", "uvloop", "--no-access-log", "--log-level", "warning",
                "--workers-kill-timeout", "15", self.app,
            ]  # fmt: skip
        return [
            sys.executable, "-m", "uvicorn", "--factory", self.app,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning",
            "--timeout-graceful-shutdown", "15",
        ]  # fmt: skip

    def child_env(self) -> dict[str, str]:
        """The environment the process is started with."""
        env = dict(os.environ)
        for settings in self.settings:
            env.update(to_env(settings))
        env.update(self.env)
        return env

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
        code = self.proc.poll() if self.proc is not None else None
        self.kill()
        why = f"exited with code {code} before it was ready" if code is not None else f"not ready within {timeout}s"
        raise ServiceNotReady(f"{self.name} on {self.url} {why}\n--- log ---\n{tail}")

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        signal_and_wait(self.proc, sig, timeout)
        self.proc = None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM: uvicorn finishes requests, the processor drains its workers."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL, and the same to its children (granian serves from a worker process under a master)."""
        children = []
        if self.pid is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                children = psutil.Process(self.pid).children(recursive=True)
        self._signal(signal.SIGKILL, 5.0)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
                child.wait(5)


def kafka_member(position: int) -> str:
    """The static group member id (`KAFKA_GROUP_INSTANCE_ID`) of the processor at `position` in a stack.

    By position, not by name: a static member does not leave its group when it
    stops, so a processor started again after a crash, or a later queue switch
    back to Kafka with processors of new names, must come back under the same
    id to get the partitions at once instead of after the old member's 45 s
    session timeout (backends.kafka.config.KafkaConfig.consumer). Two live
    processors never share a position.
    """
    return f"processor-{position}"


@dataclass
class StackConfig:
    """The deployment's knobs, and each service's settings.

    `gateway`, `ingest`, `processor`, `backend`: settings objects each service
    starts from (else its defaults and this process's environment). The stack
    sets on them what it wires itself: `queue` (QUEUE_TYPE), `workers`, the
    services' URLs, the NATS URLs, each processor's ledger and instance name.
    `env`, `processor_env`, `gateway_env`: the same settings as variables
    (`{"ACK_WAIT": "2"}`), validated into those objects; a variable no
    settings class of that service knows is passed to it as it is.
    Precedence: settings objects < `env` < wiring < `processor_env` / `gateway_env`.
    """

    queue: str = "memory"
    workers: int = 4
    processors: int = 1
    gateway_port: int = 0
    ingest_port: int = 0
    processor_ports: list[int] = field(default_factory=list)
    gateway: GatewaySettings | None = None
    ingest: IngestSettings | None = None
    processor: ProcessorSettings | None = None
    backend: BackendSettings | None = None
    env: dict[str, str] = field(default_factory=dict, repr=False)  # for every service
    processor_env: dict[str, str] = field(default_factory=dict, repr=False)
    gateway_env: dict[str, str] = field(default_factory=dict, repr=False)
    gateway_server: AsgiServer = "uvicorn"  # the gateway's ASGI server
    hop_server: AsgiServer = "uvicorn"  # ingest's and the processors' ASGI server
    # A processor answers once its backend is connected: on a fresh Kafka its first group join makes the
    # coordinator's topic, tens of seconds on a busy 2-core machine. Waiting ends as soon as all answer.
    ready_timeout_s: float = 60.0


def _fields(model: type[BaseSettings], env: Mapping[str, str]) -> dict[str, str]:
    names = {n.upper(): n for n in model.model_fields}
    return {names[k.upper()]: v for k, v in env.items() if k.upper() in names}


_KNOWN = {
    n.upper() for m in (GatewaySettings, IngestSettings, ProcessorSettings, BackendSettings) for n in m.model_fields
}


def _unknown(*envs: Mapping[str, str]) -> dict[str, str]:
    """Variables no settings class reads (for a service's own extras): passed through as they are."""
    return {k: v for env in envs for k, v in env.items() if k.upper() not in _KNOWN}


def _build(model: type[S], base: S | None, *layers: Mapping[str, Any]) -> S:
    """`base` (or the defaults) with each layer of field values over it, validated; ConfigError names a bad one."""
    values: dict[str, Any] = base.model_dump() if base is not None else {}
    for layer in layers:
        values.update(layer)
    return load(model, **values)


class Stack(Managed):
    """gateway -> ingest -> processor(s) [-> NATS | Kafka], all on 127.0.0.1."""

    def __init__(
        self,
        config: StackConfig,
        workdir: str | Path | None = None,
        nats: NatsServer | None = None,
        kafka: KafkaServer | None = None,
    ) -> None:
        """`nats` / `kafka`: a broker the caller started and stops (any provider); else one is made here."""
        self.config = config
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="queue-lab-stack-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The admin endpoints' token (a planned queue switch: experiments.runtime.migration).
        self.admin_token = config.env.get("ADMIN_TOKEN") or secrets.token_urlsafe(16)
        self._own_nats = nats is None and config.queue == "nats"
        self.nats: NatsServer | None = nats
        if nats is None and config.queue == "nats":
            self.nats = ProcessNats(self.workdir / "nats")
        self._own_kafka = kafka is None and config.queue == "kafka"
        self.kafka: KafkaServer | None = kafka
        if kafka is None and config.queue == "kafka":
            from experiments.runtime.kafka.cluster import KafkaCluster

            self.kafka = KafkaCluster(self.workdir / "kafka", nodes=1)
        # every port of the stack drawn together, so no two services are given one port
        own = free_ports(config.processors + 2)
        ports = config.processor_ports or own[2:]
        self.processors = [
            ServiceProcess(
                f"processor-{i}",
                "services.processor:create_app",
                port,
                {},
                self.workdir / f"processor-{i}.log",
                server=config.hop_server,
            )
            for i, port in enumerate(ports)
        ]
        self.ingest = ServiceProcess(
            "ingest",
            "services.ingest:create_app",
            config.ingest_port or own[0],
            {},
            self.workdir / "ingest.log",
            server=config.hop_server,
        )
        self.gateway = ServiceProcess(
            "gateway",
            "services.gateway:create_app",
            config.gateway_port or own[1],
            {},
            self.workdir / "gateway.log",
            server=config.gateway_server,
        )
        self._wire()

    def _wire(self) -> None:
        cfg = self.config
        # the run's env may set the replicas, never the addresses of the brokers started here
        wirings = [broker_wiring(q, b) for q, b in (("nats", self.nats), ("kafka", self.kafka)) if b is not None]
        backend = _build(
            BackendSettings,
            cfg.backend,
            {"queue_type": cfg.queue},
            *[w.replicas for w in wirings],
            _fields(BackendSettings, cfg.env),
            *[w.address for w in wirings],
            _fields(BackendSettings, cfg.processor_env),
        )
        self.backend_settings = backend  # what every processor's queue backend is built from
        for i, p in enumerate(self.processors):
            wiring = {
                "workers": cfg.workers,
                "ledger_path": str(self.ledger_paths[i]),
                "instance": p.name,
                "admin_token": self.admin_token,
            }
            settings = _build(
                ProcessorSettings,
                cfg.processor,
                _fields(ProcessorSettings, cfg.env),
                wiring,
                _fields(ProcessorSettings, cfg.processor_env),
            )
            member = {"kafka_group_instance_id": kafka_member(i)} if cfg.queue == "kafka" else {}
            p.settings = (settings, backend.model_copy(update=member))
            p.env = _unknown(cfg.env, cfg.processor_env)
        urls = ",".join(p.url for p in self.processors)
        ingest = _build(
            IngestSettings,
            cfg.ingest,
            _fields(IngestSettings, cfg.env),
            {"processor_url": urls, "admin_token": self.admin_token},
        )
        self.ingest.settings = (ingest,)
        self.ingest.env = _unknown(cfg.env)
        gateway = _build(
            GatewaySettings,
            cfg.gateway,
            _fields(GatewaySettings, cfg.env),
            {"ingest_url": self.ingest.url, "processor_url": self.processors[0].url},
            _fields(GatewaySettings, cfg.gateway_env),
        )
        self.gateway.settings = (gateway,)
        self.gateway.env = _unknown(cfg.env, cfg.gateway_env)

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
            if self.kafka is not None and self._own_kafka:
                self.kafka.start()
            # All at once: each spends most of its start importing, and none
            # needs another to be up before it answers /health.
            for s in self.services:
                s.spawn()
            for s in self.services:
                s.wait_ready(self.config.ready_timeout_s)
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
        if self.kafka is not None and self._own_kafka:
            self.kafka.close()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
