"""The gateway's hot route: served beside the router, with the app's error bodies, metrics, 405 and OpenAPI."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response

from services.app import always_healthy, install_common, new_app
from services.errors import ApiError, json_response
from services.hot_route import install_hot_route
from services.models import InvalidInput


def app_with_hot_route() -> tuple[FastAPI, list[dict[str, object]]]:
    app = new_app("t", None)
    install_common(app, "t", always_healthy)
    seen: list[dict[str, object]] = []

    async def post(request: Request) -> Response:
        seen.append(dict(request.scope))
        body = await request.body()
        if body == b"api":
            raise ApiError(503, "ingest unavailable", headers={"Retry-After": "1"})
        if body == b"invalid":
            raise InvalidInput(422, "invalid message: body.source", [{"field": "body.source", "problem": "x"}])
        if body == b"bug":
            raise KeyError("oops")
        return json_response({"ok": True}, 202)

    app.add_api_route("/api/v1/ingest", post, methods=["POST"], status_code=202)
    install_hot_route(app, "/api/v1/ingest")
    return app, seen


async def test_the_route_skips_the_router_and_keeps_error_bodies_metrics_405_and_docs() -> None:
    app, seen = app_with_hot_route()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        ok = await c.post("/api/v1/ingest", content=b"x")
        assert (ok.status_code, ok.json()) == (202, {"ok": True})
        assert "endpoint" not in seen[-1]  # the router (which sets the endpoint) never saw it
        api = await c.post("/api/v1/ingest", content=b"api")
        assert (api.status_code, api.json(), api.headers["retry-after"]) == (503, {"error": "ingest unavailable"}, "1")
        invalid = await c.post("/api/v1/ingest", content=b"invalid")
        assert invalid.status_code == 422
        assert invalid.json()["details"] == [{"field": "body.source", "problem": "x"}]
        bug = await c.post("/api/v1/ingest", content=b"bug")
        assert (bug.status_code, bug.json()) == (500, {"error": "internal error: KeyError"})
        assert (await c.get("/api/v1/ingest")).status_code == 405  # other methods: the app, as before
        assert "/api/v1/ingest" in (await c.get("/openapi.json")).json()["paths"]
        metrics = (await c.get("/metrics")).text
    for status in ("202", "503", "422", "500"):
        line = f'http_requests_total{{method="POST",route="/api/v1/ingest",service="t",status="{status}"}} 1.0'
        assert line in metrics
