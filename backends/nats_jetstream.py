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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import nats
import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js import api as js_api

from backends.contract import (
    AlreadySettled,
    BackendMisconfigured,
    BackendUnavailable,
    Delivery,
    Message,
    PublishAck,
    QueueFull,
    QueueStats,
)
from backends.settings import BackendSettings, default_of

log = logging.getLogger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"
# JetStream API error codes that mean "the stream is at its limits".
_FULL_ERR_CODES = {10047, 10077}
# Between two attempts of a publish that met an election (or a frozen leader).
RETRY_PAUSE = 0.05
# On a cluster one attempt waits at most this share of publish_timeout, so a publish
# sent to a leader that froze or died is retried (same id) once a new one is elected.
ATTEMPT_SHARE = 0.25
# What nats-py writes for a header block with only the message id, and how it cleans a value.
_HDR_START = b"NATS/1.0\r\n" + MSG_ID_HEADER.encode() + b": "
_HDR_END = b"\r\n\r\n"
_HEADER_VALUE_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
_NO_RESPONDERS = "503"  # the status the server answers when no stream listens on the subject


def _default(name: str) -> Any:
    return default_of(BackendSettings, name)


@dataclass(frozen=True, slots=True)
class NatsConfig:
    """Connection, stream and consumer settings; defaults follow the spec.

    What the environment can set takes its default from `BackendSettings`
    (written once there); the rest is fixed here.
    """

    url: str = _default("nats_url")  # or several, comma-separated: the servers of one cluster
    replicas: int = _default("nats_replicas")  # stream replicas (R3 on a three-node cluster)
    stream: str = _default("nats_stream")
    subject: str = _default("nats_subject")
    durable: str = _default("nats_durable")
    ack_wait: float = _default("ack_wait")
    max_deliver: int = _default("max_deliver")
    max_ack_pending: int = _default("nats_max_ack_pending")
    max_age: float = 24 * 3600.0
    duplicate_window: float = _default("dedup_window")
    max_msgs: int = _default("nats_max_msgs")
    max_bytes: int = _default("nats_max_bytes")
    publish_timeout: float = _default("publish_timeout")
    connect_timeout: float = _default("nats_connect_timeout")
    reconnect_wait: float = _default("nats_reconnect_wait")
    pull_expires: float = _default("nats_pull_expires")
    dlq_stream: str = "DIPLOM_DLQ"
    dlq_subject: str = "diplom.dlq"
    dlq_max_age: float = 7 * 24 * 3600.0
    sync_always: bool = _default("nats_sync_always")
    monitor_url: str | None = _default("nats_monitor_url")
    # Credentials besides those a URL may carry (nats://user:pass@host, nats://token@host).
    # Kept out of repr, logs and error messages.
    user: str | None = _default("nats_user")
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)


def stream_config(cfg: NatsConfig) -> js_api.StreamConfig:
    """The spec's stream: WorkQueue retention, file storage, 24 h max age."""
    return js_api.StreamConfig(
        name=cfg.stream,
        subjects=[cfg.subject],
        retention=js_api.RetentionPolicy.WORK_QUEUE,
        storage=js_api.StorageType.FILE,
        max_age=cfg.max_age,
        duplicate_window=cfg.duplicate_window,
        max_msgs=cfg.max_msgs,
        max_bytes=cfg.max_bytes,
        discard=js_api.DiscardPolicy.NEW,
        num_replicas=cfg.replicas,
    )


def dlq_stream_config(cfg: NatsConfig) -> js_api.StreamConfig:
    """Where messages that will not succeed are parked: kept, never consumed."""
    return js_api.StreamConfig(
        name=cfg.dlq_stream,
        subjects=[cfg.dlq_subject],
        retention=js_api.RetentionPolicy.LIMITS,
        storage=js_api.StorageType.FILE,
        max_age=cfg.dlq_max_age,
        duplicate_window=cfg.duplicate_window,
        num_replicas=cfg.replicas,
    )


def consumer_config(cfg: NatsConfig) -> js_api.ConsumerConfig:
    """One durable pull consumer with explicit acks, shared by every processor."""
    return js_api.ConsumerConfig(
        durable_name=cfg.durable,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        ack_wait=cfg.ack_wait,
        max_deliver=cfg.max_deliver,
        max_ack_pending=cfg.max_ack_pending,
        filter_subject=cfg.subject,
        deliver_policy=js_api.DeliverPolicy.ALL,
    )


