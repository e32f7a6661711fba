"""`KafkaBackend`: the `QueueBackend` contract on an Apache Kafka topic.

Publishing: idempotent producer, acks=all, the message id as key and as a
header; `publish` returns once every in-sync replica stored the record.
Consuming: a consumer group (`consumer.GroupConsumer`), created on the first
`fetch`, so a process that only publishes (a bench, a migration's source) never
joins the group and never takes a partition from the processor. Until the group
gave it an assignment, `stats().joined` is false and a processor is not ready.
Depth: read from the broker (stored minus the group's committed offset), less
what this process settled past its first unsettled record; the same figure in
every process.

Where it differs from JetStream (stated once, as capabilities, in the contract
suite): a republished id is stored again (the idempotent producer removes only
its own retries within one producer session; the ledger records each id once),
and the delivery count starts again at 1 when a partition changes consumer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from backends.contract import (
    BackendUnavailable,
    Delivery,
    Message,
    PublishAck,
    QueueStats,
)
from backends.kafka.config import ID_HEADER, REASON_HEADER, KafkaConfig
from backends.kafka.consumer import GroupConsumer, KafkaDelivery, Record
from backends.kafka.producer import Publisher
from backends.kafka.producer import Record as Outgoing
from backends.kafka.topology import Offsets, Topology, cluster_view

STATS_TIMEOUT = 2.0


def _record(message: Message) -> Outgoing:
    key = message.id.encode()
    return message.to_json(), key, [(ID_HEADER, key)]


class KafkaBackend:
    name = "kafka"

    def __init__(self, config: KafkaConfig | None = None) -> None:
        self.config = config or KafkaConfig()
        self._topology: Topology | None = None
        self._publisher: Publisher | None = None
        self._consumer: GroupConsumer | None = None
        self._closed = False
        self._enqueued = 0
        self._last_depth = 0
        self._last_dead = 0

    async def connect(self) -> None:
        self._topology = Topology(self.config)
        await self._topology.ensure()
        publisher = Publisher(self.config.producer(), self.config.publish_timeout)
        try:
            await publisher.start([self.config.topic, self.config.dlq_topic], self.config.connect_timeout)
        except BackendUnavailable:
            await publisher.close()
            raise
        self._publisher = publisher

    def _open(self) -> Publisher:
        if self._closed or self._publisher is None:
            raise BackendUnavailable("the Kafka backend is not connected")
        return self._publisher

    async def publish(self, message: Message) -> PublishAck:
        _, offset, _ = await self._open().send(self.config.topic, _record(message))
        self._enqueued += 1
        return PublishAck(message.id, offset)

    async def publish_many(self, messages: list[Message]) -> list[PublishAck]:
        stored = await self._open().send_many(self.config.topic, [_record(m) for m in messages])
        self._enqueued += len(stored)
        return [PublishAck(m.id, offset) for m, (_, offset, _) in zip(messages, stored, strict=True)]

    def _consuming(self) -> GroupConsumer:
        self._open()
        if self._consumer is None:
            self._consumer = GroupConsumer(self.config, self._park)
            self._consumer.start()
        return self._consumer

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        return await self._consuming().fetch(batch, timeout)

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        ours = [d for d in deliveries if isinstance(d, KafkaDelivery)]
        if len(ours) != len(deliveries):
            raise TypeError("not deliveries of this backend")
        self._consuming().ack_many(ours)

    async def _park(self, record: Record, reason: str) -> None:
        """Store a record in the dead-letter topic (acks=all) before it is settled."""
        key = record.message.id.encode()
        headers: list[tuple[str, str | bytes | None]] = [(ID_HEADER, key), (REASON_HEADER, reason.encode())]
        await self._open().send(self.config.dlq_topic, (record.message.to_json(), key, headers))

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        if not isinstance(delivery, KafkaDelivery):
            raise TypeError("not a delivery of this backend")
        if delivery.settled:
            delivery.claim()  # raises AlreadySettled
        await self._park(delivery.record, reason)
        delivery.claim()
        self._consuming().complete(delivery.record)

    async def stats(self) -> QueueStats:
        cluster: dict[str, object] | None = None
        connected = not self._closed and self._topology is not None
        if connected:
            try:
                self._last_depth, self._last_dead, cluster = await self._read_broker()
            except BackendUnavailable:
                connected = False
        c = self._consumer
        return QueueStats(
            backend=self.name,
            total_enqueued=self._enqueued,
            total_dequeued=c.dequeued if c else 0,
            current_size=self._last_depth,
            in_flight=c.in_flight if c else 0,
            acked=c.acked if c else 0,
            naked=c.naked if c else 0,
            termed=c.termed if c else 0,
            redelivered=c.redelivered if c else 0,
            duplicates=0,
            exhausted=c.exhausted if c else 0,
            dead_lettered=self._last_dead,
            connected=connected,
            cluster=cluster,
            joined=c.joined if c else False,
        )

    async def _read_broker(self) -> tuple[int, int, dict[str, object]]:
        assert self._topology is not None
        md = await self._topology.metadata(STATS_TIMEOUT)
        view = cluster_view(md, self.config.topic)
        if self._consumer is not None:
            view["consumer"] = {"joined": self._consumer.joined, "partitions": sorted(self._consumer.owned)}
        topic = md.topics.get(self.config.topic)
        dlq = md.topics.get(self.config.dlq_topic)
        if topic is None or topic.error is not None or dlq is None:
            raise BackendUnavailable(f"topic {self.config.topic} is not in the cluster's metadata")
        main, dead = await asyncio.gather(
            self._topology.offsets(self.config.topic, list(topic.partitions), STATS_TIMEOUT, self.config.group),
            self._topology.offsets(self.config.dlq_topic, list(dlq.partitions), STATS_TIMEOUT, None),
        )
        return self._depth(main), dead.stored, view

    def _depth(self, offsets: Offsets) -> int:
        """Stored and not yet settled: past the committed offset, less what this process settled beyond it."""
        here = self._consumer.depth_here() if self._consumer else {}
        depth = 0
        for p, high in offsets.high.items():
            base = offsets.committed.get(p)
            base = offsets.low[p] if base is None else max(base, offsets.low[p])
            settled_ahead = 0
            if p in here:
                local, settled_ahead = here[p]
                base = max(base, local)
            depth += max(0, high - base - settled_ahead)
        return depth

    async def close(self) -> None:
        self._closed = True
        if self._consumer is not None:
            await self._consumer.close()  # kept: stats() after close still shows its counters
        if self._publisher is not None:
            publisher, self._publisher = self._publisher, None
            await publisher.close()
        if self._topology is not None:
            await asyncio.to_thread(self._topology.close)
