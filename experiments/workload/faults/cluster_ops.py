"""Faults only a replicated broker can take: a leader step-down, a rolling restart, and the lagging majority.

`stepdown`: the stream leader hands over
(`$JS.API.STREAM.LEADER.STEPDOWN.<stream>`). `rolling`: each node restarted
in turn, the next once the cluster is healthy again.

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
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, ClassVar

from experiments.workload.faults.base import (
    NEED_HINTS,
    FaultBase,
    FaultReport,
    Need,
    PowerLossable,
    StepLike,
    finish,
)
from experiments.workload.faults.nodes import nats_cluster_of, wait_agreed_leader

CLUSTER_HEALTHY_S = 30.0  # a rolling restart waits at most this long for each node to rejoin
ELECTION_S = 20.0  # lagging-majority: how long the two-node majority may take to elect a stream leader
MAJORITY_WRITES_S = 1.0  # lagging-majority: writes the two-node majority takes before the third node is back


class Stepdown(FaultBase):
    """The stream leader hands over; the report waits for a leader other than the old one."""

    kind: ClassVar[str] = "stepdown"
    family: ClassVar[str] = "cluster"
    needs: ClassVar[frozenset[Need]] = frozenset({"cluster", "nats-cluster"})
    default_target: ClassVar[str] = "leader"

    def run(self, step: StepLike, victim: Any) -> FaultReport:
        cluster = nats_cluster_of(victim)
        report = FaultReport(started=time.perf_counter())
        victim.pick()
        answer: dict[str, Any] = cluster.step_down(victim.stream)
        victim.healed_at = time.perf_counter()
        if not answer.get("success"):
            raise RuntimeError(f"step-down of {victim.stream} refused: {answer}")
        victim.note_new_leader(changed=True)
        return finish(report, victim)


class Rolling(FaultBase):
    """Each node stopped `down_s` and started in turn, the next once the cluster is healthy again."""

    kind: ClassVar[str] = "rolling"
    family: ClassVar[str] = "cluster"
    needs: ClassVar[frozenset[Need]] = frozenset({"cluster", "nats-cluster"})
    default_target: ClassVar[str] = "cluster"

    def run(self, step: StepLike, victim: Any) -> FaultReport:
        cluster = nats_cluster_of(victim)
        report = FaultReport(started=time.perf_counter())
        victim.pick()
        victim.names = list(cluster.names)
        try:
            for name in cluster.names:
                node = cluster.node(name)
                node.stop()
                try:
                    time.sleep(step.down_s)
                finally:
                    node.start()
                cluster.wait_healthy(CLUSTER_HEALTHY_S)
        finally:
            victim.healed_at = time.perf_counter()
        victim.note_new_leader()
        return finish(report, victim)


class LaggingMajority(FaultBase):
    """Partition a follower, power-loss the leader, pause the other follower, restart the leader, heal.

    The lagging follower is cut off (its routes reset), not paused: a
    SIGSTOPped nats-server on loopback still receives the leader's appends
    into its socket buffers and applies them on resume, so it would not lag.
    It is the follower with the fewer client connections, so the clients
    keep publishing (the tail) to the leader. Every node paused or cut off
    is let go again, whatever fails on the way, so the cluster is whole when
    the step ends (or raises).
    """

    kind: ClassVar[str] = "lagging-majority"
    family: ClassVar[str] = "cluster"
    needs: ClassVar[frozenset[Need]] = frozenset({"cluster", "nats-cluster", "partitionable", "lazy-store"})
    default_target: ClassVar[str] = "cluster"
    plot_names: ClassVar[dict[str, str]] = {"": "lagging\nmajority"}

    def run(self, step: StepLike, victim: Any) -> FaultReport:
        cluster = nats_cluster_of(victim)
        report = FaultReport(started=time.perf_counter())
        victim.pick()
        leader = victim.leader_before
        assert leader is not None  # pick() raises when the stream has no leader
        lagging, holder = sorted((n for n in cluster.names if n != leader), key=cluster.client_connections)[:2]
        victim.names = [lagging, leader, holder]
        old, last = cluster.node(leader), cluster.node(holder)
        if not isinstance(old, PowerLossable):
            raise ValueError(f"fault {step.label} needs {NEED_HINTS['lazy-store']}")
        paused = False
        try:
            cluster.isolate(lagging)
            time.sleep(step.down_s)  # the tail: acknowledged by the leader and `holder`, never seen by `lagging`
            report.bytes_lost = old.power_off()
            last.pause()
            paused = True
            old.start()
            cluster.heal()
            wait_agreed_leader(cluster, victim.stream, [leader, lagging], ELECTION_S)
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
        return finish(report, victim)


FAULTS = (Stepdown(), Rolling(), LaggingMajority())
