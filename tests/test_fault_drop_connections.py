"""The `drop-connections` fault plug-in, end to end: it bites, it heals, and it is refused where it cannot run.

Real gateway -> ingest -> processor over HTTP, a real nats-server; the
processor reaches NATS through the lab's TCP proxy (`Setup(client_proxy=True)`).
Mid-load every client connection through the proxy gets an RST and new ones
are reset for `down_s`: the fault bit if the proxy reset connections, the
processor came back on a new connection, and publishes due in the window were
refused (the clients saw it). After the heal nothing acknowledged is lost.
About 10 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.lab.context import RunContext
from experiments.lab.setup import Setup
from experiments.runtime.stack import Stack, StackConfig
from experiments.workload.faults import Deployment, FaultRunner, FaultStep

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


async def test_drop_connections_resets_the_brokers_clients_and_loses_nothing(tmp_path: Path) -> None:
    ctx = RunContext("test_drop_connections", results_dir=tmp_path / "results")
    step = FaultStep.parse("drop-connections", at_s=1.0, down_s=2.5)
    assert step.label == "drop-connections:broker"
    async with ctx.session(Setup(backend="nats", workers=4, client_proxy=True)) as session:
        proxy = session.client_proxy
        assert proxy is not None
        seen_before = proxy.connections_seen
        rec = await session.measure("drop-connections", rate=100, duration_s=5.0, fault=step, drain_timeout_s=20)
        assert proxy.resets_sent > 0, "no connection was reset: the fault did not bite"
        assert proxy.connections_seen > seen_before, "the processor never reconnected through the proxy"
    row = rec.row
    window = rec.series.faults[0]
    assert window.kind == "drop-connections:broker"
    assert window.end_s - window.start_s >= 2.5
    refused = sum(n for status, n in rec.series.status_counts.items() if not status.startswith("2"))
    print(
        f"drop-connections: acknowledged={row.acknowledged} refused={refused} lost={row.lost} "
        f"resets={proxy.resets_sent}"
    )
    assert refused > 0, f"no publish was refused while the broker's connections were reset: {row}"
    assert row.acknowledged > 0, row
    assert row.lost == 0, row


def test_drop_connections_is_refused_without_a_client_proxy(tmp_path: Path) -> None:
    stack = Stack(StackConfig(queue="memory"), tmp_path / "stack")
    with pytest.raises(ValueError, match=r"drop-connections:broker needs .*client_proxy=True"):
        FaultRunner(FaultStep.parse("drop-connections"), Deployment(stack))


def test_an_unknown_fault_kind_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"kind must be one of none, restart, kill, pause, .*drop-connections"):
        FaultStep.parse("drop-conections")
