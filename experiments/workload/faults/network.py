"""Network faults: a node cut off from its peers, or every client connection of the broker reset.

`partition`: the leader (or the node the role names) is cut off from its
peers through the cluster's per-link proxies while its clients still reach
it; healed after `down_s`. On NATS the routes (`NatsCluster.isolate`); on
Kafka the controller quorum and replication links (`KafkaCluster.isolate`:
the partition leader can no longer reach the active controller nor be
fetched from, so with acks=all and min ISR 2 it acknowledges nothing while
the others elect a new leader). Any `Partitionable` cluster qualifies. `drop-connections`: every connection through the
proxy in front of the broker's client port gets a TCP RST, and new ones are
reset too, for `down_s`; then connections pass again (the clients must
reconnect by themselves).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from experiments.runtime.broker import Partitionable
from experiments.workload.faults.base import (
    NEED_HINTS,
    Deployment,
    FaultBase,
    FaultReport,
    Need,
    StepLike,
    finish,
    held_down,
)
from experiments.workload.faults.nodes import ClusterNodes


def partitionable_of(victim: object) -> Partitionable:
    """The cluster behind a victim of a partition (`needs` has "partitionable": resolve_role checked it)."""
    if not isinstance(victim, ClusterNodes) or not isinstance(victim.cluster, Partitionable):
        raise TypeError(f"the nodes of a partitionable cluster expected, got {victim!r}")
    return victim.cluster


class Partition(FaultBase):
    """The victim node's links to its peers reset for `down_s`, then healed."""

    kind: ClassVar[str] = "partition"
    family: ClassVar[str] = "network"
    needs: ClassVar[frozenset[Need]] = frozenset({"cluster", "partitionable"})
    default_target: ClassVar[str] = "leader"

    def run(self, step: StepLike, victim: Any) -> FaultReport:
        cluster = partitionable_of(victim)
        report = FaultReport(started=time.perf_counter())
        names = victim.pick()
        try:
            held_down(lambda: cluster.isolate(names[0]), cluster.heal, step.down_s)
        finally:
            victim.healed_at = time.perf_counter()
        victim.note_new_leader()
        return finish(report, victim)


class DropConnections(FaultBase):
    """Every client connection to the broker reset (TCP RST) for `down_s`, new ones too; then they pass again."""

    kind: ClassVar[str] = "drop-connections"
    family: ClassVar[str] = "network"
    needs: ClassVar[frozenset[Need]] = frozenset({"client-proxy"})
    default_target: ClassVar[str] = "broker"
    targets: ClassVar[tuple[str, ...]] = ("broker",)
    plot_names: ClassVar[dict[str, str]] = {"broker": "broker's client\nconnections reset"}

    def resolve(self, step: StepLike, deployment: Deployment) -> object:
        if deployment.client_proxy is None:
            raise ValueError(f"fault {step.label} needs {NEED_HINTS['client-proxy']}")
        return deployment.client_proxy

    def run(self, step: StepLike, victim: Any) -> FaultReport:
        report = FaultReport(started=time.perf_counter())
        resets = victim.resets_sent
        held_down(lambda: victim.set_mode("reset"), lambda: victim.set_mode("pass"), step.down_s)
        report.detail["resets_sent"] = victim.resets_sent - resets
        report = finish(report, victim)
        report.victims = [f"client port {victim.target_port}"]
        return report


FAULTS = (Partition(), DropConnections())
