"""Fault steps that run inside a measured phase: restart, kill, pause or power-loss a component.

A step names *what* fails by role, not by process, so one notebook compares
backends fairly: `target="queue"` is where the queue lives (the NATS server
for JetStream, the processor itself for the memory queue), `"nats"` and
`"processor"` name the process directly. It fires at a time or after the
load generator issued N requests, whichever the step sets.

`power-loss` is a kill that also drops what the victim wrote but never
fsynced: SIGKILL, `lose` on its lazy file system, `down_s`, start. It needs
NATS on a lazy store (`Setup(store="lazyfs")`); for the memory queue the
machine's power loss is the processor's death, so it is a kill. `power_loss()`
takes a list of nodes: on a lazy cluster `power-loss:leader` (or `follower`,
`quorum`) hits those nodes, `power-loss:queue` every node at once (Jepsen's
coordinated power failure).

`lagging-majority` is Jepsen's single-power-loss finding on three nodes
(nats-server#7567, scaled from five nodes to three): a follower is cut off
for `down_s` while the leader and the other follower acknowledge writes (the
tail); the leader loses power; the other follower, the last node holding the
tail, is paused; the leader starts again and the cut-off follower rejoins.
These two are a majority, and neither has the tail unless the leader had
fsynced it. Once they agree on a leader and have taken writes of their own,
the paused follower resumes. Under `sync_interval: always` the restarted
leader still has the tail and nothing is lost. (Jepsen paused the lagging
nodes; on loopback a paused node still receives the appends into its socket
buffers, so here it is partitioned: the cluster must be `partitionable`.)

On a three-node cluster (`NatsCluster`) a step can also name a node by its
role at the moment it fires: `leader` (the stream's leader), `follower`
(another node holding a replica), `quorum` (the leader and one follower: two
of three, so no majority is left), and `cluster` for a rolling restart. The
cluster-only kinds: `stepdown` (the leader hands over,
`$JS.API.STREAM.LEADER.STEPDOWN.<stream>`), `partition` (the leader cut off
from its peers while its clients still reach it) and `rolling` (each node
restarted in turn, the next once the cluster is healthy again).

A queue switch is a step too: `switch:nats` (planned, zero downtime) or
`naive-switch:memory` (stop and recreate), the target naming the queue
switched to (`experiments.runtime.migration`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import nats
import orjson

from backends.nats import NatsConfig
from experiments.runtime.migration import Queue, switch_queue
from experiments.runtime.nats.cluster import NatsCluster
from experiments.runtime.nats.lazy import LazyNats, power_off_all
from experiments.runtime.nats.provider import NatsServer
from experiments.runtime.processes import freeze
from experiments.runtime.stack import ServiceProcess, Stack
from experiments.workload.load import LoadResult, id_bodies, open_loop

# fmt: off
FaultKind = Literal[
    "none", "restart", "kill", "pause", "power-loss", "stepdown", "partition", "rolling", "lagging-majority",
    "switch", "naive-switch",
]
# fmt: on
SWITCHES = ("switch", "naive-switch")  # a queue switch (experiments.runtime.migration); target: the queue switched to
FAULT_KINDS: tuple[str, ...] = ("none", "restart", "kill", "pause", "power-loss", "stepdown", "partition", "rolling",
                                "lagging-majority", *SWITCHES)  # fmt: skip
FaultTarget = Literal["queue", "nats", "processor", "leader", "follower", "quorum", "cluster", "memory"]
TARGETS = ("queue", "nats", "processor", "leader", "follower", "quorum", "cluster")
CLUSTER_TARGETS = ("leader", "follower", "quorum", "cluster")
CLUSTER_KINDS = ("stepdown", "partition", "rolling", "lagging-majority")
DEFAULT_STREAM = NatsConfig().stream
CLUSTER_HEALTHY_S = 30.0  # a rolling restart waits at most this long for each node to rejoin
ELECTION_S = 20.0  # lagging-majority: how long the two-node majority may take to elect a stream leader
MAJORITY_WRITES_S = 1.0  # lagging-majority: writes the two-node majority takes before the third node is back


@dataclass(frozen=True)
class FaultStep:
    """One fault: `kind` on `target`, `down_s` long, triggered by time or progress."""

    kind: FaultKind = "none"
    target: FaultTarget = "queue"
    at_s: float | None = 2.0  # seconds after the load started
    after_requests: int | None = None  # or: once this many requests were issued
    down_s: float = 1.0  # how long the target stays down (or frozen)

    @property
    def label(self) -> str:
        return "none" if self.kind == "none" else f"{self.kind}:{self.target}"

    @property
    def needs_cluster(self) -> bool:
        return self.target in CLUSTER_TARGETS or self.kind in CLUSTER_KINDS

    @classmethod
    def parse(cls, text: str, **kwargs: float | int | None) -> FaultStep:
        """'none', 'kill', 'pause:nats', 'power-loss', 'kill:leader', 'stepdown', 'switch:nats' ... (target: the queue).

        A switch (`switch`, `naive-switch`) names the queue it switches to: memory or nats.
        """
        kind, _, target = text.partition(":")
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault {text!r}: kind must be one of {', '.join(FAULT_KINDS)}")
        if kind in SWITCHES:
            if target not in ("memory", "nats"):
                raise ValueError(f"fault {text!r}: a switch names the queue it switches to: memory or nats")
        elif target not in ("", *TARGETS):
            raise ValueError(f"fault {text!r}: target must be one of {', '.join(TARGETS)}")
        if kind in CLUSTER_KINDS and not target:
            target = "cluster" if kind in ("rolling", "lagging-majority") else "leader"
        return cls(kind=kind, target=target or "queue", **kwargs)  # type: ignore[arg-type]


@runtime_checkable
class PowerLossable(Protocol):
    """A node whose power can fail: `power_off` kills it and drops its unsynced writes."""

    def power_off(self) -> int: ...
    def start(self) -> None: ...


def power_loss(nodes: Sequence[PowerLossable], down_s: float) -> int:
    """Every node loses power at once, stays off `down_s`, and starts again; returns the bytes lost."""
    lost = sum(node.power_off() for node in nodes)
    time.sleep(down_s)
    for node in nodes:
        node.start()
    return lost


class _ProcessorHandle:
    """A processor service seen through the same verbs as a NATS server."""

    def __init__(self, service: ServiceProcess) -> None:
        self.service = service

    def stop(self, timeout: float = 20.0) -> None:
        self.service.stop(timeout)

    def kill(self) -> None:
        self.service.kill()

    def start(self) -> None:
        self.service.start()

    def pause(self) -> None:
        pid = self.service.pid
        if pid is None:
            raise RuntimeError(f"{self.service.name} is not running")
        freeze(pid)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def power_off(self) -> int:
        """The memory queue's machine loses power: the processor dies with its queue (a kill)."""
        self.service.kill()
        return 0

    def _signal(self, sig: signal.Signals) -> None:
        pid = self.service.pid
        if pid is None:
            raise RuntimeError(f"{self.service.name} is not running")
        os.kill(pid, sig)


