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
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from experiments.runtime.migration import SwitchReport, switch_queue
from experiments.runtime.nats.process import ProcessNats
from experiments.runtime.ports import free_port
from experiments.runtime.stack import Stack, StackConfig
from experiments.workload.accounting import Accounting, acked_ids, processed_counts, wait_processed
from experiments.workload.under_fault import load_with_fault

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


@pytest.fixture(scope="module")
def two_processors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    cfg = StackConfig(queue="memory", processors=2, workers=2, env={"PUBLISH_TIMEOUT": "1"})
    with Stack(cfg, tmp_path_factory.mktemp("two-processors")) as st:
        yield st


def test_admin_endpoints_need_the_token_and_name_bad_fields(two_processors: Stack) -> None:
    st = two_processors
    url = f"{st.ingest.url}/admin/processors"
    good = {"Authorization": f"Bearer {st.admin_token}"}
    with httpx.Client(trust_env=False, timeout=5) as client:
        assert client.get(url).status_code == 401
        assert client.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post(f"{st.processors[0].url}/admin/drain").status_code == 401
        assert client.get(url, headers=good).json() == {"urls": [p.url for p in st.processors]}
        bad = client.put(url, headers=good, json={"urls": ["not a url"]})
        assert bad.status_code == 422
        assert bad.json()["details"][0]["field"] == "body.urls.0"
        assert client.put(url, headers=good, json={"urls": []}).status_code == 422
        # nothing changed by the refused calls
        assert client.get(url, headers=good).json() == {"urls": [p.url for p in st.processors]}


def test_a_draining_processor_refuses_and_ingest_stores_on_the_other(two_processors: Stack) -> None:
    st = two_processors
    draining, other = st.processors
    admin = {"Authorization": f"Bearer {st.admin_token}"}
    with httpx.Client(trust_env=False, timeout=5) as client:
        status = client.post(f"{draining.url}/admin/drain", headers=admin).json()
        assert status["draining"] is True
        direct = client.post(
            f"{draining.url}/api/v1/messages",
            json={"id": "direct-1", "source": "t", "payload": 1, "created_at": time.time_ns(), "attributes": {}},
        )
        assert direct.status_code == 503
        assert direct.headers["X-Processor-Draining"] == "true"
        # ingest still lists both: every other call lands on the draining one and is retried on the other
        ids = [f"drain-{i}" for i in range(40)]
        answers = [
            client.post(f"{st.gateway_url}/api/v1/ingest", json={"id": i, "source": "t", "payload": i}) for i in ids
        ]
        assert [a.status_code for a in answers] == [202] * len(ids)
        assert client.get(f"{draining.url}/admin/drain", headers=admin).json()["drained"] is True
    asyncio.run(wait_processed(ledgers(st), set(ids), timeout=10.0, settle=0.2))
    on_draining = processed_counts([st.workdir / f"ledger-{draining.name}.sqlite"], set(ids))
    on_other = processed_counts([st.workdir / f"ledger-{other.name}.sqlite"], set(ids))
    assert sum(on_draining.values()) == 0, on_draining  # stored once, on the other processor
    assert on_other == Counter(dict.fromkeys(ids, 1)), on_other


def test_a_refused_connection_goes_to_the_next_processor(two_processors: Stack) -> None:
    st = two_processors
    live = st.processors[1]
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: the request never reaches a processor
    admin = {"Authorization": f"Bearer {st.admin_token}"}
    with httpx.Client(trust_env=False, timeout=5) as client:
        routed = client.put(f"{st.ingest.url}/admin/processors", headers=admin, json={"urls": [dead, live.url]})
        assert routed.json() == {"urls": [dead, live.url]}
        ids = [f"refused-{i}" for i in range(20)]
        answers = [
            client.post(f"{st.gateway_url}/api/v1/ingest", json={"id": i, "source": "t", "payload": i}) for i in ids
        ]
        assert [a.status_code for a in answers] == [202] * len(ids)
    processed = asyncio.run(wait_processed([st.workdir / f"ledger-{live.name}.sqlite"], set(ids), timeout=10.0))
    assert all(processed[i] == 1 for i in ids), processed


def test_diplom_switch_moves_a_running_diplom_up_to_nats(tmp_path: Path) -> None:
    """The CLI path: `diplom up` owns the processes, `diplom switch` asks it; the processor keeps its port."""
    ports = {name: free_port() for name in ("gateway", "ingest", "processor", "nats", "nats-monitor")}
    workdir = tmp_path / "run"
    diplom = [sys.executable, "-m", "experiments.cli"]
    up_cmd = [*diplom, "up", "--queue", "memory", "--workdir", str(workdir)]
    for name, port in ports.items():
        up_cmd += [f"--{name}-port", str(port)]
    up = subprocess.Popen(up_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (workdir / "stack.json").exists():
            assert up.poll() is None, up.stdout.read() if up.stdout else ""
            assert time.monotonic() < deadline, "diplom up did not start"
            time.sleep(0.2)
        processor = f"http://127.0.0.1:{ports['processor']}"
        assert httpx.get(f"{processor}/stats", trust_env=False).json()["queue"]["type"] == "memory"
        done = subprocess.run([*diplom, "switch", "--to", "nats", "--workdir", str(workdir)], capture_output=True,
                              text=True, timeout=180)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "planned memory -> nats" in done.stdout
        assert httpx.get(f"{processor}/stats", trust_env=False).json()["queue"]["type"] == "nats"
        state = json.loads((workdir / "stack.json").read_text())
        assert state["queue"] == "nats"
        assert state["processors"] == [processor]
        again = subprocess.run([*diplom, "switch", "--to", "nats", "--workdir", str(workdir)], capture_output=True,
                               text=True, timeout=60)  # fmt: skip
        assert again.returncode == 1
        assert "already runs on nats" in again.stderr
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
    assert not (workdir / "stack.json").exists()
    for port in ports.values():  # everything it started is gone
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", trust_env=False, timeout=1)
