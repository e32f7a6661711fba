"""In-memory queue backend: an asyncio queue with JetStream-like delivery rules.

It keeps the same at-least-once contract as the NATS backend while the process
lives (ack after work, nak and ack_wait redelivery, max_deliver, dedup by id),
so experiments compare the storage, not two different protocols. Everything is
lost when the process ends: that loss is what the durability experiments show.

Capacity counts every stored, unsettled message (waiting or in flight), so a
slow consumer makes `publish` wait up to `publish_timeout` and then raise
`QueueFull` rather than grow without bound or drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass

from backends.contract import (
    AlreadySettled,
    Delivery,
    Message,
    PublishAck,
    QueueFull,
    QueueStats,
)


@dataclass(frozen=True, slots=True)
class MemoryConfig:
    """Tuning of the memory backend; defaults follow the spec and NATS."""

    queue_size: int = 1000
    publish_timeout: float = 1.0
    ack_wait: float = 30.0
    max_deliver: int = 5
    dedup_window: float = 120.0
    dead_letter_size: int = 1000


class _Entry:
    """A stored message and its delivery state."""

    __slots__ = ("deadline", "deliveries", "message", "seq", "settled")

    def __init__(self, message: Message, seq: int) -> None:
        self.message = message
        self.seq = seq
        self.deliveries = 0
        self.settled = False
        self.deadline = 0.0


class MemoryDelivery:
    """A delivery of the memory backend; settles through the backend."""

    __slots__ = ("_backend", "_count", "_done", "_entry")

    def __init__(self, backend: MemoryBackend, entry: _Entry) -> None:
        self._backend = backend
        self._entry = entry
        self._count = entry.deliveries
        self._done = False

    @property
    def message(self) -> Message:
        return self._entry.message

    @property
    def delivery_count(self) -> int:
        return self._count

    def _settle_once(self) -> None:
        if self._done:
            raise AlreadySettled(f"delivery of {self._entry.message.id} already settled")
        self._done = True

    async def ack(self) -> None:
        self._settle_once()
        self._backend._ack(self._entry)

    async def nak(self, delay: float | None = None) -> None:
        self._settle_once()
        self._backend._nak(self._entry, self._count, delay)

    async def term(self) -> None:
        self._settle_once()
        self._backend._term(self._entry)

    async def in_progress(self) -> None:
        if self._done:
            raise AlreadySettled(f"delivery of {self._entry.message.id} already settled")
        self._backend._touch(self._entry, self._count)


class MemoryBackend:
    """`QueueBackend` over an asyncio queue, bounded by `queue_size`."""

    name = "memory"

    def __init__(self, config: MemoryConfig | None = None) -> None:
        self.config = config or MemoryConfig()
        if self.config.queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        self._ready: asyncio.Queue[_Entry] = asyncio.Queue()
        self._in_flight: dict[int, _Entry] = {}
        self._recent_ids: dict[str, tuple[float, int]] = {}
        self._space = asyncio.Event()
        self._seq = 0
        self._size = 0
        self._enqueued = 0
        self._dequeued = 0
        self._acked = 0
        self._naked = 0
        self._termed = 0
        self._redelivered = 0
        self._duplicates = 0
        self._exhausted = 0
        self.dead_letters: deque[Message] = deque(maxlen=self.config.dead_letter_size)
        self._delayed: dict[int, asyncio.TimerHandle] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle -----------------------------------------------------------

    async def connect(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_expired(), name="memory-ack-wait")

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        self._space.set()

    # -- publish -------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("memory backend is closed")

    def _seen(self, message_id: str, now: float) -> tuple[float, int] | None:
        """Look the id up in the dedup window, forgetting ids older than it."""
        recent = self._recent_ids
        horizon = now - self.config.dedup_window
        while recent:
            oldest = next(iter(recent))
            if recent[oldest][0] >= horizon:
                break
            del recent[oldest]
        return recent.get(message_id)

    def _store(self, message: Message, now: float) -> PublishAck:
        seen = self._seen(message.id, now)
        if seen is not None:
            self._duplicates += 1
            return PublishAck(message.id, seen[1], duplicate=True)
        self._seq += 1
        seq = self._seq
        self._recent_ids[message.id] = (now, seq)
        self._ready.put_nowait(_Entry(message, seq))
        self._size += 1
        self._enqueued += 1
        return PublishAck(message.id, seq)

    async def _wait_for_space(self, needed: int) -> None:
        cap = self.config.queue_size
        if needed > cap:
            raise QueueFull(f"batch of {needed} exceeds the queue capacity of {cap} (QUEUE_SIZE)")
        if self._size + needed <= cap:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.publish_timeout
        while self._size + needed > cap:
            self._check_open()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise QueueFull(
                    f"memory queue full: {self._size}/{cap} messages stored (QUEUE_SIZE), "
                    f"no room within {self.config.publish_timeout}s"
                )
            self._space.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._space.wait()
            except TimeoutError:
                continue

    async def publish(self, message: Message) -> PublishAck:
        self._check_open()
        if self._size >= self.config.queue_size:
            await self._wait_for_space(1)
        return self._store(message, time.monotonic())

    async def publish_many(self, messages: list[Message]) -> list[PublishAck]:
        """All or nothing: waits until the whole batch fits, then stores it."""
        self._check_open()
        await self._wait_for_space(len(messages))
        now = time.monotonic()
        return [self._store(m, now) for m in messages]

    # -- consume -------------------------------------------------------------

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        self._check_open()
        if batch < 1:
            raise ValueError("batch must be >= 1")
        ready = self._ready
        entries: list[_Entry] = []
        give_up_at: float | None = None
        while True:
            while len(entries) < batch and not ready.empty():
                entry = ready.get_nowait()
                if not entry.settled:  # acked late, after its redelivery was queued
                    entries.append(entry)
            if entries:
                break
            if give_up_at is None:
                give_up_at = asyncio.get_running_loop().time() + timeout
            try:
                async with asyncio.timeout_at(give_up_at):
                    entry = await ready.get()
            except TimeoutError:
                return []
            if not entry.settled:
                entries.append(entry)
        deadline = time.monotonic() + self.config.ack_wait
        in_flight = self._in_flight
        out: list[Delivery] = []
        for entry in entries:
            entry.deliveries += 1
            if entry.deliveries > 1:
                self._redelivered += 1
            entry.deadline = deadline
            in_flight[entry.seq] = entry
            out.append(MemoryDelivery(self, entry))
        self._dequeued += len(out)
        return out

    # -- settle (called by MemoryDelivery) ------------------------------------

    def _remove(self, entry: _Entry) -> None:
        entry.settled = True
        self._in_flight.pop(entry.seq, None)
        handle = self._delayed.pop(entry.seq, None)
        if handle is not None:
            handle.cancel()
        self._size -= 1
        self._space.set()

    def _ack(self, entry: _Entry) -> None:
        if entry.settled:
            return
        self._acked += 1
        self._remove(entry)

    def _term(self, entry: _Entry) -> None:
        if entry.settled:
            return
        self._termed += 1
        self._remove(entry)

    def _exhaust(self, entry: _Entry) -> None:
        self._exhausted += 1
        self.dead_letters.append(entry.message)
        self._remove(entry)

    def _redeliver(self, entry: _Entry) -> None:
        """Put an in-flight entry back for another delivery, or park it."""
        self._delayed.pop(entry.seq, None)
        if entry.settled or self._closed:
            return
        if entry.deliveries >= self.config.max_deliver:
            self._exhaust(entry)
            return
        self._ready.put_nowait(entry)

    def _nak(self, entry: _Entry, count: int, delay: float | None) -> None:
        if entry.settled or entry.deliveries != count or self._in_flight.pop(entry.seq, None) is None:
            return  # a newer delivery owns the message now
        self._naked += 1
        if delay:
            loop = asyncio.get_running_loop()
            self._delayed[entry.seq] = loop.call_later(delay, self._redeliver, entry)
        else:
            self._redeliver(entry)

    def _touch(self, entry: _Entry, count: int) -> None:
        if entry.settled or entry.deliveries != count or entry.seq not in self._in_flight:
            return
        del self._in_flight[entry.seq]  # re-insert at the end: keeps deadline order
        entry.deadline = time.monotonic() + self.config.ack_wait
        self._in_flight[entry.seq] = entry

    async def _sweep_expired(self) -> None:
        """Redeliver deliveries not settled within ack_wait.

        The in-flight dict is in deadline order (ack_wait is constant and a
        touched entry is re-inserted), so each pass stops at the first live one.
        """
        period = min(max(self.config.ack_wait / 4, 0.01), 1.0)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            in_flight = self._in_flight
            while in_flight:
                seq = next(iter(in_flight))
                entry = in_flight[seq]
                if entry.deadline > now:
                    break
                del in_flight[seq]
                self._redeliver(entry)

    # -- stats ---------------------------------------------------------------

    async def stats(self) -> QueueStats:
        return QueueStats(
            backend=self.name,
            total_enqueued=self._enqueued,
            total_dequeued=self._dequeued,
            current_size=self._size,
            in_flight=len(self._in_flight),
            acked=self._acked,
            naked=self._naked,
            termed=self._termed,
            redelivered=self._redelivered,
            duplicates=self._duplicates,
            exhausted=self._exhausted,
            connected=not self._closed,
        )
