"""Kafka's own load tools, ProducerPerformance and ConsumerPerformance (from the cached kafka-tools jar), as Kafka's
anchor beside our backend in the same run, like bare nats-py is for NATS.

Each runs as its own JVM against a broker of `experiments.runtime.kafka` and
its summary line is parsed into figures: the tools print them, nothing is
typed in here. Their log goes to a temporary file, not the console.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from experiments.runtime.kafka.jars import LOG4J_CONFIG, classpath, java_binary

PRODUCER = "org.apache.kafka.tools.ProducerPerformance"
CONSUMER = "org.apache.kafka.tools.ConsumerPerformance"

# "100000 records sent, 25031.3 records/sec (2.39 MB/sec), 8.51 ms avg latency, 180.00 ms max latency,
#  5 ms 50th, 21 ms 95th, 40 ms 99th, 170 ms 99.9th."
_PRODUCER_SUMMARY = re.compile(
    r"(?P<records>\d+) (?P<steady>steady state )?records sent, (?P<rate>[\d.]+) records/sec \((?P<mb>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th, (?P<p999>\d+) ms 99.9th"
)


@dataclass(frozen=True)
class ProducerFigures:
    """ProducerPerformance's final summary line."""

    records: int
    records_per_s: float
    mb_per_s: float
    avg_ms: float
    max_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float


@dataclass(frozen=True)
class ConsumerFigures:
    """ConsumerPerformance's CSV line (start/end times dropped)."""

    records: int
    records_per_s: float
    mb: float
    mb_per_s: float
    rebalance_ms: float
    fetch_ms: float
    fetch_records_per_s: float


class ToolFailed(RuntimeError):
    """A Kafka tool exited non-zero or printed no summary."""


def _run_tool(main: str, args: list[str], timeout: float) -> str:
    with tempfile.TemporaryDirectory(prefix="kafka-tool-") as logs:
        cmd = [
            java_binary(),
            "-Xmx512m",
            "-Djava.net.preferIPv4Stack=true",
            f"-Dkafka.logs.dir={logs}",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            classpath(),
            main,
            *args,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout)
        log = (Path(logs) / "server.log").read_text(errors="replace") if (Path(logs) / "server.log").exists() else ""
    if done.returncode != 0:
        raise ToolFailed(f"{main} exited {done.returncode}:\n{done.stdout[-1500:]}{done.stderr[-1500:]}{log[-1500:]}")
    return done.stdout


def parse_producer(output: str) -> ProducerFigures:
    """The steady-state summary when there were warm-up records, else the last summary line (the tool also
    prints one per reporting interval)."""
    found = list(_PRODUCER_SUMMARY.finditer(output))
    if not found:
        raise ToolFailed(f"no ProducerPerformance summary in:\n{output[-1500:]}")
    steady = [m for m in found if m["steady"]]
    m = steady[-1] if steady else found[-1]
    return ProducerFigures(
        records=int(m["records"]),
        records_per_s=float(m["rate"]),
        mb_per_s=float(m["mb"]),
        avg_ms=float(m["avg"]),
        max_ms=float(m["max"]),
        p50_ms=float(m["p50"]),
        p95_ms=float(m["p95"]),
        p99_ms=float(m["p99"]),
        p999_ms=float(m["p999"]),
    )


def parse_consumer(output: str) -> ConsumerFigures:
    """The values line under the `start.time, end.time, data.consumed.in.MB, ...` header."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    header_at = next((i for i, line in enumerate(lines) if line.startswith("start.time")), None)
    if header_at is None or header_at + 1 >= len(lines):
        raise ToolFailed(f"no ConsumerPerformance figures in:\n{output[-1500:]}")
    names = [n.strip() for n in lines[header_at].split(",")]
    values = dict(zip(names, (v.strip() for v in lines[header_at + 1].split(",")), strict=False))
    return ConsumerFigures(
        records=int(values["data.consumed.in.nMsg"]),
        records_per_s=float(values["nMsg.sec"]),
        mb=float(values["data.consumed.in.MB"]),
        mb_per_s=float(values["MB.sec"]),
        rebalance_ms=float(values["rebalance.time.ms"]),
        fetch_ms=float(values["fetch.time.ms"]),
        fetch_records_per_s=float(values["fetch.nMsg.sec"]),
    )


def producer_performance(
    bootstrap: str,
    topic: str,
    records: int,
    record_size: int = 256,
    *,
    acks: str = "all",
    throughput: int = -1,
    extra_props: dict[str, str] | None = None,
    warmup: int = 0,
    timeout: float = 300.0,
) -> ProducerFigures:
    """Publish `records` of `record_size` bytes as fast as allowed (`throughput` -1: unthrottled), idempotent.

    With `warmup`, that many more records go first and the figures are the tool's steady-state summary
    of the `records` after them: without it a few thousand records measure the JVM's start, its JIT
    and the producer's first metadata fetch (5,000 records: 3,300 records/s over all, 7,800 after 2,000
    warm-up records, on a 2-core machine), while our side is timed on a connected backend.
    """
    props = {"bootstrap.servers": bootstrap, "acks": acks, "enable.idempotence": "true", **(extra_props or {})}
    args = [
        "--topic", topic,
        "--num-records", str(records + warmup),
        "--record-size", str(record_size),
        "--throughput", str(throughput),
        "--producer-props", *(f"{k}={v}" for k, v in props.items()),
        *(("--warmup-records", str(warmup)) if warmup else ()),
    ]  # fmt: skip
    return parse_producer(_run_tool(PRODUCER, args, timeout))


def consumer_performance(
    bootstrap: str, topic: str, records: int, *, group: str | None = None, timeout: float = 300.0
) -> ConsumerFigures:
    """Consume `records` from the start of `topic` with a fresh consumer group (or `group`)."""
    args = [
        "--bootstrap-server", bootstrap,
        "--topic", topic,
        "--messages", str(records),
        "--group", group or f"perf-{uuid.uuid4().hex[:8]}",
        "--timeout", str(int(timeout * 1000)),
    ]  # fmt: skip
    return parse_consumer(_run_tool(CONSUMER, args, timeout + 30))
