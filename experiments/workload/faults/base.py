"""What every fault plug-in is: a kind, what it needs, whom it hits by role, how it runs, and that it always heals.

A fault is one class in its family's module (`process`, `power`,
`cluster_ops`, `network`, `switch`), registered by kind in `step.FAULTS`.
It names its victim by *role*, never by product, so a comparison stays fair
and a third broker fits beside NATS:

- `queue`: where the queue lives (the broker when there is one, the
  processor itself for the memory queue);
- `broker`: the broker process (one node, or every node of a cluster),
  whatever the product: a nats-server or a Kafka JVM (`Deployment.broker`);
- `processor`: the first processor service;
- `leader`, `follower`, `quorum` (leader and one follower), `cluster`
  (every node): nodes of a replicated broker (`ReplicatedBroker`: a NATS
  cluster, whose leader is the stream's, or a Kafka cluster, whose leader
  is that of the backend topic's partition 0), picked when the fault fires.

`run(step, victim)` runs the fault to completion in a thread and returns a
`FaultReport`; like Jepsen's nemesis `teardown!`, whatever fails on the way,
everything it took down, froze or cut off is back when it returns (or raises).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from experiments.runtime.broker import BrokerServer, Partitionable, ReplicatedBroker
from experiments.runtime.nats.cluster import NatsCluster
from experiments.runtime.processes import freeze
from experiments.runtime.stack import ServiceProcess, Stack
from experiments.runtime.tcp_proxy import TcpProxy
from experiments.workload.faults.nodes import ClusterNodes

Need = Literal["cluster", "nats-cluster", "lazy-store", "partitionable", "second-queue", "client-proxy"]
ROLES: tuple[str, ...] = ("queue", "broker", "processor", "leader", "follower", "quorum", "cluster")
CLUSTER_ROLES: tuple[str, ...] = ("leader", "follower", "quorum", "cluster")
NEED_HINTS: dict[Need, str] = {  # how a notebook gets what a fault needs
    "cluster": "a broker cluster of 3 nodes the harness started (Setup(nodes=3), HARNESS_NATS_NODES=3 or "
    "HARNESS_KAFKA_NODES=3)",
    "nats-cluster": "a NATS cluster of 3 nodes (this fault acts through JetStream's API, monitoring or routes; "
    "its Kafka counterpart is not built yet)",
    "lazy-store": "a broker on lazy stores: Setup(store='lazyfs')",
    "partitionable": "a cluster of 3 built partitionable=True (NATS: per-route proxies; Kafka: per-link proxies "
    "for the controller quorum and replication): Setup(partitionable=True)",
    "second-queue": "a second queue beside the first: Setup(standby='nats' or 'kafka')",
    "client-proxy": "the processor's broker connection through a proxy: Setup(client_proxy=True)",
}


class StepLike(Protocol):
    """What a fault reads of its step (`step.FaultStep`): what, on whom, for how long."""

    @property
    def kind(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def down_s(self) -> float: ...
    @property
    def label(self) -> str: ...


@dataclass
class Deployment:
    """What a fault can reach in a running deployment: the services, the broker, a proxy in front of it."""

    stack: Stack
    broker: BrokerServer | None = None  # the queue's own broker, NATS or Kafka (None: the memory queue)
    client_proxy: TcpProxy | None = None  # between the processors and the broker's client port, if any
    brokers: Mapping[str, BrokerServer] = field(default_factory=dict)  # queue family -> each broker running (a switch)


@dataclass
class FaultReport:
    """What a fault did, in perf_counter seconds: when it began, when its action was over, whom it hit."""

    started: float = 0.0
    ended: float = 0.0  # the fault's own action is over (healed): the failover view of the window
    returned: float = 0.0  # `run` returned (after waiting for a new leader, if any): the measured phase's view
    victims: list[str] = field(default_factory=list)
    leader_before: str | None = None
    leader_after: str | None = None
    leader_seen_at: float | None = None  # a leader other than `leader_before` first seen
    bytes_lost: int | None = None  # power loss: unsynced bytes dropped
    detail: dict[str, Any] = field(default_factory=dict)


class Fault(Protocol):
    """A fault plug-in: see the module. One instance per kind, in `step.FAULTS`."""

    kind: str
    family: str
    needs: frozenset[Need]
    default_target: str
    targets: tuple[str, ...]

    def plot_name(self, target: str) -> str:
        """A short name for figures ('' target: the kind written without one)."""
        ...

    def resolve(self, step: StepLike, deployment: Deployment) -> object:
        """The victim in this deployment; raises ValueError, naming what is missing, if it cannot be hit."""
        ...

    def run(self, step: StepLike, victim: Any) -> FaultReport:
        """Run to completion (blocking), always healing; what happened."""
        ...


class FaultBase:
    """Defaults most faults share: role targets, resolution by role, plot names from a table."""

    kind: ClassVar[str]
    family: ClassVar[str]
    needs: ClassVar[frozenset[Need]] = frozenset()
    default_target: ClassVar[str] = "queue"
    targets: ClassVar[tuple[str, ...]] = ROLES
    plot_names: ClassVar[dict[str, str]] = {}

    def plot_name(self, target: str) -> str:
        return self.plot_names.get(target, f"{self.kind}:{target}" if target else self.kind)

    def resolve(self, step: StepLike, deployment: Deployment) -> object:
        return resolve_role(step, deployment, self.needs)

    def run(self, step: StepLike, victim: Any) -> FaultReport:
        raise NotImplementedError


@runtime_checkable
class PowerLossable(Protocol):
    """A node whose power can fail: `power_off` kills it and drops its unsynced writes."""

    def power_off(self) -> int: ...
    def start(self) -> None: ...


class ProcessorHandle:
    """A processor service seen through the same verbs as a broker."""

    def __init__(self, service: ServiceProcess) -> None:
        self.service = service
        self.names = [service.name]

    def stop(self, timeout: float = 20.0) -> None:
        self.service.stop(timeout)

    def kill(self) -> None:
        self.service.kill()

    def start(self) -> None:
        self.service.start()

    def pause(self) -> None:
        freeze(self._pid())

    def resume(self) -> None:
        os.kill(self._pid(), signal.SIGCONT)

    def power_off(self) -> int:
        """The memory queue's machine loses power: the processor dies with its queue (a kill)."""
        self.service.kill()
        return 0

    def _pid(self) -> int:
        pid = self.service.pid
        if pid is None:
            raise RuntimeError(f"{self.service.name} is not running")
        return pid


