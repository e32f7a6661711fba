"""The fuzz harness of `tests/test_fuzz_http.py` once more, over real HTTP against `diplom up`.

`diplom up --queue memory` (the CLI a student runs) starts the three services
as real uvicorn processes on 127.0.0.1; the same hypothesis cases (the same
generator, derandomized) go to its gateway over TCP, each beside a good
request of another client, and the same checks hold: never a 5xx; a 4xx
stores nothing (the processor's enqueued count moves by the other client's
message only); a 2xx stores exactly what was sent (the processor's ledger has
the digest of the value meant, stamped and processed); the other client's
call is a 202 (one client's bad item never fails another's, through the
gateway's coalescing and ingest's batcher, which now cross process and
socket boundaries). FUZZ_HTTP_CASES cases (default 100): a few seconds of
requests; the test prints the count and the time it took.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given

from experiments.runtime.ports import free_port
from tests.test_fuzz_http import Case, Chain, _one, cases, fuzz_settings

CASES = int(os.environ.get("FUZZ_HTTP_CASES", "100"))

pytestmark = [pytest.mark.spawns, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def diplom_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    workdir = tmp_path_factory.mktemp("fuzz-up")
    ports = {name: free_port() for name in ("gateway", "ingest", "processor")}
    cmd = [sys.executable, "-m", "experiments.cli", "up", "--queue", "memory", "--workdir", str(workdir)]
    for name, port in ports.items():
        cmd += [f"--{name}-port", str(port)]
    log = open(workdir / "diplom-up.log", "wb")  # noqa: SIM115 (closed below, after the process)
    up = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    loop = asyncio.new_event_loop()
    chain: Chain | None = None
    try:
        deadline = time.monotonic() + 90
        while not (workdir / "stack.json").exists():  # written once every service answers
            assert up.poll() is None, (workdir / "diplom-up.log").read_text()
            assert time.monotonic() < deadline, "diplom up did not start within 90 s"
            time.sleep(0.2)
        (ledger,) = workdir.glob("ledger-*.sqlite")

        def client(port: int) -> httpx.AsyncClient:
            return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=30)

        chain = Chain(loop, client(ports["gateway"]), client(ports["processor"]), ledger)
        yield chain
    finally:
        if chain is not None:
            loop.run_until_complete(chain.gateway.aclose())
            loop.run_until_complete(chain.processor.aclose())
        loop.close()
        if up.poll() is None:
            os.kill(up.pid, signal.SIGINT)  # diplom up stops its services and exits
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait(timeout=10)
        log.close()


_timing = {"cases": 0, "started": 0.0}


@fuzz_settings(CASES)
@given(case=cases())
def _fuzz(diplom_up: Chain, case: Case) -> None:
    _timing["cases"] += 1
    diplom_up.run(_one(diplom_up, case))


def test_fuzzed_bodies_over_real_http_never_5xx_and_store_exactly_what_was_sent_or_nothing(
    diplom_up: Chain,
) -> None:
    started = time.monotonic()
    _fuzz(diplom_up)
    took = time.monotonic() - started
    print(f"\nfuzz over real HTTP (diplom up, memory): {_timing['cases']} cases in {took:.1f}s")
    assert _timing["cases"] >= CASES  # hypothesis ran every case (a failing one runs more: the shrink)
