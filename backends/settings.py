"""Queue settings from the environment, and the one way any settings are read.

`BackendSettings` is the single source of every queue default: the backends'
own config dataclasses take theirs from it (`default_of`), so a default is
written once. `load` turns validation errors of any settings class (these and
the services') into one `ConfigError` whose message names each variable, so a
wrong value stops a service at start, not at the first request.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import Field, FilePath, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)


class ConfigError(ValueError):
    """A setting from the environment is invalid; the message names the variable."""


class BackendSettings(BaseSettings):
    """Queue settings; every field is read from the upper-case variable of its name."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    queue_type: Literal["memory", "nats", "kafka"] = "memory"
    nats_url: str = "nats://nats:4222"  # or several, comma-separated (a cluster)
    nats_replicas: int = Field(1, ge=1, le=5, description="stream replicas; 3 on a three-node cluster")
    queue_size: int = Field(1000, ge=1)
    publish_timeout: float = Field(2.0, gt=0)
    ack_wait: float = Field(30.0, gt=0)
    max_deliver: int = Field(5, ge=1)
    dedup_window: float = Field(120.0, gt=0)
    nats_stream: str = "DIPLOM_STREAM"
    nats_subject: str = "diplom.messages"
    nats_durable: str = "diplom-processor"
    nats_connect_timeout: float = Field(5.0, gt=0)
    nats_reconnect_wait: float = Field(0.5, gt=0)
    nats_max_ack_pending: int = Field(10_000, ge=1)
    nats_max_msgs: int = Field(-1, ge=-1)
    nats_max_bytes: int = Field(-1, ge=-1)
    nats_pull_expires: float = Field(1.0, gt=0)
    nats_sync_always: bool = False
    nats_monitor_url: str | None = None
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    nats_token: SecretStr | None = None
    # TLS to NATS (a tls:// URL, or a server that requires TLS): the CA that signed the server's
    # certificate (unset: the system's), and a client certificate with its key for mutual TLS.
    nats_tls_ca: FilePath | None = Field(None, description="PEM file of the CA that signed the server's certificate")
    nats_tls_cert: FilePath | None = Field(None, description="PEM client certificate (mutual TLS); needs NATS_TLS_KEY")
    nats_tls_key: FilePath | None = Field(None, description="PEM key of NATS_TLS_CERT")
    # Kafka (the Go original's names: KAFKA_BROKERS, KAFKA_TOPIC, KAFKA_CONSUMER_GROUP).
    kafka_brokers: str = "kafka:9092"  # bootstrap servers, comma-separated
    kafka_topic: str = "diplom.messages"  # the dead-letter topic is this name + ".dlq"
    kafka_consumer_group: str = "processor-group"
    kafka_partitions: int = Field(1, ge=1, description="1 keeps one FIFO order; a partition has one consumer")
    kafka_replicas: int = Field(1, ge=1, le=5, description="topic replication factor; 3 on a three-node cluster")
    kafka_retention_hours: float = Field(24.0, gt=0)
    kafka_connect_timeout: float = Field(5.0, gt=0)
    kafka_prefetch: int = Field(1000, ge=1, description="records a consumer buffers before pausing its partitions")
    kafka_group_instance_id: str = Field(
        "",
        description="static group membership: a restarted processor with the same id gets its partitions "
        "back at once, not after the session timeout; unique per processor (empty: dynamic membership)",
    )

    @model_validator(mode="after")
    def _client_cert_with_its_key(self) -> BackendSettings:
        if (self.nats_tls_cert is None) != (self.nats_tls_key is None):
            raise ValueError("NATS_TLS_CERT and NATS_TLS_KEY go together (a client certificate and its key)")
        return self


def default_of(model: type[BaseSettings], name: str) -> Any:
    """The default a settings class declares for `name` (for config objects that mirror it)."""
    field = model.model_fields[name]
    if field.default_factory is not None:
        raise TypeError(f"{model.__name__}.{name} has a per-instance default, not a constant")
    return field.default


def _secret(model: type[BaseSettings], name: str) -> bool:
    field = model.model_fields.get(name)
    return field is not None and "SecretStr" in repr(field.annotation)


def describe(model: type[BaseSettings], exc: ValidationError) -> str:
    """One line naming each bad variable, its value (a secret's masked) and what it accepts."""
    problems = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"])
        if not name:  # a check across fields: its message names them
            problems.append(err["msg"].removeprefix("Value error, "))
            continue
        value = "'**********'" if _secret(model, name) else repr(err.get("input"))
        problems.append(f"{name.upper()}={value}: {err['msg']}")
    return "; ".join(problems)


def load(model: type[S], label: str | None = None, **overrides: Any) -> S:
    """Instantiate settings from the environment (and `overrides`); `ConfigError` names each bad variable."""
    try:
        return model(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid {label or model.__name__}: {describe(model, exc)}") from None
