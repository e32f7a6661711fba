"""Consumption through a classic consumer group, with JetStream's settle verbs done in the client.

Why not a share group (KIP-932), which has them on the broker: measured with
confluent-kafka 2.16.1 against Kafka 4.4 (README, "Kafka: share group or
consumer group"), its `ShareConsumer` has ACCEPT / RELEASE / REJECT but no
RENEW (no `in_progress`), no delayed RELEASE (no `nak(delay)`), refuses a
`poll()` while any record of the previous poll is unsettled (one slow message
would stop the whole worker pool), and the broker bounds the lock duration to
15..60 s, so `ack_wait` cannot be shorter. A classic group with the
contiguous-prefix commit keeps the whole contract, at a price the README's
table states: a partition is consumed by one process at a time, and the
delivery count starts again at 1 after a consumer restart.

One thread (`_pump`) owns librdkafka's consumer: it polls, hands records to the
event loop in one call per poll, commits what the loop marked committable and
pauses the partitions while `prefetch` records wait unfetched. Everything else
(deliveries, ack_wait timers, redelivery, max_deliver) runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka import Message as KafkaMessage

from backends.contract import AlreadySettled, BackendUnavailable, Delivery, Message
from backends.kafka.config import KafkaConfig
from backends.kafka.settlement import PartitionLedger


class Record:
    """One stored record this consumer holds until it is settled (acked, termed, dead-lettered)."""

    __slots__ = ("count", "current", "done", "epoch", "message", "offset", "partition", "stored_at")

    def __init__(self, partition: int, offset: int, epoch: int, message: Message, stored_at: int) -> None:
        self.partition = partition
        self.offset = offset
        self.epoch = epoch
        self.message = message
        self.stored_at = stored_at
        self.count = 0
        self.done = False
        self.current: KafkaDelivery | None = None


class KafkaDelivery:
    """One delivery of a record; settled at most once, like a JetStream message."""

    __slots__ = ("_consumer", "_count", "_record", "deadline", "live", "settled")

    def __init__(self, consumer: GroupConsumer, record: Record, deadline: float) -> None:
        self._consumer = consumer
        self._record = record
        self._count = record.count
        self.deadline = deadline
        self.live = True  # in flight: neither settled nor past ack_wait
        self.settled = False

    @property
    def message(self) -> Message:
        return self._record.message

    @property
    def delivery_count(self) -> int:
        return self._count

    @property
    def stored_at(self) -> int:
        return self._record.stored_at

    @property
    def record(self) -> Record:
        return self._record

    def claim(self) -> None:
        """Mark settled; AlreadySettled on the second call."""
        if self.settled:
            raise AlreadySettled(f"delivery of {self._record.message.id} already settled")
        self.settled = True
        self._consumer.end_flight(self)

    async def ack(self) -> None:
        self.claim()
        if self._consumer.complete(self._record):
            self._consumer.acked += 1

    async def nak(self, delay: float | None = None) -> None:
        self.claim()
        self._consumer.naked += 1
        await self._consumer.retry(self, delay)

    async def term(self) -> None:
        self.claim()
        if self._consumer.complete(self._record):
            self._consumer.termed += 1

    async def in_progress(self) -> None:
        if self.settled:
            raise AlreadySettled(f"delivery of {self._record.message.id} already settled")
        self._consumer.extend(self)


DeadLetter = Callable[[Record, str], Awaitable[None]]


class GroupConsumer:
    """A member of the consumer group, with per-record settlement and the prefix commit."""

    def __init__(self, config: KafkaConfig, dead_letter: DeadLetter) -> None:
        self._config = config
        self._dead_letter = dead_letter
        self._loop = asyncio.get_running_loop()
        self._consumer = Consumer(config.consumer())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._commit_lock = threading.Lock()
        self._to_commit: dict[int, int] = {}
        self._ledgers: dict[int, PartitionLedger] = {}
        self._epochs: dict[int, int] = {}
        self._ready: deque[Record] = deque()  # arrived, never delivered, offset order
        self._again: deque[Record] = deque()  # due for redelivery
        self._deadlines: list[tuple[float, int, KafkaDelivery]] = []
        self._delayed: list[tuple[float, int, Record]] = []
        self._tiebreak = itertools.count()
        self._wake = asyncio.Event()
        self.buffered = 0  # in _ready: read by the pump thread for flow control
        self.dequeued = self.acked = self.naked = self.termed = self.redelivered = self.exhausted = 0
        self.in_flight = 0
        self.unreadable = 0
        self.joined = False  # the group gave this member its first assignment (an empty one counts)
        self.owned: set[int] = set()

    # -- the pump thread ------------------------------------------------------

    def start(self) -> None:
        self._consumer.subscribe([self._config.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._thread = threading.Thread(target=self._pump, name="kafka-consumer", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        paused = False
        try:
            while not self._stop.is_set():
                self._commit(asynchronous=True)
                if not paused and self.buffered >= self._config.prefetch:
                    self._consumer.pause(self._consumer.assignment())
                    paused = True
                elif paused and self.buffered < self._config.prefetch // 2:
                    self._consumer.resume(self._consumer.assignment())
                    paused = False
                first = self._consumer.poll(0.1)
                if first is None:
                    continue
                batch = [first, *self._consumer.consume(self._config.prefetch, 0)]
                records = [m for m in batch if m.error() is None]
                if records and not self._loop.is_closed():
                    self._loop.call_soon_threadsafe(self._arrive, records)
        finally:
            self._commit(asynchronous=False)
            self._consumer.close()

    def _commit(self, asynchronous: bool) -> None:
        with self._commit_lock:
            offsets, self._to_commit = self._to_commit, {}
        if offsets:
            topic = self._config.topic
            tps = [TopicPartition(topic, p, o) for p, o in offsets.items()]
            with contextlib.suppress(Exception):  # a failed commit only means a redelivery later
                if asynchronous:
                    self._consumer.commit(offsets=tps, asynchronous=True)
                else:
                    self._consumer.commit(offsets=tps, asynchronous=False)

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._loop.call_soon_threadsafe(self._assigned, [tp.partition for tp in partitions])

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._commit(asynchronous=False)
        self._loop.call_soon_threadsafe(self._revoked, [tp.partition for tp in partitions])

    # -- the event loop side ----------------------------------------------------

    def _assigned(self, partitions: list[int]) -> None:
        self.joined = True
        self.owned.update(partitions)
        for p in partitions:
            self._epochs[p] = self._epochs.get(p, 0) + 1
            self._ledgers.pop(p, None)

    def _revoked(self, partitions: list[int]) -> None:
        """Another member owns these now: what we hold of them is its to deliver (at-least-once)."""
        self.owned.difference_update(partitions)
        for p in partitions:
            self._epochs[p] = self._epochs.get(p, 0) + 1
            self._ledgers.pop(p, None)
        self.buffered = sum(1 for r in self._ready if self._current(r))

    def _current(self, record: Record) -> bool:
        return not record.done and self._epochs.get(record.partition) == record.epoch

    def _arrive(self, batch: list[KafkaMessage]) -> None:
        for m in batch:
            p, offset = m.partition() or 0, m.offset() or 0
            ledger = self._ledgers.get(p)
            if ledger is None:
                ledger = self._ledgers[p] = PartitionLedger(offset)
                self._epochs.setdefault(p, 1)
            ledger.received(offset)
            try:
                message = Message.from_json(m.value() or b"")
            except ValueError:
                self.unreadable += 1
                self.termed += 1
                self._settled(p, offset)
                continue
            _, ts = m.timestamp()
            self._ready.append(Record(p, offset, self._epochs[p], message, ts * 1_000_000))
            self.buffered += 1
        self._wake.set()

    def _settled(self, partition: int, offset: int) -> None:
        ledger = self._ledgers.get(partition)
        if ledger is not None and ledger.settle(offset):
            with self._commit_lock:
                self._to_commit[partition] = ledger.commit_offset

    def complete(self, record: Record) -> bool:
        """The record is done for good; true when this call completed it (not an earlier one)."""
        if record.done:
            return False
        record.done = True
        if self._epochs.get(record.partition) == record.epoch:
            self._settled(record.partition, record.offset)
        return True

    def end_flight(self, delivery: KafkaDelivery) -> None:
        if delivery.live:
            delivery.live = False
            self.in_flight -= 1

    def extend(self, delivery: KafkaDelivery) -> None:
        if delivery.live:
            delivery.deadline = self._loop.time() + self._config.ack_wait
            heapq.heappush(self._deadlines, (delivery.deadline, next(self._tiebreak), delivery))

    async def retry(self, delivery: KafkaDelivery, delay: float | None) -> None:
        """Deliver the record again (after `delay`), or park it once max_deliver deliveries failed."""
        record = delivery.record
        if record.done or record.current is not delivery:
            return  # completed meanwhile, or a newer delivery already holds it
        record.current = None
        if record.count >= self._config.max_deliver:
            await self._exhaust(record)
        elif delay:
            heapq.heappush(self._delayed, (self._loop.time() + delay, next(self._tiebreak), record))
        else:
            self._again.append(record)
            self._wake.set()

    async def _exhaust(self, record: Record) -> None:
        await self._dead_letter(record, f"max_deliver ({self._config.max_deliver}) exhausted")
        if self.complete(record):
            self.exhausted += 1

    async def _expire(self) -> None:
        """Deliveries past ack_wait end; their records are due again (or exhausted)."""
        now = self._loop.time()
        while self._deadlines and self._deadlines[0][0] <= now:
            due, _, d = heapq.heappop(self._deadlines)
            if not d.live or d.deadline != due:
                continue  # settled, or extended by in_progress
            self.end_flight(d)
            await self.retry(d, None)
        while self._delayed and self._delayed[0][0] <= now:
            _, _, record = heapq.heappop(self._delayed)
            if self._current(record):
                self._again.append(record)

    def _next_due(self) -> float | None:
        dues = [h[0][0] for h in (self._deadlines, self._delayed) if h]
        return min(dues) if dues else None

    def _take(self, batch: int) -> list[Delivery]:
        out: list[Delivery] = []
        now = self._loop.time()
        deadline = now + self._config.ack_wait
        while len(out) < batch:
            if self._again:
                record = self._again.popleft()
            elif self._ready:
                record = self._ready.popleft()
                self.buffered -= 1
            else:
                break
            if not self._current(record):
                continue
            record.count += 1
            d = KafkaDelivery(self, record, deadline)
            record.current = d
            heapq.heappush(self._deadlines, (deadline, next(self._tiebreak), d))
            if record.count > 1:
                self.redelivered += 1
            out.append(d)
        self.dequeued += len(out)
        self.in_flight += len(out)
        return out

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        if self._thread is None or not self._thread.is_alive():
            raise BackendUnavailable("the Kafka consumer is closed")
        end = self._loop.time() + timeout
        while True:
            await self._expire()
            out = self._take(batch)
            if out:
                return out
            now = self._loop.time()
            if now >= end:
                return []
            due = self._next_due()
            wait = min(end, due) - now if due is not None else end - now
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(wait, 0.001))

    def ack_many(self, deliveries: Sequence[KafkaDelivery]) -> None:
        for d in deliveries:
            if d.settled:
                raise AlreadySettled(f"delivery of {d.message.id} already settled")
        for d in deliveries:
            d.claim()
            if self.complete(d.record):
                self.acked += 1

    def depth_here(self) -> dict[int, tuple[int, int]]:
        """Per owned partition: (the offset committable now, settled records after it)."""
        return {p: (ledger.commit_offset, ledger.settled_ahead) for p, ledger in self._ledgers.items()}

    async def close(self) -> None:
        """Commit the settled prefix, leave the group: unsettled records go to the next member at once."""
        if self._thread is None:
            return
        self._stop.set()
        thread, self._thread = self._thread, None
        await asyncio.to_thread(thread.join)
