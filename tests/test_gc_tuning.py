"""The collector settings every service applies after its start-up (services.gc_tuning)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services import gateway, ingest
from services.settings import ConfigError, GatewaySettings, IngestSettings, from_env


@pytest.fixture
def clean_gc() -> Iterator[None]:
    """Each test starts unfrozen with Python's thresholds, and leaves it so."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_a_service_freezes_its_start_up_heap_and_sets_gen0_once_started(clean_gc: None) -> None:
    threshold = gc.get_threshold()
    app = gateway.create_app(GatewaySettings(gc_freeze=True, gc_gen0_threshold=12_345))
    assert gc.get_freeze_count() == 0  # nothing before the lifespan's start-up has run
    with TestClient(app) as client:  # runs the lifespan
        assert gc.get_freeze_count() > 10_000  # the imports, the app, its clients
        assert gc.get_threshold() == (12_345, threshold[1], threshold[2])
        assert client.get("/health").status_code == 200


def test_the_settings_turn_it_off(clean_gc: None) -> None:
    threshold = gc.get_threshold()
    app = ingest.create_app(IngestSettings(gc_freeze=False, gc_gen0_threshold=0))
    with TestClient(app) as client:
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == threshold
        assert client.get("/health").status_code in (200, 503)


def test_the_environment_names_a_bad_value() -> None:
    with pytest.raises(ConfigError, match="GC_GEN0_THRESHOLD='-1'"):
        from_env(GatewaySettings, {"GC_GEN0_THRESHOLD": "-1"})
