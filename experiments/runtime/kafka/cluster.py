"""A KRaft Kafka of 1 or 3 real nodes on 127.0.0.1 (combined mode), as processes or containers.

`KafkaCluster` is a `KafkaServer` (the verbs act on every node, so a
single-node experiment runs on three unchanged) plus what only a cluster has:
nodes by id, the leader and in-sync replicas of a partition (the view most
nodes share, each asked alone: `node_view`), a wait for a new leader. Every
node is a voter of one static controller quorum and a broker; three nodes get
replication factor 3, `min.insync.replicas=2` and unclean leader election off
(see `experiments.runtime.kafka.config`).

Built `lazy` (processes only), every node keeps its data dir on its own lazy
file system (`LazyKafkaNode`): a node, or the whole cluster at once, can lose
power (`power_off`: SIGKILL and drop what it never fsynced).

Built `partitionable` (three nodes), every link between two nodes goes
through a TCP proxy of its own (`experiments.runtime.tcp_proxy`), so one
node can be cut off from its peers while its clients still reach it
(`isolate`, `heal`). Kafka advertises one address per listener, which every
peer would dial, so each node has a controller listener `C<i>` and a
replication listener `R<i>` per peer i (`config.PeerPorts`): node i's
controller quorum (`controller.quorum.voters` and the leader endpoints the
quorum hands out, both on listener `C<i>`), its broker's link to the active
controller (heartbeats, AlterPartition) and its replica fetchers (and any
other inter-broker request: share-group state, transaction markers) on
listener `R<i>` reach peer j only at the addresses j advertises for them:
the proxies (i, j, "controller") and (i, j, "replication"). Clients keep
PLAINTEXT, direct. `isolate(k<n>)` resets (TCP RST, new connections too)
every proxy from or to that node: cut are its raft traffic both ways
(votes, fetches of the metadata log), its heartbeats to the active
controller (or, if it is the active controller, every other broker's to
it), and replication both ways (it fetches from no leader, no follower
fetches from it). Not cut: any client's connection to any node, and a
node's links to itself (its own broker and controller in one JVM, direct).

Start formats the nodes (the storage tool once, copied to the others), launches every
JVM, then waits until each node's metadata lists all brokers: the quorum has
a leader and every broker is registered and unfenced.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from confluent_kafka.admin import ClusterMetadata

from experiments.runtime.kafka.config import HOST, NodePlan, PeerPorts
from experiments.runtime.kafka.lazy import LazyKafkaNode, power_off_all
from experiments.runtime.kafka.node_view import partition_view
from experiments.runtime.kafka.process import DEFAULT_HEAP, ProcessKafkaNode
from experiments.runtime.kafka.readiness import KafkaNotReady, admin_client
from experiments.runtime.lazyfs.mount import Writeback
from experiments.runtime.lifetime import Managed
from experiments.runtime.ports import free_ports
from experiments.runtime.tcp_proxy import TcpProxy

NAME_PREFIX = "k"  # node names: k1, k2, k3 (node ids 1..3)
Node = Any  # ProcessKafkaNode | LazyKafkaNode | DockerKafkaNode (docker is imported only when asked for)
KafkaKind = Literal["process", "docker"]
Link = Literal["controller", "replication"]


def node_name(node_id: int) -> str:
    return f"{NAME_PREFIX}{node_id}"


class KafkaCluster(Managed):
    """`nodes` KRaft nodes, each broker and controller, each with its own ports and directory."""

    def __init__(
        self,
        store_dir: str | Path | None = None,
        *,
        nodes: int = 1,
        kind: KafkaKind = "process",
        heap: str = DEFAULT_HEAP,
        overrides: Mapping[str, str] | None = None,
        ready_timeout: float = 180.0,
        ports: list[int] | None = None,
        image: str | None = None,
        lazy: bool = False,
        writeback_s: Writeback = None,
        partitionable: bool = False,
    ) -> None:
        """`ports`: fixed client ports per node (`diplom up`), else free ones; `overrides`: broker configs;
        `image`: the docker kind's image (else queue-lab/kafka:<version>, built here when missing);
        `lazy`: each node's data dir on a lazy file system (`writeback_s`: None = never), for power loss;
        `partitionable`: every link between nodes through a proxy of its own (see the module)."""
        if nodes not in (1, 3):
            raise ValueError("a lab Kafka has 1 node or 3 (a quorum that survives one loss)")
        if partitionable and nodes < 3:
            raise ValueError("a partitionable Kafka has 3 nodes (one node has no links to cut)")
        if lazy and kind != "process":
            raise ValueError("a lazy store (power loss) needs nodes that run as local processes (kind='process')")
        self.lazy = lazy
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if store_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kafka-")
            store_dir = self._tmp.name
        self.store_dir = Path(store_dir).resolve()
        self._kind = kind
        self.ready_timeout = ready_timeout
        picked = free_ports(2 * nodes)
        client_ports = ports or picked[:nodes]
        plans = [NodePlan(i + 1, client_ports[i], picked[nodes + i]) for i in range(nodes)]
        self.proxies: dict[tuple[int, int, Link], TcpProxy] = {}  # (from node id, to node id, link)
        if partitionable:
            plans = self._proxied(plans)
        self.nodes: list[Node] = []
        for plan in plans:
            node_dir = self.store_dir / f"n{plan.node_id}"
            if kind == "docker":
                from experiments.runtime.kafka.docker import DockerKafkaNode

                self.nodes.append(
                    DockerKafkaNode(
                        plan, plans, node_dir, heap=heap, overrides=overrides, ready_timeout=ready_timeout, image=image
                    )
                )
            elif lazy:
                self.nodes.append(
                    LazyKafkaNode(
                        plan,
                        plans,
                        node_dir,
                        heap=heap,
                        overrides=overrides,
                        ready_timeout=ready_timeout,
                        writeback_s=writeback_s,
                    )
                )
            else:
                self.nodes.append(
                    ProcessKafkaNode(plan, plans, node_dir, heap=heap, overrides=overrides, ready_timeout=ready_timeout)
                )
        self.started_in_s: float | None = None  # the last full start's wall time, formatting included

    def _proxied(self, plans: list[NodePlan]) -> list[NodePlan]:
        """`plans` with a controller and a replication listener per peer, another peer's behind a proxy."""
        ids = [p.node_id for p in plans]
        out: list[NodePlan] = []
        for plan in plans:
            extra = iter(free_ports(2 * len(ids) - 1))
            peers: list[PeerPorts] = []
            for peer in ids:
                controller = plan.controller_port if peer == plan.node_id else next(extra)
                replication = next(extra)
                if peer == plan.node_id:
                    peers.append(PeerPorts(peer, controller, controller, replication, replication))
                    continue
                c = self.proxies[(peer, plan.node_id, "controller")] = TcpProxy(controller).start()
                r = self.proxies[(peer, plan.node_id, "replication")] = TcpProxy(replication).start()
                peers.append(PeerPorts(peer, controller, c.port, replication, r.port))
            out.append(NodePlan(plan.node_id, plan.broker_port, plan.controller_port, tuple(peers)))
        return out

    # --- what every provider has -------------------------------------------------
    @property
    def kind(self) -> str:
        return "process-lazyfs" if self.lazy else self._kind

    @property
    def size(self) -> int:
        return len(self.nodes)

    @property
    def bootstrap_servers(self) -> str:
        """Every node's client address, comma-separated (what `KAFKA_BROKERS` takes)."""
        return ",".join(n.bootstrap_servers for n in self.nodes)

    @property
    def pid(self) -> int | None:
        """The first running node's pid (one per node: `nodes[i].pid`), None when none runs."""
        return next((n.pid for n in self.nodes if n.pid is not None), None)

    @property
    def ids(self) -> list[int]:
        return [n.node_id for n in self.nodes]

    @property
    def names(self) -> list[str]:
        """Node names as faults and reports show them: `k<node id>`."""
        return [node_name(n.node_id) for n in self.nodes]

    def node(self, name: str | int) -> Node:
        """The node with this name (`k2`) or node id (2)."""
        node_id = name if isinstance(name, int) else int(name.removeprefix(NAME_PREFIX))
        return next(n for n in self.nodes if n.node_id == node_id)

    def start(self) -> None:
        """Start every stopped node and return once each serves metadata listing all the brokers."""
        t0 = time.monotonic()
        idle = [n for n in self.nodes if n.pid is None]
        template = next((n for n in self.nodes if n.formatted), None)
        for n in idle:  # the storage tool once; the other nodes copy its output
            n.prepare(like=template)
            template = template or n
        launched = time.monotonic()
        for n in idle:
            n.launch()
        try:
            for n in idle:
                n.wait_ready(self.ids, timeout=max(1.0, self.ready_timeout - (time.monotonic() - launched)))
        except KafkaNotReady:
            for n in self.nodes:
                n.kill()
            raise
        self.started_in_s = time.monotonic() - t0

    def stop(self, timeout: float = 15.0) -> None:
        """Controlled shutdown of every node, in parallel (a controller quorum cannot stop one by one)."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda n: n.stop(timeout), self.nodes))

    def kill(self) -> None:
        for n in self.nodes:
            n.kill()

    def restart(self, hard: bool = False) -> None:
        if hard:
            self.kill()
        else:
            self.stop()
        self.start()

    def pause(self) -> None:
        for n in self.nodes:
            n.pause()

    def resume(self) -> None:
        for n in self.nodes:
            n.resume()

    def power_off(self) -> int:
        """Every node loses power at once (a coordinated power failure); the bytes lost, summed."""
        if not self.lazy:
            raise ValueError("this cluster has no lazy store: build it lazy=True (Setup(store='lazyfs'))")
        return power_off_all(self.nodes)

    def close(self) -> None:
        """Kill every node and remove what this object made (containers, a temporary store)."""
        try:
            for n in self.nodes:
                n.close()
        finally:
            for proxy in self.proxies.values():
                proxy.close()
            self.proxies.clear()
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    # --- what only a cluster has ---------------------------------------------------
    @property
    def running(self) -> list[Node]:
        return [n for n in self.nodes if n.pid is not None]

    def metadata(self, timeout: float = 5.0) -> ClusterMetadata:
        """Topic and broker metadata, asked of the running nodes."""
        bootstrap = ",".join(n.bootstrap_servers for n in self.running) or self.bootstrap_servers
        # log_level 0: a node just killed is still listed until fenced, and every ask would log its refusal
        return admin_client(bootstrap, log_level=0).list_topics(timeout=timeout)

    def partition_views(
        self, topic: str, partition: int = 0, timeout: float = 1.0
    ) -> dict[str, tuple[int, list[int]] | None]:
        """Each running node's own (leader id, ISR ids) of a partition, asked of it alone (`node_view`); None
        where it does not answer in `timeout` or does not know the partition."""
        nodes = self.running

        def ask(node: Node) -> tuple[int, list[int]] | None:
            try:
                return partition_view(HOST, node.port, topic, partition, timeout)
            except (OSError, LookupError):
                return None

        if not nodes:
            return {}
        with ThreadPoolExecutor(len(nodes)) as pool:
            return dict(zip((node_name(n.node_id) for n in nodes), pool.map(ask, nodes), strict=True))

    def partition_state(self, topic: str, partition: int = 0, timeout: float = 5.0) -> tuple[int, list[int]]:
        """(leader id, in-sync replica ids) of a partition as most answering nodes see it; leader -1 when it has none.

        Each node is asked alone: a node cut off from its peers keeps naming
        itself leader with the old ISR, and a client like librdkafka would take
        its answer or another's at random. LookupError when no node answers or
        no view is shared by more than half of those that do (news on its way).
        """
        views = [v for v in self.partition_views(topic, partition, min(timeout, 2.0)).values() if v is not None]
        if not views:
            raise LookupError(f"no running node knows {topic}[{partition}]")
        votes = Counter((leader, tuple(isr)) for leader, isr in views)
        (leader, isr), count = votes.most_common(1)[0]
        if count * 2 <= len(views) and len(views) > 1:
            raise LookupError(f"{topic}[{partition}]: the nodes disagree, no majority view yet: {views}")
        return leader, list(isr)

    def leader_of(self, queue: str, timeout: float = 1.0) -> str | None:
        """`ReplicatedBroker`: the leader of partition 0 of topic `queue` as most nodes see it (a topic of several
        partitions has a leader per partition; faults aim at partition 0's). None while it has none, while
        the nodes disagree, or when no node answers."""
        try:
            leader, _ = self.partition_state(queue, 0, timeout=max(0.5, timeout))
        except LookupError:  # topic not known yet, no node answering, views disagreeing: no leader to name
            return None
        return node_name(leader) if leader >= 0 else None

    def wait_leader(self, queue: str, timeout: float, *, not_name: str | None = None) -> str:
        """`ReplicatedBroker`: until partition 0 of `queue` has a leader other than `not_name`."""
        not_leader = None if not_name is None else int(not_name.removeprefix(NAME_PREFIX))
        leader, _ = self.wait_partition(queue, 0, timeout=timeout, not_leader=not_leader)
        return node_name(leader)

    def wait_partition(
        self, topic: str, partition: int = 0, *, timeout: float = 30.0, not_leader: int | None = None, isr: int = 1
    ) -> tuple[int, list[int]]:
        """Until the partition has a leader (other than `not_leader`) and at least `isr` in-sync replicas."""
        deadline = time.monotonic() + timeout
        last: tuple[int, list[int]] | str = "no metadata"
        while time.monotonic() < deadline:
            try:
                leader, in_sync = self.partition_state(topic, partition, timeout=2.0)
            except Exception as exc:  # topic not known yet, no node answering: ask again
                last = repr(exc)
            else:
                last = (leader, in_sync)
                if leader >= 0 and leader != not_leader and len(in_sync) >= isr:
                    return leader, in_sync
            time.sleep(0.1)
        raise TimeoutError(
            f"{topic}[{partition}]: no leader (not {not_leader}) with ISR >= {isr} in {timeout}s: {last}"
        )

    def isolate(self, name: str) -> None:
        """Cut every link to and from node `name` (TCP RST, new connections too); its clients still reach it."""
        if not self.proxies:
            raise RuntimeError("this cluster was not built partitionable=True (no per-link proxies)")
        node_id = self.node(name).node_id
        for (a, b, _), proxy in self.proxies.items():
            if node_id in (a, b):
                proxy.set_mode("reset")

    def heal(self) -> None:
        """Let every link through again."""
        for proxy in self.proxies.values():
            with contextlib.suppress(RuntimeError):
                proxy.set_mode("pass")
