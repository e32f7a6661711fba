"""Which Kafka client: confluent-kafka (librdkafka) against aiokafka, in one run.

    python -m experiments.bench.kafka_clients [--brokers HOST:PORT] [--messages N] [--rounds R]

Three operations per client, on the settings the backend needs (acks=all,
idempotence): publish one record at a time (each awaited), publish pipelined
(all queued, then all awaited), and consume + commit in batches of 100 from a
fresh consumer group. Each is measured as wall msgs/s and as CPU µs per message
(`time.process_time`: the whole process, librdkafka's and aiokafka's threads
included). Rounds interleave the clients (ABAB..., the order flipped every
round) on fresh topics, so a slow moment of the machine hits both; the table
shows medians with min..max.

With `--brokers` (or `KAFKA_BROKERS`) it uses that broker; otherwise it starts
one through the project's Kafka provider.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from backends.kafka.producer import Publisher

PAYLOAD = b"x" * 128
BATCH = 100
CLIENTS = ("confluent-kafka", "aiokafka")
OPERATIONS = ("publish one at a time", "publish pipelined", "consume + commit, batch 100")

Op = Callable[["Timer", str, str, int], Awaitable[None]]


class Timer:
    """Wall and process CPU time of the measured part only (connecting and closing are left out)."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def start(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


@dataclass
class Figures:
    rates: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)


def _producer_settings(brokers: str) -> dict[str, object]:
    return {
        "bootstrap.servers": brokers,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 1,
        "socket.nagle.disable": True,
        "log_level": 3,
    }


async def confluent_one(timer: Timer, brokers: str, topic: str, n: int) -> None:
    pub = Publisher(_producer_settings(brokers), publish_timeout=30.0)
    await pub.start([topic], 30.0)
    try:
        await pub.send(topic, (PAYLOAD, b"warm-up", []))
        timer.start()
        for i in range(n):
            await pub.send(topic, (PAYLOAD, str(i).encode(), []))
        timer.stop()
    finally:
        await pub.close()


async def confluent_pipelined(timer: Timer, brokers: str, topic: str, n: int) -> None:
    pub = Publisher(_producer_settings(brokers), publish_timeout=60.0)
    await pub.start([topic], 30.0)
    try:
        await pub.send(topic, (PAYLOAD, b"warm-up", []))
        timer.start()
        await pub.send_many(topic, [(PAYLOAD, str(i).encode(), []) for i in range(n)])
        timer.stop()
    finally:
        await pub.close()


async def confluent_consume(timer: Timer, brokers: str, topic: str, n: int) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "group.protocol": "consumer",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "log_level": 3,
        }
    )
    consumer.subscribe([topic])
    got = 0
    try:
        while got < n:
            batch = await asyncio.to_thread(consumer.consume, BATCH, 1.0)
            if not batch:
                continue
            if got == 0:
                timer.start()  # from the first batch: the group join is left out
            got += len(batch)
            last = batch[-1]
            tp = TopicPartition(topic, last.partition() or 0, (last.offset() or 0) + 1)
            consumer.commit(offsets=[tp], asynchronous=True)
        timer.stop()
    finally:
        await asyncio.to_thread(consumer.close)


def _aio_producer(brokers: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=brokers, acks="all", enable_idempotence=True, linger_ms=1)


async def aiokafka_one(timer: Timer, brokers: str, topic: str, n: int) -> None:
    producer = _aio_producer(brokers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, PAYLOAD, key=b"warm-up")
        timer.start()
        for i in range(n):
            await producer.send_and_wait(topic, PAYLOAD, key=str(i).encode())
        timer.stop()
    finally:
        await producer.stop()


async def aiokafka_pipelined(timer: Timer, brokers: str, topic: str, n: int) -> None:
    producer = _aio_producer(brokers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, PAYLOAD, key=b"warm-up")
        timer.start()
        futures = [await producer.send(topic, PAYLOAD, key=str(i).encode()) for i in range(n)]
        await asyncio.gather(*futures)
        timer.stop()
    finally:
        await producer.stop()


async def aiokafka_consume(timer: Timer, brokers: str, topic: str, n: int) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=brokers,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    got = 0
    try:
        while got < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
            if got == 0 and batches:
                timer.start()  # from the first batch: the group join is left out
            for records in batches.values():
                got += len(records)
            if batches:
                await consumer.commit()
        timer.stop()
    finally:
        await consumer.stop()


OPS: dict[str, dict[str, Op]] = {
    "confluent-kafka": {
        OPERATIONS[0]: confluent_one,
        OPERATIONS[1]: confluent_pipelined,
        OPERATIONS[2]: confluent_consume,
    },
    "aiokafka": {OPERATIONS[0]: aiokafka_one, OPERATIONS[1]: aiokafka_pipelined, OPERATIONS[2]: aiokafka_consume},
}


def _new_topic(admin: AdminClient) -> str:
    name = f"bench-{uuid.uuid4().hex[:10]}"
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
    return name


async def _measure(op: Op, brokers: str, topic: str, n: int) -> tuple[float, float]:
    timer = Timer()
    await op(timer, brokers, topic, n)
    return n / timer.wall, timer.cpu / n * 1e6


async def run(brokers: str, n_one: int, n: int, rounds: int) -> dict[tuple[str, str], Figures]:
    admin = AdminClient({"bootstrap.servers": brokers})
    figures = {(c, o): Figures() for c in CLIENTS for o in OPERATIONS}
    for r in range(rounds):
        order = CLIENTS if r % 2 == 0 else CLIENTS[::-1]
        for client in order:
            for operation in OPERATIONS:
                topic = _new_topic(admin)
                count = n_one if operation == OPERATIONS[0] else n
                if operation == OPERATIONS[2]:  # fill the topic first, untimed, with the same tool for both
                    await confluent_pipelined(Timer(), brokers, topic, count)
                rate, cpu = await _measure(OPS[client][operation], brokers, topic, count)
                figures[(client, operation)].rates.append(rate)
                figures[(client, operation)].cpu_us.append(cpu)
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    return figures


