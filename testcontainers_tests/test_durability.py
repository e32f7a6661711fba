"""Durability with the real services over HTTP and load flowing.

NATS in a container is restarted gracefully, killed and started, and frozen
longer than the publish timeout: every message the gateway acknowledged with
a 2xx must be processed (by id, from the ledger). Duplicates are counted and
reported in the run's summary. The memory backend across a processor kill
loses exactly what sat in its queue, and the test measures that loss.

These are rows of the fault matrix (fault (2), SIGKILL NATS mid-load and
restart, is `kill-and-start`; the memory row of fault (5) is the last test):
each adds its line to the summary printed at the end of the run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from experiments.runtime.nats.docker import DockerNats
from experiments.runtime.stack import Stack, StackConfig
from experiments.workload.accounting import Accounting, acked_ids, processed_counts, wait_processed
from experiments.workload.under_fault import load_with_fault
from testcontainers_tests.fault_matrix import FaultMatrix, MatrixRow

pytestmark = [pytest.mark.docker, pytest.mark.faults]

RATE = 150.0  # requests/s, one message each
DURATION = 6.0  # s of load; the fault comes at FAULT_AT
FAULT_AT = 2.0
STACK_ENV = {"ACK_WAIT": "2", "PUBLISH_TIMEOUT": "1", "NATS_RECONNECT_WAIT": "0.2", "HTTP_TIMEOUT": "5"}


@pytest.fixture
def nats_stack(nats_server: DockerNats, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(StackConfig(queue="nats", workers=4, env=STACK_ENV), tmp_path / "stack", nats=nats_server)
    stack.start()
    try:
        yield stack
    finally:
        stack.close()
        assert all(s.pid is None for s in stack.services)


def pause_for(server: DockerNats, seconds: float) -> Callable[[], None]:
    def fault() -> None:
        server.pause()
        time.sleep(seconds)
        server.resume()

    return fault


FAULTS: dict[str, Callable[[DockerNats], Callable[[], None]]] = {
    "restart-graceful": lambda s: lambda: s.restart(hard=False),
    "kill-and-start": lambda s: lambda: s.restart(hard=True),
    "pause-longer-than-publish-timeout": lambda s: pause_for(s, 2.5),
}
ROW_NAMES = {
    "restart-graceful": "NATS restarted gracefully mid-load",
    "kill-and-start": "(2) SIGKILL NATS mid-load, start again",
    "pause-longer-than-publish-timeout": "docker pause NATS 2.5 s > publish timeout",
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_nothing_acknowledged_is_lost_across_a_nats_fault(
    nats_stack: Stack, nats_server: DockerNats, fault: str, fault_matrix: FaultMatrix
) -> None:
    result, sent, _ = await load_with_fault(
        nats_stack.gateway_url, rate=RATE, duration=DURATION, fault=FAULTS[fault](nats_server), fault_at=FAULT_AT
    )
    acked = acked_ids(result)
    processed = await wait_processed(nats_stack.ledger_paths, acked, timeout=40)
    acc = Accounting(sent, acked, processed)
    fault_matrix.add(MatrixRow.from_accounting(ROW_NAMES[fault], "nats", "docker", acc))
    statuses = sorted({r.status for r in result.records})
    assert acc.lost == set(), f"{len(acc.lost)} acknowledged but never processed, e.g. {sorted(acc.lost)[:5]}"
    assert acc.invented == set()
    assert len(acked) > 0.5 * len(sent), f"too few acknowledged to prove anything (statuses {statuses})"
    assert set(statuses) <= {202, 503}, statuses  # refused while the broker was away, never a silent 2xx
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        stats = (await client.get(f"{nats_stack.processor_url}/stats")).json()
    assert stats["queue"]["current_size"] == 0


async def test_memory_queue_loses_its_backlog_when_the_processor_is_killed(
    tmp_path: Path, fault_matrix: FaultMatrix
) -> None:
    """The design says: messages in the memory queue die with the process. Measure it."""
    cfg = StackConfig(queue="memory", workers=1, processor_env={"PROCESSING_MS": "10", "FETCH_BATCH": "5"})
    with Stack(cfg, tmp_path / "stack") as stack:
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            answers = [
                await client.post(
                    f"{stack.gateway_url}/api/v1/ingest",
                    json=[{"source": "mem", "payload": i, "id": f"mem-{b}-{i}"} for i in range(100)],
                )
                for b in range(3)
            ]
        assert [a.status_code for a in answers] == [202, 202, 202]
        acked = {i for a in answers for i in a.json()["ids"]}
        await asyncio.sleep(0.5)  # about 50 processed, the rest queued
        processor = stack.processors[0]
        processor.kill()  # SIGKILL: no drain, the queue dies with the process
        before_kill = processed_counts(stack.ledger_paths)
        processor.start()
        await asyncio.sleep(1.5)  # a restarted processor would have worked off anything that survived
        after = processed_counts(stack.ledger_paths)
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            stats = (await client.get(f"{stack.processor_url}/stats")).json()
    acc = Accounting(acked, acked, after)
    row = MatrixRow.from_accounting("(5) SIGKILL processor with a backlog", "memory", "-", acc, "measured, not 0")
    fault_matrix.add(row)
    assert 0 < len(before_kill) < len(acked), "the kill must hit a backlog for the test to mean anything"
    assert acc.lost == acked - set(before_kill)  # exactly what was still queued (or in flight) is gone
    assert len(acc.lost) >= 100
    assert set(after) == set(before_kill)  # nothing of the old backlog reappears after the restart
    assert stats["queue"]["total_enqueued"] == 0  # a new process: an empty queue, honestly reported
