"""Measured phases against the real stack: what every experiment notebook calls.

A `RunContext` is one notebook run (its id, repetition, parameters and output
folder). A `Session` is one deployment inside it: NATS from the provider
(`HARNESS_NATS`) when the backend needs it, then processor(s), ingest and
gateway as uvicorn processes. `Session.measure` runs one phase: open-loop load
through the gateway with client-given ids, an optional fault, a drain, and
the accounting by id from the processors' ledgers -> one `ResultRecord`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sqlite3
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from experiments.results.schema import (
    Backend,
    FaultWindow,
    ResultRecord,
    ResultRow,
    RunDocument,
    RunInfo,
    Series,
    Timeline,
    write_run,
)
from experiments.results.stats import percentiles, quantile_curve
from experiments.runtime.environment import environment
from experiments.runtime.nats.provider import NatsServer, nats_server_from_env
from experiments.runtime.paths import RESULTS
from experiments.runtime.stack import Stack, StackConfig
from experiments.workload.faults import FaultStep, Progress, inject
from experiments.workload.load import LoadResult, open_loop

ADHOC_DIR = RESULTS / "adhoc"  # a notebook run outside a batch
BACKENDS: tuple[Backend, ...] = ("memory", "nats", "nats-sync")
BIN_S = 0.25  # timeline resolution
STATS_EVERY_S = 0.25  # backlog sampling period

# Faults need quick failure detection and redelivery to finish in seconds.
FAST_FAILOVER_ENV = {
    "ACK_WAIT": "2",
    "PUBLISH_TIMEOUT": "1",
    "NATS_RECONNECT_WAIT": "0.2",
    "HTTP_TIMEOUT": "5",
}


@dataclass(frozen=True)
class Setup:
    """One deployment: which queue, how many workers and processor instances."""

    backend: Backend = "memory"
    workers: int = 4
    processors: int = 1
    processing_ms: float = 0.0
    queue_size: int = 10_000  # memory queue capacity (the spec's QUEUE_SIZE)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked here, not when a service fails to start 20 s later.
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r}: expected one of {', '.join(BACKENDS)}")
        if self.workers < 1 or self.processors < 1:
            raise ValueError("workers and processors must be >= 1")


_SINCE = "SELECT rowid, id, created_at, processed_at, outcome FROM deliveries WHERE rowid > ? ORDER BY rowid"


@dataclass
class _Ledgers:
    """Incremental reader of the processors' SQLite ledgers (by rowid, so a poll costs only new rows)."""

    paths: list[Path]
    _last: dict[Path, int] = field(default_factory=dict)
    rows: list[tuple[str, int, int, str]] = field(default_factory=list)  # id, created_at, processed_at, outcome

    def poll(self) -> None:
        for path in self.paths:
            if not path.exists():
                continue
            last = self._last.get(path, 0)
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            try:
                new = conn.execute(_SINCE, (last,)).fetchall()
            except sqlite3.OperationalError:  # table not created yet
                new = []
            finally:
                conn.close()
            if new:
                self._last[path] = new[-1][0]
                self.rows.extend((r[1], r[2], r[3], r[4]) for r in new)


def _body_factory(prefix: str, batch_size: int, payload_bytes: int) -> Any:
    pad = "x" * max(0, payload_bytes - 16)  # ~payload_bytes of JSON with the seq field

    if batch_size == 1:

        def one(seq: int) -> bytes:
            return orjson.dumps({"source": "lab", "payload": {"seq": seq, "pad": pad}, "id": f"{prefix}-{seq}"})

        return one

    def many(seq: int) -> bytes:
        return orjson.dumps(
            [
                {"source": "lab", "payload": {"seq": seq, "pad": pad}, "id": f"{prefix}-{seq}-{k}"}
                for k in range(batch_size)
            ]
        )

    return many


def _request_ids(prefix: str, seq: int, batch_size: int) -> list[str]:
    if batch_size == 1:
        return [f"{prefix}-{seq}"]
    return [f"{prefix}-{seq}-{k}" for k in range(batch_size)]


