"""What JetStream announces: leader elections, and messages out of deliveries (moved to the DLQ).

Also the cluster's meta leader, read from the monitoring endpoint. Work
that outlives a callback (a DLQ move, a meta-leader refresh) runs in the
connection's one task set, which `close()` cancels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import httpx
import nats.errors
import nats.js.errors
import orjson
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from backends.contract import Message
from backends.nats.config import MSG_ID_HEADER, monitor_list
from backends.nats.connection import Connection

log = logging.getLogger(__name__)


def _leader_of(data: bytes) -> str:
    with contextlib.suppress(ValueError, TypeError, KeyError):
        return str(orjson.loads(data)["leader"])
    return "?"


class Advisories:
    """Listens to the stream's and consumer's advisories; parks messages in the DLQ."""

    def __init__(self, conn: Connection, on_consumer_leader: Callable[[], None]) -> None:
        self._conn = conn
        self.config = conn.config
        self._on_new_consumer_leader = on_consumer_leader
        self._subs: list[Subscription] = []
        self.leader_elections = {"stream": 0, "consumer": 0}
        self.exhausted = 0
        self.meta_leader: str | None = None
        self._meta_task: asyncio.Task[Any] | None = None

    async def open(self) -> None:
        nc = self._conn.require_nc()
        cfg = self.config
        self._subs = [
            await nc.subscribe(
                f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{cfg.stream}.{cfg.durable}", cb=self._on_max_deliveries
            ),
            await nc.subscribe(f"$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{cfg.stream}", cb=self._on_stream_leader),
            await nc.subscribe(
                f"$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.{cfg.stream}.{cfg.durable}", cb=self._on_consumer_leader
            ),
        ]

    def close(self) -> None:
        self._subs = []
        self._meta_task = None

    async def _on_stream_leader(self, msg: Msg) -> None:
        self.leader_elections["stream"] += 1
        log.info("stream %s has a new leader: %s", self.config.stream, _leader_of(msg.data))

    async def _on_consumer_leader(self, msg: Msg) -> None:
        self.leader_elections["consumer"] += 1
        log.info("consumer %s has a new leader: %s", self.config.durable, _leader_of(msg.data))
        # A pull request held by the old leader may never be answered: ask anew.
        self._on_new_consumer_leader()

    async def _on_max_deliveries(self, msg: Msg) -> None:
        """A message ran out of deliveries without a verdict (workers died or timed out).

        JetStream leaves it in the work queue, invisible to the consumer: move it
        to the DLQ so it is neither lost nor stuck. Every processor instance
        hears the advisory; the DLQ dedups by id and a second delete is harmless.
        """
        self.exhausted += 1
        try:
            seq = int(orjson.loads(msg.data)["stream_seq"])
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable max-deliveries advisory: %r", msg.data[:200])
            return
        self._conn.tasks.spawn(self._move_to_dlq(seq), name=f"dlq-move-{seq}")

    async def _move_to_dlq(self, seq: int) -> None:
        cfg = self.config
        js = self._conn.js
        if js is None:
            return
        try:
            raw = await js.get_msg(cfg.stream, seq)
            if raw.data is None:
                return
            message = Message.from_json(raw.data)
            await self.park(js, message, "max_deliver exhausted", cfg.max_deliver)
            await js.delete_msg(cfg.stream, seq)
        except nats.js.errors.NotFoundError:
            return  # another processor moved it first
        except (nats.errors.Error, TimeoutError, ValueError) as exc:
            log.warning("could not move exhausted message seq %d to %s: %r", seq, cfg.dlq_stream, exc)

    async def park(self, js: JetStreamContext, message: Message, reason: str, deliveries: int) -> None:
        """Store `message` in the DLQ (deduped by its id) with why and after how many deliveries."""
        await js.publish(
            self.config.dlq_subject,
            message.to_json(),
            timeout=self.config.publish_timeout,
            headers={MSG_ID_HEADER: message.id, "Dlq-Reason": reason[:200], "Dlq-Deliveries": str(deliveries)},
        )

    def refresh_meta_in_background(self) -> None:
        """The meta leader comes from HTTP (`/jsz`); a frozen node must not hold up `stats()`."""
        if self.config.monitor_url and (self._meta_task is None or self._meta_task.done()):
            self._meta_task = self._conn.tasks.spawn(self.refresh_meta_leader(), name="nats-meta-leader")

    async def refresh_meta_leader(self) -> str | None:
        """The cluster's meta leader from the first monitoring endpoint (`/jsz`) that answers; kept for `stats()`."""
        async with httpx.AsyncClient(timeout=0.5, trust_env=False) as client:
            for base in monitor_list(self.config.monitor_url):
                try:
                    meta = (await client.get(f"{base}/jsz")).json().get("meta_cluster") or {}
                except (httpx.HTTPError, ValueError):
                    continue
                if meta.get("leader"):
                    self.meta_leader = str(meta["leader"])
                    return self.meta_leader
        return self.meta_leader