def _spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}..{max(values):{fmt}})"


def render(figures: dict[tuple[str, str], Figures]) -> str:
    lines = [f"{'operation':30} {'client':16} {'msgs/s median (min..max)':>30} {'CPU µs/msg median (min..max)':>32}"]
    for operation in OPERATIONS:
        for client in CLIENTS:
            f = figures[(client, operation)]
            lines.append(f"{operation:30} {client:16} {_spread(f.rates, ',.0f'):>30} {_spread(f.cpu_us, '.1f'):>32}")
        a, b = figures[(CLIENTS[0], operation)], figures[(CLIENTS[1], operation)]
        cpu_ratio = [x / y for x, y in zip(a.cpu_us, b.cpu_us, strict=True)]
        rate_ratio = [x / y for x, y in zip(a.rates, b.rates, strict=True)]
        lines.append(f"{'':30} {'ratio c/a':16} {_spread(rate_ratio, '.2f'):>30} {_spread(cpu_ratio, '.2f'):>32}")
    return "\n".join(lines)


def share_group_probe(brokers: str) -> list[str]:
    """What a share group (KIP-932) offers through confluent-kafka, asked of the broker, not assumed.

    The backend's settle verbs need: per-record ACCEPT/RELEASE/REJECT (ack, nak,
    term), RENEW (in_progress), a delayed release (nak(delay)), an ack_wait as
    short as the contract's tests use, and fetching more while some records
    are still being worked on (a worker pool). Each line says what this run found.
    """
    from confluent_kafka import AcknowledgeType, KafkaException, Producer, ShareConsumer
    from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
    from confluent_kafka.admin._resource import ResourceType

    admin = AdminClient({"bootstrap.servers": brokers})
    topic, group = _new_topic(admin), f"share-{uuid.uuid4().hex[:8]}"
    kinds = ", ".join(t.name for t in AcknowledgeType)
    lines = [f"acknowledge types: {kinds} (RENEW: {'RENEW' in AcknowledgeType.__members__})"]

    def alter(name: str, value: str) -> str:
        entry = ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
        resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[entry])
        try:
            admin.incremental_alter_configs([resource])[resource].result(10)
        except KafkaException as exc:
            return f"refused: {exc.args[0].str()}"
        return "accepted"

    lines.append(f"group lock duration 1000 ms (an ack_wait of 1 s): {alter('share.record.lock.duration.ms', '1000')}")
    alter("share.auto.offset.reset", "earliest")
    producer = Producer({"bootstrap.servers": brokers, "log_level": 3})
    for i in range(3):
        producer.produce(topic, PAYLOAD, key=str(i).encode())
    producer.flush(10)
    consumer = ShareConsumer(
        {"bootstrap.servers": brokers, "group.id": group, "share.acknowledgement.mode": "explicit", "log_level": 3}
    )
    try:
        consumer.subscribe([topic])
        started, first = time.monotonic(), list[Any]()
        while not first and time.monotonic() - started < 30:
            first = list(consumer.poll(0.5))
        lines.append(f"first records after {time.monotonic() - started:.1f} s (joining the share group)")
        try:
            consumer.poll(0.2)
            lines.append("poll with records of the previous poll unsettled: allowed")
        except Exception as exc:
            lines.append(f"poll with records of the previous poll unsettled: refused ({exc})")
        consumer.acknowledge(first[0], AcknowledgeType.RELEASE)
        for m in first[1:]:
            consumer.acknowledge(m, AcknowledgeType.ACCEPT)
        consumer.commit_sync()
        started, again = time.monotonic(), list[Any]()
        while not again and time.monotonic() - started < 10:
            again = list(consumer.poll(0.5))
        counts = [(m.offset(), m.delivery_count()) for m in again]
        lines.append(f"after RELEASE of offset {first[0].offset()}: redelivered (offset, delivery count) {counts}")
        for m in again:
            consumer.acknowledge(m, AcknowledgeType.ACCEPT)
        consumer.commit_sync()
    finally:
        consumer.close()
    return lines


@contextlib.contextmanager
def _broker(brokers: str | None) -> Iterator[str]:
    if brokers:
        yield brokers
        return
    from experiments.runtime.kafka.cluster import KafkaCluster

    with KafkaCluster(nodes=1) as broker:
        yield broker.bootstrap_servers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.bench.kafka_clients", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--brokers", default=os.environ.get("KAFKA_BROKERS"), help="bootstrap servers (default: start one)"
    )
    parser.add_argument("--messages", type=int, default=5000, help="records per pipelined/consume measurement")
    parser.add_argument("--one-at-a-time", type=int, default=500, help="records per one-at-a-time measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are shown")
    args = parser.parse_args(argv)
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in CLIENTS)
    with _broker(args.brokers) as brokers:
        figures = asyncio.run(run(brokers, args.one_at_a_time, args.messages, args.rounds))
        probe = share_group_probe(brokers)
    print(f"Kafka clients, acks=all + idempotence, {len(PAYLOAD)} B, {args.rounds} interleaved rounds ({versions})")
    print(render(figures))
    print("\nShare group (KIP-932) through confluent-kafka's ShareConsumer, on this broker:")
    for line in probe:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