def _bins(times_s: list[float], until_s: float) -> tuple[list[float], list[float]]:
    n = max(1, int(until_s / BIN_S) + 1)
    counts = [0] * n
    for t in times_s:
        if 0 <= t < n * BIN_S:
            counts[int(t / BIN_S)] += 1
    return [round(i * BIN_S, 3) for i in range(n)], [c / BIN_S for c in counts]


class Session:
    """A running deployment of one `Setup`; use as `async with ctx.session(setup) as s`."""

    def __init__(self, ctx: RunContext, setup: Setup) -> None:
        self.ctx = ctx
        self.setup = setup
        self._tmp = tempfile.TemporaryDirectory(prefix=f"lab-{setup.backend}-")
        self.workdir = Path(self._tmp.name)
        self.nats: NatsServer | None = None
        env = {"QUEUE_SIZE": str(setup.queue_size), **FAST_FAILOVER_ENV, **setup.env}
        if setup.backend != "memory":
            self.nats = nats_server_from_env(self.workdir / "nats", sync_always=setup.backend == "nats-sync")
        self.stack = Stack(
            StackConfig(
                queue="memory" if setup.backend == "memory" else "nats",
                workers=setup.workers,
                processors=setup.processors,
                env=env,
                processor_env={"PROCESSING_MS": str(setup.processing_ms)},
            ),
            self.workdir / "stack",
            nats=self.nats,
        )
        self.ledgers = _Ledgers(self.stack.ledger_paths)
        self._http: aiohttp.ClientSession | None = None

    @property
    def nats_provider(self) -> str:
        return self.nats.kind if self.nats is not None else "none"

    @property
    def gateway_url(self) -> str:
        return self.stack.gateway_url

    def _start(self) -> None:
        try:
            if self.nats is not None:
                self.nats.start()
            self.stack.start()
        except BaseException:
            self._stop()
            raise

    def _stop(self) -> None:
        try:
            self.stack.stop(together=True)  # measure() returns only after its load and drain
        finally:
            if self.nats is not None:
                self.nats.close()
            self._tmp.cleanup()

    async def __aenter__(self) -> Session:
        await asyncio.to_thread(self._start)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2), trust_env=False)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._http is not None:
            await self._http.close()
        await asyncio.to_thread(self._stop)

    async def stats(self) -> dict[str, Any] | None:
        """The first processor's `/stats` (None while it is down or frozen)."""
        assert self._http is not None
        try:
            async with self._http.get(f"{self.stack.processor_url}/stats") as resp:
                return dict(await resp.json()) if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def post(self, body: Any) -> tuple[int, Any]:
        """POST a JSON body to the gateway's /api/v1/ingest: (status, answer)."""
        assert self._http is not None
        async with self._http.post(f"{self.gateway_url}/api/v1/ingest", json=body) as resp:
            return resp.status, await resp.json()

    async def get(self, url: str) -> Any:
        """GET any JSON endpoint of the stack (e.g. `/api/v1/status` on the gateway, `/stats` on the processor)."""
        assert self._http is not None
        async with self._http.get(url) as resp:
            return await resp.json()

    async def backlog(self) -> int | None:
        """Messages waiting or unacked: one shared consumer for NATS, one queue per processor for memory."""
        assert self._http is not None
        urls = [p.url for p in self.stack.processors] if self.setup.backend == "memory" else [self.stack.processor_url]
        total = 0
        for url in urls:
            try:
                async with self._http.get(f"{url}/stats") as resp:
                    if resp.status != 200:
                        return None
                    total += int((await resp.json())["queue"]["current_size"])
            except (aiohttp.ClientError, TimeoutError):
                return None
        return total

    async def _sample_backlog(self, t0: float, out_t: list[float], out_v: list[int], stop: asyncio.Event) -> None:
        while not stop.is_set():
            value = await self.backlog()
            if value is not None:
                out_t.append(round(time.perf_counter() - t0, 3))
                out_v.append(value)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STATS_EVERY_S)

    async def _drain(self, prefix: str, acked: set[str], timeout_s: float, idle_s: float) -> None:
        """Until every acked id is processed and the backlog is empty, or nothing moved for `idle_s`."""
        deadline = time.monotonic() + timeout_s
        last_count, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            self.ledgers.poll()
            done = {r[0] for r in self.ledgers.rows if r[3] == "processed" and r[0].startswith(prefix)}
            if acked <= done and (await self.backlog() or 0) == 0:
                return
            if len(self.ledgers.rows) != last_count:
                last_count, last_change = len(self.ledgers.rows), time.monotonic()
            elif time.monotonic() - last_change > idle_s:
                return  # what is missing will not come (a memory queue lost it)
            await asyncio.sleep(0.2)

    async def measure(
        self,
        phase: str,
        *,
        rate: float,
        duration_s: float,
        payload_bytes: int = 128,
        batch_size: int = 1,
        fault: FaultStep | None = None,
        max_in_flight: int = 256,
        drain_timeout_s: float = 30.0,
        settle_s: float = 0.5,
    ) -> ResultRecord:
        """One phase: `rate` messages/s for `duration_s`, then drain and account by id."""
        fault = fault or FaultStep()
        started = time.perf_counter()
        prefix = uuid.uuid4().hex[:10]
        progress = Progress()
        backlog_t: list[float] = []
        backlog_v: list[int] = []
        stop_sampling = asyncio.Event()
        t0 = time.perf_counter()
        t0_ns = time.time_ns()
        sampler = asyncio.create_task(self._sample_backlog(t0, backlog_t, backlog_v, stop_sampling))
        injector = asyncio.create_task(inject(fault, self.stack, self.nats, progress, t0))
        try:
            result: LoadResult = await open_loop(
                f"{self.gateway_url}/api/v1/ingest",
                _body_factory(prefix, batch_size, payload_bytes),
                rate=rate / batch_size,
                duration=duration_s,
                max_in_flight=max_in_flight,
                timeout=10.0,
                keep_ids=False,
                on_sent=progress,
            )
            window = await injector
        finally:
            injector.cancel()
        acked = {i for r in result.records if 200 <= r.status < 300 for i in _request_ids(prefix, r.seq, batch_size)}
        ack_wait = float({**FAST_FAILOVER_ENV, **self.setup.env}.get("ACK_WAIT", "30"))
        await self._drain(prefix, acked, drain_timeout_s, idle_s=ack_wait + 1.5)
        await asyncio.sleep(settle_s)  # a late redelivery is counted as a duplicate, not missed
        self.ledgers.poll()
        stop_sampling.set()
        await sampler
        return self._record(phase, prefix, result, acked, fault, window, t0, t0_ns, rate, duration_s,
                            payload_bytes, batch_size, time.perf_counter() - started,
                            (backlog_t, backlog_v))  # fmt: skip

    def _record(
        self,
        phase: str,
        prefix: str,
        result: LoadResult,
        acked: set[str],
        fault: FaultStep,
        window: tuple[float, float] | None,
        t0: float,
        t0_ns: int,
        rate: float,
        duration_s: float,
        payload_bytes: int,
        batch_size: int,
        wall_s: float,
        backlog: tuple[list[float], list[int]],
    ) -> ResultRecord:
        sent_n = len(result.records) * batch_size
        rejected = sum(batch_size for r in result.records if 400 <= r.status < 500)
        errors = sum(batch_size for r in result.records if r.status == 0 or r.status >= 500)
        mine = [r for r in self.ledgers.rows if r[0].startswith(prefix + "-")]
        processed = Counter(r[0] for r in mine if r[3] == "processed")
        dead = {r[0] for r in mine if r[3] == "dead_lettered"}
        first_done: dict[str, tuple[int, int]] = {}
        for rid, created, done_at, outcome in mine:
            if outcome == "processed" and rid not in first_done:
                first_done[rid] = (created, done_at)
        e2e_ms = [(done - created) / 1e6 for created, done in first_done.values()]
        done_times = [(done - t0_ns) / 1e9 for _, done in first_done.values()]
        client_ms = [r.latency * 1000 for r in result.records if 200 <= r.status < 300]
        end_s = max([duration_s, *done_times, *(window[1:] if window else ())])
        t_axis, processed_per_s = _bins(done_times, end_s)
        _, acked_per_s = _bins(
            [r.scheduled - t0 for r in result.records if 200 <= r.status < 300 for _ in range(batch_size)], end_s
        )
        in_window = sum(1 for t in done_times if t <= result.duration)
        cp, ep = percentiles(client_ms), percentiles(e2e_ms)
        dup = {i: n for i, n in processed.items() if n > 1}
        latency: dict[str, Any] = {f"client_{k}_ms": _ms(v) for k, v in cp.items()}
        latency.update({f"e2e_{k}_ms": _ms(v) for k, v in ep.items()})
        setup = self.setup
        row = ResultRow(
            experiment=self.ctx.experiment,
            run_id=self.ctx.run_id,
            repetition=self.ctx.repetition,
            backend=setup.backend,
            nats_provider=self.nats_provider,
            phase=phase,
            offered_rate=rate,
            duration_s=duration_s,
            payload_bytes=payload_bytes,
            batch_size=batch_size,
            workers=setup.workers,
            processors=setup.processors,
            processing_ms=setup.processing_ms,
            fault=fault.label,
            achieved_rate=len(acked) / result.duration,
            processed_rate=in_window / result.duration,
            **latency,
            sent=sent_n,
            acknowledged=len(acked),
            processed=len(processed),
            lost=len(acked - processed.keys()),
            duplicated=len(dup),
            extra_deliveries=sum(dup.values()) - len(dup),
            unacked_processed=len(processed.keys() - acked),
            rejected=rejected,
            errors=errors,
            dead_lettered=len(dead),
            wall_time_s=round(wall_s, 3),
            params=json.dumps(self.ctx.params, sort_keys=True, default=str),
        )
        series = Series(
            client_quantiles_ms=[round(v, 4) for v in quantile_curve(client_ms)],
            e2e_quantiles_ms=[round(v, 4) for v in quantile_curve(e2e_ms)],
            timeline=Timeline(
                t_s=t_axis,
                processed_per_s=processed_per_s,
                acked_per_s=acked_per_s,
                backlog_t_s=backlog[0],
                backlog=backlog[1],
            ),
            faults=[FaultWindow(kind=fault.label, start_s=round(window[0], 3), end_s=round(window[1], 3))]
            if window
            else [],
        )
        record = ResultRecord(row=row, series=series)
        self.ctx.add(record)
        return record


