"""server.properties of one KRaft node in combined mode (broker and controller in one JVM).

Every default of the lab's Kafka lives here: loopback listeners, a static
controller quorum of all nodes, and the durability the R3 experiments rely
on (replication factor = nodes, `min.insync.replicas=2` on three nodes,
unclean leader election off). Share groups (KIP-932) need no setting: the
storage tool of 4.2+ formats with the `share.version` feature on (4.4: level 2),
and `group.coordinator.rebalance.protocols` is deprecated for it. Internal topics get few partitions: 50 (the
broker's default) cost seconds of leader elections on a 2-core machine for
nothing a lab run uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"  # every listener binds loopback only
CLUSTER_ID = "lM6HNyZiXE2h8t8Gr64CPA"  # uuid5(DNS, "queue-lab.kafka"), base64: fixed, so a store is reusable


@dataclass(frozen=True)
class NodePlan:
    """One node's identity and ports, fixed for the object's life (restarts keep them)."""

    node_id: int
    broker_port: int
    controller_port: int

    @property
    def voter(self) -> str:
        return f"{self.node_id}@{HOST}:{self.controller_port}"


def durability(nodes: int) -> dict[str, str]:
    """Replication and ISR settings for a cluster of `nodes`: RF = nodes, min ISR 2 when there are 3."""
    min_isr = str(min(2, nodes))
    rf = str(nodes)
    return {
        "default.replication.factor": rf,
        "min.insync.replicas": min_isr,
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": min_isr,
    }


def server_properties(
    me: NodePlan, voters: list[NodePlan], data_dir: Path, overrides: Mapping[str, str] | None = None
) -> str:
    """The file's text: `overrides` (any broker config) win over the lab's defaults."""
    props: dict[str, str] = {
        "process.roles": "broker,controller",
        "node.id": str(me.node_id),
        "controller.quorum.voters": ",".join(v.voter for v in voters),
        "listeners": f"PLAINTEXT://{HOST}:{me.broker_port},CONTROLLER://{HOST}:{me.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{me.broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "offsets.topic.num.partitions": "3",
        "share.coordinator.state.topic.num.partitions": "3",
        "transaction.state.log.num.partitions": "3",
        "group.initial.rebalance.delay.ms": "0",
        # A killed node is fenced within seconds, not the default 9 s, so failover tests stay short.
        "broker.session.timeout.ms": "4000",
        "broker.heartbeat.interval.ms": "1000",
        **durability(len(voters)),
    }
    props.update(overrides or {})
    return "".join(f"{k}={v}\n" for k, v in props.items())