@dataclass(slots=True)
class _Round:
    """The answers to one `_publish_round`, by index in the batch: (seq, duplicate) or the error."""

    left: int
    done: asyncio.Future[None]
    results: dict[int, tuple[int, bool] | BaseException] = field(default_factory=dict)


class NatsDelivery:
    """A JetStream message handed to a worker; settling maps to JetStream acks."""

    __slots__ = ("_backend", "_count", "_done", "_message", "_msg", "_stored_at")

    def __init__(self, backend: NatsJetStreamBackend, msg: Msg, message: Message, count: int, stored_at: int) -> None:
        self._backend = backend
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

    def _settle_once(self) -> None:
        if self._done:
            raise AlreadySettled(f"delivery of {self._message.id} already settled")
        self._done = True

    async def ack(self) -> None:
        self._settle_once()
        await self._backend._settle(self._msg.ack(), "acked")

    async def nak(self, delay: float | None = None) -> None:
        self._settle_once()
        await self._backend._settle(self._msg.nak(delay=delay), "naked")

    async def term(self) -> None:
        self._settle_once()
        await self._backend._settle(self._msg.term(), "termed")

    async def in_progress(self) -> None:
        if self._done:
            raise AlreadySettled(f"delivery of {self._message.id} already settled")
        await self._backend._settle(self._msg.in_progress(), None)


