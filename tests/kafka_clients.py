"""Small synchronous confluent-kafka helpers for the broker tests: create a topic, produce with acks=all, read back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(
    bootstrap: str, replicas: int, name: str | None = None, partitions: int = 1, config: Mapping[str, str] | None = None
) -> str:
    """A new topic (random name unless given; `config`: its topic-level settings), once the controller made it."""
    topic = name or f"t-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=partitions, replication_factor=replicas, config=dict(config or {}))
    futures = admin.create_topics([new])
    futures[topic].result(timeout=30)
    return topic


def produce_acked(bootstrap: str, topic: str, values: list[bytes], timeout: float = 30.0) -> list[Message]:
    """Publish with acks=all and idempotence (key = value); return the delivery reports of the acknowledged ones.

    Raises if any record is not acknowledged within `timeout`.
    """
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5, "log_level": 3}
    )
    acked: list[Message] = []
    failed: list[KafkaError] = []

    def report(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            acked.append(msg)
        else:
            failed.append(err)

    for value in values:
        producer.produce(topic, value=value, key=value, headers={"Nats-Msg-Id": value}, on_delivery=report)
        producer.poll(0)
    left = producer.flush(timeout)
    assert left == 0, f"{left} records unacknowledged after {timeout}s"
    assert not failed, f"{len(failed)} records refused: {failed[:3]}"
    return acked


def read_all(bootstrap: str, topic: str, expect: int, timeout: float = 20.0) -> list[Message]:
    """Every record of `topic` from the start, by a fresh consumer group; stops at `expect` or `timeout`."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    consumer.subscribe([topic])
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expect and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg)
    finally:
        consumer.close()
    return got
