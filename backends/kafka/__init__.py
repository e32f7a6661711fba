"""Apache Kafka behind the `QueueBackend` contract.

config: settings and the librdkafka options that carry the guarantees;
producer: idempotent acks=all publishing awaited from asyncio;
consumer + settlement: the consumer group with per-record settle verbs and the prefix commit;
topology: topics, offsets, leaders and ISR from the admin API;
backend: the facade the factory builds.
"""

from backends.kafka.backend import KafkaBackend
from backends.kafka.config import KafkaConfig

__all__ = ["KafkaBackend", "KafkaConfig"]
