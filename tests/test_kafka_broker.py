"""The Kafka broker the lab starts itself: a real KRaft JVM (1 node) and a real 3-node quorum.

One node: it binds loopback only, a record published with acks=all and
idempotence comes back with its key and header, and a share group (KIP-932)
delivers, redelivers a released record with its delivery count, and accepts.
Three nodes: every broker registered, a topic's ISR is all three, with
min.insync.replicas=2 and unclean election off; SIGKILL of the partition
leader moves leadership to another node and every acknowledged record is
still there.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest
from confluent_kafka import AcknowledgeType, ShareConsumer
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from experiments.runtime.broker import BrokerServer
from experiments.runtime.kafka.class_archive import archive_path
from experiments.runtime.kafka.cluster import KafkaCluster
from experiments.runtime.kafka.external import ExternalKafka, NotOurBroker
from experiments.runtime.kafka.provider import kafka_server_from_env
from experiments.runtime.kafka.readiness import KafkaNotReady, admin_client, live_broker_ids
from experiments.runtime.nats.process import ProcessNats
from experiments.runtime.processes import alive, all_threads_stopped
from tests.kafka_clients import create_topic, produce_acked, read_all

pytestmark = pytest.mark.timeout(180)


def test_one_node_binds_loopback_and_round_trips_acks_all(kafka_broker: KafkaCluster) -> None:
    assert kafka_broker.size == 1
    assert kafka_broker.pid is not None
    listening = [c.laddr for c in psutil.Process(kafka_broker.pid).net_connections("tcp") if c.status == "LISTEN"]
    assert len(listening) == 2, listening  # the client and the controller listener
    assert {a.ip for a in listening} == {"127.0.0.1"}, listening

    topic = create_topic(kafka_broker.bootstrap_servers, replicas=1)
    acked = produce_acked(kafka_broker.bootstrap_servers, topic, [b"m-1", b"m-2"])
    assert sorted(m.offset() or 0 for m in acked) == [0, 1]

    got = read_all(kafka_broker.bootstrap_servers, topic, expect=2)
    assert [(m.key(), m.value(), m.headers()) for m in got] == [
        (b"m-1", b"m-1", [("Nats-Msg-Id", b"m-1")]),
        (b"m-2", b"m-2", [("Nats-Msg-Id", b"m-2")]),
    ]


def test_the_broker_maps_the_class_archive(kafka_broker: KafkaCluster) -> None:
    """The JVM took the archive (a stale or refused one would start it without, silently): it is mapped."""
    archive = archive_path()
    assert archive.is_file()
    assert kafka_broker.pid is not None
    maps = Path(f"/proc/{kafka_broker.pid}/maps").read_text()
    assert str(archive) in maps, f"{archive} is not mapped by the broker's JVM"


def _share_group_from_earliest(bootstrap: str, group: str) -> None:
    """A share group starts at the log's end by default; this one reads what is already there."""
    resource = ConfigResource(
        ResourceType.GROUP,
        group,
        incremental_configs=[
            ConfigEntry("share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    admin = admin_client(bootstrap)  # held: a collected client cancels its futures
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=10)


def test_share_group_delivers_redelivers_a_released_record_and_accepts(kafka_broker: KafkaCluster) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = create_topic(bootstrap, replicas=1)
    produce_acked(bootstrap, topic, [b"a", b"b", b"c"])
    group = f"share-{topic}"
    _share_group_from_earliest(bootstrap, group)

    consumer = ShareConsumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "share.acknowledgement.mode": "explicit", "log_level": 3}
    )
    consumer.subscribe([topic])
    deliveries: list[tuple[bytes, int]] = []
    accepted: set[bytes] = set()
    deadline = time.monotonic() + 30
    try:
        while accepted != {b"a", b"b", b"c"} and time.monotonic() < deadline:
            for msg in consumer.poll(0.5):
                if msg.error() is not None:
                    continue
                value = msg.value()
                assert isinstance(value, bytes)
                count = msg.delivery_count()
                assert count is not None  # a share group counts deliveries
                deliveries.append((value, count))
                # "b" is released once (a nak): the broker must hand it out again, counted
                if value == b"b" and count == 1:
                    consumer.acknowledge(msg, AcknowledgeType.RELEASE)
                else:
                    consumer.acknowledge(msg, AcknowledgeType.ACCEPT)
                    accepted.add(value)
            consumer.commit_sync(timeout=10)
    finally:
        consumer.close()
    assert accepted == {b"a", b"b", b"c"}, deliveries
    assert sorted(deliveries) == [(b"a", 1), (b"b", 1), (b"b", 2), (b"c", 1)], deliveries


