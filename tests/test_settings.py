"""Settings: each default written once, one error class naming the variable, and `to_env` round trips."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from backends.memory import MemoryConfig
from backends.nats import NatsConfig
from experiments.runtime.stack import Stack, StackConfig
from services.settings import (
    BackendSettings,
    ConfigError,
    GatewaySettings,
    IngestSettings,
    ProcessorSettings,
    from_env,
    load,
    to_env,
)
from services.worker_pool import PoolConfig

MODELS: list[type[BaseSettings]] = [GatewaySettings, IngestSettings, ProcessorSettings, BackendSettings]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for model in MODELS:
        for name in model.model_fields:
            monkeypatch.delenv(name.upper(), raising=False)


def test_config_objects_take_their_defaults_from_the_settings() -> None:
    s = BackendSettings()
    m, n, p = MemoryConfig(), NatsConfig(), PoolConfig()
    assert (m.queue_size, m.publish_timeout, m.ack_wait, m.max_deliver, m.dedup_window) == (
        s.queue_size,
        s.publish_timeout,
        s.ack_wait,
        s.max_deliver,
        s.dedup_window,
    )
    assert (n.url, n.stream, n.publish_timeout, n.duplicate_window, n.max_ack_pending) == (
        s.nats_url,
        s.nats_stream,
        s.publish_timeout,
        s.dedup_window,
        s.nats_max_ack_pending,
    )
    ps = ProcessorSettings()
    assert (p.workers, p.fetch_batch, p.fetch_timeout, p.max_deliver, p.ack_wait) == (
        ps.workers,
        ps.fetch_batch,
        ps.fetch_timeout,
        s.max_deliver,
        s.ack_wait,
    )


@pytest.mark.parametrize(
    ("model", "var", "value"),
    [
        (GatewaySettings, "STATUS_TIMEOUT", "0"),
        (IngestSettings, "FORWARD_IN_FLIGHT", "many"),
        (ProcessorSettings, "WORKERS", "0"),
        (BackendSettings, "QUEUE_TYPE", "kafka"),
    ],
)
def test_one_error_class_names_the_variable_for_every_service(
    monkeypatch: pytest.MonkeyPatch, model: type[BaseSettings], var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=f"invalid {model.__name__}: {var}='{value}'"):
        load(model)


def test_a_bad_secret_is_named_but_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as err:
        load(BackendSettings, nats_password=["hunter2-secret"])
    assert "NATS_PASSWORD=" in str(err.value)
    assert "hunter2" not in str(err.value)


SAMPLES: list[BaseSettings] = [
    GatewaySettings(api_key=SecretStr("k3y"), max_batch=7, ingest_url="http://127.0.0.1:1"),
    IngestSettings(processor_url="http://a:1,http://b:2", forward_in_flight=2),
    ProcessorSettings(workers=3, failure_id_prefix="poison-", processing_ms=1.5, instance="p-0"),
    ProcessorSettings(),
    BackendSettings(
        queue_type="nats", nats_password=SecretStr("pw"), nats_token=SecretStr("tk"), nats_sync_always=True
    ),
    BackendSettings(),
]


@pytest.mark.parametrize("settings", SAMPLES, ids=lambda s: type(s).__name__)
def test_to_env_round_trips(settings: BaseSettings) -> None:
    env = to_env(settings)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    assert from_env(type(settings), env) == settings
    fields: dict[str, Any] = {k.lower(): v for k, v in env.items()}
    assert type(settings)(**fields) == settings


def test_to_env_carries_secrets_that_repr_and_logs_hide(caplog: pytest.LogCaptureFixture) -> None:
    settings = BackendSettings(nats_password=SecretStr("pw-123"), nats_token=SecretStr("tk-456"))
    env = to_env(settings)
    assert (env["NATS_PASSWORD"], env["NATS_TOKEN"]) == ("pw-123", "tk-456")
    caplog.set_level(logging.DEBUG)
    logging.getLogger("test").info("settings %s", settings)
    assert "pw-123" not in repr(settings)
    assert "pw-123" not in caplog.text


def test_to_env_writes_every_field_so_the_parent_environment_does_not_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    env = to_env(ProcessorSettings(workers=2))
    monkeypatch.setenv("WORKERS", "9")
    monkeypatch.setenv("FETCH_BATCH", "9")
    assert from_env(ProcessorSettings, env).workers == 2
    assert from_env(ProcessorSettings, env).fetch_batch == ProcessorSettings.model_fields["fetch_batch"].default


def test_from_env_refuses_a_bad_value_by_name() -> None:
    with pytest.raises(ConfigError, match="MAX_BATCH='x'"):
        from_env(GatewaySettings, {"MAX_BATCH": "x"})


def test_the_stack_hands_each_service_its_settings_as_environment(tmp_path: Path) -> None:
    """What a stack would start, without starting it: settings objects, env overrides and wiring, in that order."""
    cfg = StackConfig(
        workers=3,
        processor=ProcessorSettings(processing_ms=5, workers=1),
        backend=BackendSettings(queue_size=77, ack_wait=9),
        gateway=GatewaySettings(api_key=SecretStr("k")),
        env={"ACK_WAIT": "2", "MAX_BATCH": "20", "SOMETHING_ELSE": "x"},
        processor_env={"FETCH_BATCH": "5"},
    )
    stack = Stack(cfg, tmp_path)
    proc, ingest, gateway = (s.child_env() for s in (stack.processors[0], stack.ingest, stack.gateway))
    assert from_env(ProcessorSettings, proc) == ProcessorSettings(
        processing_ms=5,
        workers=3,
        max_batch=20,
        fetch_batch=5,
        ledger_path=str(stack.ledger_paths[0]),
        instance="processor-0",
        admin_token=SecretStr(stack.admin_token),  # the stack's own, for a planned queue switch
    )
    assert from_env(BackendSettings, proc) == BackendSettings(queue_type="memory", queue_size=77, ack_wait=2)
    assert from_env(IngestSettings, ingest) == IngestSettings(
        max_batch=20, processor_url=stack.processor_url, admin_token=SecretStr(stack.admin_token)
    )
    assert "ADMIN_TOKEN" not in gateway  # the gateway has no admin endpoint
    assert gateway["API_KEY"] == "k"
    assert (gateway["INGEST_URL"], gateway["MAX_BATCH"]) == (stack.ingest.url, "20")
    assert all(env["SOMETHING_ELSE"] == "x" for env in (proc, ingest, gateway))
    assert "API_KEY" not in repr(stack.gateway)
    assert "'k'" not in repr(cfg)


def test_a_bad_stack_setting_fails_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WORKERS='none'"):
        Stack(StackConfig(processor_env={"WORKERS": "none"}), tmp_path)
