"""Reading a request body: bounded in bytes, JSON only, parsed once.

Every refusal is a 4xx naming the limit or the problem: 415 for another
content type, 413 past `MAX_BODY_BYTES`, 400 for malformed JSON.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

from services.errors import JSON, ApiError


def _is_json(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == JSON or (mime.startswith("application/") and mime.endswith("+json"))


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes `max_bytes`.

    Counted while streaming, so a chunked body without Content-Length is cut
    off as early as one that announces its size.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "invalid Content-Length header") from None
        if size > max_bytes:
            raise ApiError(413, f"body of {size} bytes exceeds MAX_BODY_BYTES={max_bytes}")
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise ApiError(413, f"body exceeds MAX_BODY_BYTES={max_bytes}")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, max_bytes: int) -> Any:
    """A JSON body: 415 for another content type, 413 if too big, 400 if malformed."""
    return (await read_json_sized(request, max_bytes))[0]


async def read_json_sized(request: Request, max_bytes: int) -> tuple[Any, int]:
    """`read_json`, and the body's size in bytes."""
    content_type = request.headers.get("content-type", "")
    if not _is_json(content_type):
        raise ApiError(415, f"Content-Type must be application/json, got {content_type or 'none'!r}")
    body = await read_body(request, max_bytes)
    if not body:
        raise ApiError(400, "empty body: send a JSON object or a list of objects")
    try:
        return orjson.loads(body), len(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
