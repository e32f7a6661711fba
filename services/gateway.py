"""API gateway (:8080): the public door. Auth, size limits, validation, idempotency.

    uvicorn --factory services.gateway:create_app --port 8080

`POST /api/v1/ingest` answers 202 with the message ids only after the
processor's backend stored every message; any outage downstream is a 503,
a full queue a 429, never a 2xx for a message that was not stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from services.app import always_healthy, install_common, new_app
from services.bodies import read_json_sized
from services.downstream import Downstream, NextHop, NextHopFactory, passthrough
from services.errors import ERROR_RESPONSES, ApiError, json_response
from services.forward_ingest import IngestForwarder
from services.hot_route import install_hot_route
from services.models import (
    ID_PATTERN,
    Accepted,
    IngestItem,
    OriginalItem,
    SystemStatus,
    digests_of,
    parse_items,
    with_original_fields,
)
from services.openapi import document_body
from services.settings import GatewaySettings, load

log = logging.getLogger("services.gateway")
_ID = re.compile(ID_PATTERN)
SERVICES = ("gateway", "ingest", "processor")  # the `services` of /api/v1/status


class ApiKeyCheck:
    """Constant-time check of `X-API-Key` or `Authorization: Bearer`, when a key is set."""

    def __init__(self, key: str | None) -> None:
        self._key = key.encode() if key else None

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def __call__(self, request: Request) -> None:
        if self._key is None:
            return
        given = request.headers.get("x-api-key")
        if given is None:
            auth = request.headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else None
        if given is None or not hmac.compare_digest(given.encode(), self._key):
            raise ApiError(
                401,
                "missing or wrong API key (X-API-Key or Authorization: Bearer)",
                headers={"WWW-Authenticate": "Bearer"},
            )


def with_ids(items: list[IngestItem], idempotency_key: str | None) -> list[dict[str, Any]]:
    """Items for ingest; an Idempotency-Key becomes the id (`KEY`, or `KEY-i` in a list)."""
    out = []
    for i, item in enumerate(items):
        mid = item.id
        if mid is None and idempotency_key is not None:
            mid = idempotency_key if len(items) == 1 else f"{idempotency_key}-{i}"
        d: dict[str, Any] = {"source": item.source, "payload": item.payload}
        if mid is not None:
            d["id"] = mid
        if item.attributes:
            d["attributes"] = item.attributes
        out.append(d)
    return out


class Gateway:
    """The gateway's state (settings, the key check, its two next hops) and its route handlers."""

    def __init__(self, settings: GatewaySettings, downstream: NextHopFactory) -> None:
        self.settings = settings
        self.ingest = downstream("ingest", settings.ingest_url, settings.http_timeout, settings.http_connections)
        self.processor = downstream("processor", settings.processor_url, settings.status_timeout, 4)
        self.check_key = ApiKeyCheck(settings.api_key.get_secret_value() if settings.api_key else None)
        self.forwarder = IngestForwarder(self.ingest, settings)

    @contextlib.asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        await self.ingest.start()
        await self.processor.start()
        log.info(
            "gateway forwarding to %s; API key %s", self.settings.ingest_url, "on" if self.check_key.enabled else "off"
        )
        try:
            yield
        finally:
            await self.forwarder.close()
            await self.ingest.close()
            await self.processor.close()

    async def ingest_route(self, request: Request) -> Response:
        """Submit one message or a list; 202 with the ids once all are stored."""
        received_at = time.time_ns()
        self.check_key(request)
        key = request.headers.get("idempotency-key")
        if key is not None and not _ID.match(key):
            raise ApiError(422, f"Idempotency-Key must match {ID_PATTERN}")
        data, size = await read_json_sized(request, self.settings.max_body_bytes)
        items = parse_items(data, self.settings.max_batch)
        status, answer = await self.forwarder.forward(with_ids(items, key), size, received_at, digests_of(items))
        if isinstance(data, dict):
            answer = with_original_fields(status, answer)
        return passthrough(status, answer)

    async def status(self) -> Response:
        """Health of gateway, ingest, processor and the queue backend, in bounded time.

        Ours is `status` and `components` (with reasons); the original's is
        `healthy` and `ingest` / `processor` each with `healthy` and `stats`.
        """
        ing, proc, ing_stats, proc_stats = await asyncio.gather(
            self._probe(self.ingest),
            self._probe(self.processor),
            self._stats_of(self.ingest),
            self._stats_of(self.processor),
        )
        backend = proc.pop("backend", {"status": "unknown", "reason": "processor unreachable"})
        if "status" not in backend:
            backend["status"] = "ok" if backend.get("connected") else "down"
        components = {"gateway": {"status": "ok"}, "ingest": ing, "processor": proc, "backend": backend}
        ok = all(c["status"] == "ok" for c in components.values())
        body = {
            "status": "ok" if ok else "degraded",
            "healthy": ok,
            "components": components,
            "ingest": {"healthy": ing["status"] == "ok", "stats": ing_stats},
            "processor": {"healthy": proc["status"] == "ok", "stats": proc_stats},
            "services": {name: "healthy" if components[name]["status"] == "ok" else "unhealthy" for name in SERVICES},
        }
        return json_response(body, 200 if ok else 503)

    async def _probe(self, client: NextHop) -> dict[str, Any]:
        timeout = self.settings.status_timeout
        try:
            code, body = await client.get_json("/health", timeout)
        except TimeoutError:
            return {"status": "down", "reason": f"no answer within {timeout}s"}
        except Exception as exc:  # any failure to reach it is "down", with the reason
            return {"status": "down", "reason": f"{type(exc).__name__}: {exc}"}
        return {"status": "ok" if code == 200 else "unavailable", "http": code, **_strip(body)}

    async def _stats_of(self, client: NextHop) -> Any:
        try:
            code, body = await client.get_json("/stats", self.settings.status_timeout)
        except Exception:  # no stats is null, as in the original; the health probe gives the reason
            return None
        return body if code == 200 else None


def install_routes(app: FastAPI, gateway: Gateway) -> None:
    """`POST /api/v1/ingest` and `GET /api/v1/status`."""
    app.add_api_route(
        "/api/v1/ingest",
        gateway.ingest_route,
        methods=["POST"],
        status_code=202,
        response_model=Accepted,
        responses=ERROR_RESPONSES,
        tags=["ingest"],
        openapi_extra={
            **document_body(IngestItem, gateway.settings.max_batch, OriginalItem),
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "pattern": ID_PATTERN},
                    "description": "becomes the message id (KEY-i for item i of a list): a retry is stored once",
                }
            ],
        },
    )
    app.add_api_route(
        "/api/v1/status",
        gateway.status,
        methods=["GET"],
        tags=["ops"],
        responses={
            200: {"model": SystemStatus, "description": "every component is ok"},
            503: {"model": SystemStatus, "description": "a component is down"},
        },
    )


def create_app(settings: GatewaySettings | None = None, downstream: NextHopFactory = Downstream) -> FastAPI:
    """Composition root: settings read here, once (from the environment unless given).

    `downstream` makes the clients for ingest and the processor (TCP by
    default; `services.inprocess.AsgiHops` for the chain in one process).
    """
    settings = settings if settings is not None else load(GatewaySettings)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    gateway = Gateway(settings, downstream)
    app = new_app("queue-lab gateway", gateway.lifespan, settings)
    install_common(app, "gateway", always_healthy)
    install_routes(app, gateway)
    install_hot_route(app, "/api/v1/ingest")
    return app


def _strip(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        return {}
    return {k: v for k, v in body.items() if k not in ("service", "status", "healthy")}