class ClusterNodes:
    """Nodes of a cluster picked by role when the fault fires (the leader then, not at setup)."""

    def __init__(self, cluster: NatsCluster, role: str, stream: str = DEFAULT_STREAM) -> None:
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
        leader = self.cluster.stream_leader(self.stream)
        if leader is None:
            raise RuntimeError(f"stream {self.stream} has no leader to aim a fault at")
        self.leader_before = leader
        followers = [n for n in self.cluster.names if n != leader]
        chosen = {"leader": [leader], "follower": followers[:1], "quorum": [leader, *followers[:1]]}
        self.names = chosen.get(self.role, list(self.cluster.names))
        self._watch_leader()
        return self.names

    def _watch_leader(self, poll_s: float = 0.2, limit_s: float = 30.0) -> None:
        """In the background, note when a leader other than `leader_before` is first seen (the leader change).

        Two witnesses, whichever speaks first: JetStream's leader-elected
        advisory (exact, but a watcher connected to a cut-off node misses it)
        and the nodes' `/jsz` (always there, a poll behind).
        """

        def seen(leader: str | None) -> bool:
            if leader is not None and leader != self.leader_before and self.leader_seen_at is None:
                self.leader_seen_at = time.perf_counter()
            return self.leader_seen_at is not None

        async def advisories() -> None:
            subject = f"$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{self.stream}"
            with contextlib.suppress(Exception):  # a witness, not the fault: it may fail quietly
                nc = await nats.connect(self.cluster.url.split(","), connect_timeout=1, reconnect_time_wait=0.2)
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
                if seen(self.cluster.stream_leader(self.stream, timeout=0.3)):
                    return
                time.sleep(poll_s)

        self._watchers = [
            threading.Thread(target=poll, name="leader-poll", daemon=True),
            threading.Thread(target=lambda: asyncio.run(advisories()), name="leader-advisory", daemon=True),
        ]
        for t in self._watchers:
            t.start()
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
        nodes = [self.cluster.node(n) for n in self.names]
        if not all(isinstance(n, LazyNats) for n in nodes):
            raise ValueError("power loss needs a cluster with lazy stores: Setup(store='lazyfs')")
        return power_off_all(nodes)

    def note_new_leader(self, timeout: float = 15.0, *, changed: bool = False) -> None:
        """Which node leads once the fault is over (None if none within `timeout`); `changed`: not the old one."""
        not_name = self.leader_before if changed else None
        try:
            self.leader_after = self.cluster.wait_stream_leader(self.stream, timeout, not_name=not_name)
        except TimeoutError:
            self.leader_after = None
        if self.leader_after == self.leader_before:
            self._watching.set()  # no change happened (a follower fault): stop looking
        for t in self._watchers:
            t.join(timeout)
        self._watching.set()


