"""In-memory queue backend: a deque with JetStream-like delivery rules.

It keeps the same at-least-once contract as the NATS backend while the process
lives (ack after work, nak and ack_wait redelivery, max_deliver, dedup by id),
so experiments compare the storage, not two different protocols. Everything is
lost when the process ends: that loss is what the durability experiments show.

Capacity counts every stored, unsettled message (waiting or in flight), so a
slow consumer makes `publish` wait up to `publish_timeout` and then raise
`QueueFull` rather than grow without bound or drop.

The publish and fetch/ack paths are kept lean on purpose: the benchmark holds
them to at least half the speed of a bare `asyncio.Queue`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from backends.contract import (
    AlreadySettled,
    Delivery,
    Message,
    PublishAck,
    QueueFull,
    QueueStats,
)
from backends.settings import BackendSettings, default_of

# PublishAck's own __new__ is a Python-level wrapper; on the publish hot path
# the tuple is built directly (same object, half the cost).
_new_ack = tuple.__new__


@dataclass(frozen=True, slots=True)
class MemoryConfig:
    """Tuning of the memory backend; the queue defaults are `BackendSettings`' own.

    Dedup remembers ids for `dedup_window` seconds or the last
    `dedup_max_ids` ids, whichever is shorter, so memory stays bounded.
    """

    queue_size: int = default_of(BackendSettings, "queue_size")
    publish_timeout: float = default_of(BackendSettings, "publish_timeout")
    ack_wait: float = default_of(BackendSettings, "ack_wait")
    max_deliver: int = default_of(BackendSettings, "max_deliver")
    dedup_window: float = default_of(BackendSettings, "dedup_window")
    dedup_max_ids: int = 500_000
    dead_letter_size: int = 1000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message parked for good, and why."""

    message: Message
    reason: str
    deliveries: int


class MemoryDelivery:
    """One delivery of a message; it is also the backend's record of it.

    A message that was never delivered sits bare in the fresh deque (nothing
    allocated on publish); one object per delivery holds its state after.
    `_void` marks a delivery whose message was completed through another one
    (a late ack after ack_wait), so it is skipped or its settling is a no-op.
    """

    __slots__ = ("_backend", "_count", "_deadline", "_done", "_message", "_seq", "_stored_at", "_void")

    def __init__(
        self, backend: MemoryBackend, message: Message, seq: int, count: int, deadline: float, stored_at: int
    ) -> None:
        self._backend = backend
        self._message = message
        self._seq = seq
        self._count = count
        self._deadline = deadline
        self._stored_at = stored_at
        self._done = False
        self._void = False

    @property
    def message(self) -> Message:
        return self._message

    @property
    def delivery_count(self) -> int:
        return self._count

    @property
    def stored_at(self) -> int:
        return self._stored_at

    def _settle_once(self) -> None:
        if self._done:
            raise AlreadySettled(f"delivery of {self._message.id} already settled")
        self._done = True

    async def ack(self) -> None:
        if self._done:
            raise AlreadySettled(f"delivery of {self._message.id} already settled")
        self._done = True
        backend = self._backend
        in_flight = backend._in_flight
        if in_flight.get(self._seq) is self:  # the hot path, inlined
            del in_flight[self._seq]
            backend._acked += 1
            backend._size -= 1
            if backend._publishers_waiting:
                backend._space.set()
        elif backend._complete_stale(self):
            backend._acked += 1

    async def nak(self, delay: float | None = None) -> None:
        self._settle_once()
        self._backend._nak(self, delay)

    async def term(self) -> None:
        self._settle_once()
        backend = self._backend
        if backend._in_flight.get(self._seq) is self:
            del backend._in_flight[self._seq]
            backend._termed += 1
            backend._dropped()
        elif backend._complete_stale(self):
            backend._termed += 1

    async def in_progress(self) -> None:
        if self._done:
            raise AlreadySettled(f"delivery of {self._message.id} already settled")
        self._backend._touch(self)