class NatsJetStreamBackend:
    """`QueueBackend` on NATS JetStream (nats-py)."""

    name = "nats"

    def __init__(self, config: NatsConfig | None = None) -> None:
        self.config = config or NatsConfig()
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        # The pull consumer: one pull request at a time, streamed into a buffer.
        self._pull_sub: Subscription | None = None
        self._pull_inbox = ""
        self._pulled: deque[Msg] = deque()
        self._arrived = asyncio.Event()
        self._pull_remaining = 0
        self._pull_deadline = 0.0
        self._advisories: Subscription | None = None
        # PubAcks of publish_many: one subscription, replies <prefix><round>.<index>.
        self._puback_sub: Subscription | None = None
        self._puback_prefix = ""
        self._rounds: dict[str, _Round] = {}
        self._round_seq = 0
        self._connected = asyncio.Event()
        self._ensure_lock = asyncio.Lock()
        self._needs_ensure = False
        self._closing = False
        self._last_error: Exception | None = None
        self.server_version = ""
        self._last_size = 0
        self._enqueued = 0
        self._dequeued = 0
        self._settled = {"acked": 0, "naked": 0, "termed": 0}
        self._redelivered = 0
        self._duplicates = 0
        self._exhausted = 0
        self._last_in_flight = 0
        self._last_dead = 0
        self._moving: set[asyncio.Task[None]] = set()
        self._leader_subs: list[Subscription] = []
        self.leader_elections = {"stream": 0, "consumer": 0}
        self._last_cluster: dict[str, object] | None = None
        self._meta_leader: str | None = None
        self._meta_task: asyncio.Task[str | None] | None = None
        self._last_switch = 0.0
        self.server_switches = 0
        self.publish_retries = 0  # attempts sent again (same id) after a timeout or a missing leader
        self._moving_tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------

    async def connect(self) -> None:
        """Connect, create stream and consumer; `BackendUnavailable` if NATS is away.

        nats-py retries the first connect forever when reconnects are
        unlimited, so the whole attempt is bounded by `connect_timeout`.
        """
        cfg = self.config
        self._closing = False
        self._last_error = None
        nc = NatsClient()
        try:
            async with asyncio.timeout(cfg.connect_timeout):
                await nc.connect(
                    servers=server_list(cfg.url),
                    name="queue-lab",
                    connect_timeout=max(1, int(cfg.connect_timeout)),
                    reconnect_time_wait=cfg.reconnect_wait,  # type: ignore[arg-type]
                    max_reconnect_attempts=-1,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    user=cfg.user,
                    password=cfg.password,
                    token=cfg.token,
                )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            self._closing = True
            await nc.close()
            cause = self._last_error or exc
            raise BackendUnavailable(
                f"cannot connect to NATS at {_redact(cfg.url)} within {cfg.connect_timeout}s: {cause!r}"
            ) from exc
        self._nc = nc
        self._js = nc.jetstream(timeout=cfg.publish_timeout)
        self._connected.set()
        v = nc.connected_server_version
        self.server_version = f"{v.major}.{v.minor}.{v.patch}"
        try:
            await self._ensure_topology()
            self._advisories = await nc.subscribe(
                f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{cfg.stream}.{cfg.durable}",
                cb=self._on_max_deliveries,
            )
            self._leader_subs = [
                await nc.subscribe(f"$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{cfg.stream}", cb=self._on_stream_leader),
                await nc.subscribe(
                    f"$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.{cfg.stream}.{cfg.durable}",
                    cb=self._on_consumer_leader,
                ),
            ]
            await self._check_sync_policy()
        except (nats.errors.Error, TimeoutError) as exc:
            # e.g. a cluster still electing its meta leader: the caller retries the whole connect
            await self.close()
            raise BackendUnavailable(f"NATS at {_redact(cfg.url)} did not set up the stream: {exc!r}") from exc
        except BaseException:
            await self.close()
            raise
        log.info(
            "connected to NATS %s at %s; stream %s, consumer %s, sync_always=%s",
            self.server_version,
            _redact(cfg.url),
            cfg.stream,
            cfg.durable,
            cfg.sync_always,
        )

    async def close(self) -> None:
        """Hand back what was pulled but never given to a worker, then disconnect.

        Those deliveries are nak'ed so another processor gets them now, not
        after ack_wait.
        """
        self._closing = True
        if self._meta_task is not None:
            self._meta_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._meta_task
            self._meta_task = None
        for task in list(self._moving):
            task.cancel()
        if self._moving:
            await asyncio.gather(*self._moving, return_exceptions=True)
        if self._pulled and self._nc is not None and self._nc.is_connected:
            with contextlib.suppress(nats.errors.Error):
                for msg in self._pulled:
                    await msg.nak()
                await self._nc.flush(timeout=1)
        nc, self._nc = self._nc, None
        self._js = None
        self._pull_sub = None
        self._puback_sub = None
        self._puback_prefix = ""
        self._pulled.clear()
        self._pull_remaining = 0
        self._advisories = None
        self._leader_subs = []
        self._connected.clear()
        if nc is not None and not nc.is_closed:
            await nc.close()

    async def _topology_exists(self) -> bool:
        """The stream is there: asked of its leader, not of the meta leader.

        After a reconnect this is all that is needed; creating (a meta-leader
        operation) only when the stream is missing keeps publishes flowing
        while a cluster has a stream leader but, for a few seconds, no meta
        leader (after a partition heals). The consumer is not asked: its
        leader may be the node that just died, and a publish does not need
        it; a durable consumer lives as long as its stream does.
        """
        cfg = self.config
        js = self._require_js()
        try:
            await js.stream_info(cfg.stream)
        except nats.js.errors.NotFoundError:
            return False
        return True

    async def _ensure_topology(self, *, check_first: bool = False) -> None:
        """Create or update the stream and the durable consumer; idempotent."""
        cfg = self.config
        js = self._require_js()
        if check_first and self._pull_sub is not None and await self._topology_exists():
            self._needs_ensure = False
            return
        for stream_cfg in (stream_config(cfg), dlq_stream_config(cfg)):
            try:
                await js.add_stream(stream_cfg)
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != 10058:  # stream name in use with another configuration
                    raise
                await js.update_stream(stream_cfg)
        await js.add_consumer(cfg.stream, consumer_config(cfg))
        if self._pull_sub is None and self._nc is not None:
            self._pull_inbox = self._nc.new_inbox()
            self._pull_sub = await self._nc.subscribe(self._pull_inbox, cb=self._on_pulled)
        if self._puback_sub is None and self._nc is not None:
            prefix = self._nc.new_inbox() + "."
            self._puback_sub = await self._nc.subscribe(prefix + ">", cb=self._on_puback)
            self._puback_prefix = prefix
        self._needs_ensure = False

    async def _check_sync_policy(self) -> None:
        """Log the server's version and fsync policy (from `/varz`); warn when it cannot promise durability.

        JetStream acknowledges a publish once the message is written to the
        OS, and fsyncs every `sync_interval` (2 min by default): a process
        crash loses nothing acknowledged, a power loss can. Only a server
        with `sync_interval: always` fsyncs before the PubAck.
        """
        cfg = self.config
        if not cfg.monitor_url:
            log.warning(
                "NATS %s: fsync policy unknown (no NATS_MONITOR_URL to read /varz); unless the server runs "
                "with sync_interval: always, acknowledged messages can be lost on power loss (not on process crash)",
                self.server_version,
            )
            return
        try:
            async with httpx.AsyncClient(timeout=cfg.connect_timeout, trust_env=False) as client:
                varz = (await client.get(f"{monitor_list(cfg.monitor_url)[0]}/varz")).json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("cannot read %s/varz to check the fsync policy: %r", cfg.monitor_url, exc)
            return
        js_config = varz.get("jetstream", {}).get("config", {})
        server_sync = bool(js_config.get("sync_always", False))
        log.info(
            "NATS server %s: jetstream sync_always=%s, sync_interval=%ss (from %s/varz)",
            varz.get("version", "?"),
            server_sync,
            round(int(js_config.get("sync_interval", 0)) / 1e9, 3),
            monitor_list(cfg.monitor_url)[0],
        )
        if cfg.sync_always and not server_sync:
            raise BackendMisconfigured(
                "NATS_SYNC_ALWAYS=true but the server is not started with jetstream { sync_interval: always }"
            )
        if not server_sync:
            log.warning(
                "NATS %s is not sync_always: acknowledged messages can be lost on power loss; not on process crash",
                varz.get("version", "?"),
            )

    # -- connection callbacks -------------------------------------------------

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = exc
        log.debug("nats error: %r", exc)

    async def _on_disconnected(self) -> None:
        self._connected.clear()
        if not self._closing:
            log.warning("disconnected from NATS at %s; reconnecting", _redact(self.config.url))

    async def _on_reconnected(self) -> None:
        # A broker restarted with an empty store has no stream: re-create lazily.
        # A pull request of the old connection may be gone with it: ask anew.
        self._needs_ensure = True
        self._pull_remaining = 0
        self._arrived.set()
        self._connected.set()
        log.info("reconnected to NATS at %s", _redact(self.config.url))

    async def _on_stream_leader(self, msg: Msg) -> None:
        self.leader_elections["stream"] += 1
        log.info("stream %s has a new leader: %s", self.config.stream, _leader_of(msg.data))

    async def _on_consumer_leader(self, msg: Msg) -> None:
        self.leader_elections["consumer"] += 1
        log.info("consumer %s has a new leader: %s", self.config.durable, _leader_of(msg.data))
        # A pull request held by the old leader may never be answered: ask anew.
        self._pull_remaining = 0
        self._arrived.set()

    async def _on_max_deliveries(self, msg: Msg) -> None:
        """A message ran out of deliveries without a verdict (workers died or timed out).

        JetStream leaves it in the work queue, invisible to the consumer: move it
        to the DLQ so it is neither lost nor stuck. Every processor instance
        hears the advisory; the DLQ dedups by id and a second delete is harmless.
        """
        self._exhausted += 1
        try:
            seq = int(orjson.loads(msg.data)["stream_seq"])
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable max-deliveries advisory: %r", msg.data[:200])
            return
        task = asyncio.create_task(self._move_to_dlq(seq), name=f"dlq-move-{seq}")
        self._moving.add(task)
        task.add_done_callback(self._moving.discard)

    async def _move_to_dlq(self, seq: int) -> None:
        cfg = self.config
        js = self._js
        if js is None:
            return
        try:
            raw = await js.get_msg(cfg.stream, seq)
            if raw.data is None:
                return
            message = Message.from_json(raw.data)
            await self._park(js, message, "max_deliver exhausted", cfg.max_deliver)
            await js.delete_msg(cfg.stream, seq)
        except nats.js.errors.NotFoundError:
            return  # another processor moved it first
        except (nats.errors.Error, TimeoutError, ValueError) as exc:
            log.warning("could not move exhausted message seq %d to %s: %r", seq, cfg.dlq_stream, exc)

    async def _park(self, js: JetStreamContext, message: Message, reason: str, deliveries: int) -> None:
        await js.publish(
            self.config.dlq_subject,
            message.to_json(),
            timeout=self.config.publish_timeout,
            headers={MSG_ID_HEADER: message.id, "Dlq-Reason": reason[:200], "Dlq-Deliveries": str(deliveries)},
        )

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        if not isinstance(delivery, NatsDelivery) or delivery._backend is not self:
            raise TypeError("not a delivery of this backend")
        js = await self._ready(self.config.publish_timeout)
        try:
            await self._park(js, delivery.message, reason, delivery.delivery_count)
        except (nats.errors.Error, TimeoutError) as exc:
            raise self._publish_error(exc, f"dead letter {delivery.message.id}") from exc
        delivery._settle_once()
        await self._settle(delivery._msg.term(), None)

    # -- helpers --------------------------------------------------------------

    def _require_js(self) -> JetStreamContext:
        if self._js is None:
            raise BackendUnavailable("NATS backend is not connected (call connect())")
        return self._js

    async def _ready(self, budget: float) -> JetStreamContext:
        """Wait, bounded, for a live connection and a topology that exists: `budget` s for both together."""
        js = self._require_js()
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + budget
        if not self._connected.is_set():
            try:
                async with asyncio.timeout(budget):
                    await self._connected.wait()
            except TimeoutError:
                raise BackendUnavailable(f"NATS at {_redact(self.config.url)} unreachable for {budget}s") from None
        if self._needs_ensure:
            try:
                async with asyncio.timeout(max(0.01, give_up_at - loop.time())), self._ensure_lock:
                    if self._needs_ensure:
                        await self._ensure_topology(check_first=True)
            except (nats.errors.Error, TimeoutError) as exc:
                self._leave_server_without_leader()
                raise BackendUnavailable(f"cannot re-create stream/consumer: {exc!r}") from exc
        return js

    def _publish_error(self, exc: BaseException, what: str) -> Exception:
        if isinstance(exc, nats.js.errors.APIError):
            if exc.err_code in _FULL_ERR_CODES or "maximum" in (exc.description or ""):
                return QueueFull(f"JetStream stream {self.config.stream} is full: {exc.description}")
            return BackendUnavailable(f"JetStream refused {what}: {exc.description} (code {exc.err_code})")
        if isinstance(exc, nats.js.errors.NoStreamResponseError):
            self._needs_ensure = True
            return BackendUnavailable(f"no JetStream stream answers on {self.config.subject}")
        if isinstance(exc, TimeoutError):
            return BackendUnavailable(f"no PubAck from NATS within {self.config.publish_timeout}s for {what}")
        return BackendUnavailable(f"publishing {what} to NATS failed: {exc!r}")

    # -- publish --------------------------------------------------------------

    async def publish(self, message: Message) -> PublishAck:
        """A JetStream publish: the request waits for the PubAck.

        `nc.request` plus orjson rather than `js.publish`: the same protocol,
        without building nats-py's PubAck dataclass by reflection per message
        (a measurable share of the processor's CPU at full rate). An attempt
        that times out or finds no stream leader (an election, a frozen or
        dead leader) is sent again with the same `Nats-Msg-Id` until
        `publish_timeout` is spent, so it is stored once at most; then
        `BackendUnavailable`. A full stream is not retried.
        """
        cfg = self.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.publish_timeout
        await self._ready(deadline - loop.time())
        nc = self._nc
        assert nc is not None
        data, headers = message.to_json(), {MSG_ID_HEADER: message.id}
        what = f"message {message.id}"
        while True:
            remaining = deadline - loop.time()
            try:
                reply = await nc.request(cfg.subject, data, timeout=self._attempt_timeout(remaining), headers=headers)
            except nats.errors.NoRespondersError:
                error = self._publish_error(nats.js.errors.NoStreamResponseError(), what)
            except (nats.errors.Error, TimeoutError) as exc:
                error = self._publish_error(exc, what)
            else:
                answer = orjson.loads(reply.data)
                api = answer.get("error")
                if not api:
                    return self._counted(message.id, int(answer["seq"]), bool(answer.get("duplicate", False)))
                error = self._publish_error(
                    nats.js.errors.APIError(
                        code=api.get("code"), err_code=api.get("err_code"), description=api.get("description")
                    ),
                    what,
                )
            if isinstance(error, QueueFull):
                raise error
            if loop.time() + RETRY_PAUSE >= deadline:
                self._leave_server_without_leader()
                raise error
            self.publish_retries += 1
            await asyncio.sleep(RETRY_PAUSE)
            # Not while reconnecting: nats-py would buffer the retry and send it
            # after a reconnect, long after this call answered 503.
            await self._ready(deadline - loop.time())

    def _leave_server_without_leader(self) -> None:
        """A whole publish_timeout without a PubAck: on a cluster, try another server.

        A node cut off from its peers (a partition) keeps its clients' TCP
        connections and answers nothing useful; nats-py would stay on it. At
        most one switch per `reconnect_wait * 4`, so a cluster-wide outage
        does not spin.
        """
        nc = self._nc
        now = time.monotonic()
        if (
            nc is None
            or len(server_list(self.config.url)) < 2
            or now - self._last_switch < self.config.reconnect_wait * 4
        ):
            return
        self._last_switch = now
        self.server_switches += 1
        log.warning("no PubAck through %s for %ss: switching server", nc.connected_url, self.config.publish_timeout)
        task = asyncio.create_task(nc.force_reconnect(), name="nats-switch-server")
        self._moving_tasks.add(task)
        task.add_done_callback(self._moving_tasks.discard)

    def _attempt_timeout(self, remaining: float) -> float:
        """All that is left on one server with an R1 stream (there is no other leader to find); a share on a cluster.

        A short attempt against a single slow server only turns a late PubAck
        into "duplicate message id is in process" and a 503 for a stored message.
        """
        cfg = self.config
        if cfg.replicas == 1 and len(server_list(cfg.url)) == 1:
            return max(0.01, remaining)
        return max(0.01, min(remaining, max(0.2, cfg.publish_timeout * ATTEMPT_SHARE)))

    def _counted(self, message_id: str, seq: int, duplicate: bool) -> PublishAck:
        if duplicate:
            self._duplicates += 1
        else:
            self._enqueued += 1
        return PublishAck(message_id, seq, duplicate)

    async def publish_many(self, messages: list[Message]) -> list[PublishAck]:
        """Pipelined: one protocol write per attempt; raises if any message is not confirmed.

        Each message gets its own PubAck, so dedup answers per id and a
        retried batch is stored once. (Atomic JetStream batches were measured
        here too: no faster in the full stack, and a batch holding one known
        id is refused whole.) Messages not confirmed are sent again, same ids,
        until `publish_timeout` is spent (a leader election); then the error.
        On error some messages may be stored; retrying the same batch is safe
        and is what callers should do.
        """
        if not messages:
            return []
        cfg = self.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.publish_timeout
        await self._ready(deadline - loop.time())
        acks: dict[int, PublishAck] = {}
        pending = list(range(len(messages)))
        while True:
            failure = await self._publish_round(messages, pending, acks, deadline - loop.time())
            pending = [i for i in pending if i not in acks]
            if failure is None:
                return [acks[i] for i in range(len(messages))]
            error = self._publish_error(failure, f"batch ({len(acks)}/{len(messages)} confirmed)")
            if isinstance(error, QueueFull):
                raise error from failure
            if loop.time() + RETRY_PAUSE >= deadline:
                self._leave_server_without_leader()
                raise error from failure
            self.publish_retries += 1
            await asyncio.sleep(RETRY_PAUSE)
            # Not while reconnecting: nats-py would buffer the retry and send it
            # after a reconnect, long after this call answered 503.
            await self._ready(deadline - loop.time())

    async def _publish_round(
        self,
        messages: list[Message],
        pending: list[int],
        acks: dict[int, PublishAck],
        remaining: float,
    ) -> BaseException | None:
        """One attempt for `pending`: confirmed ones go into `acks`; returns a failure (a full stream first), if any.

        The attempt is one write of joined HPUB commands (as `ack_many` does
        for acks), each with its `Nats-Msg-Id` and a reply subject
        `<inbox>.<round>.<index>` under the one subscription this backend
        owns; `_on_puback` files each answer and resolves the round's one
        future when all are in. Per message that saves what nats-py's
        `publish_async` costs: a future, a NUID and random token, a
        semaphore, a publish call that re-validates subject and header, a
        PubAck dataclass by reflection. Answers to a round that has ended
        (timed out) find no round and are dropped. It also files JetStream's
        error replies: nats-py 2.16's `publish_async` leaves such a future
        pending (nats-io/nats.py#985, `APIError.from_error` raises), which
        turned a full stream into a 503 after `publish_timeout`, not a 429.
        """
        nc = self._nc
        if nc is None or self._puback_prefix == "":
            return nats.errors.ConnectionClosedError()
        if not nc.is_connected:
            # nats-py would buffer the write and send it after a reconnect, long after we answered.
            return nats.errors.ConnectionReconnectingError()
        self._round_seq += 1
        key = str(self._round_seq)
        head = f"HPUB {self.config.subject} {self._puback_prefix}{key}."
        max_payload = nc._max_payload
        parts: list[bytes] = []
        for i in pending:
            m = messages[i]
            data = m.to_json()
            if len(data) > max_payload:
                return nats.errors.MaxPayloadError()
            hdr = _HDR_START + m.id.strip().translate(_HEADER_VALUE_NEWLINES).encode() + _HDR_END
            parts.append(f"{head}{i} {len(hdr)} {len(hdr) + len(data)}\r\n".encode())
            parts.append(hdr)
            parts.append(data)
            parts.append(b"\r\n")
        answers = _Round(len(pending), asyncio.get_running_loop().create_future())
        self._rounds[key] = answers
        failure: BaseException | None = None
        try:
            async with asyncio.timeout(self._attempt_timeout(remaining) + len(pending) * 0.001):
                await nc._send_command(b"".join(parts))
                await nc._flush_pending()
                await answers.done
        except (nats.errors.Error, TimeoutError) as exc:
            failure = exc
        finally:
            del self._rounds[key]
        results = answers.results
        for i in pending:
            r = results.get(i)
            if r is None:
                failure = failure or TimeoutError()
            elif isinstance(r, BaseException):
                # a full stream wins: it is back-pressure (429), not something to retry
                if failure is None or isinstance(self._publish_error(r, ""), QueueFull):
                    failure = r
            else:
                acks[i] = self._counted(messages[i].id, r[0], r[1])
        return failure

    async def _on_puback(self, msg: Msg) -> None:
        """A PubAck (or error, or "no responders" status) for one message of a `_publish_round`."""
        key, _, index = msg.subject[len(self._puback_prefix) :].partition(".")
        answers = self._rounds.get(key)
        if answers is None:
            return  # its round ended: timed out, retried under a new round
        i = int(index)
        if i in answers.results:
            return
        result: tuple[int, bool] | BaseException
        if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
            result = nats.js.errors.NoStreamResponseError()
        else:
            try:
                answer = orjson.loads(msg.data)
                api = answer.get("error")
                if api:
                    result = nats.js.errors.APIError(
                        code=api.get("code"), err_code=api.get("err_code"), description=api.get("description")
                    )
                else:
                    result = (int(answer["seq"]), bool(answer.get("duplicate", False)))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
                result = nats.errors.Error(f"unreadable PubAck: {exc!r}")
        answers.results[i] = result
        answers.left -= 1
        if answers.left <= 0 and not answers.done.done():
            answers.done.set_result(None)

    # -- consume --------------------------------------------------------------

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
        nc = self._nc
        if nc is None:
            raise BackendUnavailable("NATS backend is not connected (call connect())")
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
        await self._ready(timeout)
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
            if not self._connected.is_set():
                raise BackendUnavailable(f"NATS at {_redact(self.config.url)} unreachable")
        out: list[Delivery] = []
        while pulled and len(out) < batch:
            msg = pulled.popleft()
            try:
                message = Message.from_json(msg.data)
            except ValueError:
                log.warning("terminating an unreadable message on %s", msg.subject)
                await self._settle(msg.term(), "termed")
                continue
            count, stored_at = _ack_fields(msg.reply)
            if count > 1:
                self._redelivered += 1
            out.append(NatsDelivery(self, msg, message, count, stored_at))
        self._dequeued += len(out)
        return out

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Ack a worker's batch with one queued protocol write (one PUB per delivery, joined).

        Same wire effect as `ack()` on each: an empty publish to its ack
        subject. nats-py's per-publish checks and buffer bookkeeping are paid
        once per batch instead of once per message.
        """
        nc = self._nc
        if nc is None or not nc.is_connected:
            raise BackendUnavailable(f"NATS at {_redact(self.config.url)} unreachable: batch not acked")
        commands = []
        for d in deliveries:
            if not isinstance(d, NatsDelivery):
                raise TypeError(f"not a NATS delivery: {d!r}")
            d._settle_once()
            commands.append(b"PUB " + d._msg.reply.encode() + b" 0\r\n\r\n")
        if not commands:
            return
        try:
            await nc._send_command(b"".join(commands))
            await nc._flush_pending()
        except nats.errors.Error as exc:
            raise BackendUnavailable(f"acking a batch failed: {exc!r}") from exc
        self._settled["acked"] += len(commands)

    async def _settle(self, ack: Awaitable[None], counter: str | None) -> None:
        """Send an ack-kind reply; JetStream redelivers if it never arrives."""
        try:
            await ack
        except nats.errors.MsgAlreadyAckdError as exc:
            raise AlreadySettled(str(exc)) from exc
        except nats.errors.Error as exc:
            raise BackendUnavailable(f"settling a delivery failed: {exc!r}") from exc
        if counter is not None:
            self._settled[counter] += 1

    # -- stats ----------------------------------------------------------------

    async def stats(self) -> QueueStats:
        """Counters of this process and the consumer's real depth.

        Acks are asynchronous in JetStream (no reply), so the depth lags the
        `acked` counter by the time the server takes to apply them. While NATS
        is unreachable the last known depth is reported with `connected=False`,
        never a made-up -1.
        """
        connected = self._connected.is_set()
        if connected and self._js is not None and self._nc is not None:
            try:
                # No nc.flush() here: a flush that times out (a frozen broker)
                # leaves a cancelled PING future in nats-py, and the late PONG
                # then kills the client's read loop for good (InvalidStateError
                # in _process_pong). The server reads a connection in order, so
                # this request already comes after our acks.
                info = await self._js.consumer_info(self.config.stream, self.config.durable)
                self._last_in_flight = int(info.num_ack_pending or 0)
                self._last_size = int(info.num_pending or 0) + self._last_in_flight
                if self._js is not None:
                    dlq = await self._js.stream_info(self.config.dlq_stream)
                    self._last_dead = int(dlq.state.messages)
                if self._js is not None and self.config.replicas > 1:
                    self._last_cluster = _cluster_dict((await self._js.stream_info(self.config.stream)).cluster)
                    self._refresh_meta_in_background()
            except (nats.errors.Error, TimeoutError):
                connected = False
        return QueueStats(
            backend=self.name,
            total_enqueued=self._enqueued,
            total_dequeued=self._dequeued,
            current_size=self._last_size,
            in_flight=self._last_in_flight,
            acked=self._settled["acked"],
            naked=self._settled["naked"],
            termed=self._settled["termed"],
            redelivered=self._redelivered,
            duplicates=self._duplicates,
            exhausted=self._exhausted,
            dead_lettered=self._last_dead,
            connected=connected,
            cluster=self._cluster_view(),
            leader_changes=sum(self.leader_elections.values()),
        )

    def _cluster_view(self) -> dict[str, object] | None:
        if self._last_cluster is None:
            return None
        return {**self._last_cluster, "meta_leader": self._meta_leader, "leader_elections": dict(self.leader_elections)}

    def _refresh_meta_in_background(self) -> None:
        """The meta leader comes from HTTP (`/jsz`); a frozen node must not hold up `stats()`."""
        if self.config.monitor_url and (self._meta_task is None or self._meta_task.done()):
            self._meta_task = asyncio.create_task(self.refresh_meta_leader(), name="nats-meta-leader")

    async def refresh_meta_leader(self) -> str | None:
        """The cluster's meta leader from the first monitoring endpoint (`/jsz`) that answers; kept for `stats()`."""
        async with httpx.AsyncClient(timeout=0.5, trust_env=False) as client:
            for base in monitor_list(self.config.monitor_url):
                try:
                    meta = (await client.get(f"{base}/jsz")).json().get("meta_cluster") or {}
                except (httpx.HTTPError, ValueError):
                    continue
                if meta.get("leader"):
                    self._meta_leader = str(meta["leader"])
                    return self._meta_leader
        return self._meta_leader


