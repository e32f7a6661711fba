"""Processor service (:8082): stores messages in the queue backend and works them off.

    uvicorn --factory services.processor:create_app --port 8082

`POST /api/v1/messages` answers 202 only once the backend stored every
message (NATS: after the PubAck). The worker pool fetches, works, records in
the ledger, then acks. If the backend is down at start the service still
starts, reports unhealthy and connects as soon as the backend is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Gauge

from backends.contract import BackendUnavailable, Message, PublishAck, QueueBackend, QueueFull
from backends.factory import BackendSettings, create_backend, load_settings
from services.app import install_common, new_app
from services.bodies import read_json
from services.drain import Drain, install_drain_routes
from services.errors import ERROR_RESPONSES, RETRY_AFTER, ApiError, json_response
from services.ledger import Ledger
from services.models import Accepted, InvalidInput, WireMessage, wire_to_message
from services.openapi import document_body
from services.percentile import nearest_rank
from services.settings import ProcessorSettings, load
from services.worker_pool import PoolConfig, WorkerPool, go_duration

log = logging.getLogger("services.processor")


class Processor:
    """Composition of backend, ledger and worker pool, with their lifecycle."""

    def __init__(
        self, settings: ProcessorSettings, backend_settings: BackendSettings, backend: QueueBackend | None = None
    ) -> None:
        """`backend`: one built by the caller (not connected; `start` connects it), else the one the settings name."""
        self.settings = settings
        self.backend_settings = backend_settings
        self.backend: QueueBackend = backend if backend is not None else create_backend(backend_settings)
        self.ledger = Ledger(settings.ledger_path)
        self.pool = WorkerPool(
            self.backend,
            self.ledger,
            PoolConfig(
                workers=settings.workers,
                processing_ms=settings.processing_ms,
                failure_rate=settings.failure_rate,
                failure_id_prefix=settings.failure_id_prefix,
                fetch_batch=settings.fetch_batch,
                fetch_timeout=settings.fetch_timeout,
                nak_delay=settings.nak_delay,
                max_deliver=backend_settings.max_deliver,
                ack_wait=backend_settings.ack_wait,
                instance=settings.instance,
            ),
        )
        self.connected = False
        self.last_error = ""
        self._connector: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.ledger.start()
        self._connector = asyncio.create_task(self._connect_until_done(), name="backend-connect")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._connector), self.backend_settings.nats_connect_timeout + 1)
        self.pool.start()
        log.info(
            "processor %s: queue=%s workers=%d ledger=%s",
            self.settings.instance,
            self.backend_settings.queue_type,
            self.settings.workers,
            self.settings.ledger_path,
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def is_connected(self) -> bool:
        """The backend connected at least once (it reconnects by itself after)."""
        return self.connected

    async def _connect_until_done(self) -> None:
        while True:
            try:
                await self.backend.connect()
            except BackendUnavailable as exc:
                self.last_error = str(exc)
                log.warning("backend not reachable, retrying in %ss: %s", self.settings.connect_retry, exc)
                await asyncio.sleep(self.settings.connect_retry)
                continue
            self.connected = True
            self.last_error = ""
            return

    async def stop(self) -> None:
        """Drain: finish in-flight work (bounded), flush the ledger, close the backend."""
        if self._connector is not None and not self._connector.done():
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        await self.pool.stop(self.settings.drain_timeout)
        await self.ledger.close()
        await self.backend.close()
        log.info("processor %s stopped: %d processed", self.settings.instance, self.pool.processed_count)

    async def publish(self, messages: list[Message]) -> list[PublishAck]:
        if not self.connected:
            raise ApiError(503, f"queue backend not connected: {self.last_error or 'connecting'}")
        try:
            if len(messages) == 1:
                return [await self.backend.publish(messages[0])]
            return await self.backend.publish_many(messages)
        except QueueFull as exc:
            raise ApiError(429, str(exc), headers={"Retry-After": RETRY_AFTER}) from None
        except BackendUnavailable as exc:
            raise ApiError(503, str(exc)) from None

    async def stats(self) -> dict[str, Any]:
        """The seed's /stats shape, plus extras."""
        q = await self.backend.stats()
        pool = self.pool
        lat = sorted(pool.latencies_ms)
        return {
            "queue": {
                "total_enqueued": q.total_enqueued,
                "total_dequeued": q.total_dequeued,
                "current_size": q.current_size,
                "type": q.backend,
                "connected": q.connected and self.connected,
                "in_flight": q.in_flight,
                "redelivered": q.redelivered,
                "duplicates": q.duplicates,
                "dead_lettered": q.dead_lettered,
                "leader_changes": q.leader_changes,
                **({"cluster": q.cluster} if q.cluster is not None else {}),
            },
            "pool": {
                "processed_count": pool.processed_count,
                "error_count": pool.error_count,
                "total_duration": go_duration(pool.total_duration),
                "workers": self.settings.workers,
                "in_flight": pool.in_flight,
                "dead_lettered": pool.dead_lettered,
                "redelivered": pool.redelivered,
                "duplicates_skipped": pool.duplicates_skipped,
                "e2e_latency_ms": _latency_summary(lat),
            },
        }


def _latency_summary(sorted_ms: list[float]) -> dict[str, float] | None:
    if not sorted_ms:
        return None
    n = len(sorted_ms)

    def pick(q: float) -> float:
        return round(nearest_rank(sorted_ms, q), 3)

    return {
        "p50": pick(0.5),
        "p99": pick(0.99),
        "max": round(sorted_ms[-1], 3),
        "mean": round(statistics.fmean(sorted_ms), 3),
        "window": n,
    }


