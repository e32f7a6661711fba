"""The services bench's configurations and its half-rate tables (pure functions of measured figures)."""

from __future__ import annotations

import argparse

import pytest

from experiments.bench.http_chain import ChainFigures, parse_config, render, render_stages


def figures(name: str, p99: float, lag: float, stages: dict[str, float]) -> ChainFigures:
    return ChainFigures(name, 1000, 1000, 9000, 9000, 500, 5.0, p99, 0, lag_p99_ms=lag, stage_p99_ms=stages)


def test_a_config_names_backend_processors_and_lever() -> None:
    c = parse_config("nats:2/granian+freeze")
    assert (c.backend, c.processors, c.name) == ("nats", 2, "natsx2/granian+freeze")
    assert c.variant.gateway_server == "granian"
    assert c.variant.env == {"GC_FREEZE": "true"}
    assert parse_config("memory").variant.env == {}
    with pytest.raises(argparse.ArgumentTypeError, match="unknown lever 'turbo'"):
        parse_config("memory/turbo")


def test_half_rate_tables_show_lag_and_each_stage_median_over_rounds() -> None:
    rounds = [
        [figures("bare", 40, 3, {}), figures("nats", 30, 2, {"store": 4.0, "queue wait": 8.0})],
        [figures("bare", 50, 5, {}), figures("nats", 50, 6, {"store": 6.0, "queue wait": 10.0})],
    ]
    main = render(rounds, ["nats"])
    assert "gen lag p99" in main
    nats_row = next(line for line in main.splitlines() if line.startswith("nats "))
    assert nats_row.split()[-3:] == ["40.0", "4.0", "0"]  # p99, lag p99 (medians of two rounds), errors
    assert main.splitlines()[-1] == "client p99 ms at half rate, round by round: bare 40.0 / 50.0; nats 30.0 / 50.0"
    table = render_stages(rounds, ["nats"]).splitlines()
    assert table[0].startswith("p99 ms by stage at half rate")
    assert [line.split()[-1] for line in table[2:]] == ["5.0", "9.0", "40.0"]  # store, queue wait, client


def test_the_generators_heap_is_a_lever_of_its_own() -> None:
    assert parse_config("memory").variant.client_heap_frozen
    assert not parse_config("nats:2/plain-heap").variant.client_heap_frozen
