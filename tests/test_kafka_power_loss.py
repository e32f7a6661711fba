"""Power loss on real Kafka brokers (KRaft JVMs) whose data dirs live on the lazy file system.

A producer publishes ids with acks=all and idempotence and records which
were acknowledged (a delivery report without error). Then brokers lose
power (`power_off`: SIGKILL, every write never fsynced dropped), start
again, and a consumer reads the whole topic from the beginning. Lost = the
acknowledged ids it does not find.

- R1, default flush policy (Kafka never fsyncs a partition log): the broker's
  power loss loses acknowledged messages.
- R1, flush every message (`flush.messages=1`, the topic's override of
  `log.flush.interval.messages`, which `kafka-flush` sets broker-wide): none.
- R3, `min.insync.replicas=2`, default flush, only the partition leader loses
  power: none. The other replicas still hold (in their page cache) what the
  leader lost, and one of them becomes the leader: the case Kafka's
  documentation counts on.
- R3, then a coordinated power loss of all three: the default topic loses
  acknowledged messages (replication does not help what no replica fsynced);
  the flush-every-message topic, none.

Each deployment holds a default topic and a flushed one, so one power loss
decides both sides on the same disks at the same moment (and CI starts one
broker and one cluster, not five deployments).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from experiments.runtime.kafka.cluster import KafkaCluster
from experiments.runtime.lazyfs import is_mounted
from experiments.runtime.processes import alive
from tests.kafka_clients import create_topic
from tests.kafka_fixtures import require_kafka_or_skip
from tests.lazyfs_fixtures import require_fuse_or_skip

pytestmark = [pytest.mark.faults]

MESSAGES = 2000  # small ids; enough that a loss is not one batch's luck, seconds to publish
READ_TIMEOUT_S = 30.0
FLUSH_EACH = {"flush.messages": "1"}  # the topic's log.flush.interval.messages: kafka-flush's fsync per message


@dataclass(frozen=True)
class PowerLoss:
    """What one case measured: acknowledged ids, ids read back after the restart, bytes the lazy disks dropped."""

    acknowledged: set[str]
    read: set[str]
    bytes_lost: int

    @property
    def lost(self) -> int:
        return len(self.acknowledged - self.read)

    def __str__(self) -> str:
        acked, read = len(self.acknowledged), len(self.read)
        return f"acknowledged={acked} lost={self.lost} read={read} bytes_lost={self.bytes_lost}"


@contextmanager
def lazy_kafka(tmp_path: Path, nodes: int) -> Iterator[KafkaCluster]:
    """A started Kafka of `nodes` with every data dir on its own lazy mount; afterwards no JVM, daemon or mount."""
    require_fuse_or_skip()
    require_kafka_or_skip()
    cluster = KafkaCluster(tmp_path / "kafka", nodes=nodes, lazy=True)
    mounts = [n.disk for n in cluster.nodes]
    daemons: list[int] = []
    try:
        cluster.start()
        assert cluster.kind == "process-lazyfs"
        assert all(is_mounted(m) for m in mounts)
        daemons = [n.lazyfs.pid for n in cluster.nodes]
        yield cluster
    finally:
        cluster.close()
    assert not any(is_mounted(m) for m in mounts), "a lazy mount outlived its cluster"
    assert not any(alive(p) for p in daemons if p is not None), "a lazy FS daemon outlived its cluster"
    assert cluster.pid is None, "a Kafka JVM outlived its cluster"


def produce(bootstrap: str, topic: str, prefix: str = "m", count: int = MESSAGES) -> set[str]:
    """Publish `count` ids (acks=all, idempotence); the ids whose delivery report came back without error."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "log_level": 3})  # fmt: skip
    acknowledged: set[str] = set()

    def report(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            acknowledged.add((msg.key() or b"").decode())

    for i in range(count):
        key = f"{prefix}{i:05d}".encode()
        producer.produce(topic, value=key, key=key, on_delivery=report)
        producer.poll(0)
    left = producer.flush(30.0)
    assert left == 0, f"{left} records without a delivery report after 30 s"
    assert len(acknowledged) == count, f"only {len(acknowledged)} of {count} acknowledged before the fault"
    return acknowledged


def high_watermark(consumer: Consumer, topic: str, deadline: float) -> int:
    """Partition 0's high watermark; a leader just elected answers OFFSET_NOT_AVAILABLE until its followers fetched."""
    while True:
        try:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=5.0)
            return int(high)
        except KafkaException as exc:
            retriable = exc.args[0].code() in (KafkaError.OFFSET_NOT_AVAILABLE, KafkaError.NOT_LEADER_FOR_PARTITION)
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read_topic(bootstrap: str, topic: str, timeout: float = READ_TIMEOUT_S) -> set[str]:
    """Every id in partition 0 from its first offset to its high watermark (asked of the leader)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "log_level": 3})  # fmt: skip
    got: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        high = high_watermark(consumer, topic, deadline)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        position = 0
        while position < high:
            assert time.monotonic() < deadline, f"read to offset {position} of {high} in {timeout}s"
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.add((msg.key() or b"").decode())
                position = (msg.offset() or 0) + 1
    finally:
        consumer.close()
    return got


def topics(kafka: KafkaCluster, replicas: int) -> tuple[str, str]:
    """A topic under the default flush policy and one that fsyncs every message, both in sync on every replica."""
    default = create_topic(kafka.bootstrap_servers, replicas)
    flushed = create_topic(kafka.bootstrap_servers, replicas, config=FLUSH_EACH)
    for topic in (default, flushed):
        kafka.wait_partition(topic, isr=replicas, timeout=60.0)
    return default, flushed


def power_loss_of_every_node(
    kafka: KafkaCluster, default: str, flushed: str, prefix: str
) -> tuple[PowerLoss, PowerLoss]:
    """Publish to both topics, every node loses power at once, start them all, read both back."""
    acked = {topic: produce(kafka.bootstrap_servers, topic, prefix) for topic in (default, flushed)}
    pids = [n.pid for n in kafka.nodes]
    bytes_lost = kafka.power_off()
    assert all(n.pid is None for n in kafka.nodes), "a JVM survived its power loss"
    kafka.start()
    assert not set(pids) & {n.pid for n in kafka.nodes}, "a node was not restarted"
    results = []
    for topic in (default, flushed):
        kafka.wait_partition(topic, timeout=60.0)
        read = {i for i in read_topic(kafka.bootstrap_servers, topic) if i.startswith(prefix)}
        results.append(PowerLoss(acked[topic], read, bytes_lost))
    return results[0], results[1]


def test_r1_power_loss_loses_the_default_topic_and_keeps_the_flushed_one(tmp_path: Path) -> None:
    with lazy_kafka(tmp_path, 1) as kafka:
        default, flushed = topics(kafka, 1)
        lost, kept = power_loss_of_every_node(kafka, default, flushed, "r1-")
    print(f"R1 power loss: default flush {lost}; flush every message {kept}")
    assert lost.bytes_lost > 0, f"the power loss dropped nothing: {lost}"
    assert lost.lost > 0, f"the power loss did not bite the default flush policy: {lost}"
    assert kept.lost == 0, kept
    assert kept.read >= kept.acknowledged


def test_r3_the_leader_alone_loses_nothing_a_coordinated_power_loss_loses_the_default_topic(tmp_path: Path) -> None:
    """Kafka's bet holds while one replica loses power and fails when all of them do (unless each fsyncs)."""
    with lazy_kafka(tmp_path, 3) as kafka:
        default, flushed = topics(kafka, 3)
        # the leader alone: a replica that was in sync still holds what the leader never fsynced
        acknowledged = produce(kafka.bootstrap_servers, default, "leader-")
        old_leader, _ = kafka.partition_state(default)
        victim = kafka.node(old_leader)
        victim_lost = victim.power_off()
        assert victim.pid is None
        new_leader, _ = kafka.wait_partition(default, not_leader=old_leader, timeout=60.0)
        victim.start()
        kafka.wait_partition(default, isr=3, timeout=60.0)  # the victim caught up again from the new leader
        kafka.wait_partition(flushed, isr=3, timeout=60.0)
        read = {i for i in read_topic(kafka.bootstrap_servers, default) if i.startswith("leader-")}
        leader_only = PowerLoss(acknowledged, read, victim_lost)
        # then every broker at once
        lost, kept = power_loss_of_every_node(kafka, default, flushed, "all-")
    print(f"R3 default flush, the leader (node {old_leader}) loses power, node {new_leader} leads: {leader_only}")
    print(f"R3 all three lose power: default flush {lost}; flush every message {kept}")
    assert new_leader != old_leader
    assert leader_only.bytes_lost > 0, f"the leader lost nothing, so nothing was at stake: {leader_only}"
    assert leader_only.lost == 0, leader_only
    assert lost.bytes_lost > 0, f"the power loss dropped nothing: {lost}"
    assert lost.lost > 0, f"the coordinated power loss did not bite the default flush policy: {lost}"
    assert kept.lost == 0, kept
    assert kept.read >= kept.acknowledged
