"""Nodes of a replicated broker picked by role when a fault fires, and the watch for the leader that follows.

`ClusterNodes` is the victim of every fault aimed at `leader`, `follower`,
`quorum` or `cluster`, on any `ReplicatedBroker` (a NATS cluster and its
stream, a Kafka cluster and its topic's partition 0): the roles are
resolved at the moment the fault fires (the leader then, not at setup), and
from then on witnesses note when a new leader is first seen: a poll of the
cluster's own view (JetStream's `/jsz`, Kafka's metadata as most nodes see it) for both, and
JetStream's leader-elected advisory as well for NATS (Kafka has no leader
event a client can subscribe to).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import nats
import orjson

from backends.nats import NatsConfig
from experiments.runtime.broker import ReplicatedBroker
from experiments.runtime.nats.cluster import NatsCluster
from experiments.runtime.nats.lazy import LazyNats, power_off_all

DEFAULT_STREAM = NatsConfig().stream


class ClusterNodes:
    """Nodes of a cluster picked by role when the fault fires (the leader then, not at setup).

    `stream`: what is replicated and led, the JetStream stream or the Kafka
    topic (whose partition 0's leader is `leader`).
    """

    def __init__(self, cluster: ReplicatedBroker, role: str, stream: str = DEFAULT_STREAM) -> None:
        self.cluster = cluster
        self.role = role
        self.stream = stream
        self.names: list[str] = []  # the victims, once picked
        self.leader_before: str | None = None
        self.leader_after: str | None = None
        self.leader_seen_at: float | None = None  # perf_counter: a leader other than leader_before first seen
        self.healed_at: float | None = None  # perf_counter: the fault's own action is over
        self._watching = threading.Event()
        self._watchers: list[threading.Thread] = []

    def pick(self) -> list[str]:
        leader = self.cluster.leader_of(self.stream)
        if leader is None:
            raise RuntimeError(f"{self.stream} has no leader to aim a fault at")
        self.leader_before = leader
        followers = [n for n in self.cluster.names if n != leader]
        chosen = {"leader": [leader], "follower": followers[:1], "quorum": [leader, *followers[:1]]}
        self.names = chosen.get(self.role, list(self.cluster.names))
        self._watch_leader()
        return self.names

    def _watch_leader(self, poll_s: float = 0.2, limit_s: float = 30.0) -> None:
        """In the background, note when a leader other than `leader_before` is first seen (the leader change).

        Witnesses, whichever speaks first: the cluster's own view polled
        (`leader_of`: the nodes' `/jsz`, or Kafka's metadata; always there, a
        poll behind) and, on NATS, JetStream's leader-elected advisory (exact,
        but a watcher connected to a cut-off node misses it).
        """

        def seen(leader: str | None) -> bool:
            if leader is not None and leader != self.leader_before and self.leader_seen_at is None:
                self.leader_seen_at = time.perf_counter()
            return self.leader_seen_at is not None

        async def advisories(cluster: NatsCluster) -> None:
            subject = f"$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{self.stream}"
            with contextlib.suppress(Exception):  # a witness, not the fault: it may fail quietly
                nc = await nats.connect(cluster.url.split(","), connect_timeout=1, reconnect_time_wait=0.2)
                try:
                    await nc.subscribe(subject, cb=lambda m: _leader_from(m.data, seen))
                    deadline = time.monotonic() + limit_s
                    # polled, not an asyncio.Event: the stop flag is set from another thread
                    while not self._watching.is_set() and self.leader_seen_at is None and time.monotonic() < deadline:  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                finally:
                    await nc.close()

        def poll() -> None:
            deadline = time.monotonic() + limit_s
            while not self._watching.is_set() and time.monotonic() < deadline:
                if seen(self.cluster.leader_of(self.stream, timeout=0.3)):
                    return
                time.sleep(poll_s)

        self._watchers = [threading.Thread(target=poll, name="leader-poll", daemon=True)]
        cluster = self.cluster
        if isinstance(cluster, NatsCluster):
            self._watchers.append(
                threading.Thread(target=lambda: asyncio.run(advisories(cluster)), name="leader-advisory", daemon=True)
            )
        for t in self._watchers:
            t.start()
        if isinstance(cluster, NatsCluster):
            time.sleep(0.1)  # the advisory subscription is in place before the fault

    def _each(self, verb: str) -> None:
        nodes = [self.cluster.node(n) for n in self.names]
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            for f in [pool.submit(getattr(node, verb)) for node in nodes]:
                f.result()

    def stop(self, timeout: float = 10.0) -> None:
        self._each("stop")

    def kill(self) -> None:
        self._each("kill")

    def start(self) -> None:
        self._each("start")

    def pause(self) -> None:
        self._each("pause")

    def resume(self) -> None:
        self._each("resume")

    def power_off(self) -> int:
        """The picked nodes lose power at once; the bytes they lose, summed."""
        nodes = [node for n in self.names if isinstance(node := self.cluster.node(n), LazyNats)]
        if len(nodes) != len(self.names):
            raise ValueError("power loss needs a NATS cluster with lazy stores: Setup(store='lazyfs')")
        return power_off_all(nodes)

    def note_new_leader(self, timeout: float = 15.0, *, changed: bool = False) -> None:
        """Which node leads once the fault is over (None if none within `timeout`); `changed`: not the old one."""
        not_name = self.leader_before if changed else None
        try:
            self.leader_after = self.cluster.wait_leader(self.stream, timeout, not_name=not_name)
        except TimeoutError:
            self.leader_after = None
        if self.leader_after == self.leader_before:
            self._watching.set()  # no change happened (a follower fault): stop looking
        for t in self._watchers:
            t.join(timeout)
        self._watching.set()


def nats_cluster_of(victim: object) -> NatsCluster:
    """The NATS cluster behind a victim of a fault that acts through JetStream (`needs` has "nats-cluster")."""
    if not isinstance(victim, ClusterNodes) or not isinstance(victim.cluster, NatsCluster):
        raise TypeError(f"a NATS cluster's nodes expected, got {victim!r}")  # resolve_role refuses it first
    return victim.cluster


def wait_agreed_leader(cluster: NatsCluster, stream: str, names: list[str], timeout: float) -> str | None:
    """Until every node of `names` names the same stream leader (a fresh view: a restarted node has none at first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        views = set(cluster.stream_views(stream, names).values())
        if len(views) == 1 and None not in views:
            return views.pop()
        time.sleep(0.1)
    return None  # no leader in time: the step goes on, the row shows what happened


async def _ignore(_: object) -> None:
    return None


def _leader_from(data: bytes, seen: Callable[[str | None], bool]) -> Awaitable[None]:
    """The advisory's `leader` to `seen`; a coroutine, as nats-py wants a callback to be."""
    with contextlib.suppress(ValueError, TypeError, KeyError):
        seen(str(orjson.loads(data)["leader"]))
    return _ignore(None)