Victim = NatsServer | _ProcessorHandle | ClusterNodes


def resolve_target(step: FaultStep, stack: Stack, nats: NatsServer | None) -> Victim:
    """Who the step hits; refuses, naming why, a fault the run cannot inflict."""
    if step.needs_cluster:
        if not isinstance(nats, NatsCluster) or nats.size < 3:
            raise ValueError(
                f"fault {step.label} needs a NATS cluster of 3 nodes the harness started "
                f"(HARNESS_NATS_NODES=3, HARNESS_NATS=process|docker|auto); this run has {_describe(nats)}"
            )
        if step.kind in ("partition", "lagging-majority") and not nats.proxies:
            raise ValueError(f"fault {step.label} needs a cluster built partitionable=True (per-route proxies)")
        return ClusterNodes(nats, step.target)
    if nats is not None and nats.kind == "external" and step.kind != "none" and step.target in ("queue", "nats"):
        raise ValueError(
            f"fault {step.label}: HARNESS_NATS=external servers are not ours to kill, pause or restart; "
            "run this experiment with HARNESS_NATS=process, docker or auto"
        )
    target = step.target
    if target == "queue":
        target = "nats" if nats is not None else "processor"
    if target == "nats":
        if nats is None:
            raise ValueError(f"fault {step.label}: this run has no NATS server")
        return nats
    return _ProcessorHandle(stack.processors[0])


def _describe(nats: NatsServer | None) -> str:
    if nats is None:
        return "no NATS"
    return f"a {nats.kind} NATS of {getattr(nats, 'size', 1)} node(s)"


def apply(step: FaultStep, victim: Victim) -> None:
    """Run the fault to completion (blocking): down for `down_s`, then back."""
    if isinstance(victim, ClusterNodes):
        _apply_on_cluster(step, victim)
        return
    if step.kind == "restart":
        victim.stop()
        time.sleep(step.down_s)
        victim.start()
    elif step.kind == "kill":
        victim.kill()
        time.sleep(step.down_s)
        victim.start()
    elif step.kind == "power-loss":
        if not isinstance(victim, PowerLossable):
            raise ValueError(
                f"fault {step.label}: {type(victim).__name__} has no lazy store; use Setup(store='lazyfs')"
            )
        power_loss([victim], step.down_s)
    elif step.kind == "pause":
        _pause_for(victim, step.down_s)


def _pause_for(victim: Victim, seconds: float) -> None:
    """Freeze `victim` for `seconds`; it is thawed whatever happens meanwhile."""
    victim.pause()
    try:
        time.sleep(seconds)
    finally:
        victim.resume()


def _apply_on_cluster(step: FaultStep, victim: ClusterNodes) -> None:
    cluster = victim.cluster
    if step.kind == "rolling":
        victim.pick()
        victim.names = list(cluster.names)
        for name in cluster.names:
            node = cluster.node(name)
            node.stop()
            time.sleep(step.down_s)
            node.start()
            cluster.wait_healthy(CLUSTER_HEALTHY_S)
        victim.healed_at = time.perf_counter()
        victim.note_new_leader()
        return
    if step.kind == "lagging-majority":
        _lagging_majority(step, victim)
        return
    names = victim.pick()
    if step.kind == "stepdown":
        answer: dict[str, Any] = cluster.step_down(victim.stream)
        victim.healed_at = time.perf_counter()
        if not answer.get("success"):
            raise RuntimeError(f"step-down of {victim.stream} refused: {answer}")
        victim.note_new_leader(changed=True)
        return
    if step.kind == "partition":
        cluster.isolate(names[0])
        try:
            time.sleep(step.down_s)
        finally:
            cluster.heal()
            victim.healed_at = time.perf_counter()
        victim.note_new_leader()
        return
    if step.kind == "pause":
        try:
            _pause_for(victim, step.down_s)
        finally:
            victim.healed_at = time.perf_counter()
    elif step.kind == "power-loss":
        power_loss([victim], step.down_s)
        victim.healed_at = time.perf_counter()
    else:  # kill, restart
        victim.kill() if step.kind == "kill" else victim.stop()
        time.sleep(step.down_s)
        victim.start()
        victim.healed_at = time.perf_counter()
    victim.note_new_leader()