class ProcessorMetrics:
    """The processor's own Prometheus metrics, read from the backend and the pool at each scrape.

    As Prometheus expects: what only grows is a Counter (`*_total`), what can
    fall is a Gauge, and each name carries its unit (messages, elections).
    The pool and the backend keep plain integers on their hot paths; a
    counter here is advanced by what they grew since the last scrape.
    """

    def __init__(self, processor: Processor) -> None:
        self.processor = processor
        self.registry = CollectorRegistry()
        r = self.registry
        self.depth = Gauge("queue_depth_messages", "messages stored and not yet acknowledged", registry=r)
        self.dead = Gauge("queue_dead_letter_messages", "messages in the dead-letter place now", registry=r)
        self.processed = Counter("pool_processed_messages", "deliveries processed and acked", registry=r)
        self.failed = Counter("pool_failed_messages", "deliveries whose work failed", registry=r)
        self.elections = Counter(
            "queue_leader_elections", "stream and consumer leader elections seen (NATS cluster)", registry=r
        )
        self._seen: dict[Counter, int] = {}

    def _advance(self, counter: Counter, total: int) -> None:
        grown = total - self._seen.get(counter, 0)
        if grown > 0:
            counter.inc(grown)
            self._seen[counter] = total

    async def refresh(self) -> None:
        processor = self.processor
        with contextlib.suppress(BackendUnavailable, TimeoutError):
            q = await asyncio.wait_for(processor.backend.stats(), 1.0)
            self.depth.set(q.current_size)
            self.dead.set(q.dead_lettered)
            self._advance(self.elections, q.leader_changes)
        self._advance(self.processed, processor.pool.processed_count)
        self._advance(self.failed, processor.pool.error_count)


class MessagesApi:
    """The processor's own routes: store messages (from ingest) and report statistics."""

    def __init__(self, processor: Processor, drain: Drain) -> None:
        self.processor = processor
        self.drain = drain
        self.settings = processor.settings

    async def publish(self, request: Request) -> Response:
        """Store stamped messages (from ingest); 202 after the backend confirmed each.

        While the processor drains for a queue switch: 503 with `X-Processor-Draining: true` (ingest retries
        the same ids on another processor).
        """
        received_at = time.time_ns()
        drain = self.drain
        drain.refuse_if_draining()
        data = await read_json(request, self.settings.max_body_bytes)
        raw = data if isinstance(data, list) else [data]
        if not raw:
            raise InvalidInput(422, "empty list: send at least one message")
        if len(raw) > self.settings.max_batch:
            raise InvalidInput(422, f"too many messages: {len(raw)} > MAX_BATCH={self.settings.max_batch}")
        messages = [wire_to_message(d, received_at) for d in raw]
        with drain.publish():
            drain.refuse_if_draining()  # the drain may have begun while the body was read
            acks = await self.processor.publish(messages)
        dup_at = [i for i, a in enumerate(acks) if a.duplicate]
        return json_response(
            {
                "ids": [a.message_id for a in acks],
                "count": len(acks),
                "duplicates": len(dup_at),
                "duplicate_positions": dup_at,
            },
            202,
        )

    async def stats(self) -> Response:
        """Queue and pool statistics in the seed's shape (plus extra keys)."""
        return json_response(await self.processor.stats())


def install_routes(app: FastAPI, api: MessagesApi) -> None:
    """`POST /api/v1/messages` and `GET /stats`."""
    app.add_api_route(
        "/api/v1/messages",
        api.publish,
        methods=["POST"],
        status_code=202,
        response_model=Accepted,
        responses=ERROR_RESPONSES,
        tags=["internal"],
        openapi_extra=document_body(WireMessage, api.settings.max_batch),
    )
    app.add_api_route("/stats", api.stats, methods=["GET"], tags=["ops"])


def create_app(
    settings: ProcessorSettings | None = None,
    backend: QueueBackend | None = None,
    backend_settings: BackendSettings | None = None,
) -> FastAPI:
    """Composition root: settings read here, once (from the environment unless given).

    `backend`: a queue backend built by the caller (the app connects and
    closes it in its lifespan); else `backend_settings` (or QUEUE_TYPE and
    friends) name one. `max_deliver` and `ack_wait` for the pool come from
    `backend_settings` either way.
    """
    settings = settings if settings is not None else load(ProcessorSettings)
    backend_settings = backend_settings if backend_settings is not None else load_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    processor = Processor(settings, backend_settings, backend)
    app = new_app("queue-lab processor", processor.lifespan, settings)
    app.state.processor = processor
    metrics = ProcessorMetrics(processor)
    install_common(
        app, "processor", lambda: _health(processor), registry=metrics.registry, before_scrape=metrics.refresh
    )
    drain = Drain(processor.backend, processor.pool, processor.is_connected)
    install_drain_routes(app, drain, settings.admin_token)
    install_routes(app, MessagesApi(processor, drain))
    return app


async def _health(processor: Processor) -> tuple[bool, dict[str, Any]]:
    if not processor.connected:
        return False, {"backend": {"type": processor.backend.name, "connected": False, "reason": processor.last_error}}
    try:
        s = await asyncio.wait_for(processor.backend.stats(), 1.0)
    except (TimeoutError, BackendUnavailable) as exc:
        return False, {"backend": {"type": processor.backend.name, "connected": False, "reason": repr(exc)}}
    body: dict[str, Any] = {"backend": {"type": s.backend, "connected": s.connected, "current_size": s.current_size}}
    if s.cluster is not None:
        body["backend"]["cluster"] = s.cluster
    if not s.connected:
        body["backend"]["reason"] = "broker unreachable; reconnecting"
    elif not s.joined:
        body["backend"]["reason"] = "joining the consumer group"
    return s.connected and s.joined, body
