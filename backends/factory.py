"""The one place that reads `QUEUE_TYPE` and picks a backend.

Settings come from the environment (names as in the spec's table: QUEUE_TYPE,
NATS_URL, QUEUE_SIZE; the Go original's KAFKA_BROKERS, KAFKA_TOPIC,
KAFKA_CONSUMER_GROUP; plus tuning knobs), through `backends.settings`, where
each default is written once. A wrong value stops the service at start with
the variable's name and what it accepts, not at the first request.
"""

from __future__ import annotations

from backends.contract import QueueBackend
from backends.kafka import KafkaBackend, KafkaConfig
from backends.memory import MemoryBackend, MemoryConfig
from backends.nats import NatsConfig, NatsJetStreamBackend
from backends.settings import BackendSettings, ConfigError, load

__all__ = ["BackendSettings", "ConfigError", "create_backend", "load_settings"]


def load_settings(**overrides: object) -> BackendSettings:
    """Read settings from the environment; `ConfigError` names each bad variable."""
    return load(BackendSettings, "queue settings", **overrides)


def create_backend(settings: BackendSettings | None = None) -> QueueBackend:
    """Build (not connect) the backend `QUEUE_TYPE` names."""
    s = settings or load_settings()
    if s.queue_type == "memory":
        return MemoryBackend(
            MemoryConfig(
                queue_size=s.queue_size,
                publish_timeout=s.publish_timeout,
                ack_wait=s.ack_wait,
                max_deliver=s.max_deliver,
                dedup_window=s.dedup_window,
            )
        )
    if s.queue_type == "kafka":
        return KafkaBackend(
            KafkaConfig(
                brokers=s.kafka_brokers,
                topic=s.kafka_topic,
                group=s.kafka_consumer_group,
                partitions=s.kafka_partitions,
                replicas=s.kafka_replicas,
                retention_hours=s.kafka_retention_hours,
                connect_timeout=s.kafka_connect_timeout,
                prefetch=s.kafka_prefetch,
                instance_id=s.kafka_group_instance_id,
                publish_timeout=s.publish_timeout,
                ack_wait=s.ack_wait,
                max_deliver=s.max_deliver,
            )
        )
    return NatsJetStreamBackend(
        NatsConfig(
            url=s.nats_url,
            replicas=s.nats_replicas,
            stream=s.nats_stream,
            subject=s.nats_subject,
            durable=s.nats_durable,
            ack_wait=s.ack_wait,
            max_deliver=s.max_deliver,
            max_ack_pending=s.nats_max_ack_pending,
            duplicate_window=s.dedup_window,
            max_msgs=s.nats_max_msgs,
            max_bytes=s.nats_max_bytes,
            publish_timeout=s.publish_timeout,
            connect_timeout=s.nats_connect_timeout,
            reconnect_wait=s.nats_reconnect_wait,
            pull_expires=s.nats_pull_expires,
            sync_always=s.nats_sync_always,
            monitor_url=s.nats_monitor_url,
            user=s.nats_user,
            password=s.nats_password.get_secret_value() if s.nats_password else None,
            token=s.nats_token.get_secret_value() if s.nats_token else None,
            tls_ca=str(s.nats_tls_ca) if s.nats_tls_ca else None,
            tls_cert=str(s.nats_tls_cert) if s.nats_tls_cert else None,
            tls_key=str(s.nats_tls_key) if s.nats_tls_key else None,
        )
    )
