"""The stream, the dead-letter stream and the durable consumer: their shapes, creation, and the fsync check."""

from __future__ import annotations

import logging

import httpx
import nats.js.errors
from nats.js import JetStreamContext
from nats.js import api as js_api

from backends.contract import BackendMisconfigured
from backends.nats.config import NatsConfig, monitor_list

log = logging.getLogger(__name__)

_STREAM_NAME_IN_USE = 10058  # JetStream: a stream of that name exists with another configuration


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


async def stream_exists(js: JetStreamContext, cfg: NatsConfig) -> bool:
    """The stream is there: asked of its leader, not of the meta leader.

    After a reconnect this is all that is needed; creating (a meta-leader
    operation) only when the stream is missing keeps publishes flowing
    while a cluster has a stream leader but, for a few seconds, no meta
    leader (after a partition heals). The consumer is not asked: its
    leader may be the node that just died, and a publish does not need
    it; a durable consumer lives as long as its stream does.
    """
    try:
        await js.stream_info(cfg.stream)
    except nats.js.errors.NotFoundError:
        return False
    return True


async def create(js: JetStreamContext, cfg: NatsConfig) -> None:
    """Create or update both streams and the durable consumer; idempotent."""
    for stream_cfg in (stream_config(cfg), dlq_stream_config(cfg)):
        try:
            await js.add_stream(stream_cfg)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != _STREAM_NAME_IN_USE:
                raise
            await js.update_stream(stream_cfg)
    await js.add_consumer(cfg.stream, consumer_config(cfg))


async def check_sync_policy(cfg: NatsConfig, server_version: str) -> None:
    """Log the server's version and fsync policy (from `/varz`); warn when it cannot promise durability.

    JetStream acknowledges a publish once the message is written to the
    OS, and fsyncs every `sync_interval` (2 min by default): a process
    crash loses nothing acknowledged, a power loss can. Only a server
    with `sync_interval: always` fsyncs before the PubAck.
    """
    if not cfg.monitor_url:
        log.warning(
            "NATS %s: fsync policy unknown (no NATS_MONITOR_URL to read /varz); unless the server runs "
            "with sync_interval: always, acknowledged messages can be lost on power loss (not on process crash)",
            server_version,
        )
        return
    base = monitor_list(cfg.monitor_url)[0]
    try:
        async with httpx.AsyncClient(timeout=cfg.connect_timeout, trust_env=False) as client:
            varz = (await client.get(f"{base}/varz")).json()
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
        base,
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
