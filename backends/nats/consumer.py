"""The shared durable pull consumer: one open pull request streaming into a buffer, deliveries, and acks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Sequence

import nats.errors
import orjson
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from backends.contract import AlreadySettled, BackendUnavailable, Delivery, Message
from backends.nats import wire
from backends.nats.config import redact
from backends.nats.connection import Connection

log = logging.getLogger(__name__)


class NatsDelivery:
    """A JetStream message handed to a worker; settling maps to JetStream acks."""

    __slots__ = ("_consumer", "_count", "_done", "_message", "_msg", "_stored_at")

    def __init__(self, consumer: Consumer, msg: Msg, message: Message, count: int, stored_at: int) -> None:
        self._consumer = consumer
        self._msg = msg
        self._message = message
        self._count = count
        self._stored_at = stored_at
        self._done = False

    @property
    def message(self) -> Message:
        return self._message

    @property
    def delivery_count(self) -> int:
        return self._count

    @property
    def stored_at(self) -> int:
        return self._stored_at

    @property
    def reply(self) -> str:
        """The ack subject of this delivery."""
        return self._msg.reply

    def settle_once(self) -> None:
        if self._done:
            raise AlreadySettled(f"delivery of {self._message.id} already settled")
        self._done = True

    async def ack(self) -> None:
        self.settle_once()
        await self._consumer.settle(self._msg.ack(), "acked")

    async def nak(self, delay: float | None = None) -> None:
        self.settle_once()
        await self._consumer.settle(self._msg.nak(delay=delay), "naked")

    async def term(self) -> None:
        self.settle_once()
        await self._consumer.settle(self._msg.term(), "termed")

    async def in_progress(self) -> None:
        if self._done:
            raise AlreadySettled(f"delivery of {self._message.id} already settled")
        await self._consumer.settle(self._msg.in_progress(), None)


def ack_fields(reply: str) -> tuple[int, int]:
    """The delivery count and the stream's store time (ns) from a JetStream ack subject.

    `Msg.metadata` parses every field and builds a datetime per message; this
    reads two tokens, at nats-py's own indexes for the domain-aware form.
    """
    tokens = reply.split(".")
    if len(tokens) == 9:
        return int(tokens[4]), int(tokens[7])
    return int(tokens[Msg.Ack.NumDelivered]), int(tokens[Msg.Ack.Timestamp])


class Consumer:
    """Fetches from the durable consumer and settles deliveries; counts what it handed out and settled."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.config = conn.config
        self._pull_sub: Subscription | None = None
        self._pull_inbox = ""
        self._pulled: deque[Msg] = deque()
        self._arrived = asyncio.Event()
        self._pull_remaining = 0
        self._pull_deadline = 0.0
        self.dequeued = 0
        self.settled = {"acked": 0, "naked": 0, "termed": 0}
        self.redelivered = 0
        conn.on_reconnected.append(self.ask_anew)

    async def open(self) -> None:
        """Subscribe to this consumer's pull inbox (kept across reconnects by nats-py)."""
        nc = self._conn.require_nc()
        self._pull_inbox = nc.new_inbox()
        self._pull_sub = await nc.subscribe(self._pull_inbox, cb=self._on_pulled)

    async def hand_back(self) -> None:
        """Nak what was pulled but never given to a worker, so another processor gets it now, not after ack_wait."""
        nc = self._conn.nc
        if self._pulled and nc is not None and nc.is_connected:
            with contextlib.suppress(nats.errors.Error):
                for msg in self._pulled:
                    await msg.nak()
                await nc.flush(timeout=1)
        self._pull_sub = None
        self._pulled.clear()
        self._pull_remaining = 0

    def ask_anew(self) -> None:
        """The open pull request may be lost (a reconnect, a new consumer leader): the next fetch asks again."""
        self._pull_remaining = 0
        self._arrived.set()

    async def _on_pulled(self, msg: Msg) -> None:
        """Every delivery and status for our pull requests lands here, in order."""
        status = JetStreamContext.is_status_msg(msg)
        if status is None:
            self._pull_remaining -= 1
            self._pulled.append(msg)
        elif status != "100":  # 408 expired, 409 refused/changed, 404 none: the request is over
            self._pull_remaining = 0
        self._arrived.set()

    async def _request_more(self, batch: int, expires: float) -> None:
        """One pull request for `batch` messages, open for `expires` s.

        Only one is outstanding at a time, so what arrives ahead of the
        workers is bounded by the batch they asked for. The server ends it
        with a 408 status at expiry; the local deadline is a little later.
        """
        nc = self._conn.require_nc()
        expires = max(0.01, expires)
        request = {"batch": batch, "expires": int(expires * 1e9)}
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.config.stream}.{self.config.durable}"
        self._pull_remaining = batch
        self._pull_deadline = time.monotonic() + expires + 0.05
        try:
            await nc.publish(subject, orjson.dumps(request), reply=self._pull_inbox)
        except nats.errors.Error as exc:
            self._pull_remaining = 0
            raise BackendUnavailable(f"pull request to NATS failed: {exc!r}") from exc

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        """Up to `batch` deliveries, returning as soon as any are there.

        nats-py's `fetch(n)` waits for all n (or the timeout) once the stream
        runs dry, and at low rates costs several pull round trips per message.
        Here one pull request stays open and deliveries stream into a buffer
        as they arrive; each call takes what is there, or waits for the first.
        """
        if batch < 1:
            raise ValueError("batch must be >= 1")
        await self._conn.ready(timeout)
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + timeout
        pulled = self._pulled
        while not pulled:
            remaining = give_up_at - loop.time()
            if remaining <= 0:
                return []
            if self._pull_remaining <= 0 or time.monotonic() > self._pull_deadline:
                await self._request_more(batch, min(remaining, self.config.pull_expires))
            self._arrived.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                return []
            if not self._conn.connected.is_set():
                raise BackendUnavailable(f"NATS at {redact(self.config.url)} unreachable")
        out: list[Delivery] = []
        while pulled and len(out) < batch:
            msg = pulled.popleft()
            try:
                message = Message.from_json(msg.data)
            except ValueError:
                log.warning("terminating an unreadable message on %s", msg.subject)
                await self.settle(msg.term(), "termed")
                continue
            count, stored_at = ack_fields(msg.reply)
            if count > 1:
                self.redelivered += 1
            out.append(NatsDelivery(self, msg, message, count, stored_at))
        self.dequeued += len(out)
        return out

    def owns(self, delivery: Delivery) -> NatsDelivery:
        """The delivery as this consumer's own, or `TypeError`."""
        if not isinstance(delivery, NatsDelivery) or delivery._consumer is not self:
            raise TypeError("not a delivery of this backend")
        return delivery

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Ack a worker's batch with one protocol write (one PUB per delivery, joined).

        Same wire effect as `ack()` on each: an empty publish to its ack
        subject. nats-py's per-publish checks and buffer bookkeeping are paid
        once per batch instead of once per message.
        """
        nc = self._conn.nc
        if nc is None or not nc.is_connected:
            raise BackendUnavailable(f"NATS at {redact(self.config.url)} unreachable: batch not acked")
        replies = []
        for d in deliveries:
            if not isinstance(d, NatsDelivery):
                raise TypeError(f"not a NATS delivery: {d!r}")
            d.settle_once()
            replies.append(d.reply)
        if not replies:
            return
        try:
            await wire.write(nc, wire.acks(replies))
        except nats.errors.Error as exc:
            raise BackendUnavailable(f"acking a batch failed: {exc!r}") from exc
        self.settled["acked"] += len(replies)

    async def settle(self, ack: Awaitable[None], counter: str | None) -> None:
        """Send an ack-kind reply; JetStream redelivers if it never arrives."""
        try:
            await ack
        except nats.errors.MsgAlreadyAckdError as exc:
            raise AlreadySettled(str(exc)) from exc
        except nats.errors.Error as exc:
            raise BackendUnavailable(f"settling a delivery failed: {exc!r}") from exc
        if counter is not None:
            self.settled[counter] += 1

    async def terminate(self, delivery: NatsDelivery) -> None:
        """Settle a delivery that was parked elsewhere (the DLQ): JetStream will not deliver it again."""
        delivery.settle_once()
        await self.settle(delivery._msg.term(), None)
