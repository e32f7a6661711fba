"""What one deployment of a measured phase is: which queue, how many workers and processors, which knobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from backends.settings import BackendSettings, default_of
from experiments.results.schema import Backend

BACKENDS: tuple[Backend, ...] = ("memory", "nats", "nats-sync", "kafka", "kafka-flush")
QueueFamily = Literal["memory", "nats", "kafka"]
# kafka-flush: an fsync after every message, Kafka's analogue of JetStream's `sync_interval: always`.
KAFKA_FLUSH_EACH = {"log.flush.interval.messages": "1"}

# Faults need quick failure detection and redelivery to finish in seconds.
FAST_FAILOVER_ENV = {
    "ACK_WAIT": "2",
    "PUBLISH_TIMEOUT": "1",
    "NATS_RECONNECT_WAIT": "0.2",
    "HTTP_TIMEOUT": "5",
}


@dataclass(frozen=True)
class Setup:
    """One deployment: which queue, how many workers and processor instances."""

    backend: Backend = "memory"
    workers: int = 4
    processors: int = 1
    processing_ms: float = 0.0
    queue_size: int = 10_000  # memory queue capacity (the spec's QUEUE_SIZE)
    env: dict[str, str] = field(default_factory=dict)
    store: Literal["disk", "lazyfs"] = "disk"  # lazyfs: each broker node's store (NATS or Kafka) on a lazy FS
    writeback_s: float | None = None  # lazyfs only: pending data made durable after this long; None = never
    nodes: int | None = None  # nats-servers or Kafka brokers: 1 or 3; None: HARNESS_NATS_NODES / HARNESS_KAFKA_NODES
    partitionable: bool = False  # a cluster with per-link proxies, NATS or Kafka (partition faults)
    standby: Literal["nats", "kafka"] | None = None  # a second broker beside the first queue, for a switch to it
    client_proxy: bool = False  # the processors reach the broker through a TCP proxy (drop-connections)

    def __post_init__(self) -> None:
        # Checked here, not when a service fails to start 20 s later.
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r}: expected one of {', '.join(BACKENDS)}")
        if self.standby is not None and self.standby == self.family:
            raise ValueError(f"standby {self.standby!r}: the deployment's own queue already runs on it")
        if self.workers < 1 or self.processors < 1:
            raise ValueError("workers and processors must be >= 1")

    @property
    def family(self) -> QueueFamily:
        """The services' QUEUE_TYPE: the backend without its storage policy."""
        return "memory" if self.backend == "memory" else "kafka" if self.backend.startswith("kafka") else "nats"

    @property
    def service_env(self) -> dict[str, str]:
        """Environment shared by every service of the deployment (fast failover, then the setup's own)."""
        return {"QUEUE_SIZE": str(self.queue_size), **FAST_FAILOVER_ENV, **self.env}

    @property
    def kafka_partitions(self) -> int | None:
        """The topic's partitions for a Kafka setup (`KAFKA_PARTITIONS` in `env`, else the backend's default)."""
        if self.family != "kafka":
            return None
        return int(self.service_env.get("KAFKA_PARTITIONS", default_of(BackendSettings, "kafka_partitions")))

    @property
    def ack_wait_s(self) -> float:
        return float(self.service_env.get("ACK_WAIT", "30"))
