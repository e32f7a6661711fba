"""A queue switch memory -> nats under steady open-loop load, through the real services.

Real uvicorn processes (gateway, ingest, processors), a real nats-server,
every message with a client-given id, accounted by id from every
processor's ledger (the old one's included). The planned switch must lose
nothing and show no client 5xx while the old memory processor still held a
backlog when it began draining; the naive switch (stop, start on the new
queue) must show what it costs: the memory backlog lost, 503s while no
processor answers.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from experiments.runtime.migration import SwitchReport, switch_queue
from experiments.runtime.nats.process import ProcessNats
from experiments.runtime.stack import Stack, StackConfig
from experiments.workload.accounting import Accounting, acked_ids, processed_counts, wait_processed
from experiments.workload.faults import load_with_fault

pytestmark = pytest.mark.e2e

RATE = 200.0  # msg/s offered
DURATION_S = 8.0  # long enough that the new processor (2-5 s to start on a busy machine) takes part of it
SWITCH_AT_S = 0.5
PROCESSING_MS = 25.0  # 4 workers ~ 160 msg/s < RATE: the memory queue holds a backlog at the switch


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Stack, ProcessNats]]:
    nats = ProcessNats(tmp_path / "nats")
    nats.start()
    cfg = StackConfig(
        queue="memory",
        workers=4,
        env={"PUBLISH_TIMEOUT": "1", "ACK_WAIT": "5", "QUEUE_SIZE": "10000"},
        processor_env={"PROCESSING_MS": str(PROCESSING_MS)},
    )
    st = Stack(cfg, tmp_path / "stack")
    try:
        st.start()
        yield st, nats
    finally:
        st.close()
        nats.close()


def ledgers(stack: Stack) -> list[Path]:
    """Every processor's ledger, the stopped ones' too."""
    return sorted(stack.workdir.glob("ledger-*.sqlite"))


async def run_switch(stack: Stack, nats: ProcessNats, naive: bool) -> tuple[Accounting, Counter[int], SwitchReport]:
    reports: list[SwitchReport] = []

    def switch() -> None:
        reports.extend(switch_queue(stack, "nats", nats, naive=naive))

    result, sent, _ = await load_with_fault(
        stack.gateway_url, rate=RATE, duration=DURATION_S, fault=switch, fault_at=SWITCH_AT_S
    )
    acked = acked_ids(result)
    processed = await wait_processed(ledgers(stack), acked, timeout=30.0, settle=1.0, idle=3.0)
    statuses = Counter(r.status for r in result.records)
    return Accounting(sent, acked, processed), statuses, reports[0]


def test_planned_switch_memory_to_nats_loses_nothing(stack: tuple[Stack, ProcessNats]) -> None:
    st, nats = stack
    old = st.processors[0]
    started = time.monotonic()
    acc, statuses, report = asyncio.run(run_switch(st, nats, naive=False))
    print(acc.summary("planned memory->nats"), dict(statuses), report.summary(), f"{time.monotonic() - started:.1f}s")

    assert (report.mode, report.source, report.target) == ("planned", "memory", "nats")
    # the fault bites: the old processor still held messages when it was told to drain, and it is gone now
    assert (report.queued_at_drain or 0) > 0, report
    assert old.pid is None
    assert old not in st.processors
    # the traffic moved: the new processor is on NATS and processed part of the load, the old one the rest
    new_stats = httpx.get(f"{st.processor_url}/stats", trust_env=False, timeout=5).json()
    assert new_stats["queue"]["type"] == "nats"
    by_ledger = [len(processed_counts([path])) for path in ledgers(st)]
    assert len(by_ledger) == 2, by_ledger
    assert min(by_ledger) > 0, by_ledger
    # what the clients saw: every request answered 2xx, none lost, none invented
    assert sum(n for s, n in statuses.items() if s == 0 or s >= 500) == 0, statuses
    assert len(acc.acked) == len(acc.sent), statuses
    assert acc.lost == set(), acc.summary("planned")
    assert acc.invented == set()
    print(f"duplicated: {len(acc.duplicated)}")


def test_naive_switch_memory_to_nats_shows_its_loss(stack: tuple[Stack, ProcessNats]) -> None:
    st, nats = stack
    acc, statuses, report = asyncio.run(run_switch(st, nats, naive=True))
    print(acc.summary("naive memory->nats"), dict(statuses), report.summary())

    assert report.mode == "naive"
    errors_5xx = sum(n for s, n in statuses.items() if s == 0 or s >= 500)
    assert len(acc.lost) > 0 or errors_5xx > 0, (acc.summary("naive"), statuses)
    assert acc.invented == set()
    # after the switch the stack works on NATS
    assert httpx.get(f"{st.processor_url}/stats", trust_env=False, timeout=5).json()["queue"]["type"] == "nats"
