"""Benches print each warning once per cause (a backend per round said the same eight times)."""

from __future__ import annotations

import logging

import pytest

from experiments.runtime.warn_once import OncePerCause


def test_a_repeated_warning_is_shown_once_and_another_cause_still_shows(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("backends.nats.topology")
    once = OncePerCause()
    caplog.handler.addFilter(once)
    try:
        with caplog.at_level(logging.INFO):
            for version in ["2.15.1"] * 8:
                log.warning("NATS %s is not sync_always: acknowledged messages can be lost", version)
            log.warning("cannot read %s/varz", "http://127.0.0.1:1")
            log.info("NATS server %s", "2.15.1")
            log.info("NATS server %s", "2.15.1")
    finally:
        caplog.handler.removeFilter(once)
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("NATS 2.15.1 is not sync_always: acknowledged messages can be lost") == 1
    assert "cannot read http://127.0.0.1:1/varz" in messages
    assert messages.count("NATS server 2.15.1") == 2  # below WARNING: not filtered
    assert once.dropped == 7
