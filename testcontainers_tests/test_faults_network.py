"""Fault matrix, network faults between the processor and NATS, through `tcp_proxy.TcpProxy`.

Only the processor talks to NATS, so its NATS_URL points at the proxy and
the partition cuts exactly that link. NATS is a `ProcessNats`; the proxy
listens on 127.0.0.1 in a thread of the test process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from experiments.runtime.nats.process import ProcessNats
from experiments.runtime.tcp_proxy import Mode, TcpProxy
from experiments.workload.accounting import acked_ids
from experiments.workload.load import LoadResult
from experiments.workload.under_fault import load_with_fault
from testcontainers_tests.fault_harness import (
    assert_nothing_lost,
    drain,
    fault_stack,
    rss_mib,
    send_until_stored,
    work_queue_empty,
)
from testcontainers_tests.fault_matrix import FaultMatrix, MatrixRow

pytestmark = pytest.mark.faults

PARTITION_S = 15.0  # was 30: 15 s is still 15x the publish timeout; the 3 modes x 15 s went to CI's budget
# Acks must outlive the slowest link here (3 s each way), or a delay would
# turn into redeliveries and blur what the test measures.
NET_ENV = {"ACK_WAIT": "10", "PUBLISH_TIMEOUT": "1"}


@pytest.fixture
def proxied_nats(tmp_path: Path) -> Iterator[tuple[ProcessNats, TcpProxy]]:
    nats = ProcessNats(tmp_path / "nats")
    nats.start()
    proxy = TcpProxy(nats.port).start()
    try:
        yield nats, proxy
    finally:
        proxy.close()
        nats.close()


def recovery_seconds(result: LoadResult, healed: float) -> float | None:
    """From the heal to the first answer that stored a message sent after it (perf_counter clock)."""
    done = [r.scheduled + r.latency for r in result.records if r.status == 202 and r.scheduled >= healed]
    return min(done) - healed if done else None


@pytest.mark.parametrize("mode", ["delay", "drop", "reset"])
async def test_partition_processor_from_nats(
    tmp_path: Path, proxied_nats: tuple[ProcessNats, TcpProxy], mode: Mode, fault_matrix: FaultMatrix
) -> None:
    """(8) A partition of PARTITION_S: 503s within the publish timeout, then recovery without a restart.

    delay: 3 s each way (> PUBLISH_TIMEOUT 1 s); drop: a blackhole, bytes thrown
    away both ways; reset: every connection, old and new, gets an RST.
    """
    nats, proxy = proxied_nats
    healed: list[float] = []

    def partition() -> None:
        proxy.set_mode(mode, delay=3.0)
        time.sleep(PARTITION_S)
        proxy.set_mode("pass")
        healed.append(time.perf_counter())

    with fault_stack(
        tmp_path / "stack", nats=nats, env=NET_ENV, processor_env={"NATS_URL": f"nats://{proxy.url_host_port}"}
    ) as stack:
        pids = [s.pid for s in stack.services]
        result, sent, _ = await load_with_fault(
            stack.gateway_url, rate=20, duration=PARTITION_S + 8, fault=partition, fault_at=2
        )
        recovery = recovery_seconds(result, healed[0])
        acc = await drain(stack, sent, acked_ids(result), timeout=60)
        codes = {r.status for r in result.records}
        slowest = max(r.latency for r in result.records if r.status != 202)
        note = f"stored again {recovery or -1:.1f} s after the heal; slowest 503 {slowest:.1f} s"
        fault = f"(8) partition processor-NATS {PARTITION_S:g} s: {mode}"
        fault_matrix.add(MatrixRow.from_accounting(fault, "nats", "process", acc, note))
        assert codes == {202, 503}, codes
        assert slowest < 5.0, "every refusal comes in bounded time"
        assert recovery is not None, "nothing sent after the heal was stored"
        assert recovery < 10.0
        assert [s.pid for s in stack.services] == pids
        assert_nothing_lost(acc, max_duplicated=len(acc.acked) // 20)
        await work_queue_empty(stack, timeout=30)


async def test_slow_broker_keeps_memory_bounded_and_timeouts_inside_the_dedup_window(
    tmp_path: Path, proxied_nats: tuple[ProcessNats, TcpProxy], fault_matrix: FaultMatrix
) -> None:
    """(9) A slow link (0.3 s each way), then a slower one (1.5 s: PubAcks come after the 2 s timeout).

    The processor's memory stays bounded while requests pile up; a timed-out
    publish that the broker stored anyway is inside the dedup window, so the
    client's retry with the same id is answered as a duplicate, not stored twice.
    """
    nats, proxy = proxied_nats
    rss: list[float] = []
    env = {**NET_ENV, "PUBLISH_TIMEOUT": "2"}
    with fault_stack(
        tmp_path / "stack", nats=nats, env=env, processor_env={"NATS_URL": f"nats://{proxy.url_host_port}"}
    ) as stack:
        pid = stack.processors[0].pid
        rss.append(rss_mib(pid))

        def slow_then_slower() -> None:
            proxy.set_mode("delay", delay=0.3)
            for _ in range(10):
                time.sleep(0.5)
                rss.append(rss_mib(pid))
            proxy.set_mode("delay", delay=1.5)
            for _ in range(8):
                time.sleep(0.5)
                rss.append(rss_mib(pid))
            proxy.set_mode("pass")

        result, sent, _ = await load_with_fault(
            stack.gateway_url, rate=100, duration=11, fault=slow_then_slower, fault_at=1
        )
        first = acked_ids(result)
        refused = sorted(sent - first)
        bodies = {i: orjson.dumps({"source": "durability", "payload": {"retry": True}, "id": i}) for i in refused}
        retried = await send_until_stored(f"{stack.gateway_url}/api/v1/ingest", bodies, deadline=time.monotonic() + 30)
        acc = await drain(stack, sent, first | retried.stored, timeout=60)
        growth = max(rss) - rss[0]
        slowest = max(r.latency for r in result.records)
        note = (
            f"RSS +{growth:.0f} MiB; slowest answer {slowest:.1f} s; {len(refused)} retried, "
            f"{len(retried.duplicate_keys)} already stored"
        )
        fault_matrix.add(MatrixRow.from_accounting("(9) slow broker 0.3 s then 1.5 s each way", "nats", "process",
                                                   acc, note))  # fmt: skip
        assert {r.status for r in result.records} <= {202, 503}
        assert refused, "the slower phase must time out some publishes for the test to mean anything"
        assert slowest < 10.0, "answers come in bounded time, far inside DEDUP_WINDOW (120 s)"
        assert growth < 100, f"processor memory grew {growth:.0f} MiB under a slow broker"
        assert retried.stored == set(refused)
        assert acc.acked == sent
        assert_nothing_lost(acc, max_duplicated=0)  # retries inside the dedup window stored nothing twice
        await work_queue_empty(stack, timeout=30)
