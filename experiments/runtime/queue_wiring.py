"""How a running broker is named to a processor's queue backend: the one table, per queue family.

A stack wires its processors with it at start (`experiments.runtime.stack`),
and a queue switch wires the new processors with it (`experiments.runtime.migration`),
so NATS and Kafka are told apart here and nowhere else on those paths.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from experiments.runtime.broker import BrokerServer

MAX_REPLICAS = 3  # a cluster replicates on every node, at most 3, unless the run says otherwise


@dataclass(frozen=True)
class BrokerWiring:
    """The `BackendSettings` fields for one broker: where it is, and how many replicas by default."""

    address: dict[str, object]  # the broker the harness started: nothing overrides it
    replicas: dict[str, object]  # a default: the run's own env may ask for fewer


def _nats(server: Any) -> BrokerWiring:
    return BrokerWiring(
        {"nats_url": server.url, "nats_monitor_url": server.monitor_url},
        {"nats_replicas": min(MAX_REPLICAS, int(getattr(server, "size", 1)))},
    )


def _kafka(server: Any) -> BrokerWiring:
    return BrokerWiring(
        {"kafka_brokers": server.bootstrap_servers}, {"kafka_replicas": min(MAX_REPLICAS, int(server.size))}
    )


WIRINGS: Mapping[str, Callable[[Any], BrokerWiring]] = {"nats": _nats, "kafka": _kafka}
"""Queue family -> how a broker of that family is wired into `BackendSettings`."""


def broker_wiring(queue: str, server: BrokerServer | None) -> BrokerWiring:
    """The settings that put a processor on `queue` at `server` (memory: none; a broker queue needs one)."""
    if queue not in WIRINGS:
        return BrokerWiring({}, {})
    if server is None:
        raise ValueError(f"queue {queue} needs a running {queue} broker")
    return WIRINGS[queue](server)


def backend_fields(queue: str, server: BrokerServer | None) -> dict[str, object]:
    """Address and replicas together: a processor put on `queue` at `server`."""
    wiring = broker_wiring(queue, server)
    return {**wiring.replicas, **wiring.address}
