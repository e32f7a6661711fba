"""Fault matrix, broker faults: no fault, restarts in a row, a long outage, a freeze, down at start, full.

NATS runs as a real `nats-server` process (`ProcessNats`, same binary as the
container): restarts take ~0.2 s instead of ~1-2 s, so ten in a row fit in
seconds, and SIGKILL/SIGSTOP hit the broker itself. The container variants of
restart, kill and pause are in `test_durability.py`.

Each test: bounded open-loop load through the gateway with client-given ids,
one fault, heal, drain, account by id (A sent, G 2xx, P processed), one row.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest

from experiments.runtime.nats.process import ProcessNats
from experiments.runtime.stack import Stack
from experiments.workload.accounting import Accounting, acked_ids
from experiments.workload.load import LoadResult
from experiments.workload.under_fault import load_with_fault
from testcontainers_tests.fault_harness import (
    assert_nothing_lost,
    drain,
    fault_stack,
    send_until_stored,
    wait_status,
    work_queue_empty,
)
from testcontainers_tests.fault_matrix import FaultMatrix, MatrixRow

pytestmark = pytest.mark.faults

RATE = 100.0  # requests/s, one message each


def statuses(result: LoadResult) -> set[int]:
    return {r.status for r in result.records}


def slowest_refusal(result: LoadResult) -> float:
    """Seconds, from its scheduled time, of the slowest request that did not get a 2xx."""
    return max((r.latency for r in result.records if not 200 <= r.status < 300), default=0.0)


def add_row(matrix: FaultMatrix, fault: str, acc: Accounting, note: str = "") -> None:
    matrix.add(MatrixRow.from_accounting(fault, "nats", "process", acc, note))


def running_nats(stack: Stack) -> ProcessNats:
    assert isinstance(stack.nats, ProcessNats)
    return stack.nats


@pytest.mark.parametrize("queue", ["memory", "nats"])
async def test_no_fault(tmp_path: Path, queue: str, fault_matrix: FaultMatrix) -> None:
    """(1) The control row: without a fault every request is stored and processed once, on both backends."""
    with fault_stack(tmp_path / "stack", queue) as stack:
        result, sent, _ = await load_with_fault(stack.gateway_url, rate=RATE, duration=4, fault=None, fault_at=0)
        acc = await drain(stack, sent, acked_ids(result))
        fault_matrix.add(MatrixRow.from_accounting("(1) none", queue, "process" if queue == "nats" else "-", acc))
        assert statuses(result) == {202}
        assert acc.acked == sent
        assert_nothing_lost(acc, max_duplicated=0)
        await work_queue_empty(stack)


async def test_five_clean_and_five_hard_nats_restarts_in_a_row(tmp_path: Path, fault_matrix: FaultMatrix) -> None:
    """(3) Kafka's replication test in small: repeated clean and hard kills, every acknowledged message consumed."""
    done: list[str] = []
    with fault_stack(tmp_path / "stack") as stack:
        nats = running_nats(stack)

        def restarts() -> None:
            for hard in [False] * 5 + [True] * 5:
                nats.restart(hard=hard)
                done.append("hard" if hard else "clean")
                time.sleep(0.4)  # some traffic flows between two restarts

        result, sent, _ = await load_with_fault(stack.gateway_url, rate=RATE, duration=10, fault=restarts, fault_at=1)
        acc = await drain(stack, sent, acked_ids(result))
        add_row(fault_matrix, "(3) 5 clean + 5 SIGKILL NATS restarts", acc)
        assert done == ["clean"] * 5 + ["hard"] * 5
        assert statuses(result) <= {202, 503}, statuses(result)
        assert len(acc.acked) > 0.3 * len(sent), "too few acknowledged to prove anything"
        assert_nothing_lost(acc, max_duplicated=len(acc.acked) // 20)
        await work_queue_empty(stack)


async def test_nats_down_longer_than_reconnect_attempts_services_recover_without_restart(
    tmp_path: Path, fault_matrix: FaultMatrix
) -> None:
    """(4) NATS gone for 10 s: 50 reconnect attempts (NATS_RECONNECT_WAIT 0.2 s), 5x the connect timeout.

    The client reconnects forever (max_reconnect_attempts=-1), so there is no
    window after which it gives up: this shows it. Meanwhile requests get a
    503 within the publish timeout, /api/v1/status says the backend is down,
    and afterwards the same processes (same pids) take and work load again.
    """
    with fault_stack(tmp_path / "stack") as stack:
        nats = running_nats(stack)
        pids = [s.pid for s in stack.services]
        seen_down: list[int] = []

        def outage() -> None:
            nats.stop()
            time.sleep(1.5)
            seen_down.append(httpx.get(f"{stack.gateway_url}/api/v1/status", trust_env=False, timeout=5).status_code)
            time.sleep(8.5)
            nats.start()

        result, sent, _ = await load_with_fault(stack.gateway_url, rate=50, duration=16, fault=outage, fault_at=2)
        acc = await drain(stack, sent, acked_ids(result))
        add_row(fault_matrix, "(4) NATS down 10 s, services not restarted", acc)
        assert seen_down == [503]
        assert statuses(result) == {202, 503}, statuses(result)
        assert slowest_refusal(result) < 5.0, "a 503 must come in bounded time"
        assert [s.pid for s in stack.services] == pids, "no service was restarted"
        late = [r for r in result.records if r.scheduled - result.records[0].scheduled > 15.0]  # the last second
        assert late
        assert all(r.status == 202 for r in late), "the tail of the load, after the outage, is stored"
        assert_nothing_lost(acc, max_duplicated=len(acc.acked) // 20)
        assert await wait_status(f"{stack.gateway_url}/api/v1/status", 200, 10) == 200
        await work_queue_empty(stack)


async def test_frozen_nats_gives_503_then_retries_with_the_same_id_store_once(
    tmp_path: Path, fault_matrix: FaultMatrix
) -> None:
    """(7) SIGSTOP for 3 s > PUBLISH_TIMEOUT 1 s: 503s, then clients retry every refused id.

    A publish that timed out may still be stored (the frozen server reads it
    when it thaws): the retry must be answered as a duplicate, not stored
    again. ACK_WAIT is 10 s here so a redelivery cannot blur what is measured.
    """
    with fault_stack(tmp_path / "stack", env={"ACK_WAIT": "10"}) as stack:
        nats = running_nats(stack)

        def freeze() -> None:
            nats.pause()
            time.sleep(3)
            nats.resume()

        result, sent, _ = await load_with_fault(stack.gateway_url, rate=RATE, duration=6, fault=freeze, fault_at=1.5)
        first = acked_ids(result)
        refused = sorted(sent - first)
        bodies = {
            i: orjson.dumps({"source": "durability", "payload": {"seq": int(i.rsplit("-", 1)[1])}, "id": i})
            for i in refused
        }
        retried = await send_until_stored(f"{stack.gateway_url}/api/v1/ingest", bodies, deadline=time.monotonic() + 30)
        acked = first | retried.stored
        acc = await drain(stack, sent, acked)
        note = f"{len(refused)} refused then retried; {len(retried.duplicate_keys)} were already stored"
        add_row(fault_matrix, "(7) SIGSTOP NATS 3 s, retry same ids", acc, note)
        assert statuses(result) == {202, 503}, statuses(result)
        assert slowest_refusal(result) < 5.0
        assert retried.stored == set(refused), "every refused id is stored on retry"
        assert acc.acked == sent
        assert_nothing_lost(acc, max_duplicated=0)  # retries created no duplicates
        await work_queue_empty(stack)


async def test_nats_down_when_the_services_start(tmp_path: Path, fault_matrix: FaultMatrix) -> None:
    """(12) The services start without NATS, report unhealthy, refuse with 503, and work once NATS comes."""
    nats = ProcessNats(tmp_path / "nats")  # created, not started
    try:
        with fault_stack(tmp_path / "stack", nats=nats) as stack:
            pids = [s.pid for s in stack.services]
            async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
                health = await client.get(f"{stack.processor_url}/health")
                status = await client.get(f"{stack.gateway_url}/api/v1/status")
            assert health.status_code == 503
            assert status.status_code == 503
            assert status.json()["components"]["backend"]["status"] != "ok"

            result, sent, _ = await load_with_fault(
                stack.gateway_url, rate=50, duration=8, fault=nats.start, fault_at=2
            )
            acc = await drain(stack, sent, acked_ids(result))
            add_row(fault_matrix, "(12) NATS down when services start", acc)
            assert statuses(result) == {202, 503}, statuses(result)
            assert slowest_refusal(result) < 5.0
            assert [s.pid for s in stack.services] == pids
            assert_nothing_lost(acc, max_duplicated=0)
            assert await wait_status(f"{stack.gateway_url}/api/v1/status", 200, 10) == 200
            await work_queue_empty(stack)
    finally:
        nats.close()


async def test_full_stream_refuses_and_never_answers_2xx_for_what_it_did_not_store(
    tmp_path: Path, fault_matrix: FaultMatrix
) -> None:
    """(13) NATS_MAX_MSGS=100 with discard-new and a slow consumer: the overflow is refused.

    A full queue is back-pressure, not an outage: 429 with Retry-After, the
    same answer as the full memory queue (a 503 is for an unreachable
    backend). Every 2xx id is processed; the refused ones never are.
    """
    with fault_stack(
        tmp_path / "stack",
        env={"NATS_MAX_MSGS": "100"},
        processor_env={"PROCESSING_MS": "20", "FETCH_BATCH": "10"},
        workers=1,
    ) as stack:
        result, sent, _ = await load_with_fault(stack.gateway_url, rate=200, duration=3, fault=None, fault_at=0)
        acked = acked_ids(result)
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            # Fill it again and look at one refusal closely.
            probe: httpx.Response | None = None
            for i in range(300):
                r = await client.post(
                    f"{stack.gateway_url}/api/v1/ingest", json={"source": "probe", "payload": i, "id": f"probe-{i}"}
                )
                sent.add(f"probe-{i}")
                if r.status_code != 202:
                    probe = r
                    break
                acked.add(f"probe-{i}")  # the consumer made room since the load: filled again
        acc = await drain(stack, sent, acked, timeout=60)
        refused = sent - acked
        stored_anyway = refused & set(acc.processed)  # in a batch the broker refused in part: allowed, P ⊆ A
        note = f"{len(refused)} refused (429), {len(stored_anyway)} of them stored anyway"
        add_row(fault_matrix, "(13) stream full (max_msgs 100, discard new)", acc, note)
        # 429 for what the full stream refused; on a loaded machine a batch whose PubAcks did not all
        # come within PUBLISH_TIMEOUT is a 503 (maybe stored: the client retries the same id). Never a 2xx.
        assert 429 in statuses(result)
        assert statuses(result) <= {202, 429, 503}, statuses(result)
        assert probe is not None
        assert probe.status_code == 429
        assert probe.headers["retry-after"] == "1"
        assert "full" in probe.json()["error"]
        assert_nothing_lost(acc, max_duplicated=0)
        await work_queue_empty(stack, timeout=30)
