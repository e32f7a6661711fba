"""What makes one nats-server a member of a cluster: its name, its route port, its peers.

Both providers (process and container) take a `ClusterMember` and write the
same config block, so a three-node cluster is the same cluster wherever the
nodes run. The defaults that matter on a small shared machine live here once:
each node's memory store is capped (unset, each node assumes 75 % of RAM),
and `GOMAXPROCS` per node keeps three Go runtimes from each spinning up a
thread per core on 2 cores.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

CLUSTER_NAME = "lab"
NODES_ENV = "HARNESS_NATS_NODES"
NODE_CHOICES = (1, 3)
MAX_MEMORY_STORE = "256MB"  # per node; JetStream's own default is 75 % of RAM each
GOMAXPROCS = "1"  # per node: three Go runtimes share 2 cores (not measured against the default; README)
# Where a node says it can be reached by peers it did not dial: a closed port, so
# gossip cannot open a direct route around a per-route proxy (see cluster.py).
NO_GOSSIP_ADVERTISE = "127.0.0.1:1"


def nodes_from_env(environ: dict[str, str] | None = None) -> int:
    """`HARNESS_NATS_NODES` (1 or 3; default 1): how many nats-servers a run starts."""
    env = os.environ if environ is None else environ
    raw = env.get(NODES_ENV, "1").strip() or "1"
    try:
        nodes = int(raw)
    except ValueError:
        nodes = -1
    if nodes not in NODE_CHOICES:
        raise ValueError(f"{NODES_ENV}={raw!r}: expected one of {', '.join(map(str, NODE_CHOICES))}")
    return nodes


@dataclass(frozen=True)
class ClusterMember:
    """One node's place in the cluster: `routes` are the host:port it dials for each peer."""

    server_name: str
    cluster_port: int
    routes: tuple[str, ...]
    cluster_name: str = CLUSTER_NAME
    advertise: str | None = None
    max_memory_store: str = MAX_MEMORY_STORE
    env: dict[str, str] = field(default_factory=lambda: {"GOMAXPROCS": GOMAXPROCS})

    def config_text(self) -> str:
        """The nats-server config lines for this member (outside the jetstream block)."""
        routes = ", ".join(f'"nats-route://{r}"' for r in self.routes)
        advertise = f'\n  advertise: "{self.advertise}"' if self.advertise else ""
        return (
            f'server_name: "{self.server_name}"\n'
            f"cluster {{\n"
            f'  name: "{self.cluster_name}"\n'
            f'  listen: "127.0.0.1:{self.cluster_port}"\n'
            f"  routes: [{routes}]{advertise}\n"
            f"}}\n"
        )

    def jetstream_text(self) -> str:
        """Lines inside the jetstream block."""
        return f"\n  max_memory_store: {self.max_memory_store}"


def plan_members_on(ports: list[int], route_ports: dict[tuple[int, int], int] | None = None) -> list[ClusterMember]:
    """One member per cluster port, each routing to every other.

    `route_ports[(i, j)]`: the port node i dials to reach node j (a proxy's);
    without it, j's own cluster port. With proxies the members advertise a
    closed port, so every route goes through its proxy.
    """
    members = []
    for i, port in enumerate(ports):
        routes = tuple(
            f"127.0.0.1:{route_ports[(i, j)] if route_ports else ports[j]}" for j in range(len(ports)) if j != i
        )
        members.append(
            ClusterMember(
                server_name=f"n{i + 1}",
                cluster_port=port,
                routes=routes,
                advertise=NO_GOSSIP_ADVERTISE if route_ports else None,
            )
        )
    return members
