"""One POST route served without FastAPI's per-request layers: the gateway's `/api/v1/ingest`.

A profile of the gateway under wrk at 64 connections (py-spy) put about a
third of its busy time in the layers between the server and the handler:
exception middleware, routing, the exit stack, FastAPI's request/response
wrapping and dependency solving, though the handler takes a plain `Request`
and returns a `Response`. This pure ASGI middleware hands that one route
straight to its handler and leaves every other request to the app as before.

Nothing else changes for the route: the same handler, the same JSON error
bodies (the app's own exception handlers, looked up by the exception's type
as Starlette does), the same request metrics (a `MetricsMiddleware` on the
app's registry, with the route's path as label), and the route stays in the
app, so OpenAPI documents it and a method other than POST gets the app's 405.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from services.errors import error_response
from services.metrics import MetricsMiddleware

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]


class HotRoute:
    """POST `route.path` goes to `handler` directly, every other request to the app."""

    def __init__(self, app: ASGIApp, route: APIRoute, handler: Handler, fastapi_app: FastAPI) -> None:
        self.app = app
        self.route = route
        self.path = route.path
        self.handler = handler
        self.errors = fastapi_app.exception_handlers
        self._serve = MetricsMiddleware(self._handle, fastapi_app.state.http_metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.path and scope["method"] == "POST":
            scope["route"] = self.route  # the metrics' route label, as the router would set it
            await self._serve(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self.handler(request)
        except Exception as exc:  # the app's handler for its type: the same JSON error body as the routed path
            response = await self._error_response(request, exc)
        await response(scope, receive, send)

    async def _error_response(self, request: Request, exc: Exception) -> Response:
        for cls in type(exc).__mro__:
            handler: Any = self.errors.get(cls)
            if handler is not None:
                answer: Response = await handler(request, exc)
                return answer
        log.exception("unexpected error on POST %s", self.path)
        return error_response(500, f"internal error: {type(exc).__name__}")


def install_hot_route(app: FastAPI, path: str) -> None:
    """Serve the app's POST `path` (already added with `add_api_route`) through `HotRoute`."""
    route = next(r for r in app.routes if isinstance(r, APIRoute) and r.path == path and "POST" in (r.methods or ()))
    app.add_middleware(HotRoute, route=route, handler=route.endpoint, fastapi_app=app)
