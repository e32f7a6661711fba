"""What every service's app shares: FastAPI's settings, the error handlers, `/health` and `/metrics`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CollectorRegistry

from services import gc_tuning
from services.errors import install_error_handlers, json_response
from services.metrics import install_metrics
from services.models import ErrorBody

# FastAPI's native OpenTelemetry looks up the global providers (and the
# environment) on every request: ~6% of a hop's CPU in a profile under load.
# The services export Prometheus metrics instead, so it is switched off.
NO_OTEL: dict[str, Any] = {"tracing": False, "metrics": False, "logs": False}

HealthCheck = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]


def new_app(title: str, lifespan: Any, gc: gc_tuning.GcOptions | None = None) -> FastAPI:
    """A FastAPI app with the settings every service shares; `gc`: collector settings applied after start-up."""
    if gc is not None:
        lifespan = gc_tuning.after_start(lifespan, gc)
    return FastAPI(title=title, version="0.1.0", lifespan=lifespan, telemetry=NO_OTEL)  # type: ignore[arg-type]


def install_common(
    app: FastAPI,
    service: str,
    health: HealthCheck,
    registry: CollectorRegistry | None = None,
    before_scrape: Callable[[], Awaitable[None]] | None = None,
) -> CollectorRegistry:
    """Error handlers, /health, /metrics and request metrics for one service."""
    install_error_handlers(app)

    async def health_route() -> Response:
        """Liveness and readiness: 200 when this service can do its job, 503 otherwise (and `healthy`)."""
        ok, body = await health()
        answer = {"service": service, "status": "ok" if ok else "unavailable", "healthy": ok, **body}
        return json_response(answer, 200 if ok else 503)

    app.add_api_route("/health", health_route, methods=["GET"], tags=["ops"], responses={503: {"model": ErrorBody}})
    return install_metrics(app, service, registry, before_scrape)


async def always_healthy() -> tuple[bool, dict[str, Any]]:
    """The health of a stateless hop: up while it answers."""
    return True, {}
