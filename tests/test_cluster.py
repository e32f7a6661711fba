"""A real three-node JetStream cluster (nats-server processes on 127.0.0.1) and the backend on it.

Health is every node's healthz plus one meta leader; an R3 stream has a
leader and two current replicas; a publish that meets a step-down is retried
with the same `Nats-Msg-Id` and stored once; the pull consumer keeps
delivering across a consumer leader change; `/stats`-level numbers stay real.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import pytest

from backends.contract import BackendUnavailable, Message
from backends.nats import NatsConfig, NatsJetStreamBackend, server_list
from experiments.runtime.nats.cluster import NatsCluster
from experiments.runtime.nats.external import ExternalNats, NotOurServer
from experiments.runtime.nats.monitoring import describe_servers
from experiments.runtime.nats.provider import nats_server_from_env
from experiments.runtime.nats.topology import nodes_from_env
from experiments.runtime.stack import Stack, StackConfig
from experiments.workload.faults import Deployment, FaultRunner, FaultStep

STREAM = NatsConfig().stream


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """One three-node cluster for this module (starting one takes ~1-3 s); each test uses its own stream."""
    c = NatsCluster(tmp_path_factory.mktemp("cluster"), nodes=3)
    started = time.monotonic()
    try:
        c.start()
        print(f"three nodes healthy in {time.monotonic() - started:.2f} s")
        yield c
    finally:
        c.close()
    assert all(n.pid is None for n in c.nodes)


@pytest.fixture
async def backend(cluster: NatsCluster, request: pytest.FixtureRequest) -> AsyncIterator[NatsJetStreamBackend]:
    name = f"T{abs(hash(request.node.name)) % 10**8}"
    b = NatsJetStreamBackend(
        NatsConfig(
            url=cluster.url,
            monitor_url=cluster.monitor_url,
            replicas=3,
            stream=name,
            subject=f"{name.lower()}.messages",
            durable=f"{name.lower()}-proc",
            dlq_stream=f"{name}_DLQ",
            dlq_subject=f"{name.lower()}.dlq",
            publish_timeout=8.0,
            ack_wait=5.0,
        )
    )
    await b.connect()
    try:
        yield b
    finally:
        await b.close()


def test_three_nodes_each_healthy_and_agree_on_one_meta_leader(cluster: NatsCluster) -> None:
    leaders = set()
    for node in cluster.nodes:
        r = httpx.get(f"{node.monitor_url}/healthz", params={"js-enabled-only": "true"}, trust_env=False)
        assert r.status_code == 200
        jsz = httpx.get(f"{node.monitor_url}/jsz", trust_env=False).json()
        assert jsz["meta_cluster"]["cluster_size"] == 3
        leaders.add(jsz["meta_cluster"]["leader"])
        varz = httpx.get(f"{node.monitor_url}/varz", trust_env=False).json()
        assert varz["jetstream"]["config"]["max_memory"] == 256 * 1024 * 1024  # capped, not 75 % of RAM
    assert len(leaders) == 1
    assert leaders == {cluster.meta_leader()}
    assert len({n.store_dir for n in cluster.nodes}) == 3, "each node its own store"
    info = describe_servers(cluster.monitor_url)
    assert info["nats_cluster_size"] == "3"
    assert info["nats_servers"].count("@") == 3


async def test_r3_stream_has_a_leader_and_current_replicas_in_stats(
    cluster: NatsCluster, backend: NatsJetStreamBackend
) -> None:
    for i in range(50):
        await backend.publish(Message(uuid.uuid4().hex, "t", i))
    deadline = time.monotonic() + 10
    while True:
        s = await backend.stats()
        replicas: list[dict[str, Any]] = list((s.cluster or {}).get("replicas") or [])  # type: ignore[call-overload]
        if len(replicas) == 2 and all(r["current"] for r in replicas) and s.cluster and s.cluster["meta_leader"]:
            break
        assert time.monotonic() < deadline, f"replicas not current: {s.cluster}"
        await asyncio.sleep(0.2)
    assert s.current_size == 50
    assert s.cluster is not None
    assert s.cluster["leader"] == cluster.stream_leader(backend.config.stream)
    assert {r["name"] for r in replicas} | {s.cluster["leader"]} == set(cluster.names)
    assert s.cluster["meta_leader"] == cluster.meta_leader()


async def test_publish_across_a_step_down_is_retried_and_stored_once(
    cluster: NatsCluster, backend: NatsJetStreamBackend
) -> None:
    stream = backend.config.stream
    await backend.publish(Message(uuid.uuid4().hex, "t", -1))
    before = cluster.wait_stream_leader(stream, 10)
    acked: list[str] = []
    stop = asyncio.Event()

    async def publisher() -> None:
        i = 0
        while not stop.is_set():
            m = Message(uuid.uuid4().hex, "t", i)
            await backend.publish(m)  # must not raise: an election is shorter than publish_timeout (8 s)
            acked.append(m.id)
            i += 1

    task = asyncio.create_task(publisher())
    await asyncio.sleep(0.3)
    answer = await asyncio.to_thread(cluster.step_down, stream)
    assert answer.get("success") is True, answer
    after = await asyncio.to_thread(cluster.wait_stream_leader, stream, 10, not_name=before)
    await asyncio.sleep(0.5)
    stop.set()
    await task
    assert after != before
    assert await stored(cluster, stream) == len(acked) + 1, "every acknowledged publish stored exactly once"
    assert backend.leader_elections["stream"] >= 1, "the leader change was seen"
    print(f"step-down: {len(acked)} publishes, {backend.publish_retries} attempts retried with the same id")


async def stored(cluster: NatsCluster, stream: str) -> int:
    """Messages in `stream`, as the cluster's stream leader reports them."""
    nc = await nats.connect(server_list(cluster.url))
    try:
        return int((await nc.jetstream().stream_info(stream)).state.messages)
    finally:
        await nc.close()


