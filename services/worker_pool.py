"""The processor's worker pool: fetch, work, record, then ack.

Ack comes after the work and after the ledger row is committed, so a worker
or process that dies mid-message causes a redelivery, never a loss. A failed
delivery is nak'ed for a retry; on its last allowed delivery it goes to the
dead-letter place instead of being retried forever.

Two things keep a redelivery from recording a result twice:
- while a worker holds deliveries it signals progress (`in_progress`) every
  third of ack_wait, so work longer than ack_wait is not handed to a second
  worker meanwhile;
- a redelivered message whose `processed` row is already committed (the
  process died between the commit and the ack) is acked without doing the
  work again, and gets a `duplicate` row instead of a second result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from dataclasses import dataclass

from backends.contract import BackendUnavailable, Delivery, QueueBackend, QueueError, payload_digest
from services.ledger import Ledger, Row
from services.settings import BackendSettings, ProcessorSettings, default_of

log = logging.getLogger(__name__)

HOLD_SECONDS = 0.2  # simulated work one worker takes per fetch, at most


class ProcessingFailed(Exception):
    """The (simulated) work on a message failed; the delivery is retried."""


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """What the pool needs of the processor's and the queue's settings (their defaults, written there)."""

    workers: int = default_of(ProcessorSettings, "workers")
    processing_ms: float = default_of(ProcessorSettings, "processing_ms")
    failure_rate: float = default_of(ProcessorSettings, "failure_rate")
    failure_id_prefix: str | None = default_of(ProcessorSettings, "failure_id_prefix")
    fetch_batch: int = default_of(ProcessorSettings, "fetch_batch")
    fetch_timeout: float = default_of(ProcessorSettings, "fetch_timeout")
    nak_delay: float = default_of(ProcessorSettings, "nak_delay")
    max_deliver: int = default_of(BackendSettings, "max_deliver")
    ack_wait: float = default_of(BackendSettings, "ack_wait")
    instance: str = "processor"

    @property
    def batch(self) -> int:
        """Fetch size: with simulated work, hold at most HOLD_SECONDS of it per fetch."""
        if self.processing_ms <= 0:
            return self.fetch_batch
        return max(1, min(self.fetch_batch, int(HOLD_SECONDS * 1000 / self.processing_ms)))


class WorkerPool:
    """`workers` tasks sharing one backend; counters in the seed's `pool` shape."""

    def __init__(self, backend: QueueBackend, ledger: Ledger, config: PoolConfig) -> None:
        self.backend = backend
        self.ledger = ledger
        self.config = config
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._rng = random.Random()
        self.processed_count = 0
        self.error_count = 0
        self.dead_lettered = 0
        self.redelivered = 0
        self.duplicates_skipped = 0
        self.total_duration = 0.0
        self.in_flight = 0
        self.latencies_ms: deque[float] = deque(maxlen=10_000)

    def start(self) -> None:
        for i in range(self.config.workers):
            self._tasks.append(asyncio.create_task(self._run(f"w{i}"), name=f"worker-{i}"))

    async def stop(self, timeout: float) -> None:
        """Stop fetching, let in-flight work finish within `timeout`, then cancel."""
        self._stopping.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for t in pending:
            t.cancel()
        for t in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if pending:
            log.warning("drain timed out: %d workers cancelled; their deliveries will be redelivered", len(pending))
        self._tasks.clear()

    async def _run(self, worker: str) -> None:
        cfg = self.config
        batch = cfg.batch
        while not self._stopping.is_set():
            try:
                deliveries = await self.backend.fetch(batch, cfg.fetch_timeout)
            except BackendUnavailable as exc:
                log.debug("%s: backend unavailable: %s", worker, exc)
                await self._pause(0.2)
                continue
            except QueueError as exc:
                log.warning("%s: fetch failed: %s", worker, exc)
                await self._pause(0.2)
                continue
            if deliveries:
                self.in_flight += len(deliveries)
                try:
                    await self._handle(deliveries, worker, time.time_ns())
                except QueueError as exc:  # settling failed: JetStream redelivers after ack_wait
                    log.warning("%s: settling failed: %s", worker, exc)
                finally:
                    self.in_flight -= len(deliveries)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _fails(self, d: Delivery) -> bool:
        cfg = self.config
        if cfg.failure_id_prefix and d.message.id.startswith(cfg.failure_id_prefix):
            return True
        return cfg.failure_rate > 0 and self._rng.random() < cfg.failure_rate

    async def _work(self, d: Delivery) -> None:
        if self.config.processing_ms > 0:
            await asyncio.sleep(self.config.processing_ms / 1000)
        if self._fails(d):
            raise ProcessingFailed(d.message.id)

    async def _handle(self, deliveries: list[Delivery], worker: str, delivered_at: int) -> None:
        heartbeat = _Heartbeat(deliveries, self.config.ack_wait / 3)
        try:
            await self._work_and_record(deliveries, worker, heartbeat, delivered_at)
        finally:
            heartbeat.stop()

    async def _work_and_record(
        self, deliveries: list[Delivery], worker: str, heartbeat: _Heartbeat, delivered_at: int
    ) -> None:
        cfg = self.config
        instance = cfg.instance
        done: list[Delivery] = []
        failed: list[Delivery] = []
        rows: list[Row] = []
        already: set[str] = set()
        skipped = 0
        again = [d.message.id for d in deliveries if d.delivery_count > 1]
        if again:
            self.redelivered += len(again)
            already = self.ledger.processed_among(again)
        for d in deliveries:
            m = d.message
            stamps = m.stamps
            gateway_at, processor_at = stamps.get("gateway"), stamps.get("processor")
            if m.id in already:  # its result is committed; only the ack was lost
                done.append(d)
                skipped += 1
                now = time.time_ns()
                rows.append((m.id, m.source, m.created_at, now, d.delivery_count, worker, instance, "duplicate",
                             gateway_at, processor_at, d.stored_at, delivered_at, m.digest or None, None))  # fmt: skip
                continue
            started = time.perf_counter()
            try:
                await self._work(d)
                outcome = "processed"
                done.append(d)
            except ProcessingFailed:
                last = d.delivery_count >= cfg.max_deliver
                outcome = "dead_lettered" if last else "failed"
                failed.append(d)
            self.total_duration += time.perf_counter() - started
            now = time.time_ns()
            rows.append((m.id, m.source, m.created_at, now, d.delivery_count, worker, instance, outcome,
                         gateway_at, processor_at, d.stored_at, delivered_at, m.digest or None,
                         payload_digest(m.payload)))  # fmt: skip
            if outcome == "processed":
                self.latencies_ms.append((now - m.created_at) / 1e6)
        committed_at = await self.ledger.record(rows)  # committed before any ack
        heartbeat.stop()
        await self.backend.ack_many(done)  # one write for the batch (measured: bench-services' CPU check)
        acked_at = time.time_ns()
        self.ledger.settled([(d.message.id, d.delivery_count, instance, committed_at, acked_at) for d in done])
        self.processed_count += len(done) - skipped
        self.duplicates_skipped += skipped
        for d in failed:
            self.error_count += 1
            if d.delivery_count >= cfg.max_deliver:
                await self.backend.dead_letter(d, f"failed {d.delivery_count} times")
                self.dead_lettered += 1
            else:
                await d.nak(delay=cfg.nak_delay or None)


