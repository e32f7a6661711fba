"""Publishing through librdkafka's producer, awaited from asyncio.

confluent-kafka's `Producer` is synchronous: `produce()` only queues a record,
and the broker's answer arrives as a delivery report when someone calls
`poll()`. One thread (`_serve`) polls and hands the reports to the event loop
in one `call_soon_threadsafe` per poll, not one per message, so a pipelined
batch costs one loop wake-up per broker answer, not per record.

A publish returns only when the report says stored (acks=all), raises
`QueueFull` when librdkafka's own queue is full, and `BackendUnavailable` when
the broker did not confirm within the publish timeout (the record is then
failed by librdkafka too: `message.timeout.ms`, never sent later).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka import Message as KafkaMessage

from backends.contract import BackendUnavailable, QueueFull

Record = tuple[bytes, bytes, list[tuple[str, str | bytes | None]]]  # value, key, headers
Stored = tuple[int, int, int]  # partition, offset, broker timestamp (ms)


class Publisher:
    """One idempotent producer and the thread that collects its delivery reports."""

    def __init__(self, settings: dict[str, Any], publish_timeout: float) -> None:
        self._producer = Producer(settings)
        self._timeout = publish_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reports: list[tuple[asyncio.Future[Stored], KafkaError | None, KafkaMessage]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    async def start(self, topics: Sequence[str], timeout: float) -> None:
        """Start the report thread, then wait until every partition of `topics` has a leader.

        A topic just created is known to the controller before its leader is
        known to the producer; without this wait the first publish would spend
        its timeout on metadata refreshes.
        """
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._serve, name="kafka-producer-reports", daemon=True)
        self._thread.start()
        end = self._loop.time() + timeout
        for topic in topics:
            while not await asyncio.to_thread(self._led, topic, max(0.1, end - self._loop.time())):
                if self._loop.time() >= end:
                    raise BackendUnavailable(f"no leader for every partition of {topic} within {timeout}s")
                await asyncio.sleep(0.05)

    def _led(self, topic: str, timeout: float) -> bool:
        try:
            t = self._producer.list_topics(topic, timeout=timeout).topics.get(topic)
        except KafkaException:
            return False
        return (
            t is not None
            and t.error is None
            and bool(t.partitions)
            and all(p.leader >= 0 for p in t.partitions.values())
        )

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)
            self._hand_over()

    def _hand_over(self) -> None:
        reports, self._reports = self._reports, []
        if reports and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(_resolve, reports)

    def _report(self, future: asyncio.Future[Stored], err: KafkaError | None, msg: KafkaMessage) -> None:
        self._reports.append((future, err, msg))  # runs on the poll thread, inside poll()

    def _queue(self, topic: str, record: Record) -> asyncio.Future[Stored]:
        assert self._loop is not None, "publisher not started"
        future: asyncio.Future[Stored] = self._loop.create_future()
        value, key, headers = record
        try:
            self._producer.produce(
                topic, value=value, key=key, headers=headers, on_delivery=lambda e, m: self._report(future, e, m)
            )
        except BufferError as exc:
            raise QueueFull(f"the Kafka producer's local queue is full ({exc})") from None
        except KafkaException as exc:
            raise BackendUnavailable(f"Kafka refused the record: {exc}") from None
        return future

    async def send(self, topic: str, record: Record) -> Stored:
        """Store one record; returns (partition, offset, timestamp) once acks=all confirmed it."""
        return await self._bounded(self._queue(topic, record))

    async def send_many(self, topic: str, records: Sequence[Record]) -> list[Stored]:
        """Queue all, then wait for every report: pipelined, in order, one error fails the call."""
        futures: list[asyncio.Future[Stored]] = []
        try:
            for record in records:
                futures.append(self._queue(topic, record))
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        if not futures:
            return []
        gathered = asyncio.gather(*futures)
        try:
            return list(await asyncio.wait_for(gathered, self._timeout))
        except TimeoutError:
            raise BackendUnavailable(f"Kafka did not confirm the batch within {self._timeout}s") from None

    async def _bounded(self, future: asyncio.Future[Stored]) -> Stored:
        try:
            return await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            raise BackendUnavailable(f"Kafka did not confirm the record within {self._timeout}s") from None

    async def close(self) -> None:
        """Stop the report thread; what is still queued is flushed for at most the publish timeout."""
        if self._thread is None:
            return
        self._stop.set()
        thread, self._thread = self._thread, None
        await asyncio.to_thread(thread.join)
        await asyncio.to_thread(self._producer.flush, self._timeout)
        self._producer.poll(0)
        self._hand_over()


def _resolve(reports: list[tuple[asyncio.Future[Stored], KafkaError | None, KafkaMessage]]) -> None:
    for future, err, msg in reports:
        if future.done():
            continue  # the caller gave up (timeout) and was told so
        if err is not None:
            future.set_exception(_error(err))
        else:
            _, ts = msg.timestamp()
            future.set_result((msg.partition() or 0, msg.offset() or 0, ts))


def _error(err: KafkaError) -> Exception:
    if err.code() == KafkaError._QUEUE_FULL:
        return QueueFull(f"Kafka: {err.str()}")
    return BackendUnavailable(f"Kafka did not store the record: {err.str()}")