async def test_publish_many_across_a_step_down_is_retried_and_stored_once(
    cluster: NatsCluster, backend: NatsJetStreamBackend
) -> None:
    """Batches of 50 (one write each, PubAcks by one subscription) while the stream leader steps down twice."""
    stream = backend.config.stream
    await backend.publish(Message(uuid.uuid4().hex, "t", -1))
    acked: list[str] = []
    stop = asyncio.Event()

    async def publisher() -> None:
        i = 0
        while not stop.is_set():
            batch = [Message(uuid.uuid4().hex, "t", i + k) for k in range(50)]
            acks = await backend.publish_many(batch)  # must not raise: an election is shorter than publish_timeout
            assert [a.message_id for a in acks] == [m.id for m in batch]  # a retried one may answer duplicate
            acked.extend(m.id for m in batch)
            i += 50

    task = asyncio.create_task(publisher())
    for _ in range(2):
        await asyncio.sleep(0.3)
        before = await asyncio.to_thread(cluster.wait_stream_leader, stream, 10)
        answer = await asyncio.to_thread(cluster.step_down, stream)
        assert answer.get("success") is True, answer
        await asyncio.to_thread(cluster.wait_stream_leader, stream, 10, not_name=before)
    await asyncio.sleep(0.5)
    stop.set()
    await task
    assert await stored(cluster, stream) == len(acked) + 1, "every acknowledged publish stored exactly once"
    assert backend.leader_elections["stream"] >= 2, "the leader changes were seen"
    print(f"step-downs: {len(acked)} batched publishes, {backend.publish_retries} rounds retried with the same ids")


