"""08 footprint: where a backlog lives, resident memory of the processor and nats-server as the queue fills.

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

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from backends.factory import BackendSettings
from experiments.lab.context import RunContext
from experiments.lab.experiment import Experiment, ExperimentParams, FigureSpec, rows_figure
from experiments.lab.session import Session
from experiments.lab.setup import Setup
from experiments.results.chapters import footprint as footprint_claims
from experiments.results.plots import backend_style, median_range
from experiments.results.schema import Backend, ResultRecord, ResultRow
from experiments.results.stats import percentiles
from experiments.results.tables import median_table
from experiments.runtime.resources import MIB, disk_bytes, rss_bytes
from experiments.workload.backlog import FillResult, batch_size_for, fill

FootprintQueue = Literal["memory", "memory-default", "nats", "kafka"]
QUEUES: tuple[FootprintQueue, ...] = ("memory", "memory-default", "nats", "kafka")
DEFAULT_QUEUE_SIZE = int(BackendSettings.model_fields["queue_size"].default)  # the spec's QUEUE_SIZE default
HOLD_MS = 3_600_000.0  # one worker, one message, an hour: the backlog stays
SETTLE_S = 0.3  # after a step, before reading memory


class Params(ExperimentParams):
    queues: tuple[FootprintQueue, ...] = QUEUES
    backlogs: tuple[int, ...] = (10_000, 50_000, 100_000)  # messages held, built step by step in one deployment
    payload_sizes: tuple[int, ...] = (128, 4096)  # bytes of payload per message
    parallel: int = 3  # deployments side by side (memory is read per pid; nothing here is timed)


def setup_for(queue: FootprintQueue, max_backlog: int) -> Setup:
    """A deployment that keeps what it is sent: one worker holding one message; memory sized or at its default."""
    # Batches of up to 1000 messages on a loaded machine: give a publish and a hop time (a timed-out
    # publish may still be stored; that would count as an error here, not as a held message).
    env = {"DRAIN_TIMEOUT": "0.5", "PUBLISH_TIMEOUT": "10", "HTTP_TIMEOUT": "30"}
    size = max_backlog + 1000
    if queue == "memory-default":
        size = DEFAULT_QUEUE_SIZE
        env["PUBLISH_TIMEOUT"] = "0.05"  # a full queue answers 429 at once instead of after 1 s per batch
    backend: Backend = "memory" if queue.startswith("memory") else queue  # type: ignore[assignment]
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
    ctx, setup, broker = session.ctx, session.setup, session.broker
    proc_rss = rss_bytes(session.stack.processors[0].pid)
    broker_rss = rss_bytes(broker.pid) if broker is not None and broker.pid is not None else None
    client = percentiles([s * 1000 for s in total.request_latencies_s])
    latency: dict[str, Any] = {f"client_{k}_ms": (None if v != v else round(v, 4)) for k, v in client.items()}
    latency.update({f"e2e_{k}_ms": None for k in client})  # nothing is processed: held by design
    seconds = max(total.seconds, 1e-3)
    row = ResultRow(
        experiment=ctx.labels.experiment,
        run_id=ctx.labels.run_id,
        repetition=ctx.labels.repetition,
        backend=setup.backend,
        broker_provider=session.broker_provider,
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
        broker_rss_mib=round(broker_rss / MIB, 2) if broker_rss is not None else None,
        store_mib=round(disk_bytes(broker.store_dir) / MIB, 2) if broker is not None else None,
    )
    return ResultRecord(row=row)


async def run(ctx: RunContext, params: Params) -> pd.DataFrame:
    """Resident memory against backlog: one deployment per queue x payload size, filled step by step.

    `queues`: memory (QUEUE_SIZE above the largest backlog), memory-default
    (the spec's QUEUE_SIZE, where the backlog becomes 429s), nats (JetStream),
    kafka (one KRaft broker: its JVM's RSS and its log dir).
    Up to `parallel` deployments run side by side: memory is read per pid and
    nothing here is timed, so they do not disturb each other's figures, and
    the run spends most of its time starting services.
    """
    gate = asyncio.Semaphore(max(1, params.parallel))
    backlogs = params.backlogs

    async def one(queue: FootprintQueue, payload: int) -> list[ResultRecord]:
        async with gate, ctx.session(setup_for(queue, max(backlogs))) as session:
            return await measure_steps(session, queue, backlogs=backlogs, payload_bytes=payload)

    done = await asyncio.gather(*(one(q, p) for q in params.queues for p in params.payload_sizes))
    for records in done:  # in a fixed order, whichever deployment finished first
        for record in records:
            ctx.add(record)
    return ctx.frame()


def tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {"footprint": footprint_table(df), "footprint_cost": footprint_cost(df)}


def footprint_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per queue, payload and backlog built: what was held and refused, and what it cost in RSS and on disk."""
    df = df.assign(queue=[footprint_label(b, q) for b, q in zip(df["backend"], df["queue_size"], strict=True)])
    values = [
        "acknowledged",
        "rejected",
        "errors",
        "backlog",
        "processor_rss_mib",
        "broker_rss_mib",
        "store_mib",
        "lost",
    ]
    return median_table(df, ["queue", "payload_bytes", "sent"], values)


_COST_OF = (("processor_rss_mib", "processor"), ("broker_rss_mib", "broker"), ("store_mib", "disk"))


def footprint_cost(df: pd.DataFrame) -> pd.DataFrame:
    """Bytes per message held, from the empty deployment to its largest backlog: RSS per process, disk for JetStream.

    The payload size beside it shows the overhead: what a message costs
    beyond its payload, and in which process.
    """
    rows: list[dict[str, Any]] = []
    for (queue, payload), part in footprint_table(df).groupby(["queue", "payload_bytes"], sort=True):
        ordered = part.sort_values("sent")
        empty, full = ordered.iloc[0], ordered.iloc[-1]
        held = full["backlog"] - empty["backlog"]
        row: dict[str, Any] = {"queue": queue, "payload_bytes": payload, "backlog": full["backlog"]}
        for column, name in _COST_OF:
            grew = (full[column] - empty[column]) * 1024 * 1024
            row[f"{name}_bytes_per_msg"] = grew / held if held > 0 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def footprint_label(backend: str, queue_size: Any) -> str:
    """A deployment of the footprint runs by its queue: NATS, or the memory queue with its QUEUE_SIZE."""
    if backend == "memory" and queue_size == queue_size and queue_size is not None:  # not NaN
        return f"memory queue, QUEUE_SIZE={int(queue_size):,}"
    return str(backend_style(backend)["label"])


def footprint_curve(df: pd.DataFrame) -> Figure:
    """Resident memory against the backlog built, one line per process x queue x payload size (and the store on disk).

    x is what was sent (with the memory queue at its default QUEUE_SIZE most
    of it was refused with 429, so its backlog stays at QUEUE_SIZE).
    """
    fig, ax = plt.subplots(figsize=(7.2, 6.4))
    payloads = sorted(int(p) for p in df["payload_bytes"].unique())
    dashes = ["-", "--", ":", "-."]
    shades = {"memory": ["#1f77b4", "#17becf"], "nats": ["#d62728"], "nats-sync": ["#9467bd"], "kafka": ["#2ca02c"]}
    queues = sorted({(str(b), q if q == q else None) for b, q in zip(df["backend"], df["queue_size"], strict=True)},
                    key=lambda k: (k[0], -(k[1] or 0)))  # fmt: skip
    for i_q, (backend, qsize) in enumerate(queues):
        same = df[
            (df["backend"] == backend) & ((df["queue_size"] == qsize) if qsize is not None else df["queue_size"].isna())
        ]
        colour = shades.get(backend, ["black"])[min(sum(1 for b, _ in queues[:i_q] if b == backend), 1)]
        for process, column, marker in (
            ("processor", "processor_rss_mib", "o"),
            ("broker (nats-server or Kafka's JVM)", "broker_rss_mib", "s"),
            ("on disk, the broker's store or log", "store_mib", "^"),
        ):
            for i_p, payload in enumerate(payloads):
                part = same[(same["payload_bytes"] == payload) & same[column].notna()]
                if part.empty:
                    continue
                agg = median_range(part, ["sent"], column)
                yerr = [agg["median"] - agg["lo"], agg["hi"] - agg["median"]]
                label = f"{process}: {footprint_label(backend, qsize)}, {_size(payload)}"
                ax.errorbar(agg["sent"], agg["median"], yerr=yerr, color=colour, marker=marker, capsize=3,
                            linestyle=dashes[i_p % len(dashes)], markersize=4, label=label)  # fmt: skip
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.ticklabel_format(axis="x", style="plain")
    ax.set_xlabel("backlog built [messages sent, none processed]")
    ax.set_ylabel("resident memory (RSS), or store on disk [MiB]")
    ax.set_title("Where the backlog lives: memory queue vs NATS JetStream vs Kafka")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def _size(n: int) -> str:
    return f"{n // 1024} KiB payload" if n >= 1024 and n % 1024 == 0 else f"{n} B payload"


EXPERIMENT = Experiment(
    name="08_footprint",
    title="Footprint: resident memory against backlog",
    params=Params,
    run=run,
    columns=("backend", "queue_size", "payload_bytes", "sent", "acknowledged", "rejected", "errors", "backlog",
             "processor_rss_mib", "broker_rss_mib", "store_mib", "lost"),
    tables=tables,
    figures=(FigureSpec("footprint", rows_figure(footprint_curve)),),
    claims=footprint_claims.CLAIMS,
)  # fmt: skip
