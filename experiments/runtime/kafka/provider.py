"""One interface for Apache Kafka, whether local processes, containers or a deployment the user runs.

- `KafkaCluster(kind="process")` (`experiments.runtime.kafka.cluster`): KRaft
  nodes as JVMs from the jars scripts/ensure-kafka.sh caches. No Docker: the default.
- `KafkaCluster(kind="docker")`: the same nodes in containers (testcontainers,
  an image built locally), where a Docker engine runs.
- `ExternalKafka` (`experiments.runtime.kafka.external`): `HARNESS_KAFKA=external`
  with `KAFKA_BROKERS`; the harness only reads it and refuses faults.

1 node or 3 (`HARNESS_KAFKA_NODES`). `kafka_server_from_env()` picks one from
`HARNESS_KAFKA` (auto, docker, process, external) like NATS does from
`HARNESS_NATS`: both meet `experiments.runtime.broker.BrokerServer`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from experiments.runtime.broker import choose_kind
from experiments.runtime.kafka.cluster import KafkaCluster
from experiments.runtime.kafka.readiness import KafkaNotReady

__all__ = ["KafkaCluster", "KafkaNotReady", "KafkaServer", "kafka_nodes_from_env", "kafka_server_from_env"]

KIND_ENV = "HARNESS_KAFKA"
NODES_ENV = "HARNESS_KAFKA_NODES"


@runtime_checkable
class KafkaServer(Protocol):
    """A Kafka (1 or 3 nodes) on 127.0.0.1 that a harness can start, fault and remove."""

    @property
    def kind(self) -> str: ...

    @property
    def size(self) -> int:
        """How many brokers."""
        ...

    @property
    def bootstrap_servers(self) -> str:
        """host:port of every broker, comma-separated (`KAFKA_BROKERS`)."""
        ...

    @property
    def pid(self) -> int | None: ...

    @property
    def store_dir(self) -> Path: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 15.0) -> None: ...

    def kill(self) -> None: ...

    def restart(self, hard: bool = False) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> KafkaServer: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def kafka_nodes_from_env(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    value = env.get(NODES_ENV, "1").strip() or "1"
    if value not in ("1", "3"):
        raise ValueError(f"{NODES_ENV}={value!r}: expected 1 or 3")
    return int(value)


def kafka_server_from_env(
    store_dir: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    nodes: int | None = None,
    **kwargs: Any,
) -> KafkaServer:
    """A Kafka of the kind `HARNESS_KAFKA` selects, not started yet; `kwargs` go to `KafkaCluster`."""
    env = dict(os.environ if environ is None else environ)
    kind = choose_kind(KIND_ENV, env, external_hint=" (KAFKA_BROKERS)")
    if kind == "external":
        from experiments.runtime.kafka.external import ExternalKafka

        return ExternalKafka.from_env(env)
    nodes = nodes or kafka_nodes_from_env(env)
    if nodes == 1:
        kwargs.pop("partitionable", None)  # one node has no links to cut (as for NATS)
    return KafkaCluster(store_dir, nodes=nodes, kind=kind, **kwargs)


if TYPE_CHECKING:
    from experiments.runtime.kafka.external import ExternalKafka

    def _conforms(c: KafkaCluster, e: ExternalKafka) -> tuple[KafkaServer, KafkaServer]:
        return c, e
