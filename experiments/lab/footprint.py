"""Where a backlog lives: resident memory of the processor and nats-server as the queue fills.

The spec's advice for high memory use is "switch to NATS; adjust QUEUE_SIZE".
This measures it: in one deployment whose single worker holds one message
for an hour (so nothing drains), batches through the gateway raise the
backlog step by step, and at each step (0 first) the processor's and
nats-server's RSS (psutil) and the JetStream store's size on disk are read.

Accounting per row (cumulative up to its step): sent, acknowledged (2xx),
rejected (4xx: a full memory queue's 429); lost = acknowledged but neither
processed nor still held in the queue (nothing drains here, so that is what
"lost" can mean).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from backends.factory import BackendSettings
from experiments.lab.session import Session
from experiments.lab.setup import Setup
from experiments.results.schema import Backend, ResultRecord, ResultRow
from experiments.results.stats import percentiles
from experiments.runtime.resources import MIB, disk_bytes, rss_bytes
from experiments.workload.backlog import FillResult, batch_size_for, fill

FootprintQueue = Literal["memory", "memory-default", "nats"]
QUEUES: tuple[FootprintQueue, ...] = ("memory", "memory-default", "nats")
DEFAULT_QUEUE_SIZE = int(BackendSettings.model_fields["queue_size"].default)  # the spec's QUEUE_SIZE default
HOLD_MS = 3_600_000.0  # one worker, one message, an hour: the backlog stays
SETTLE_S = 0.3  # after a step, before reading memory


def setup_for(queue: FootprintQueue, max_backlog: int) -> Setup:
    """A deployment that keeps what it is sent: one worker holding one message; memory sized or at its default."""
    # Batches of up to 1000 messages on a loaded machine: give a publish and a hop time (a timed-out
    # publish may still be stored; that would count as an error here, not as a held message).
    env = {"DRAIN_TIMEOUT": "0.5", "PUBLISH_TIMEOUT": "10", "HTTP_TIMEOUT": "30"}
    size = max_backlog + 1000
    if queue == "memory-default":
        size = DEFAULT_QUEUE_SIZE
        env["PUBLISH_TIMEOUT"] = "0.05"  # a full queue answers 429 at once instead of after 1 s per batch
    backend: Backend = "nats" if queue == "nats" else "memory"
    return Setup(backend=backend, workers=1, processing_ms=HOLD_MS, queue_size=size, env=env)


async def _held(session: Session, expected: int, timeout_s: float = 5.0) -> int:
    """The backlog once it shows what was acknowledged (JetStream's counts lag a little), or as it is."""
    deadline = time.monotonic() + timeout_s
    value = await session.backlog()
    while (value is None or value < expected) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        value = await session.backlog()
    return value or 0


async def measure_steps(
    session: Session, queue: FootprintQueue, *, backlogs: Sequence[int], payload_bytes: int
) -> list[ResultRecord]:
    """Fill `session` to each of `backlogs` in turn (and read at 0 first): one record per step (not added yet)."""
    prefix = uuid.uuid4().hex[:10]
    total = FillResult()
    sent_to = 0
    out = []
    for target in [0, *sorted(backlogs)]:
        if target > sent_to:
            step = await fill(
                f"{session.gateway_url}/api/v1/ingest",
                target - sent_to,
                payload_bytes=payload_bytes,
                prefix=prefix,
                start_seq=sent_to,
            )
            total.add(step)
            sent_to = target
        held = await _held(session, total.acknowledged)
        await asyncio.sleep(SETTLE_S)
        session.ledgers.poll()
        processed = len({r[0] for r in session.ledgers.rows if r[3] == "processed" and r[0].startswith(prefix)})
        out.append(_record(session, queue, target, held, processed, total, payload_bytes))
    return out


def _record(
    session: Session,
    queue: FootprintQueue,
    target: int,
    held: int,
    processed: int,
    total: FillResult,
    payload_bytes: int,
) -> ResultRecord:
    ctx, setup, nats = session.ctx, session.setup, session.nats
    proc_rss = rss_bytes(session.stack.processors[0].pid)
    nats_rss = rss_bytes(nats.pid) if nats is not None else None
    client = percentiles([s * 1000 for s in total.request_latencies_s])
    latency: dict[str, Any] = {f"client_{k}_ms": (None if v != v else round(v, 4)) for k, v in client.items()}
    latency.update({f"e2e_{k}_ms": None for k in client})  # nothing is processed: held by design
    seconds = max(total.seconds, 1e-3)
    row = ResultRow(
        experiment=ctx.labels.experiment,
        run_id=ctx.labels.run_id,
        repetition=ctx.labels.repetition,
        backend=setup.backend,
        nats_provider=session.nats_provider,
        phase=f"queue={queue},payload={payload_bytes},backlog={target}",
        offered_rate=0.0,  # as fast as the stack takes it: no schedule
        duration_s=seconds,
        payload_bytes=payload_bytes,
        batch_size=batch_size_for(payload_bytes),
        workers=setup.workers,
        processors=setup.processors,
        processing_ms=setup.processing_ms,
        achieved_rate=total.acknowledged / seconds,
        processed_rate=0.0,
        **latency,
        sent=total.sent,
        acknowledged=total.acknowledged,
        processed=processed,
        lost=max(0, total.acknowledged - processed - held),
        duplicated=0,
        extra_deliveries=0,
        unacked_processed=0,
        rejected=total.rejected,
        errors=total.errors,
        dead_lettered=0,
        wall_time_s=round(total.seconds, 3),
        params=json.dumps(ctx.labels.params, sort_keys=True, default=str),
        backlog=held,
        queue_size=setup.queue_size if setup.backend == "memory" else None,
        processor_rss_mib=round(proc_rss / MIB, 2) if proc_rss is not None else None,
        nats_rss_mib=round(nats_rss / MIB, 2) if nats_rss is not None else None,
        store_mib=round(disk_bytes(nats.store_dir) / MIB, 2) if nats is not None else None,
    )
    return ResultRecord(row=row)
