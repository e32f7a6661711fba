"""Fault matrix, service faults: processor SIGKILL mid-work, ingest/gateway SIGKILL under retries, poison, long jobs.

NATS runs as a `ProcessNats` (see `test_faults_broker.py` for why); the
faults here hit our own processes, killed by pid with SIGKILL (no drain, no
goodbye) and started again on the same port, store and ledger.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest

from experiments.workload.accounting import Accounting, acked_ids
from experiments.workload.under_fault import load_with_fault
from testcontainers_tests.fault_harness import (
    assert_nothing_lost,
    dlq_ids,
    drain,
    fault_stack,
    ledger_rows,
    send_until_stored,
    stats,
    work_queue_empty,
)
from testcontainers_tests.fault_matrix import FaultMatrix, MatrixRow

pytestmark = pytest.mark.faults


async def test_processor_sigkill_with_messages_in_flight(tmp_path: Path, fault_matrix: FaultMatrix) -> None:
    """(5) SIGKILL the processor while its workers hold deliveries: redelivered after ack_wait, one result each.

    40 ms of work per message in batches of 5 over 4 workers is about the
    offered 100 msg/s, so ~20 deliveries are held at any time; the new
    process (same ledger) gets them again after ACK_WAIT=2 s.
    """
    with fault_stack(tmp_path / "stack", processor_env={"PROCESSING_MS": "40", "FETCH_BATCH": "5"}) as stack:
        processor = stack.processors[0]

        def kill_and_start() -> None:
            processor.kill()
            time.sleep(0.5)
            processor.start()

        result, sent, _ = await load_with_fault(
            stack.gateway_url, rate=100, duration=6, fault=kill_and_start, fault_at=2
        )
        acc = await drain(stack, sent, acked_ids(result))
        rows = ledger_rows(stack)
        again = {r.id for r in rows if r.delivery_count > 1}
        skipped = sum(r.outcome == "duplicate" for r in rows)
        note = f"{len(again)} redelivered after the kill, {skipped} of them acked as already recorded"
        fault_matrix.add(MatrixRow.from_accounting("(5) SIGKILL processor, messages in flight", "nats", "process",
                                                   acc, note))  # fmt: skip
        assert again, "the kill must hit deliveries in flight for the test to mean anything"
        assert {r.status for r in result.records} <= {202, 503}
        # something at stake: the 503s while the processor starts again (1-3 s quiet, most of the load's
        # remaining 4 s on a machine at load 13: 209 of 600 acknowledged) are the contract, not the point
        assert len(acc.acked) > 0.3 * len(sent)
        assert_nothing_lost(acc, max_duplicated=0)  # each result recorded once
        await work_queue_empty(stack)


@pytest.mark.parametrize("target", ["ingest", "gateway"])
async def test_sigkill_ingest_or_gateway_while_clients_retry_with_the_same_key(
    tmp_path: Path, target: str, fault_matrix: FaultMatrix
) -> None:
    """(6) Clients retry each request with its Idempotency-Key until a 2xx; the ingest or gateway dies under them.

    A request can be stored and its answer lost with the killed process: the
    retry must find it stored (a duplicate answer), so each key is stored,
    and processed, exactly once.
    """
    keys = [f"key-{target}-{i}" for i in range(600)]
    bodies = {k: orjson.dumps({"source": "idem", "payload": {"key": k}}) for k in keys}
    with fault_stack(tmp_path / "stack") as stack:
        victim = stack.ingest if target == "ingest" else stack.gateway
        before = (await stats(stack))["queue"]["total_enqueued"]

        def kill_and_start() -> None:
            time.sleep(1.0)
            victim.kill()
            time.sleep(0.5)
            victim.start()

        fault = asyncio.create_task(asyncio.to_thread(kill_and_start))
        retried = await send_until_stored(
            f"{stack.gateway_url}/api/v1/ingest", bodies, deadline=time.monotonic() + 40, concurrency=4, pace=0.01
        )
        await fault
        acc = await drain(stack, set(keys), retried.stored)
        enqueued = (await stats(stack))["queue"]["total_enqueued"] - before
        failed_first = sum(1 for st in retried.statuses.values() if st and not 200 <= st[0] < 300)
        note = f"{failed_first} keys retried, {len(retried.duplicate_keys)} found already stored; {enqueued} stored"
        fault_matrix.add(MatrixRow.from_accounting(f"(6) SIGKILL {target}, clients retry same key", "nats",
                                                   "process", acc, note))  # fmt: skip
        assert failed_first > 0, "the kill must hit requests for the test to mean anything"
        assert retried.stored == set(keys)
        assert enqueued == len(keys), "one stored message per key"
        assert_nothing_lost(acc, max_duplicated=0)
        await work_queue_empty(stack)


@pytest.mark.parametrize("queue", ["memory", "nats"])
async def test_poison_messages_end_processed_or_in_the_dlq(
    tmp_path: Path, queue: str, fault_matrix: FaultMatrix
) -> None:
    """(10) 20% of deliveries fail at random and ids `poison-*` always fail, MAX_DELIVER=3.

    Each message ends either processed once or in the DLQ after exactly 3
    deliveries: never lost, never retried forever.
    """
    env = {"MAX_DELIVER": "3"}
    processor_env = {"FAILURE_RATE": "0.2", "FAILURE_ID_PREFIX": "poison-"}
    with fault_stack(tmp_path / "stack", queue, env=env, processor_env=processor_env) as stack:
        poison = {f"poison-{i}" for i in range(20)}

        async def send_poison() -> set[str]:
            async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
                r = await client.post(
                    f"{stack.gateway_url}/api/v1/ingest", json=[{"source": "p", "payload": i, "id": i} for i in poison]
                )
            assert r.status_code == 202, r.text
            return set(r.json()["ids"])

        (result, sent, _), poison_acked = await asyncio.gather(
            load_with_fault(stack.gateway_url, rate=100, duration=3, fault=None, fault_at=0), send_poison()
        )
        sent |= poison
        acked = acked_ids(result) | poison_acked
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = ledger_rows(stack)
            ended = {r.id for r in rows if r.outcome in ("processed", "dead_lettered")}
            if acked <= ended:
                break
            await asyncio.sleep(0.3)
        await asyncio.sleep(1)
        rows = ledger_rows(stack)
        processed = Counter(r.id for r in rows if r.outcome == "processed")
        dead = Counter(r.id for r in rows if r.outcome == "dead_lettered")
        deliveries = Counter(r.id for r in rows)
        acc = Accounting(sent, acked, processed + dead)  # an id "ends" processed or dead-lettered
        note = f"P counts {len(dead)} ids parked in the DLQ after 3 deliveries"
        where = "process" if queue == "nats" else "-"
        fault_matrix.add(MatrixRow.from_accounting("(10) poison + 20% failures, max_deliver 3", queue, where, acc,
                                                   note))  # fmt: skip
        s = await work_queue_empty(stack)
        assert poison <= set(dead)
        assert not set(processed) & set(dead)
        assert all(n == 1 for n in dead.values())
        assert all(deliveries[i] == 3 for i in dead), "parked after exactly MAX_DELIVER deliveries"
        assert max(deliveries.values()) <= 3, "never retried past MAX_DELIVER"
        assert_nothing_lost(acc, max_duplicated=0)
        assert s["queue"]["dead_lettered"] == len(dead)
        if queue == "nats":
            assert stack.nats is not None
            parked = await dlq_ids(stack.nats.url)
            assert sorted(parked) == sorted(dead), "the DLQ stream holds exactly the dead-lettered ids"


@pytest.mark.parametrize("queue", ["memory", "nats"])
async def test_jobs_longer_than_ack_wait_signal_progress_and_are_not_redone(
    tmp_path: Path, queue: str, fault_matrix: FaultMatrix
) -> None:
    """(11) 2.5 s of work per message against ACK_WAIT=1 s: in_progress keeps each delivery, no duplicate."""
    env = {"ACK_WAIT": "1"}
    with fault_stack(tmp_path / "stack", queue, env=env, processor_env={"PROCESSING_MS": "2500"}) as stack:
        result, sent, _ = await load_with_fault(stack.gateway_url, rate=4, duration=2, fault=None, fault_at=0)
        acc = await drain(stack, sent, acked_ids(result), timeout=30)
        rows = ledger_rows(stack)
        where = "process" if queue == "nats" else "-"
        fault_matrix.add(MatrixRow.from_accounting("(11) jobs 2.5 s > ack_wait 1 s, in_progress", queue, where, acc))
        s = await work_queue_empty(stack)
        assert acc.acked == sent
        assert_nothing_lost(acc, max_duplicated=0)
        assert [r.delivery_count for r in rows] == [1] * len(sent), "no delivery was repeated"
        assert s["queue"]["redelivered"] == 0