def _ack_fields(reply: str) -> tuple[int, int]:
    """The delivery count and the stream's store time (ns) from a JetStream ack subject.

    `Msg.metadata` parses every field and builds a datetime per message; this
    reads two tokens, at nats-py's own indexes for the domain-aware form.
    """
    tokens = reply.split(".")
    if len(tokens) == 9:
        return int(tokens[4]), int(tokens[7])
    return int(tokens[Msg.Ack.NumDelivered]), int(tokens[Msg.Ack.Timestamp])


def server_list(url: str) -> list[str]:
    """`NATS_URL` as nats-py's server list: one URL, or several comma-separated (the nodes of a cluster)."""
    servers = [u.strip() for u in url.split(",") if u.strip()]
    if not servers:
        raise ValueError("NATS_URL names no server")
    return servers


def monitor_list(url: str | None) -> list[str]:
    """`NATS_MONITOR_URL`, one base URL or several comma-separated; no trailing slash."""
    return [u.strip().rstrip("/") for u in (url or "").split(",") if u.strip()]


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


def _leader_of(data: bytes) -> str:
    with contextlib.suppress(ValueError, TypeError, KeyError):
        return str(orjson.loads(data)["leader"])
    return "?"


def _redact(url: str) -> str:
    """The URL (or comma-separated URLs) without credentials, for logs and errors."""
    return ",".join(_redact_one(u) for u in url.split(","))


def _redact_one(url: str) -> str:
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