class _Heartbeat:
    """Restarts the ack_wait clock of the deliveries a worker holds, every `interval` s, until stopped.

    A timer, not a task per batch: the common batch finishes long before the
    first beat, and arming a timer costs about a microsecond.
    """

    def __init__(self, deliveries: list[Delivery], interval: float) -> None:
        self._deliveries = deliveries
        self._interval = max(0.05, interval)
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(self._interval, self._beat)
        self._sending: asyncio.Task[None] | None = None

    def _beat(self) -> None:
        if self._sending is None or self._sending.done():
            self._sending = self._loop.create_task(self._send())
        self._timer = self._loop.call_later(self._interval, self._beat)

    async def _send(self) -> None:
        for d in self._deliveries:
            try:
                await d.in_progress()
            except QueueError:  # settled meanwhile, or the broker is away: ack_wait decides then
                continue

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sending is not None and not self._sending.done():
            self._sending.cancel()


def go_duration(seconds: float) -> str:
    """Format like Go's time.Duration.String(), as the seed's /stats does ("9.95s")."""
    if seconds == 0:
        return "0s"
    ns = round(seconds * 1e9)
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{_trim(ns / 1e3)}µs"
    if ns < 1_000_000_000:
        return f"{_trim(ns / 1e6)}ms"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    out = f"{hours}h" if hours else ""
    out += f"{minutes}m" if hours or minutes else ""
    return out + f"{_trim(rest / 1e9)}s"


def _trim(x: float) -> str:
    return f"{x:.9f}".rstrip("0").rstrip(".")
