"""The topics the backend needs, and what the cluster says about them (offsets, leaders, ISR).

Topics, metadata and watermarks go through librdkafka's `AdminClient`, whose
calls answer with `concurrent.futures` (awaited with a bound) or block (run in
a thread). The group's committed offsets do not: the admin client's
ListConsumerGroupOffsets crashes the process (SIGSEGV in `rd_kafka_cgrp_op`,
called from `rd_kafka_handle_OffsetFetch` on a client that has no consumer
group) when the coordinator answers with a retriable error, which a fresh or
failing-over broker does (confluent-kafka 2.16.1; seen in 5 of 12 processor
starts on a fresh broker). A consumer handle that carries the group id but
never subscribes asks instead (`Consumer.committed`): it has the group state
that answer needs, and it never joins the group.
The depth of the queue is read from the broker, so it is the same in every
process: records stored (high watermark) minus the group's committed offset.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec
from confluent_kafka.admin._metadata import ClusterMetadata
from confluent_kafka.cimpl import NewTopic

from backends.contract import BackendUnavailable
from backends.kafka.config import KafkaConfig

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Offsets:
    """One topic's partitions: first and next offsets, and the group's committed offsets (None: never)."""

    low: dict[int, int]
    high: dict[int, int]
    committed: dict[int, int | None]

    @property
    def stored(self) -> int:
        return sum(self.high[p] - self.low[p] for p in self.high)


class Topology:
    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._admin = AdminClient(config.admin())
        self._readers: dict[str, Consumer] = {}  # group -> a consumer that only reads its committed offsets
        self._reading = asyncio.Lock()  # one committed() at a time: each holds a thread for up to its timeout

    async def _wait(self, future: Future[T], timeout: float) -> T:
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            raise BackendUnavailable(f"Kafka at {self._config.brokers} did not answer within {timeout}s") from None

    async def ensure(self) -> None:
        """Create the topic and its dead-letter topic unless they exist; bounded by connect_timeout."""
        c = self._config
        topics = [
            NewTopic(c.topic, c.partitions, c.replicas, config=c.topic_configs()),
            NewTopic(c.dlq_topic, 1, c.replicas, config=c.topic_configs()),
        ]
        timeout = c.connect_timeout
        try:
            futures = self._admin.create_topics(topics, request_timeout=timeout, operation_timeout=timeout)
            for future in futures.values():
                try:
                    await self._wait(future, timeout)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise
        except (KafkaException, BackendUnavailable) as exc:
            raise BackendUnavailable(f"cannot connect to Kafka at {c.brokers}: {exc}") from None

    async def metadata(self, timeout: float) -> ClusterMetadata:
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._admin.list_topics, timeout=timeout), timeout + 0.5)
        except (KafkaException, TimeoutError) as exc:
            raise BackendUnavailable(f"Kafka at {self._config.brokers} did not answer: {exc}") from None

    async def offsets(self, topic: str, partitions: list[int], timeout: float, group: str | None) -> Offsets:
        tps = [TopicPartition(topic, p) for p in partitions]
        earliest = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        asks: list[Awaitable[Any]] = [self._list(tps, earliest, timeout), self._list(tps, latest, timeout)]
        if group is not None:
            asks.append(self._committed(group, tps, timeout))
        answers = await asyncio.gather(*asks)
        committed: dict[int, int | None] = answers[2] if group is not None else {}
        return Offsets(low=answers[0], high=answers[1], committed=committed)

    async def _list(self, tps: list[TopicPartition], spec: OffsetSpec, timeout: float) -> dict[int, int]:
        try:
            futures = self._admin.list_offsets({tp: spec for tp in tps}, request_timeout=timeout)
            return {tp.partition: (await self._wait(f, timeout)).offset for tp, f in futures.items()}
        except KafkaException as exc:
            raise BackendUnavailable(f"Kafka did not list offsets: {exc}") from None

    async def _committed(self, group: str, tps: list[TopicPartition], timeout: float) -> dict[int, int | None]:
        reader = self._readers.get(group)
        if reader is None:
            reader = self._readers[group] = Consumer(self._config.offsets_reader(group))
        try:
            async with self._reading:
                answer = await asyncio.wait_for(asyncio.to_thread(reader.committed, tps, timeout), timeout + 0.5)
        except (KafkaException, TimeoutError) as exc:
            raise BackendUnavailable(f"Kafka did not list the group's offsets: {exc}") from None
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in answer}

    def close(self) -> None:
        """Close the offset readers (the admin client has nothing to close)."""
        readers, self._readers = self._readers, {}
        for reader in readers.values():
            reader.close()


def cluster_view(md: ClusterMetadata, topic: str) -> dict[str, object]:
    """Brokers, controller, and each partition's leader, replicas and in-sync replicas."""
    t = md.topics.get(topic)
    partitions = []
    if t is not None:
        for p in sorted(t.partitions.values(), key=lambda p: p.id):
            partitions.append(
                {"partition": p.id, "leader": p.leader, "replicas": list(p.replicas), "isr": list(p.isrs)}
            )
    return {
        "brokers": [
            {"id": b.id, "host": b.host, "port": b.port} for b in sorted(md.brokers.values(), key=lambda b: b.id)
        ],
        "controller": md.controller_id,
        "topic": topic,
        "partitions": partitions,
    }
