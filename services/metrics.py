"""Request counts and latencies per route, in each app's own Prometheus registry, and `/metrics`.

Each app has its own registry, so several apps in one process (tests, the
bare chain) never share counters.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The text format shows each counter's `*_created` timestamp as a gauge of its own: a
# gauge that never falls, which is what a scraper should not get. Not needed here.
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class HttpMetrics:
    """Per-app Prometheus registry with request counts and latencies by route."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by route and status",
            ["service", "method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            ["service", "route"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.service = service


class MetricsMiddleware:
    """Pure ASGI (no per-request task): counts and times every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            key = (scope["method"], getattr(route, "path", "unmatched"), status)
            children = self._children.get(key)
            if children is None:  # labels() takes a lock and builds a tuple: once per key
                m = self.metrics
                children = (
                    m.requests.labels(m.service, key[0], key[1], str(status)),
                    m.latency.labels(m.service, key[1]),
                )
                self._children[key] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - started)


def install_metrics(
    app: FastAPI,
    service: str,
    registry: CollectorRegistry | None = None,
    before_scrape: Callable[[], Awaitable[None]] | None = None,
) -> CollectorRegistry:
    """Request metrics for every route and `GET /metrics`; `before_scrape` refreshes what is read on demand."""
    metrics = HttpMetrics(service, registry or CollectorRegistry())
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.http_metrics = metrics  # for a route served beside the router (services.hot_route)

    async def metrics_route() -> Response:
        """Prometheus text format."""
        if before_scrape is not None:
            await before_scrape()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", metrics_route, methods=["GET"], tags=["ops"], response_class=Response)
    return metrics.registry
