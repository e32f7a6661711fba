"""NATS JetStream backend: a WorkQueue stream and one shared durable pull consumer.

Unlike the Go original this backend
- returns from `publish` only after the PubAck (the message is in the stream),
- sets `Nats-Msg-Id`, so a retried publish inside the duplicate window is
  stored once,
- hands out deliveries that are acked only after the work is done,
- reports the real depth (consumer pending + ack pending), never -1,
- fails with `BackendUnavailable` in bounded time instead of hanging while the
  broker is away, and reconnects by itself forever,
- on a cluster (`url` a comma-separated server list, `replicas` > 1) retries a
  publish that met a leader election with the same `Nats-Msg-Id` until
  `publish_timeout`, and reports the stream's leader, replicas and the meta
  leader, and how many leader elections it saw.

This class only wires the parts together: `Connection` (client, waits, the
one task set), `topology`, `Publisher`, `Consumer`, `Advisories`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import nats.errors
from nats.js import api as js_api

from backends.contract import BackendUnavailable, Delivery, Message, PublishAck, QueueStats
from backends.nats import topology
from backends.nats.advisories import Advisories
from backends.nats.config import NatsConfig, redact
from backends.nats.connection import Connection
from backends.nats.consumer import Consumer
from backends.nats.publisher import Publisher

log = logging.getLogger(__name__)


class NatsJetStreamBackend:
    """`QueueBackend` on NATS JetStream (nats-py)."""

    name = "nats"

    def __init__(self, config: NatsConfig | None = None) -> None:
        self.config = config or NatsConfig()
        self._conn = Connection(self.config)
        self._publisher = Publisher(self._conn)
        self._consumer = Consumer(self._conn)
        self._advisories = Advisories(self._conn, self._consumer.ask_anew)
        self._last_size = 0
        self._last_in_flight = 0
        self._last_dead = 0
        self._last_cluster: dict[str, object] | None = None

    @property
    def server_version(self) -> str:
        return self._conn.server_version

    @property
    def server_switches(self) -> int:
        return self._conn.server_switches

    @property
    def publish_retries(self) -> int:
        """Attempts sent again (same id) after a timeout or a missing leader."""
        return self._publisher.retries

    @property
    def leader_elections(self) -> dict[str, int]:
        return self._advisories.leader_elections

    # -- lifecycle -----------------------------------------------------------

    async def connect(self) -> None:
        """Connect, create stream and consumer; `BackendUnavailable` if NATS is away."""
        cfg = self.config
        await self._conn.open()
        try:
            await topology.create(self._conn.require_js(), cfg)
            await self._consumer.open()
            await self._publisher.open()
            await self._advisories.open()
            await topology.check_sync_policy(cfg, self._conn.server_version)
        except (nats.errors.Error, TimeoutError) as exc:
            # e.g. a cluster still electing its meta leader: the caller retries the whole connect
            await self.close()
            raise BackendUnavailable(f"NATS at {redact(cfg.url)} did not set up the stream: {exc!r}") from exc
        except BaseException:
            await self.close()
            raise
        log.info(
            "connected to NATS %s at %s; stream %s, consumer %s, sync_always=%s",
            self._conn.server_version,
            redact(cfg.url),
            cfg.stream,
            cfg.durable,
            cfg.sync_always,
        )

    async def close(self) -> None:
        """Stop every background task, hand back what was pulled but never given to a worker, then disconnect.

        Those deliveries are nak'ed so another processor gets them now, not
        after ack_wait.
        """
        self._conn.closing = True
        await self._conn.tasks.cancel_all()
        await self._consumer.hand_back()
        self._publisher.close()
        self._advisories.close()
        await self._conn.close()

    # -- the contract ---------------------------------------------------------

    async def publish(self, message: Message) -> PublishAck:
        return await self._publisher.publish(message)

    async def publish_many(self, messages: list[Message]) -> list[PublishAck]:
        return await self._publisher.publish_many(messages)

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        return await self._consumer.fetch(batch, timeout)

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        await self._consumer.ack_many(deliveries)

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        own = self._consumer.owns(delivery)
        js = await self._conn.ready(self.config.publish_timeout)
        try:
            await self._advisories.park(js, own.message, reason, own.delivery_count)
        except (nats.errors.Error, TimeoutError) as exc:
            raise self._publisher.error(exc, f"dead letter {own.message.id}") from exc
        await self._consumer.terminate(own)

    async def refresh_meta_leader(self) -> str | None:
        """The cluster's meta leader from the first monitoring endpoint (`/jsz`) that answers."""
        return await self._advisories.refresh_meta_leader()

    async def stats(self) -> QueueStats:
        """Counters of this process and the consumer's real depth.

        Acks are asynchronous in JetStream (no reply), so the depth lags the
        `acked` counter by the time the server takes to apply them. While NATS
        is unreachable the last known depth is reported with `connected=False`,
        never a made-up -1.
        """
        cfg = self.config
        conn = self._conn
        connected = conn.connected.is_set()
        if connected and conn.js is not None and conn.nc is not None:
            try:
                # No nc.flush() here: a flush that times out (a frozen broker)
                # leaves a cancelled PING future in nats-py, and the late PONG
                # then kills the client's read loop for good (InvalidStateError
                # in _process_pong). The server reads a connection in order, so
                # this request already comes after our acks.
                info = await conn.js.consumer_info(cfg.stream, cfg.durable)
                self._last_in_flight = int(info.num_ack_pending or 0)
                self._last_size = int(info.num_pending or 0) + self._last_in_flight
                if conn.js is not None:
                    dlq = await conn.js.stream_info(cfg.dlq_stream)
                    self._last_dead = int(dlq.state.messages)
                if conn.js is not None and cfg.replicas > 1:
                    self._last_cluster = _cluster_dict((await conn.js.stream_info(cfg.stream)).cluster)
                    self._advisories.refresh_meta_in_background()
            except (nats.errors.Error, TimeoutError):
                connected = False
        consumer, publisher = self._consumer, self._publisher
        return QueueStats(
            backend=self.name,
            total_enqueued=publisher.enqueued,
            total_dequeued=consumer.dequeued,
            current_size=self._last_size,
            in_flight=self._last_in_flight,
            acked=consumer.settled["acked"],
            naked=consumer.settled["naked"],
            termed=consumer.settled["termed"],
            redelivered=consumer.redelivered,
            duplicates=publisher.duplicates,
            exhausted=self._advisories.exhausted,
            dead_lettered=self._last_dead,
            connected=connected,
            cluster=self._cluster_view(),
            leader_changes=sum(self.leader_elections.values()),
        )

    def _cluster_view(self) -> dict[str, object] | None:
        if self._last_cluster is None:
            return None
        return {
            **self._last_cluster,
            "meta_leader": self._advisories.meta_leader,
            "leader_elections": dict(self.leader_elections),
        }


def _cluster_dict(info: js_api.ClusterInfo | None) -> dict[str, object] | None:
    """A stream's cluster block as /stats shows it: leader, and each replica's current/lag."""
    if info is None:
        return None
    return {
        "name": info.name,
        "leader": info.leader,
        "replicas": [
            {"name": r.name, "current": bool(r.current), "lag": int(r.lag or 0), "offline": bool(r.offline)}
            for r in info.replicas or []
        ],
    }