class MemoryBackend:
    """`QueueBackend` in process memory, bounded by `queue_size`."""

    name = "memory"

    def __init__(self, config: MemoryConfig | None = None) -> None:
        self.config = config or MemoryConfig()
        if self.config.queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        self._capacity = self.config.queue_size
        self._max_ids = self.config.dedup_max_ids
        self._fresh: deque[Message] = deque()  # never delivered; seqs _fresh_seq, _fresh_seq + 1, ...
        self._fresh_seq = 1
        self._fresh_at: deque[int] = deque()  # time_ns() each of _fresh was stored (ints: no object per message)
        self._retry: deque[MemoryDelivery] = deque()  # last deliveries of messages due again
        self._queued: dict[int, MemoryDelivery] = {}  # seq -> its entry in _retry
        self._in_flight: dict[int, MemoryDelivery] = {}  # seq -> current delivery, in deadline order
        self._delayed: dict[int, asyncio.TimerHandle] = {}  # seq -> pending nak(delay) redelivery
        self._recent_ids: dict[str, int] = {}  # id -> seq, oldest first
        self._seq_marks: deque[tuple[float, int]] = deque()  # (time, last seq then), one per sweep
        self._dedup_floor = 0  # ids with seq <= this are older than the dedup window
        self._nonempty = asyncio.Event()
        self._fetchers_waiting = 0
        self._space = asyncio.Event()
        self._publishers_waiting = 0
        self._seq = 0  # also the count of stored (non-duplicate) messages
        self._size = 0
        self._dequeued = 0
        self._acked = 0
        self._naked = 0
        self._termed = 0
        self._redelivered = 0
        self._duplicates = 0
        self._exhausted = 0
        self._dead_lettered = 0
        # The dead-letter place: bounded, the newest kept.
        self.dead_letters: deque[DeadLetter] = deque(maxlen=self.config.dead_letter_size)
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle -----------------------------------------------------------

    async def connect(self) -> None:
        self._closed = False
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="memory-backend-sweeper")

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
        self._nonempty.set()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("memory backend is closed")

    # -- publish -------------------------------------------------------------

    def _store(self, message: Message) -> PublishAck:
        recent = self._recent_ids
        seen = recent.get(message.id)
        if seen is not None and seen > self._dedup_floor:
            self._duplicates += 1
            return PublishAck(message.id, seen, True)
        self._seq = seq = self._seq + 1
        recent[message.id] = seq
        if len(recent) > self._max_ids:
            del recent[next(iter(recent))]
        self._fresh.append(message)
        self._fresh_at.append(time.time_ns())
        self._size += 1
        if self._fetchers_waiting:
            self._nonempty.set()
        return _new_ack(PublishAck, (message.id, seq, False))

    async def _wait_for_space(self, needed: int) -> None:
        cap = self.config.queue_size
        if needed > cap:
            raise QueueFull(f"batch of {needed} exceeds the queue capacity of {cap} (QUEUE_SIZE)")
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.config.publish_timeout
        while self._size + needed > cap:
            self._check_open()
            self._space.clear()
            self._publishers_waiting += 1
            try:
                async with asyncio.timeout_at(give_up_at):
                    await self._space.wait()
            except TimeoutError:
                raise QueueFull(
                    f"memory queue full: {self._size}/{cap} messages stored (QUEUE_SIZE), "
                    f"no room within {self.config.publish_timeout}s"
                ) from None
            finally:
                self._publishers_waiting -= 1

    async def publish(self, message: Message) -> PublishAck:
        if self._closed:
            raise RuntimeError("memory backend is closed")
        if self._size >= self._capacity:
            await self._wait_for_space(1)
        return self._store(message)

    async def publish_many(self, messages: list[Message]) -> list[PublishAck]:
        """All or nothing: waits until the whole batch fits, then stores it."""
        self._check_open()
        if self._size + len(messages) > self.config.queue_size:
            await self._wait_for_space(len(messages))
        return [self._store(m) for m in messages]

    # -- consume -------------------------------------------------------------

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        self._check_open()
        if batch < 1:
            raise ValueError("batch must be >= 1")
        if not self._retry and not self._fresh:
            await self._wait_nonempty(timeout)
        deadline = time.monotonic() + self.config.ack_wait
        in_flight = self._in_flight
        out: list[Delivery] = []
        retry = self._retry
        while retry and len(out) < batch:
            last = retry.popleft()
            if last._void:  # completed by a late ack while queued
                continue
            del self._queued[last._seq]
            d = MemoryDelivery(self, last._message, last._seq, last._count + 1, deadline, last._stored_at)
            in_flight[last._seq] = d
            out.append(d)
        self._redelivered += len(out)
        fresh = self._fresh
        take = min(batch - len(out), len(fresh))
        if take > 0:
            first = self._fresh_seq
            self._fresh_seq = first + take
            popleft, stored_at = fresh.popleft, self._fresh_at.popleft
            for seq in range(first, first + take):
                d = MemoryDelivery(self, popleft(), seq, 1, deadline, stored_at())
                in_flight[seq] = d
                out.append(d)
        self._dequeued += len(out)
        return out

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:
            await d.ack()

    async def _wait_nonempty(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + timeout
        while not self._retry and not self._fresh and not self._closed:
            self._nonempty.clear()
            self._fetchers_waiting += 1
            try:
                async with asyncio.timeout_at(give_up_at):
                    await self._nonempty.wait()
            except TimeoutError:
                return
            finally:
                self._fetchers_waiting -= 1

    # -- settle (called by MemoryDelivery) ------------------------------------

    def _dropped(self) -> None:
        """One stored message is gone for good: free its place."""
        self._size -= 1
        if self._publishers_waiting:
            self._space.set()

    def _complete_stale(self, d: MemoryDelivery) -> bool:
        """Ack/term by a delivery that is no longer current (it outlived ack_wait).

        Like JetStream, a late ack still completes the message: whichever
        delivery holds it now is voided. False if it was already completed.
        """
        if d._void:
            return False
        seq = d._seq
        current = self._in_flight.pop(seq, None)
        queued = self._queued.pop(seq, None)
        delayed = self._delayed.pop(seq, None)
        if current is None and queued is None and delayed is None:
            return False  # exhausted or completed before
        for holder in (current, queued):
            if holder is not None:
                holder._void = True
        if delayed is not None:
            delayed.cancel()
        self._dropped()
        return True

    def _redeliver(self, d: MemoryDelivery) -> None:
        """Queue the message of a delivery that ended unacked, or park it as exhausted."""
        if self._closed:
            return
        if d._count >= self.config.max_deliver:
            self._exhausted += 1
            self._dead_lettered += 1
            self.dead_letters.append(DeadLetter(d._message, "max_deliver exhausted", d._count))
            self._dropped()
            return
        self._retry.append(d)
        self._queued[d._seq] = d
        if self._fetchers_waiting:
            self._nonempty.set()

    def _redeliver_delayed(self, d: MemoryDelivery) -> None:
        del self._delayed[d._seq]
        self._redeliver(d)

    def _nak(self, d: MemoryDelivery, delay: float | None) -> None:
        if self._in_flight.get(d._seq) is not d:
            return  # stale: the message is already queued or owned by a newer delivery
        del self._in_flight[d._seq]
        self._naked += 1
        if delay:
            loop = asyncio.get_running_loop()
            self._delayed[d._seq] = loop.call_later(delay, self._redeliver_delayed, d)
        else:
            self._redeliver(d)

    def _touch(self, d: MemoryDelivery) -> None:
        if self._in_flight.get(d._seq) is not d:
            return
        del self._in_flight[d._seq]  # re-insert at the end: keeps deadline order
        d._deadline = time.monotonic() + self.config.ack_wait
        self._in_flight[d._seq] = d

    async def _sweep(self) -> None:
        """Redeliver what outlived ack_wait; forget ids older than the dedup window.

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
                d = in_flight[seq]
                if d._deadline > now:
                    break
                del in_flight[seq]
                self._redeliver(d)
            self._expire_ids(now)

    def _expire_ids(self, now: float) -> None:
        """Move the dedup floor to the last seq stored before the window began.

        Sequences and time both grow, so one (time, seq) mark per sweep is
        enough to tell which ids are older than the window.
        """
        marks = self._seq_marks
        marks.append((now, self._seq))
        horizon = now - self.config.dedup_window
        while marks and marks[0][0] < horizon:
            self._dedup_floor = marks.popleft()[1]
        recent = self._recent_ids
        floor = self._dedup_floor
        while recent:
            oldest = next(iter(recent))
            if recent[oldest] > floor:
                break
            del recent[oldest]

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        if not isinstance(delivery, MemoryDelivery) or delivery._backend is not self:
            raise TypeError("not a delivery of this backend")
        delivery._settle_once()
        self._dead_lettered += 1
        self.dead_letters.append(DeadLetter(delivery._message, reason, delivery._count))
        if self._in_flight.get(delivery._seq) is delivery:
            del self._in_flight[delivery._seq]
            self._dropped()
        else:
            self._complete_stale(delivery)

    # -- stats ---------------------------------------------------------------

    async def stats(self) -> QueueStats:
        return QueueStats(
            backend=self.name,
            total_enqueued=self._seq,
            total_dequeued=self._dequeued,
            current_size=self._size,
            in_flight=len(self._in_flight),
            acked=self._acked,
            naked=self._naked,
            termed=self._termed,
            redelivered=self._redelivered,
            duplicates=self._duplicates,
            exhausted=self._exhausted,
            dead_lettered=self._dead_lettered,
            connected=not self._closed,
        )