def resolve_role(step: StepLike, deployment: Deployment, needs: frozenset[Need] = frozenset()) -> object:
    """Who the step hits by its role; refuses, naming why, a fault this deployment cannot take."""
    broker = deployment.broker
    if {"cluster", "nats-cluster"} & needs or step.target in CLUSTER_ROLES:
        if not isinstance(broker, ReplicatedBroker) or broker.size < 3 or broker.kind == "external":
            raise ValueError(
                f"fault {step.label} needs a cluster of 3 nodes the harness started "
                f"(HARNESS_NATS_NODES=3 or HARNESS_KAFKA_NODES=3, kind process|docker|auto); "
                f"this run has {_describe(broker)}"
            )
        if "nats-cluster" in needs and not isinstance(broker, NatsCluster):
            raise ValueError(f"fault {step.label} needs {NEED_HINTS['nats-cluster']}; this run has {_describe(broker)}")
        if "partitionable" in needs and not (isinstance(broker, Partitionable) and broker.proxies):
            raise ValueError(f"fault {step.label} needs {NEED_HINTS['partitionable']}")
        return ClusterNodes(broker, step.target, replicated_queue(deployment.stack, broker))
    if broker is not None and broker.kind == "external" and step.target in ("queue", "broker"):
        raise ValueError(
            f"fault {step.label}: HARNESS_NATS/HARNESS_KAFKA=external servers are not ours to kill, pause or "
            "restart; run this experiment with HARNESS_NATS/HARNESS_KAFKA=process, docker or auto"
        )
    target = step.target
    if target == "queue":
        target = "broker" if broker is not None else "processor"
    if target == "broker":
        if broker is None:
            raise ValueError(f"fault {step.label}: this run has no broker")
        return broker
    return ProcessorHandle(deployment.stack.processors[0])


def replicated_queue(stack: Stack, broker: object) -> str:
    """What the cluster replicates for this stack: its backend's JetStream stream, or its Kafka topic."""
    settings = stack.backend_settings
    return settings.nats_stream if isinstance(broker, NatsCluster) else settings.kafka_topic


def _describe(broker: BrokerServer | None) -> str:
    if broker is None:
        return "no broker"
    product = "Kafka" if hasattr(broker, "bootstrap_servers") else "NATS"
    return f"a {broker.kind} {product} of {getattr(broker, 'size', 1)} node(s)"


def names_of(victim: object) -> list[str]:
    """The victim's node or service names, for the report."""
    names = getattr(victim, "names", None)
    return list(names) if isinstance(names, list) else [type(victim).__name__]


def held_down(down: Callable[[], None], up: Callable[[], None], seconds: float) -> None:
    """`down`, wait `seconds`, `up`: `up` runs whatever happens meanwhile (the always-heal of every fault)."""
    down()
    try:
        time.sleep(seconds)
    finally:
        up()


def power_loss(nodes: Sequence[PowerLossable], down_s: float) -> int:
    """Every node loses power at once, stays off `down_s`, and starts again; returns the bytes lost."""
    lost = sum(node.power_off() for node in nodes)
    time.sleep(down_s)
    for node in nodes:
        node.start()
    return lost


def run_on(victim: object, action: Callable[[], object], step: StepLike) -> FaultReport:
    """Run `action` on `victim` and report: on cluster nodes, pick them by role first and watch for a new leader."""
    report = FaultReport(started=time.perf_counter())
    result: object = None
    if isinstance(victim, ClusterNodes):
        victim.pick()
        try:
            result = action()
        finally:
            victim.healed_at = time.perf_counter()
        victim.note_new_leader()
    else:
        result = action()
    if isinstance(result, int):
        report.bytes_lost = result
    return finish(report, victim)


def finish(report: FaultReport, victim: object) -> FaultReport:
    """Fill in when `run` returned, when the fault was over, and whom and which leaders it saw."""
    report.returned = time.perf_counter()
    report.ended = report.returned
    if isinstance(victim, ClusterNodes):
        report.ended = victim.healed_at or report.returned
        report.victims = list(victim.names)
        report.leader_before, report.leader_after = victim.leader_before, victim.leader_after
        report.leader_seen_at = victim.leader_seen_at
    else:
        report.victims = names_of(victim)
    return report
