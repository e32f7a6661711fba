"""A JetStream cluster of 1 or 3 real nats-servers on 127.0.0.1, as processes or containers.

`NatsCluster` is a `NatsServer` (the same verbs act on every node, so every
single-node experiment runs on it unchanged) plus what only a cluster has:
nodes by name, the meta and stream leaders (read from each node's `/jsz`),
a leader step-down (`$JS.API.STREAM.LEADER.STEPDOWN.<stream>`), and, when
built `partitionable`, a partition of one node from the others.

Partitions go through per-route TCP proxies (`experiments.runtime.tcp_proxy`):
node i reaches node j only through its own proxy (i, j), and every node
advertises a closed port so gossip cannot open a route around them. Cutting
the proxies to and from one node (`reset`: the peers see the routes drop at
once) isolates it from the cluster while its clients still reach it, which is
the case that matters for a leader. The proxies cost a little latency, so a
cluster has them only when asked.

Built `lazy` (processes only), every node keeps its store on its own lazy
file system (`LazyNats`): a node, or the whole cluster at once, can lose
power (`power_off`: SIGKILL and drop what it never fsynced).

Health = every node's `/healthz?js-enabled-only=true`, and every node knowing
the same meta leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import httpx
import nats
import orjson

from experiments.runtime.lazyfs.mount import Writeback
from experiments.runtime.lifetime import Managed
from experiments.runtime.nats.base import NatsNotReady, wait_healthy
from experiments.runtime.nats.lazy import LazyNats, power_off_all
from experiments.runtime.nats.process import ProcessNats
from experiments.runtime.nats.topology import ClusterMember, plan_members_on
from experiments.runtime.ports import free_ports
from experiments.runtime.tcp_proxy import TcpProxy

Node = Any  # ProcessNats | LazyNats | DockerNats (docker is imported only when asked for)


def _get_json(url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    try:
        r = httpx.get(url, timeout=timeout, trust_env=False)
        return dict(r.json()) if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def _stream_cluster_of(node: Node, stream: str, timeout: float) -> dict[str, Any]:
    """The `cluster` block (leader, replicas) of `stream` as `node`'s `/jsz` reports it; {} when none or no answer."""
    jsz = _get_json(f"{node.monitor_url}/jsz?streams=true", timeout)
    for account in (jsz or {}).get("account_details") or []:
        for detail in account.get("stream_detail") or []:
            if detail.get("name") == stream:
                return dict(detail.get("cluster") or {})
    return {}


