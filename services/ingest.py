"""Ingest service (:8081): validates, stamps id and created_at, forwards to the processor.

    uvicorn --factory services.ingest:create_app --port 8081

`created_at` (ns since the epoch) is stamped here, once, so end-to-end latency
is measured from ingest to the worker that processed the message.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from services import received
from services.app import always_healthy, install_common, new_app
from services.batcher import ForwardBatcher
from services.bodies import read_json_sized
from services.downstream import Downstream, NextHopFactory, passthrough
from services.errors import ERROR_RESPONSES, json_response
from services.models import (
    DIGESTS_HEADER,
    RECEIVED_HEADER,
    Accepted,
    IngestItem,
    OriginalItem,
    digests_of,
    given_digests,
    parse_items,
    with_original_fields,
)
from services.openapi import document_body
from services.routing import ProcessorRoutes, install_routing_routes, parse_urls
from services.settings import IngestSettings, load

log = logging.getLogger("services.ingest")


def stamp(
    items: list[IngestItem], now_ns: int, gateway_at: list[int] | None = None, digests: list[str] | None = None
) -> list[dict[str, Any]]:
    """Wire messages for the processor: the client's id or a new one, one timestamp, each one's gateway stamp.

    `digests`: the payload digests the gateway stamped; computed here when
    ingest is the first hop (called directly).
    """
    if digests is None:
        digests = digests_of(items)
    return [
        {
            "id": item.id or uuid.uuid4().hex,
            "source": item.source,
            "payload": item.payload,
            "created_at": now_ns,
            "attributes": item.attributes or {},
            "stamps": {"gateway": gateway_at[i]} if gateway_at is not None else {},
            "digest": digest,
        }
        for i, (item, digest) in enumerate(zip(items, digests, strict=True))
    ]


@dataclass
class IngestCounts:
    """What ingest's /stats reports (the original's TotalReceived, TotalSent, TotalFailed), in messages."""

    received: int = 0
    sent: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"total_received": self.received, "total_sent": self.sent, "total_failed": self.failed}


def gateway_stamps(request: Request, messages: int) -> list[int] | None:
    """The gateway's received time (ns) of each message (services/received.py); None when called directly."""
    return received.decode(request.headers.get(RECEIVED_HEADER), messages)


class Ingest:
    """Ingest's state (settings, the processors it routes to, the batcher, its counts) and its route handlers."""

    def __init__(self, settings: IngestSettings, downstream: NextHopFactory) -> None:
        self.settings = settings
        # One or more processors (comma-separated PROCESSOR_URL): requests go round
        # robin, so publishing spreads over every processor's event loop, while the
        # shared durable consumer (NATS) spreads the work. The list can change at
        # run time (PUT /admin/processors: a planned queue switch, services.routing).
        self.routes = ProcessorRoutes(settings, downstream)
        self.batcher = ForwardBatcher(
            lambda body, _headers: self.routes.post(body),
            max_in_flight=settings.forward_in_flight,
            max_messages=settings.max_batch,
            max_bytes=settings.max_body_bytes // 2,
        )
        self.routes.on_resize = self._resize
        self.counts = IngestCounts()

    def _resize(self, processors: int) -> None:
        self.batcher.max_in_flight = self.settings.forward_in_flight * processors

    @contextlib.asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        await self.routes.replace(parse_urls(self.settings.processor_url))
        try:
            yield
        finally:
            await self.batcher.close()
            await self.routes.close()

    async def stats(self) -> Response:
        """Messages received (valid), sent (stored by the processor) and failed, as the original's ingest counts."""
        return json_response(self.counts.as_dict())

    async def ingest(self, request: Request) -> Response:
        """Stamp and forward; 202 once the processor's backend stored every message."""
        data, size = await read_json_sized(request, self.settings.max_body_bytes)
        items = parse_items(data, self.settings.max_batch)
        counts = self.counts
        counts.received += len(items)
        try:
            # size + ~175 bytes a message for the id, created_at, attributes, stamps and digest added here
            digests = given_digests(request.headers.get(DIGESTS_HEADER), len(items))
            wire = stamp(items, time.time_ns(), gateway_stamps(request, len(items)), digests)
            status, answer = await self.batcher.submit(wire, size + 175 * len(items))
        except BaseException:
            counts.failed += len(items)
            raise
        if 200 <= status < 300:
            counts.sent += len(items)
        else:
            counts.failed += len(items)
        if isinstance(data, dict):
            answer = with_original_fields(status, answer)
        return passthrough(status, answer)


def install_routes(app: FastAPI, ingest: Ingest) -> None:
    """`GET /stats` and `POST /api/v1/ingest`."""
    app.add_api_route("/stats", ingest.stats, methods=["GET"], tags=["ops"])
    app.add_api_route(
        "/api/v1/ingest",
        ingest.ingest,
        methods=["POST"],
        status_code=202,
        response_model=Accepted,
        responses=ERROR_RESPONSES,
        tags=["ingest"],
        openapi_extra=document_body(IngestItem, ingest.settings.max_batch, OriginalItem),
    )


def create_app(settings: IngestSettings | None = None, downstream: NextHopFactory = Downstream) -> FastAPI:
    """Composition root: settings read here, once (from the environment unless given).

    `downstream` makes the client for each processor (TCP by default;
    `services.inprocess.AsgiHops` for the chain in one process).
    """
    settings = settings if settings is not None else load(IngestSettings)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ingest = Ingest(settings, downstream)
    app = new_app("queue-lab ingest", ingest.lifespan, settings)
    install_common(app, "ingest", always_healthy)
    install_routing_routes(app, ingest.routes, settings)
    install_routes(app, ingest)
    return app
