"""Ingest's processors: round robin over a list that can change while ingest runs.

A planned queue switch starts a processor on the new queue, points ingest at
it (`PUT /admin/processors`), then drains the old one. A call the old
processor refuses as draining (503 + `X-Processor-Draining`), or one whose
connection is refused (nothing reached it), goes to the next processor of the
current list with the same body, so the same message ids: it is stored once,
and the client never sees the switch. Any other answer is the client's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from services.admin import ADMIN_RESPONSES, AdminCheck, AdminCredentials
from services.bodies import read_json
from services.downstream import NextHop, NextHopFactory, NotConnected
from services.drain import DRAINING_HEADER
from services.errors import ApiError, json_response
from services.models import InvalidInput
from services.settings import IngestSettings

log = logging.getLogger("services.routing")

MESSAGES_PATH = "/api/v1/messages"


class ProcessorList(BaseModel):
    """The processors ingest sends to, in round-robin order."""

    model_config = ConfigDict(extra="forbid")

    urls: list[Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+(/\S*)?$", max_length=2000)]] = Field(
        min_length=1, max_length=64, description="base URLs, e.g. http://127.0.0.1:8082"
    )


def parse_urls(text: str) -> list[str]:
    """PROCESSOR_URL: one URL or several, comma-separated."""
    return [u.strip().rstrip("/") for u in text.split(",") if u.strip()]


class ProcessorRoutes:
    """The current processors and the retry-elsewhere rule for draining or unreachable ones."""

    def __init__(self, settings: IngestSettings, downstream: NextHopFactory) -> None:
        self._settings = settings
        self._downstream = downstream
        self.on_resize: Callable[[int], None] | None = None  # told the new length after each replace
        self._by_url: dict[str, NextHop] = {}
        self._order: list[NextHop] = []
        self._next: Callable[[], NextHop] = lambda: self._order[0]
        self._retired: set[asyncio.Task[None]] = set()

    @property
    def urls(self) -> list[str]:
        return [d.base_url for d in self._order]

    def __len__(self) -> int:
        return len(self._order)

    async def replace(self, urls: list[str]) -> None:
        """Route to `urls` from now on; a processor left out is closed once its calls are done."""
        wanted = [u.rstrip("/") for u in urls]
        fresh: dict[str, NextHop] = {}
        for url in wanted:
            d = self._by_url.get(url) or fresh.get(url)
            if d is None:
                d = self._downstream(
                    f"processor {url}", url, self._settings.http_timeout, self._settings.http_connections
                )
                await d.start()
            fresh[url] = d
        gone = [d for u, d in self._by_url.items() if u not in fresh]
        self._by_url = fresh
        self._order = [fresh[u] for u in wanted]
        self._next = itertools.cycle(self._order).__next__
        if self.on_resize is not None:
            self.on_resize(len(self._order))
        for d in gone:  # calls already on their way finish first (they answer within http_timeout)
            task = asyncio.create_task(self._close_later(d, self._settings.http_timeout + 1))
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)
        log.info("ingest now forwarding to %s", ", ".join(wanted))

    @staticmethod
    async def _close_later(d: NextHop, delay: float) -> None:
        await asyncio.sleep(delay)
        await d.close()

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """Forward to the next processor; a draining or unreachable one hands the call to the next."""
        tried: set[str] = set()
        last: tuple[int, bytes] | ApiError | None = None
        for _ in range(len(self._order) + 1):  # +1: the list may change between two tries
            target = self._pick(tried)
            if target is None:
                break
            tried.add(target.base_url)
            try:
                status, answer, headers = await target.post_json_headers(MESSAGES_PATH, body)
            except NotConnected as exc:
                last = exc
                continue
            if status == 503 and headers.get(DRAINING_HEADER) == "true":
                last = (status, answer)
                continue
            return status, answer
        if isinstance(last, ApiError):
            raise last
        if last is not None:
            return last
        raise ApiError(503, "no processor to forward to")

    def _pick(self, tried: set[str]) -> NextHop | None:
        for _ in range(len(self._order)):
            d = self._next()
            if d.base_url not in tried:
                return d
        return None

    async def close(self) -> None:
        for task in list(self._retired):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for d in self._order:
            await d.close()
        for d in self._by_url.values():
            await d.close()


def install_routing_routes(app: FastAPI, routes: ProcessorRoutes, settings: IngestSettings) -> None:
    """`GET /admin/processors` and `PUT /admin/processors` (token-protected)."""
    check = AdminCheck(settings.admin_token)
    body_schema: dict[str, Any] = ProcessorList.model_json_schema()

    @app.get("/admin/processors", tags=["admin"], response_model=ProcessorList, responses=ADMIN_RESPONSES)
    async def get_processors(credentials: AdminCredentials) -> Response:
        """The processors ingest forwards to now."""
        check(credentials)
        return json_response({"urls": routes.urls})

    @app.put(
        "/admin/processors",
        tags=["admin"],
        response_model=ProcessorList,
        responses={**ADMIN_RESPONSES, 400: ADMIN_RESPONSES[422], 413: ADMIN_RESPONSES[422], 415: ADMIN_RESPONSES[422]},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}}},
    )
    async def put_processors(request: Request, credentials: AdminCredentials) -> Response:
        """Forward to these processors from now on (a planned queue switch); calls under way finish."""
        check(credentials)
        data = await read_json(request, settings.max_body_bytes)
        try:
            wanted = ProcessorList.model_validate(data)
        except ValidationError as exc:
            details = [
                {"field": ".".join(["body", *(str(p) for p in e["loc"])]), "problem": e["msg"]}
                for e in exc.errors(include_url=False, include_input=False)
            ]
            first = details[0]
            raise InvalidInput(422, f"invalid processor list: {first['field']}: {first['problem']}", details) from None
        await routes.replace(wanted.urls)
        return json_response({"urls": routes.urls})
