"""Service settings from the environment (queue settings: `backends.settings`).

Each service reads its own class once, in its composition root; a wrong value
stops the service at start with the variable's name (`load`, one formatter for
every settings class). Each default is written once, in these classes. The
harness builds the same objects and hands them to a service process as
environment variables with `to_env`, the one function that does that.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backends.settings import BackendSettings, ConfigError, default_of, load

__all__ = [
    "BackendSettings",
    "ConfigError",
    "GatewaySettings",
    "HttpSettings",
    "IngestSettings",
    "ProcessorSettings",
    "default_of",
    "from_env",
    "load",
    "to_env",
]

S = TypeVar("S", bound=BaseSettings)


class HttpSettings(BaseSettings):
    """What every service needs to take and forward requests."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    max_body_bytes: int = Field(1_048_576, ge=1, description="request body limit (413 above it)")
    max_batch: int = Field(1000, ge=1, description="messages in one request at most")
    http_timeout: float = Field(5.0, gt=0, description="s for a downstream call before 503")
    http_connections: int = Field(256, ge=1, description="pooled connections to the next service")
    log_level: str = "INFO"
    gc_freeze: bool = Field(False, description="gc.freeze() after start-up (services.gc_tuning)")
    gc_gen0_threshold: int = Field(0, ge=0, description="gen0 collection threshold; 0: Python's default")
    admin_token: SecretStr | None = Field(
        None, description="bearer token for /admin/* (queue switch); unset: admin endpoints answer 401"
    )


def is_loopback(host: str) -> bool:
    """`host` (a bind address) reaches only this machine: 127.0.0.0/8, ::1 or localhost."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or an interface's address: beyond loopback


class GatewaySettings(HttpSettings):
    ingest_url: str = "http://127.0.0.1:8081"
    processor_url: str = "http://127.0.0.1:8082"
    api_key: SecretStr | None = None
    host: str = Field(
        "127.0.0.1",
        description="the address the gateway listens on (what uvicorn --host is given: docker/serve.py and the"
        " harness pass it in HOST); beyond loopback the gateway needs API_KEY",
    )
    status_timeout: float = Field(1.0, gt=0, description="s per component in /api/v1/status")
    # 1, by the wrk round (memory, 2 interleaved rounds, against 2): CPU/request 0.88x (0.86..0.90),
    # req/s 1.22x (0.96..1.48), p99 0.72x; 4 cost 1.41x CPU, 256 (one call per request) 3.29x.
    ingest_in_flight: int = Field(
        1, ge=1, description="open calls to ingest; requests arriving meanwhile go as one call (forward_ingest)"
    )

    @model_validator(mode="after")
    def _key_beyond_loopback(self) -> GatewaySettings:
        if self.api_key is not None and not self.api_key.get_secret_value():
            self.api_key = None  # API_KEY= (empty) is no key
        if self.api_key is None and not is_loopback(self.host):
            raise ValueError(
                f"the gateway listens on {self.host} (HOST), beyond loopback, and API_KEY is not set:"
                " set API_KEY (clients send it as X-API-Key or Authorization: Bearer), or HOST=127.0.0.1"
            )
        return self


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


def _env_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_env(settings: BaseSettings) -> dict[str, str]:
    """The environment variables that make a service read exactly `settings` (secrets included).

    Every field is written, so the child does not depend on defaults or the
    parent's environment. A field that is None is left out (the child reads
    its default); only a field whose default is None may be None.
    """
    env: dict[str, str] = {}
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if value is None:
            if field.default is not None:
                raise ConfigError(f"{name.upper()} is None, which no environment variable can say")
            continue
        env[name.upper()] = _env_value(value)
    return env


def from_env(model: type[S], env: Mapping[str, str]) -> S:
    """Settings of `model` from a mapping of variables (what `to_env` wrote); `ConfigError` names a bad one.

    Variables the mapping does not have still come from the process
    environment, as for any settings object.
    """
    names = {n.upper(): n for n in model.model_fields}
    return load(model, **{names[k.upper()]: v for k, v in env.items() if k.upper() in names})