def test_three_nodes_elect_and_the_isr_is_three(kafka_cluster: KafkaCluster) -> None:
    bootstrap = kafka_cluster.bootstrap_servers
    assert set(kafka_cluster.metadata().brokers) == {1, 2, 3}
    assert all(n.pid for n in kafka_cluster.nodes)
    assert len({n.pid for n in kafka_cluster.nodes}) == 3
    topic = create_topic(bootstrap, replicas=3)
    leader, isr = kafka_cluster.wait_partition(topic, isr=3)
    assert leader in (1, 2, 3)
    assert isr == [1, 2, 3]

    admin = admin_client(bootstrap)  # held: a collected client cancels its futures
    described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
    configs = next(iter(described.values())).result(timeout=10)
    assert configs["min.insync.replicas"].value == "2"
    assert configs["unclean.leader.election.enable"].value == "false"


def test_sigkill_of_the_leader_moves_leadership_and_loses_nothing_acknowledged(kafka_cluster: KafkaCluster) -> None:
    bootstrap = kafka_cluster.bootstrap_servers
    topic = create_topic(bootstrap, replicas=3)
    old_leader, _ = kafka_cluster.wait_partition(topic, isr=3)
    before = [f"before-{i}".encode() for i in range(200)]
    produce_acked(bootstrap, topic, before)

    victim = kafka_cluster.node(old_leader)
    victim_pid = victim.pid
    victim.kill()
    try:
        assert victim_pid is not None
        assert not alive(victim_pid)  # the fault bit: that JVM is gone
        new_leader, isr = kafka_cluster.wait_partition(topic, not_leader=old_leader, timeout=30)
        assert new_leader != old_leader
        assert old_leader not in isr, isr
        # two in-sync replicas left = min.insync.replicas: acks=all still succeeds
        after = [f"after-{i}".encode() for i in range(100)]
        produce_acked(bootstrap, topic, after)

        got = read_all(",".join(n.bootstrap_servers for n in kafka_cluster.running), topic, expect=300)
        values = [m.value() for m in got]
        assert set(values) == set(before) | set(after), f"lost {len(set(before) | set(after) - set(values))}"
        assert len(values) == 300  # and no record twice (idempotent producer, no retries duplicated)
    finally:
        victim.start()
        kafka_cluster.wait_partition(topic, isr=3, timeout=60)


def test_pause_freezes_the_broker_and_resume_thaws_it(kafka_broker: KafkaCluster) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    kafka_broker.pause()
    try:
        assert kafka_broker.pid is not None
        assert all_threads_stopped(kafka_broker.pid)
        assert live_broker_ids(bootstrap, timeout=1.5) is None  # the fault bit: nothing answers
    finally:
        kafka_broker.resume()
    assert live_broker_ids(bootstrap, timeout=10.0) == {1}


def test_external_kafka_is_read_and_never_faulted(kafka_broker: KafkaCluster) -> None:
    env = {"HARNESS_KAFKA": "external", "KAFKA_BROKERS": kafka_broker.bootstrap_servers}
    external = kafka_server_from_env(environ=env)
    assert isinstance(external, ExternalKafka)
    assert isinstance(external, BrokerServer)
    with external:
        for verb in (external.kill, external.pause, external.stop, external.resume):
            with pytest.raises(NotOurBroker, match="did not start it"):
                verb()
    assert kafka_broker.pid is not None  # untouched
    with pytest.raises(KafkaNotReady), ExternalKafka("127.0.0.1:1", ready_timeout=1.0):
        pass


def test_providers_of_both_brokers_meet_one_protocol() -> None:
    process = kafka_server_from_env(environ={"HARNESS_KAFKA": "process", "HARNESS_KAFKA_NODES": "3"})
    try:
        assert isinstance(process, KafkaCluster)
        assert process.kind == "process"
        assert process.size == 3
        assert isinstance(process, BrokerServer)
    finally:
        process.close()  # never started: close releases the temp store only
    nats = ProcessNats()
    try:
        assert isinstance(nats, BrokerServer)
    finally:
        nats.close()
    with pytest.raises(ValueError, match="HARNESS_KAFKA_NODES"):
        kafka_server_from_env(environ={"HARNESS_KAFKA": "process", "HARNESS_KAFKA_NODES": "2"})
