"""Queue switches into and out of Kafka under steady open-loop load, through the real services.

Real uvicorn processes, the session's real KRaft broker, a real nats-server;
every message with a client-given id, accounted by id from every processor's
ledger (the old ones' included). Planned memory -> kafka and kafka -> nats
must lose nothing and show no client 5xx while the old queue still held a
backlog when it began draining (the drain had work to do); naive kafka -> nats
must show what it costs: what the topic still held is never processed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from experiments.runtime.broker import BrokerServer
from experiments.runtime.migration import Queue, SwitchReport, switch_queue
from experiments.runtime.nats.process import ProcessNats
from experiments.runtime.stack import Stack, StackConfig
from experiments.workload.accounting import Accounting, acked_ids, processed_counts, wait_processed
from experiments.workload.under_fault import load_with_fault

pytestmark = pytest.mark.e2e

RATE = 200.0  # msg/s offered
DURATION_S = 10.0  # the new processor (2-6 s to start on a busy machine) takes part of it
SWITCH_AT_S = 0.5
PROCESSING_MS = 25.0  # 4 workers ~ 160 msg/s < RATE: the old queue holds a backlog at the switch


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[ProcessNats]:
    server = ProcessNats(tmp_path / "nats")
    with server:
        yield server


def make_stack(tmp: Path, queue: Queue, nats: ProcessNats, kafka: Any) -> Stack:
    own = uuid.uuid4().hex[:8]  # the session's broker is shared: a topic and group of this test's own
    cfg = StackConfig(
        queue=queue,
        workers=4,
        env={
            "PUBLISH_TIMEOUT": "2",
            "ACK_WAIT": "5",
            "QUEUE_SIZE": "10000",
            "KAFKA_TOPIC": f"switch-{own}",
            "KAFKA_CONSUMER_GROUP": f"switch-{own}",
        },
        processor_env={"PROCESSING_MS": str(PROCESSING_MS)},
    )
    return Stack(cfg, tmp / "stack", nats=nats if queue == "nats" else None, kafka=kafka if queue == "kafka" else None)


def ledgers(stack: Stack) -> list[Path]:
    return sorted(stack.workdir.glob("ledger-*.sqlite"))


async def run_switch(
    stack: Stack, to: Queue, broker: BrokerServer | None, naive: bool
) -> tuple[Accounting, Counter[int], SwitchReport]:
    reports: list[SwitchReport] = []

    def switch() -> None:
        reports.extend(switch_queue(stack, to, broker, naive=naive))

    result, sent, _ = await load_with_fault(
        stack.gateway_url, rate=RATE, duration=DURATION_S, fault=switch, fault_at=SWITCH_AT_S
    )
    acked = acked_ids(result)
    processed = await wait_processed(ledgers(stack), acked, timeout=30.0, settle=1.0, idle=3.0)
    return Accounting(sent, acked, processed), Counter(r.status for r in result.records), reports[0]


def check_planned(stack: Stack, acc: Accounting, statuses: Counter[int], report: SwitchReport, to: str) -> None:
    # the fault bites: the old processor still held messages when told to drain, and it is gone now
    assert (report.queued_at_drain or 0) > 0, report
    assert len(stack.processors) == 1
    assert stack.processors[0].name not in report.old
    new_stats = httpx.get(f"{stack.processor_url}/stats", trust_env=False, timeout=5).json()
    assert new_stats["queue"]["type"] == to
    by_ledger = [len(processed_counts([path])) for path in ledgers(stack)]
    assert len(by_ledger) == 2, by_ledger
    assert min(by_ledger) > 0, by_ledger  # both the old and the new processor did part of the work
    # what the clients saw: every request answered 2xx, none lost, none invented
    assert sum(n for s, n in statuses.items() if s == 0 or s >= 500) == 0, statuses
    assert len(acc.acked) == len(acc.sent), statuses
    assert acc.lost == set(), acc.summary(report.summary())
    assert acc.invented == set()


@pytest.mark.parametrize(("source", "to"), [("memory", "kafka"), ("kafka", "nats")])
def test_planned_switch_with_kafka_loses_nothing(
    source: Queue, to: Queue, tmp_path: Path, nats: ProcessNats, warm_kafka: Any
) -> None:
    started = time.monotonic()
    brokers: dict[str, BrokerServer] = {"nats": nats, "kafka": warm_kafka}
    with make_stack(tmp_path, source, nats, warm_kafka) as st:
        acc, statuses, report = asyncio.run(run_switch(st, to, brokers.get(to), naive=False))
        print(acc.summary(report.summary()), dict(statuses), f"{time.monotonic() - started:.1f}s")
        assert (report.mode, report.source, report.target) == ("planned", source, to)
        check_planned(st, acc, statuses, report, to)
        print(f"duplicated: {len(acc.duplicated)}")


def test_naive_switch_from_kafka_leaves_the_topic_backlog_unprocessed(
    tmp_path: Path, nats: ProcessNats, warm_kafka: Any
) -> None:
    with make_stack(tmp_path, "kafka", nats, warm_kafka) as st:
        acc, statuses, report = asyncio.run(run_switch(st, "nats", nats, naive=True))
        print(acc.summary(report.summary()), dict(statuses))
        assert report.mode == "naive"
        errors_5xx = sum(n for s, n in statuses.items() if s == 0 or s >= 500)
        assert len(acc.lost) > 0 or errors_5xx > 0, (acc.summary("naive"), statuses)
        assert acc.invented == set()
        assert httpx.get(f"{st.processor_url}/stats", trust_env=False, timeout=5).json()["queue"]["type"] == "nats"


def test_a_switch_to_a_broker_queue_without_its_broker_is_refused_before_anything_stops(tmp_path: Path) -> None:
    with Stack(StackConfig(queue="memory", workers=1), tmp_path / "stack") as st:
        old = st.processors[0]
        with pytest.raises(ValueError, match="needs a running kafka broker"):
            switch_queue(st, "kafka", None)
        assert st.processors == [old]
        assert old.pid is not None