def _ms(v: float) -> float | None:
    return None if v != v else round(v, 4)  # nan -> None: no sample


class RunContext:
    """One notebook run: collects result records and writes `runs/<run_id>.json`."""

    def __init__(
        self,
        experiment: str,
        *,
        run_id: str = "",
        repetition: int = 0,
        results_dir: str | Path = "",
        params: dict[str, Any] | None = None,
    ) -> None:
        self.experiment = experiment
        self.run_id = run_id or f"{experiment}-adhoc-{dt.datetime.now().strftime('%Y%m%dT%H%M%S')}"
        self.repetition = repetition
        self.results_dir = Path(results_dir) if results_dir else ADHOC_DIR
        self.params = params or {}
        self.records: list[ResultRecord] = []
        self.started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self._t0 = time.perf_counter()

    def session(self, setup: Setup) -> Session:
        return Session(self, setup)

    def add(self, record: ResultRecord) -> None:
        self.records.append(record)

    def frame(self) -> Any:
        """The rows so far as a pandas DataFrame (imported lazily: the services never need pandas)."""
        import pandas as pd

        return pd.DataFrame([r.row.model_dump() for r in self.records])

    def save(self) -> Path:
        """Write the run document; the batch runner treats its presence as 'this run is done'."""
        env = dict(environment())
        providers = sorted({r.row.nats_provider for r in self.records} - {"none"})
        env["nats_provider"] = ",".join(providers) or "none"
        doc = RunDocument(
            run=RunInfo(
                run_id=self.run_id,
                notebook=self.experiment,
                repetition=self.repetition,
                parameters=self.params,
                started_at=self.started_at,
                wall_time_s=round(time.perf_counter() - self._t0, 3),
            ),
            environment=env,
            results=self.records,
        )
        return write_run(self.results_dir / "runs" / f"{self.run_id}.json", doc)
