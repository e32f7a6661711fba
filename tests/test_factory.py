"""The factory reads QUEUE_TYPE and friends, and refuses bad values at start."""

from __future__ import annotations

import pytest

from backends.contract import Message, QueueBackend
from backends.factory import BackendSettings, ConfigError, create_backend, load_settings
from backends.memory import MemoryBackend
from backends.nats import NatsJetStreamBackend


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in BackendSettings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_defaults_follow_the_spec_table() -> None:
    s = load_settings()
    assert (s.queue_type, s.nats_url, s.queue_size) == ("memory", "nats://nats:4222", 1000)
    assert (s.nats_stream, s.nats_subject) == ("DIPLOM_STREAM", "diplom.messages")
    assert isinstance(create_backend(s), MemoryBackend)


def test_queue_type_switches_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_TYPE", "nats")
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4999")
    monkeypatch.setenv("ACK_WAIT", "2.5")
    backend = create_backend()
    assert isinstance(backend, NatsJetStreamBackend)
    assert isinstance(backend, QueueBackend)
    assert backend.config.url == "nats://127.0.0.1:4999"
    assert backend.config.ack_wait == 2.5


def test_queue_size_reaches_the_memory_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_SIZE", "7")
    backend = create_backend()
    assert isinstance(backend, MemoryBackend)
    assert backend.config.queue_size == 7


def test_unknown_queue_type_names_the_variable_and_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_TYPE", "kafka")
    with pytest.raises(ConfigError) as err:
        create_backend()
    text = str(err.value)
    assert "QUEUE_TYPE='kafka'" in text
    assert "'memory'" in text
    assert "'nats'" in text


@pytest.mark.parametrize(
    ("var", "value"),
    [("QUEUE_SIZE", "lots"), ("QUEUE_SIZE", "0"), ("ACK_WAIT", "-1"), ("MAX_DELIVER", "1.5")],
)
def test_bad_numbers_name_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=f"{var}='{value}'"):
        load_settings()


def test_message_wire_form_round_trips() -> None:
    m = Message(id="a", source="s", payload=[1, {"x": None}], attributes={"k": "v"})
    assert Message.from_json(m.to_json()) == m
    assert isinstance(m.created_at, int)
    assert m.created_at > 1_600_000_000 * 10**9  # nanoseconds since the epoch


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"id": "x"}', b"{}"])
def test_foreign_bytes_are_not_a_message(raw: bytes) -> None:
    with pytest.raises(ValueError, match="not a queue message"):
        Message.from_json(raw)
