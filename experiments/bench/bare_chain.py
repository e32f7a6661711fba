"""The baseline for the services benchmark: three minimal apps forwarding a body.

Same HTTP stack as the real services (FastAPI under uvicorn with uvloop and
httptools, aiohttp between hops) but no validation, no stamping, no queue:
the last hop answers 202 with made-up ids. What the real chain costs beyond
this is our overhead.

    BARE_NEXT_URL=http://127.0.0.1:9001 uvicorn --factory experiments.bench.bare_chain:create_forwarder
    uvicorn --factory experiments.bench.bare_chain:create_sink
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import aiohttp
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from services.app import NO_OTEL


def create_forwarder() -> FastAPI:
    """Forwards each POST body to BARE_NEXT_URL and relays the answer."""
    next_url = os.environ["BARE_NEXT_URL"].rstrip("/") + "/api/v1/ingest"
    holder: dict[str, aiohttp.ClientSession] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        holder["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256), trust_env=False)
        try:
            yield
        finally:
            await holder["s"].close()

    app = FastAPI(lifespan=lifespan, telemetry=NO_OTEL)  # type: ignore[arg-type]

    @app.post("/api/v1/ingest")
    async def forward(request: Request) -> Response:
        body = await request.body()
        async with holder["s"].post(next_url, data=body, headers={"Content-Type": "application/json"}) as r:
            return Response(await r.read(), status_code=r.status, media_type="application/json")

    @app.get("/health")
    async def health() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return app


def create_sink() -> FastAPI:
    """Answers 202 with one id per item; stores nothing."""
    app = FastAPI(telemetry=NO_OTEL)  # type: ignore[arg-type]

    @app.post("/api/v1/ingest")
    async def sink(request: Request) -> Response:
        data = orjson.loads(await request.body())
        n = len(data) if isinstance(data, list) else 1
        ids = [str(i) for i in range(n)]
        return Response(orjson.dumps({"ids": ids, "count": n, "duplicates": 0}), 202, media_type="application/json")

    @app.get("/health")
    async def health() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return app
