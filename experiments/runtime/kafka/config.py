"""server.properties of one KRaft node in combined mode (broker and controller in one JVM).

Every default of the lab's Kafka lives here: loopback listeners, a static
controller quorum of all nodes, and the durability the R3 experiments rely
on (replication factor = nodes, `min.insync.replicas=2` on three nodes,
unclean leader election off). Share groups (KIP-932) need no setting: the
storage tool of 4.2+ formats with the `share.version` feature on (4.4: level 2),
and `group.coordinator.rebalance.protocols` is deprecated for it. Internal topics get few partitions: 50 (the
broker's default) cost seconds of leader elections on a 2-core machine for
nothing a lab run uses.

A partitionable cluster (`PeerPorts` on every plan) gives each node, for
each peer i, a controller listener `C<i>` and a replication listener `R<i>`;
node i reaches every peer only through those named `C<i>`/`R<i>` (the first
of its `controller.listener.names`, its `inter.broker.listener.name`), which
the peer advertises at a proxy of its own for the pair: per-link proxies as
NATS routes have, though Kafka lets a broker advertise one address per
listener. See `experiments.runtime.kafka.cluster` for what a cut cuts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"  # every listener binds loopback only
CLUSTER_ID = "lM6HNyZiXE2h8t8Gr64CPA"  # uuid5(DNS, "queue-lab.kafka"), base64: fixed, so a store is reusable


@dataclass(frozen=True)
class PeerPorts:
    """A node's two listeners for one peer (`peer`: its node id) and the ports they are advertised at.

    A peer's own pair is advertised where it binds (a node reaches itself
    directly); another peer's at the proxies for that peer -> this node.
    """

    peer: int
    controller_port: int
    controller_at: int
    replication_port: int
    replication_at: int


def controller_listener(peer: int) -> str:
    return f"C{peer}"


def replication_listener(peer: int) -> str:
    return f"R{peer}"


@dataclass(frozen=True)
class NodePlan:
    """One node's identity and ports, fixed for the object's life (restarts keep them).

    `peers` empty: one controller listener and PLAINTEXT for clients and
    replication alike; else a partitionable node (see the module).
    """

    node_id: int
    broker_port: int
    controller_port: int
    peers: tuple[PeerPorts, ...] = ()

    @property
    def voter(self) -> str:
        return f"{self.node_id}@{HOST}:{self.controller_port}"

    def for_peer(self, peer: int) -> PeerPorts:
        return next(p for p in self.peers if p.peer == peer)

    def voter_for(self, peer: int) -> str:
        """This voter's address as node `peer` dials it: its own port, or the proxy peer -> this node."""
        if not self.peers:
            return self.voter
        return f"{self.node_id}@{HOST}:{self.for_peer(peer).controller_at}"


def listener_properties(me: NodePlan, voters: list[NodePlan]) -> dict[str, str]:
    """Listeners, their advertised addresses, the controller quorum and the inter-broker listener of `me`."""
    if not me.peers:
        return {
            "controller.quorum.voters": ",".join(v.voter for v in voters),
            "listeners": f"PLAINTEXT://{HOST}:{me.broker_port},CONTROLLER://{HOST}:{me.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{me.broker_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        }
    peers = sorted(me.peers, key=lambda p: p.peer != me.node_id)  # my own names first: the ones I dial with
    bound = [f"PLAINTEXT://{HOST}:{me.broker_port}"]
    advertised = [f"PLAINTEXT://{HOST}:{me.broker_port}"]
    for p in peers:
        c, r = controller_listener(p.peer), replication_listener(p.peer)
        bound += [f"{c}://{HOST}:{p.controller_port}", f"{r}://{HOST}:{p.replication_port}"]
        advertised += [f"{c}://{HOST}:{p.controller_at}", f"{r}://{HOST}:{p.replication_at}"]
    names = ["PLAINTEXT"] + [f(p.peer) for p in peers for f in (controller_listener, replication_listener)]
    return {
        "controller.quorum.voters": ",".join(v.voter_for(me.node_id) for v in voters),
        "listeners": ",".join(bound),
        "advertised.listeners": ",".join(advertised),
        "controller.listener.names": ",".join(controller_listener(p.peer) for p in peers),
        "inter.broker.listener.name": replication_listener(me.node_id),
        "listener.security.protocol.map": ",".join(f"{n}:PLAINTEXT" for n in names),
    }


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
        **listener_properties(me, voters),
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
