"""Power loss on real Kafka brokers (KRaft JVMs) whose data dirs live on the lazy file system.

A producer publishes ids with acks=all and idempotence and records which
were acknowledged (a delivery report without error). Then brokers lose
power (`power_off`: SIGKILL, every write never fsynced dropped), start
again, and a consumer reads the whole topic from the beginning. Lost = the
acknowledged ids it does not find.

- R1, default flush policy (Kafka never fsyncs a partition log): the broker's
  power loss loses acknowledged messages.
- R1, `kafka-flush` (log.flush.interval.messages=1, an fsync per append): none.
- R3, `min.insync.replicas=2`, default flush: a coordinated power loss of all
  three loses acknowledged messages; replication does not help what no replica
  fsynced. With flush-every-message, none.
- R3, default flush, only the partition leader loses power: none. The other
  replicas still hold (in their page cache) what the leader lost, and one of
  them becomes the leader: the case Kafka's documentation counts on.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from experiments.lab.setup import KAFKA_FLUSH_EACH
from experiments.runtime.kafka.cluster import KafkaCluster
from experiments.runtime.lazyfs import is_mounted
from experiments.runtime.processes import alive
from tests.kafka_clients import create_topic
from tests.kafka_fixtures import require_kafka_or_skip
from tests.lazyfs_fixtures import require_fuse_or_skip

pytestmark = [pytest.mark.faults]

MESSAGES = 2000  # small ids; enough that a loss is not one batch's luck, seconds to publish
READ_TIMEOUT_S = 30.0


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
def lazy_kafka(tmp_path: Path, nodes: int, overrides: Mapping[str, str] | None = None) -> Iterator[KafkaCluster]:
    """A started Kafka of `nodes` with every data dir on its own lazy mount; afterwards no JVM, daemon or mount."""
    require_fuse_or_skip()
    require_kafka_or_skip()
    cluster = KafkaCluster(tmp_path / "kafka", nodes=nodes, lazy=True, overrides=overrides)
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


def produce(bootstrap: str, topic: str, count: int = MESSAGES) -> set[str]:
    """Publish `count` ids (acks=all, idempotence); the ids whose delivery report came back without error."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "log_level": 3})  # fmt: skip
    acknowledged: set[str] = set()

    def report(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            acknowledged.add((msg.key() or b"").decode())

    for i in range(count):
        key = f"m{i:05d}".encode()
        producer.produce(topic, value=key, key=key, on_delivery=report)
        producer.poll(0)
    left = producer.flush(30.0)
    assert left == 0, f"{left} records without a delivery report after 30 s"
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


def power_loss_of_every_node(cluster: KafkaCluster, topic: str) -> PowerLoss:
    """Publish, every node loses power at once, start them all, read back."""
    acknowledged = produce(cluster.bootstrap_servers, topic)
    assert len(acknowledged) == MESSAGES, f"only {len(acknowledged)} of {MESSAGES} acknowledged before the fault"
    pids = [n.pid for n in cluster.nodes]
    bytes_lost = cluster.power_off()
    assert all(n.pid is None for n in cluster.nodes), "a JVM survived its power loss"
    cluster.start()
    assert not set(pids) & {n.pid for n in cluster.nodes}, "a node was not restarted"
    cluster.wait_partition(topic, timeout=60.0)
    return PowerLoss(acknowledged, read_topic(cluster.bootstrap_servers, topic), bytes_lost)


def test_r1_default_flush_loses_acknowledged_messages_on_power_loss(tmp_path: Path) -> None:
    with lazy_kafka(tmp_path, 1) as kafka:
        topic = create_topic(kafka.bootstrap_servers, 1)
        result = power_loss_of_every_node(kafka, topic)
    print(f"R1 default flush, power loss: {result}")
    assert result.bytes_lost > 0, f"the power loss dropped nothing: {result}"
    assert result.lost > 0, f"the power loss did not bite: {result}"


def test_r1_flush_every_message_loses_nothing_on_power_loss(tmp_path: Path) -> None:
    with lazy_kafka(tmp_path, 1, KAFKA_FLUSH_EACH) as kafka:
        topic = create_topic(kafka.bootstrap_servers, 1)
        result = power_loss_of_every_node(kafka, topic)
    print(f"R1 kafka-flush, power loss: {result}")
    assert result.lost == 0, result
    assert result.read >= result.acknowledged


def test_r3_default_flush_loses_acknowledged_messages_when_every_broker_loses_power(tmp_path: Path) -> None:
    """A coordinated power failure: RF 3 and min.insync.replicas=2 do not help what no replica fsynced."""
    with lazy_kafka(tmp_path, 3) as kafka:
        topic = create_topic(kafka.bootstrap_servers, 3)
        kafka.wait_partition(topic, isr=3)
        result = power_loss_of_every_node(kafka, topic)
    print(f"R3 default flush, all three lose power: {result}")
    assert result.bytes_lost > 0, f"the power loss dropped nothing: {result}"
    assert result.lost > 0, f"the coordinated power loss did not bite: {result}"


def test_r3_flush_every_message_loses_nothing_when_every_broker_loses_power(tmp_path: Path) -> None:
    with lazy_kafka(tmp_path, 3, KAFKA_FLUSH_EACH) as kafka:
        topic = create_topic(kafka.bootstrap_servers, 3)
        kafka.wait_partition(topic, isr=3)
        result = power_loss_of_every_node(kafka, topic)
    print(f"R3 kafka-flush, all three lose power: {result}")
    assert result.lost == 0, result
    assert result.read >= result.acknowledged


def test_r3_default_flush_loses_nothing_when_only_the_leader_loses_power(tmp_path: Path) -> None:
    """Kafka's bet: a replica that was in sync still holds what the leader never fsynced."""
    with lazy_kafka(tmp_path, 3) as kafka:
        topic = create_topic(kafka.bootstrap_servers, 3)
        kafka.wait_partition(topic, isr=3)
        acknowledged = produce(kafka.bootstrap_servers, topic)
        assert len(acknowledged) == MESSAGES, f"only {len(acknowledged)} of {MESSAGES} acknowledged before the fault"
        old_leader, _ = kafka.partition_state(topic)
        victim = kafka.node(old_leader)
        bytes_lost = victim.power_off()
        assert victim.pid is None
        new_leader, _ = kafka.wait_partition(topic, not_leader=old_leader, timeout=60.0)
        victim.start()
        kafka.wait_partition(topic, isr=3, timeout=60.0)  # the victim caught up again from the new leader
        result = PowerLoss(acknowledged, read_topic(kafka.bootstrap_servers, topic), bytes_lost)
    print(f"R3 default flush, the leader (node {old_leader}) loses power, node {new_leader} leads: {result}")
    assert new_leader != old_leader
    assert result.bytes_lost > 0, f"the leader lost nothing, so nothing was at stake: {result}"
    assert result.lost == 0, result
