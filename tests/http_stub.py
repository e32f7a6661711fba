"""A real aiohttp server on 127.0.0.1 standing in for the gateway, for tests of the load generators."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serve_ingest(handler: Handler) -> AsyncIterator[str]:
    """`handler` on POST /api/v1/ingest of a free port; yields the URL, and stops the server after."""
    app = web.Application()
    app.router.add_post("/api/v1/ingest", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/api/v1/ingest"
    finally:
        await runner.cleanup()