def _lagging_majority(step: FaultStep, victim: ClusterNodes) -> None:
    """Partition a follower, power-loss the leader, pause the other follower, restart the leader, heal.

    The lagging follower is cut off (its routes reset), not paused: a
    SIGSTOPped nats-server on loopback still receives the leader's appends
    into its socket buffers and applies them on resume, so it would not lag.
    It is the follower with the fewer client connections, so the clients
    keep publishing (the tail) to the leader. Every node paused or cut off
    is let go again, whatever fails on the way, so the cluster is whole when
    the step ends (or raises).
    """
    cluster = victim.cluster
    victim.pick()
    leader = victim.leader_before
    assert leader is not None  # pick() raises when the stream has no leader
    lagging, holder = sorted((n for n in cluster.names if n != leader), key=cluster.client_connections)[:2]
    victim.names = [lagging, leader, holder]
    old, last = cluster.node(leader), cluster.node(holder)
    if not isinstance(old, PowerLossable):
        raise ValueError("lagging-majority needs a cluster with lazy stores: Setup(store='lazyfs')")
    paused = False
    try:
        cluster.isolate(lagging)
        time.sleep(step.down_s)  # the tail: acknowledged by the leader and `holder`, never seen by `lagging`
        old.power_off()
        last.pause()
        paused = True
        old.start()
        cluster.heal()
        _wait_agreed_leader(cluster, victim.stream, [leader, lagging], ELECTION_S)
        time.sleep(MAJORITY_WRITES_S)  # the two-node majority takes writes of its own
        last.resume()
        paused = False
    finally:
        cluster.heal()
        if paused:
            with contextlib.suppress(Exception):
                last.resume()
        victim.healed_at = time.perf_counter()
    victim.note_new_leader()


def _wait_agreed_leader(cluster: NatsCluster, stream: str, names: list[str], timeout: float) -> str | None:
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


class Progress:
    """Requests issued so far, with a waitable threshold (fed by the load generator's `on_sent`)."""

    def __init__(self) -> None:
        self.count = 0
        self._waiters: list[tuple[int, asyncio.Event]] = []

    def __call__(self, n: int) -> None:
        self.count = n
        for threshold, event in self._waiters:
            if n >= threshold:
                event.set()

    async def reached(self, threshold: int) -> None:
        event = asyncio.Event()
        if self.count >= threshold:
            return
        self._waiters.append((threshold, event))
        await event.wait()


async def inject(
    step: FaultStep, stack: Stack, nats: NatsServer | None, progress: Progress, t0: float
) -> tuple[float, float] | None:
    """Wait for the step's trigger, run it in a thread; return its (start, end) in s after `t0` (perf_counter)."""
    if step.kind == "none":
        return None
    victim = None if step.kind in SWITCHES else resolve_target(step, stack, nats)
    if step.after_requests is not None:
        await progress.reached(step.after_requests)
    elif step.at_s is not None:
        await asyncio.sleep(max(0.0, t0 + step.at_s - time.perf_counter()))
    start = time.perf_counter() - t0
    if victim is None:
        to: Queue = "nats" if step.target == "nats" else "memory"
        await asyncio.to_thread(switch_queue, stack, to, nats, naive=step.kind == "naive-switch")
    else:
        await asyncio.to_thread(apply, step, victim)
    return start, time.perf_counter() - t0


async def load_with_fault(
    gateway_url: str,
    *,
    rate: float,
    duration: float,
    fault: Callable[[], None] | None,
    fault_at: float,
    prefix: str | None = None,
) -> tuple[LoadResult, set[str], str]:
    """Open-loop load with client-given ids for `duration` s; `fault` (a callable) runs in a thread at `fault_at` s.

    The fault tests' form of `inject`: the fault is code, not a `FaultStep`.
    Returns the load result, the ids sent, and the id prefix used.
    """
    prefix = prefix or uuid.uuid4().hex[:8]

    async def run_fault() -> None:
        await asyncio.sleep(fault_at)
        if fault is not None:
            await asyncio.to_thread(fault)

    injector = asyncio.create_task(run_fault())
    result = await open_loop(
        f"{gateway_url}/api/v1/ingest",
        id_bodies(prefix, source="durability"),
        rate=rate,
        duration=duration,
        timeout=10.0,
        keep_ids=True,
    )
    await injector
    return result, {f"{prefix}-{r.seq}" for r in result.records}, prefix