async def test_pull_consumer_keeps_delivering_across_a_consumer_leader_change(
    cluster: NatsCluster, backend: NatsJetStreamBackend
) -> None:
    cfg = backend.config
    ids = [uuid.uuid4().hex for _ in range(200)]
    for i, mid in enumerate(ids):
        await backend.publish(Message(mid, "t", i))
    got: list[str] = []
    for d in await backend.fetch(20, 2.0):
        got.append(d.message.id)
        await d.ack()
    nc = await nats.connect(server_list(cluster.url))
    try:
        reply = await nc.request(f"$JS.API.CONSUMER.LEADER.STEPDOWN.{cfg.stream}.{cfg.durable}", b"", timeout=5)
        assert orjson.loads(reply.data).get("success") is True, reply.data
    finally:
        await nc.close()
    deadline = time.monotonic() + 30
    while len(set(got)) < len(ids) and time.monotonic() < deadline:
        try:
            batch = await backend.fetch(50, 1.0)
        except BackendUnavailable:
            await asyncio.sleep(0.1)
            continue
        for d in batch:
            got.append(d.message.id)
            await d.ack()
    assert set(got) == set(ids), f"{len(set(ids) - set(got))} never delivered after the consumer leader change"
    assert backend.leader_elections["consumer"] >= 1


def test_harness_nats_nodes_selects_a_cluster_and_the_stack_replicates_on_it(tmp_path: Path) -> None:
    assert nodes_from_env({}) == 1
    assert nodes_from_env({"HARNESS_NATS_NODES": "3"}) == 3
    with pytest.raises(ValueError, match="HARNESS_NATS_NODES='2': expected one of 1, 3"):
        nodes_from_env({"HARNESS_NATS_NODES": "2"})
    server = nats_server_from_env(tmp_path / "n", environ={"HARNESS_NATS": "process", "HARNESS_NATS_NODES": "3"})
    try:
        assert isinstance(server, NatsCluster)
        assert server.size == 3
        assert len(server.url.split(",")) == 3
        stack = Stack(StackConfig(queue="nats"), tmp_path / "stack", nats=server)
        assert stack.backend_settings.nats_replicas == 3
        assert stack.backend_settings.nats_url == server.url
    finally:
        server.close()


def test_external_nats_is_used_but_never_faulted(cluster: NatsCluster, tmp_path: Path) -> None:
    ext = nats_server_from_env(
        environ={"HARNESS_NATS": "external", "NATS_URL": cluster.url, "NATS_MONITOR_URL": cluster.monitor_url}
    )
    assert isinstance(ext, ExternalNats)
    try:
        ext.start()  # checks health and JetStream; starts nothing
        with pytest.raises(NotOurServer, match="HARNESS_NATS=external points at servers this harness did not start"):
            ext.kill()
        stack = Stack(StackConfig(queue="nats"), tmp_path / "stack", nats=ext)
        with pytest.raises(ValueError, match="needs a cluster of 3 nodes the harness started"):
            FaultRunner(FaultStep.parse("kill:leader"), Deployment(stack, ext))
        with pytest.raises(ValueError, match="not ours to kill"):
            FaultRunner(FaultStep.parse("kill:broker"), Deployment(stack, ext))
    finally:
        ext.close()
    assert all(n.pid is not None for n in cluster.nodes), "the external cluster is left running"
    with pytest.raises(ValueError, match="HARNESS_NATS=external needs NATS_URL"):
        nats_server_from_env(environ={"HARNESS_NATS": "external"})


@pytest.mark.spawns
async def test_connect_without_a_quorum_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    """Two of three nodes down: the stream cannot be created, and connect says so as BackendUnavailable.

    (A raw TimeoutError here once ended the processor's connect loop for good:
    it served 503s while the cluster was long healthy again.)
    """
    with NatsCluster(tmp_path / "c", nodes=3) as c:
        c.nodes[1].kill()
        c.nodes[2].kill()
        b = NatsJetStreamBackend(
            NatsConfig(url=c.nodes[0].url, replicas=3, publish_timeout=1.0, connect_timeout=2.0, stream="NOQ")
        )
        with pytest.raises(BackendUnavailable, match="did not set up the stream"):
            await b.connect()
        c.nodes[1].start()
        c.nodes[2].start()
        c.wait_healthy(30)
        deadline = time.monotonic() + 30
        while True:  # the same object connects once the quorum is back
            try:
                await b.connect()
                break
            except BackendUnavailable:
                assert time.monotonic() < deadline, "no connect after the quorum came back"
                await asyncio.sleep(0.5)
        try:
            ack = await b.publish(Message(uuid.uuid4().hex, "t", 1))
            assert ack.sequence == 1
        finally:
            await b.close()
