"""The one place that reads `QUEUE_TYPE` and picks a backend.

Settings come from the environment (names as in the spec's table: QUEUE_TYPE,
NATS_URL, QUEUE_SIZE, plus tuning knobs). A wrong value stops the service at
start with the variable's name and what it accepts, not at the first request.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from backends.contract import QueueBackend
from backends.memory import MemoryBackend, MemoryConfig
from backends.nats_jetstream import NatsConfig, NatsJetStreamBackend


class ConfigError(ValueError):
    """A setting from the environment is invalid; the message names it."""


class BackendSettings(BaseSettings):
    """Queue settings; every field is read from the upper-case variable of its name."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    queue_type: Literal["memory", "nats"] = "memory"
    nats_url: str = "nats://nats:4222"
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


def load_settings(**overrides: object) -> BackendSettings:
    """Read settings from the environment; `ConfigError` names each bad variable."""
    try:
        return BackendSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            var = ".".join(str(p) for p in err["loc"]).upper()
            problems.append(f"{var}={err.get('input')!r}: {err['msg']}")
        raise ConfigError("invalid queue settings: " + "; ".join(problems)) from None


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
    return NatsJetStreamBackend(
        NatsConfig(
            url=s.nats_url,
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
        )
    )
