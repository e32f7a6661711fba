"""Service settings from the environment (queue settings live in `backends.factory`).

Each service reads its own class once, in its composition root; a wrong value
stops the service at start with the variable's name.
"""

from __future__ import annotations

import os
import socket
from typing import TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)


class SettingsError(ValueError):
    """A service setting is invalid; the message names the variable."""


class HttpSettings(BaseSettings):
    """What every service needs to take and forward requests."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    max_body_bytes: int = Field(1_048_576, ge=1, description="request body limit (413 above it)")
    max_batch: int = Field(1000, ge=1, description="messages in one request at most")
    http_timeout: float = Field(5.0, gt=0, description="s for a downstream call before 503")
    http_connections: int = Field(256, ge=1, description="pooled connections to the next service")
    log_level: str = "INFO"


class GatewaySettings(HttpSettings):
    ingest_url: str = "http://127.0.0.1:8081"
    processor_url: str = "http://127.0.0.1:8082"
    api_key: SecretStr | None = None
    status_timeout: float = Field(1.0, gt=0, description="s per component in /api/v1/status")


class IngestSettings(HttpSettings):
    processor_url: str = Field("http://127.0.0.1:8082", description="one URL, or several comma-separated")
    forward_in_flight: int = Field(
        4, ge=1, description="open calls per processor; what arrives meanwhile is sent as one batch"
    )


def _default_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ProcessorSettings(HttpSettings):
    workers: int = Field(4, ge=1, le=1024)
    processing_ms: float = Field(0.0, ge=0, description="simulated work per message")
    failure_rate: float = Field(0.0, ge=0, le=1, description="share of deliveries that fail (experiments)")
    failure_id_prefix: str | None = Field(None, description="ids with this prefix always fail (poison)")
    fetch_batch: int = Field(100, ge=1, le=10_000)
    fetch_timeout: float = Field(1.0, gt=0)
    nak_delay: float = Field(0.0, ge=0, description="s before a failed delivery is retried")
    ledger_path: str = "processor-ledger.sqlite"
    instance: str = Field(default_factory=_default_instance)
    drain_timeout: float = Field(10.0, ge=0, description="s to finish in-flight work on SIGTERM")
    connect_retry: float = Field(1.0, gt=0, description="s between backend connect attempts at start")


def load(cls: type[S]) -> S:
    """Instantiate settings, turning validation errors into one clear line."""
    try:
        return cls()
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']).upper()}={e.get('input')!r}: {e['msg']}" for e in exc.errors()
        ]
        raise SettingsError(f"invalid {cls.__name__}: " + "; ".join(problems)) from None