class NatsCluster(Managed):
    """`nodes` nats-servers routed into one cluster named `lab`; each its own ports and store."""

    def __init__(
        self,
        store_dir: str | Path | None = None,
        *,
        nodes: int = 3,
        kind: Literal["process", "docker"] = "process",
        sync_always: bool = False,
        ready_timeout: float = 30.0,
        partitionable: bool = False,
        image: str | None = None,
        ports: list[int] | None = None,
        monitor_ports: list[int] | None = None,
        lazy: bool = False,
        writeback_s: Writeback = None,
    ) -> None:
        """`ports`, `monitor_ports`: fixed client and monitoring ports per node (`diplom up`); else free ones.

        `lazy`: each node's store on a lazy file system (`writeback_s`: None = never), for power loss.
        """
        if nodes < 1:
            raise ValueError("a cluster has at least one node")
        if lazy and kind != "process":
            raise ValueError("a lazy store (power loss) needs nodes that run as local processes (kind='process')")
        self.lazy = lazy
        self.writeback_s = writeback_s
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if store_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="nats-cluster-")
            store_dir = self._tmp.name
        self.store_dir = Path(store_dir)
        self.ready_timeout = ready_timeout
        self._kind = kind
        cluster_ports = free_ports(nodes, avoid={*(ports or []), *(monitor_ports or [])})
        self.proxies: dict[tuple[int, int], TcpProxy] = {}
        if partitionable and nodes > 1:
            for i in range(nodes):
                for j in range(nodes):
                    if i != j:
                        self.proxies[(i, j)] = TcpProxy(cluster_ports[j]).start()
        route_ports = {k: p.port for k, p in self.proxies.items()} or None
        members = plan_members_on(cluster_ports, route_ports) if nodes > 1 else [None]
        self.nodes: list[Node] = [self._node(i, m, sync_always, image) for i, m in enumerate(members)]
        client = ports or free_ports(nodes, avoid=set(cluster_ports))
        monitor = monitor_ports or free_ports(nodes, avoid={*cluster_ports, *client})
        for node, port, monitor_port in zip(self.nodes, client, monitor, strict=True):
            node.port, node.monitor_port = port, monitor_port

    def _node(self, i: int, member: ClusterMember | None, sync_always: bool, image: str | None) -> Node:
        store = self.store_dir / f"n{i + 1}"
        if self._kind == "docker":
            from experiments.runtime.nats.docker import DockerNats

            return DockerNats(
                store, sync_always=sync_always, ready_timeout=self.ready_timeout, image=image, member=member
            )
        if self.lazy:
            return LazyNats(store, sync_always=sync_always, ready_timeout=self.ready_timeout, member=member,
                            writeback_s=self.writeback_s)  # fmt: skip
        return ProcessNats(store, sync_always=sync_always, ready_timeout=self.ready_timeout, member=member)

    # -- what a NatsServer has ------------------------------------------------

    @property
    def kind(self) -> str:
        return "process-lazyfs" if self.lazy else self._kind

    @property
    def pid(self) -> int | None:
        """The first running node's pid (a cluster has one per node: `nodes[i].pid`), None when none runs."""
        return next((n.pid for n in self.nodes if n.pid is not None), None)

    @property
    def size(self) -> int:
        return len(self.nodes)

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated (what NATS_URL takes)."""
        return ",".join(n.url for n in self.nodes)

    @property
    def monitor_url(self) -> str:
        """Every node's monitoring URL, comma-separated (what NATS_MONITOR_URL takes)."""
        return ",".join(n.monitor_url for n in self.nodes)

    @property
    def names(self) -> list[str]:
        return [f"n{i + 1}" for i in range(self.size)] if self.size > 1 else [self._single_name()]

    def _single_name(self) -> str:
        varz = _get_json(f"{self.nodes[0].monitor_url}/varz")
        return str(varz.get("server_name", "n1")) if varz else "n1"

    def node(self, name: str) -> Node:
        """The node whose server_name is `name`."""
        return self.nodes[self.names.index(name)]

    def start(self) -> None:
        """Start every node not running (all at once: a node's JetStream waits for a quorum), then wait for health."""
        idle = [n for n in self.nodes if n.pid is None]
        with ThreadPoolExecutor(max_workers=max(1, len(idle))) as pool:
            errors = [f.exception() for f in [pool.submit(n.start) for n in idle]]
        failed = [e for e in errors if e is not None]
        if failed:
            raise failed[0]
        self.wait_healthy(self.ready_timeout)

    def wait_healthy(self, timeout: float) -> None:
        """Every node healthy and agreeing on one meta leader; `NatsNotReady` naming what is missing."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            for n in self.nodes:
                wait_healthy(n.monitor_url, max(0.1, deadline - time.monotonic()))
            leaders = {self._meta_leader_of(n) for n in self.nodes}
            if len(leaders) == 1 and None not in leaders:
                return
            last = f"meta leaders seen: {sorted(map(str, leaders))}"
            if time.monotonic() > deadline:
                raise NatsNotReady(f"cluster of {self.size} not healthy within {timeout}s ({last})")
            time.sleep(0.05)

    def _meta_leader_of(self, node: Node) -> str | None:
        jsz = _get_json(f"{node.monitor_url}/jsz")
        if jsz is None:
            return None
        meta = jsz.get("meta_cluster") or {}
        leader = meta.get("leader") or (jsz.get("server_name") if self.size == 1 else None)
        if self.size == 1 and not leader:
            return "n1"
        return str(leader) if leader else None

    def _each(self, verb: str, *args: Any) -> None:
        with ThreadPoolExecutor(max_workers=self.size) as pool:
            for f in [pool.submit(getattr(n, verb), *args) for n in self.nodes]:
                f.result()

    def stop(self, timeout: float = 10.0) -> None:
        self._each("stop", timeout)

    def kill(self) -> None:
        self._each("kill")

    def restart(self, hard: bool = False) -> None:
        self.kill() if hard else self.stop()
        self.start()

    def pause(self) -> None:
        self._each("pause")

    def resume(self) -> None:
        self._each("resume")

    def power_off(self) -> int:
        """Every node loses power at once (Jepsen's coordinated power failure); the bytes lost, summed."""
        if not self.lazy:
            raise ValueError("this cluster has no lazy store: build it lazy=True (Setup(store='lazyfs'))")
        return power_off_all(self.nodes)

    def close(self) -> None:
        try:
            self._each("close")
        finally:
            for p in self.proxies.values():
                p.close()
            self.proxies.clear()
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    # -- what only a cluster has ----------------------------------------------

    def running(self) -> list[Node]:
        return [n for n in self.nodes if n.pid is not None]

    def meta_leader(self) -> str | None:
        """The meta leader as the first answering node sees it."""
        for n in self.running():
            leader = self._meta_leader_of(n)
            if leader:
                return leader
        return None

    def stream_cluster(self, stream: str, timeout: float = 1.0) -> dict[str, Any] | None:
        """The stream's `cluster` block (leader, replicas) as most answering nodes see it.

        A node cut off from its peers still names itself (or a stale peer)
        leader for a while; the majority view is the cluster's.
        """
        views: list[dict[str, Any]] = []
        for n in self.running():
            cluster = _stream_cluster_of(n, stream, timeout)
            if cluster.get("leader"):
                views.append(cluster)
        if not views:
            return None
        votes = Counter(v["leader"] for v in views)
        leader, count = votes.most_common(1)[0]
        if len(views) > 1 and count * 2 <= len(views):
            return None  # no majority view: an election is under way
        return next(v for v in views if v["leader"] == leader)

    def stream_views(self, stream: str, names: list[str], timeout: float = 0.5) -> dict[str, str | None]:
        """The stream leader as each of `names` sees it (None: no stream or no leader there, or no answer)."""
        return {name: _stream_cluster_of(self.node(name), stream, timeout).get("leader") or None for name in names}

    def client_connections(self, name: str) -> int:
        """Client connections on node `name` (its `/varz`), 0 when it does not answer."""
        varz = _get_json(f"{self.node(name).monitor_url}/varz")
        return int(varz.get("connections", 0)) if varz else 0

    def stream_leader(self, stream: str, timeout: float = 1.0) -> str | None:
        info = self.stream_cluster(stream, timeout)
        return str(info["leader"]) if info else (self.names[0] if self.size == 1 else None)

    def wait_stream_leader(self, stream: str, timeout: float, *, not_name: str | None = None) -> str:
        """Until the stream has a leader (other than `not_name`); its name."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.stream_leader(stream)
            if leader and leader != not_name:
                return leader
            time.sleep(0.05)
        raise TimeoutError(f"stream {stream} has no leader (other than {not_name}) within {timeout}s")

    def leader_of(self, queue: str, timeout: float = 1.0) -> str | None:
        """`ReplicatedBroker`: the stream's leader."""
        return self.stream_leader(queue, timeout)

    def wait_leader(self, queue: str, timeout: float, *, not_name: str | None = None) -> str:
        """`ReplicatedBroker`: until the stream has a leader (other than `not_name`)."""
        return self.wait_stream_leader(queue, timeout, not_name=not_name)

    def followers(self, stream: str) -> list[str]:
        leader = self.stream_leader(stream)
        return [n for n in self.names if n != leader]

    def step_down(self, stream: str, timeout: float = 5.0) -> dict[str, Any]:
        """`$JS.API.STREAM.LEADER.STEPDOWN.<stream>`: the leader hands over; the API's answer."""

        async def ask() -> dict[str, Any]:
            nc = await nats.connect(self.url.split(","), connect_timeout=2, max_reconnect_attempts=1)
            try:
                reply = await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=timeout)
                return dict(orjson.loads(reply.data))
            finally:
                await nc.close()

        return asyncio.run(ask())

    def isolate(self, name: str) -> None:
        """Cut every route to and from node `name` (new ones too): a partition its clients do not see."""
        if not self.proxies:
            raise RuntimeError("this cluster was not built partitionable=True (no per-route proxies)")
        i = self.names.index(name)
        for (a, b), proxy in self.proxies.items():
            if i in (a, b):
                proxy.set_mode("reset")

    def heal(self) -> None:
        """Let every route through again."""
        for proxy in self.proxies.values():
            with contextlib.suppress(RuntimeError):
                proxy.set_mode("pass")
