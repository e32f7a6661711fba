"""How a service answers anything but success: JSON `{"error": ..., "details": ...}` with the right status.

A 4xx names the problem (and `details` each field), a 503 is a real
downstream outage, a 429 a full queue; nothing a client sends should
produce a 5xx, so an unexpected exception is logged and answered 500 only
as the last resort.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.models import ErrorBody, InvalidInput

log = logging.getLogger(__name__)

JSON = "application/json"
# Seconds a client should wait after a 429 (queue full). One value for every
# hop: the processor sets it, ingest and the gateway relay it with the 429.
RETRY_AFTER = "1"

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "malformed JSON (or nested deeper than the limit)",
        401: "missing or wrong API key",
        413: "body over MAX_BODY_BYTES",
        415: "not application/json",
        422: "valid JSON, invalid message; `details` names each field",
        429: "queue full: retry later",
        503: "a downstream service or the queue backend is unavailable",
    }.items()
}


class ApiError(Exception):
    """An answer other than success, raised anywhere in a handler."""

    def __init__(
        self,
        status: int,
        error: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.details = details
        self.headers = headers


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(content=orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def error_response(status: int, error: str, details: Any = None, headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"error": error}
    if details is not None:
        body["details"] = details
    return json_response(body, status, headers)


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.error, exc.details, exc.headers)


async def _invalid(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidInput)
    return error_response(exc.status, exc.error, exc.details)


async def _validation(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = [{"field": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")} for e in exc.errors()]
    return error_response(422, "invalid request", details)


async def _http(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}")


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as the JSON error body."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(InvalidInput, _invalid)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
