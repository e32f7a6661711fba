"""What the Kafka backend is told, and the librdkafka settings that follow from it.

Defaults come from `backends.settings.BackendSettings` (`default_of`), so each is
written once. The client settings live here too: the guarantees of the backend
(acks=all, idempotence, a publish bounded by `publish_timeout`, offsets committed
only by the backend) are decided in this one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backends.settings import BackendSettings, default_of

DLQ_SUFFIX = ".dlq"
ID_HEADER = "message-id"  # the id travels as key and as this header
REASON_HEADER = "dead-letter-reason"


def _d(name: str) -> Any:
    return default_of(BackendSettings, name)


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    brokers: str = _d("kafka_brokers")
    topic: str = _d("kafka_topic")
    group: str = _d("kafka_consumer_group")
    partitions: int = _d("kafka_partitions")
    replicas: int = _d("kafka_replicas")
    retention_hours: float = _d("kafka_retention_hours")
    connect_timeout: float = _d("kafka_connect_timeout")
    prefetch: int = _d("kafka_prefetch")
    instance_id: str = _d("kafka_group_instance_id")
    publish_timeout: float = _d("publish_timeout")
    ack_wait: float = _d("ack_wait")
    max_deliver: int = _d("max_deliver")

    @property
    def dlq_topic(self) -> str:
        return self.topic + DLQ_SUFFIX

    def common(self) -> dict[str, Any]:
        """Settings every client of the backend shares."""
        return {
            "bootstrap.servers": self.brokers,
            "socket.connection.setup.timeout.ms": max(1000, int(self.connect_timeout * 1000)),
            "socket.nagle.disable": True,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 1000,
            "log_level": 3,  # errors only: a stopped broker is reported through exceptions, not stderr noise
        }

    def producer(self) -> dict[str, Any]:
        """acks=all + idempotence: stored on every in-sync replica, a retry never stores twice.

        `message.timeout.ms` is the publish timeout, so a message librdkafka could
        not deliver in time is failed (and reported), never sent minutes later.
        """
        return {
            **self.common(),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 1,
            "message.timeout.ms": max(1, int(self.publish_timeout * 1000)),
            "request.timeout.ms": max(1000, int(self.publish_timeout * 1000)),
            "queue.buffering.max.messages": 100_000,
        }

    def consumer(self) -> dict[str, Any]:
        """A classic consumer group whose offsets only the backend commits (the settled prefix).

        With `instance_id` the member is static (KIP-345): a processor killed and
        started again under the same id takes its partitions back at once; a dynamic
        member's partitions wait for the old member's session to time out (45 s),
        so the records behind the last commit sat unprocessed that long.
        """
        static = {"group.instance.id": self.instance_id} if self.instance_id else {}
        return {
            **static,
            **self.common(),
            "group.id": self.group,
            # The classic protocol: join + sync hand out the assignment at once; KIP-848's
            # "consumer" protocol sometimes waited for the next heartbeat (5 s) under load.
            "group.protocol": "classic",
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }

    def offsets_reader(self, group: str) -> dict[str, Any]:
        """A handle of `group` that never subscribes: it only asks for the group's committed offsets."""
        return {**self.common(), "group.id": group, "enable.auto.commit": False, "group.protocol": "classic"}

    def admin(self) -> dict[str, Any]:
        return self.common()

    def topic_configs(self) -> dict[str, str]:
        """The stream's counterpart: kept 24 h, stamped by the broker (the store time of a delivery)."""
        configs = {
            "retention.ms": str(int(self.retention_hours * 3_600_000)),
            "message.timestamp.type": "LogAppendTime",
        }
        if self.replicas > 1:
            configs["min.insync.replicas"] = str(min(2, self.replicas))
            configs["unclean.leader.election.enable"] = "false"
        return configs
