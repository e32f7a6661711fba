"""Ports for the servers the lab starts: never the same one twice, never one in use, never an ephemeral one.

A CI run once started a gateway on the port it had just given the ingest it
forwards to ("address already in use", then "processor not ready" in
test_diplom_up_kafka): two probes of port 0 had come back with one port. These
run against the real kernel.
"""

from __future__ import annotations

import socket

import pytest

from experiments.runtime import ports
from experiments.runtime.ports import free_port, free_ports


def test_a_process_is_never_handed_one_port_twice() -> None:
    given = [free_port() for _ in range(300)] + free_ports(300)
    assert len(set(given)) == len(given)


def test_ports_come_from_below_the_ephemeral_range_where_outgoing_connections_take_theirs() -> None:
    start = int(ports.EPHEMERAL_RANGE.read_text().split()[0])
    assert all(ports.LOWEST <= p < start for p in free_ports(50))


def test_a_port_something_listens_on_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = int(busy.getsockname()[1])
        monkeypatch.setattr(ports, "_pool", lambda: range(taken, taken + 4))
        monkeypatch.setattr(ports, "_given", set())
        assert taken not in free_ports(3)
        with pytest.raises(OSError, match="found 0 of 1 free ports"):
            free_ports(1)  # the other three are handed out now, and the fourth is busy
