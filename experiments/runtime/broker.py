"""The one protocol every broker provider meets, NATS or Kafka: where it runs, its pid, and the fault verbs.

Experiments, notebooks and both test suites start, fault and remove a broker
through these operations only, so NATS (`experiments.runtime.nats.provider`)
and Kafka (`experiments.runtime.kafka.provider`) slot into the same places;
each adds its own addresses (`url` and `monitor_url`, `bootstrap_servers`).
Providers: process, docker, external; 1 or 3 nodes.

`choose_kind` reads `HARNESS_NATS` / `HARNESS_KAFKA` the same way for both.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

log = logging.getLogger(__name__)

BrokerKind = Literal["docker", "process", "external"]
KIND_CHOICES = ("auto", "docker", "process", "external")


@runtime_checkable
class BrokerServer(Protocol):
    """A broker (one node or a cluster) on 127.0.0.1 that a harness can start, fault and remove.

    Ports and store are fixed for the object's life, so clients reconnect to the
    same addresses and what was stored survives `restart` and `kill` + `start`.
    """

    @property
    def kind(self) -> str:
        """'process', 'docker' or 'external': where the broker runs, for logs and result rows."""
        ...

    @property
    def pid(self) -> int | None:
        """Host pid of the (first) running broker process, None while stopped: for signals and memory."""
        ...

    @property
    def store_dir(self) -> Path:
        """Host directory holding what the broker stores."""
        ...

    def start(self) -> None:
        """Start, or start again on the same ports and store; return once the broker serves clients."""
        ...

    def stop(self, timeout: float = ...) -> None:
        """Graceful shutdown."""
        ...

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        ...

    def restart(self, hard: bool = False) -> None:
        """`stop` (or `kill` when `hard`), then `start`."""
        ...

    def pause(self) -> None:
        """Freeze: connections stay open, nothing answers."""
        ...

    def resume(self) -> None:
        """Thaw a paused broker."""
        ...

    def close(self) -> None:
        """Stop for good and release what the object made."""
        ...

    def __enter__(self) -> BrokerServer: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


@runtime_checkable
class BrokerNode(Protocol):
    """One node of a replicated broker, with the verbs a fault uses on it."""

    def start(self) -> None: ...
    def stop(self, timeout: float = ...) -> None: ...
    def kill(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...


@runtime_checkable
class ReplicatedBroker(Protocol):
    """What a fault aimed at `leader`, `follower`, `quorum` or `cluster` needs of a broker cluster, NATS or Kafka.

    `queue` names what is replicated: a JetStream stream, or a Kafka topic
    (its partition 0). Node names are the product's own (`n1` for
    nats-server, `k1` for the Kafka node with id 1).
    """

    @property
    def kind(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def names(self) -> list[str]: ...

    def node(self, name: str) -> BrokerNode:
        """The node called `name`."""
        ...

    def leader_of(self, queue: str, timeout: float = 1.0) -> str | None:
        """The node leading `queue` now, None while it has none (an election) or nobody answers."""
        ...

    def wait_leader(self, queue: str, timeout: float, *, not_name: str | None = None) -> str:
        """Until `queue` has a leader (other than `not_name`): its name; TimeoutError after `timeout`."""
        ...


@runtime_checkable
class Partitionable(Protocol):
    """A cluster one of whose nodes can be cut off from its peers while its clients still reach it.

    NATS (per-route proxies) and Kafka (per-link proxies for the controller
    quorum and replication), each when built `partitionable=True`; `proxies`
    is empty otherwise, and `isolate` refuses.
    """

    @property
    def proxies(self) -> Mapping[Any, object]: ...

    def isolate(self, name: str) -> None:
        """Cut every link between node `name` and its peers (new ones too); its clients still reach it."""
        ...

    def heal(self) -> None:
        """Let every link through again."""
        ...


# (variable, value) -> (kind, why): resolved once per process, so the engine is
# probed and the choice logged once however many brokers a run makes.
_resolved: dict[tuple[str, str], tuple[BrokerKind, str]] = {}


def _docker_problem() -> str | None:
    try:
        from experiments.runtime.nats.docker import docker_engine_problem
    except ImportError as exc:
        return f"testcontainers is not installed ({exc})"
    return docker_engine_problem()


def choose_kind(variable: str, environ: Mapping[str, str] | None = None, external_hint: str = "") -> BrokerKind:
    """Where a broker runs, from `variable` (auto: docker when an engine answers, else process; docker; process;
    external).

    `docker` asked for explicitly and no engine answering is an error, not a
    silent fallback: a run that meant containers must not measure processes.
    """
    env = os.environ if environ is None else environ
    value = env.get(variable, "auto").strip().lower() or "auto"
    if value not in KIND_CHOICES:
        raise ValueError(f"{variable}={value!r}: expected one of {', '.join(KIND_CHOICES)}")
    if (variable, value) in _resolved:
        return _resolved[(variable, value)][0]
    kind: BrokerKind
    if value == "process":
        kind, why = "process", f"{variable}=process"
    elif value == "external":
        kind, why = "external", f"{variable}=external{external_hint}"
    else:
        problem = _docker_problem()
        if value == "docker":
            if problem is not None:
                raise RuntimeError(
                    f"{variable}=docker but {problem}; start an engine (scripts/ensure-docker.sh) "
                    f"or set {variable}=process"
                )
            kind, why = "docker", f"{variable}=docker"
        elif problem is None:
            kind, why = "docker", f"{variable}=auto and a Docker engine answers"
        else:
            kind, why = "process", f"{variable}=auto and {problem}"
    _resolved[(variable, value)] = (kind, why)
    log.info("%s: the broker runs as a %s (%s)", variable, kind, why)
    return kind


if TYPE_CHECKING:
    from experiments.runtime.kafka.cluster import KafkaCluster
    from experiments.runtime.kafka.provider import KafkaServer
    from experiments.runtime.nats.cluster import NatsCluster
    from experiments.runtime.nats.provider import NatsServer

    # Static proof that both brokers' providers meet the one protocol, and both clusters the replicated one.
    def _conforms(n: NatsServer, k: KafkaServer) -> tuple[BrokerServer, BrokerServer]:
        return n, k

    def _replicated(n: NatsCluster, k: KafkaCluster) -> tuple[ReplicatedBroker, ReplicatedBroker]:
        return n, k

    def _partitionable(n: NatsCluster, k: KafkaCluster) -> tuple[Partitionable, Partitionable]:
        return n, k
