"""A processor's planned retirement: stop taking messages, finish what is queued, report when done.

`POST /admin/drain` turns a processor into a draining one: every publish from
then on is refused with 503 and the `X-Processor-Draining` header, which
ingest reads as "not stored, send it to another processor" (the same id, so
it is stored once). The workers go on until the backend holds nothing for
this processor (memory: its queue; NATS: the shared consumer's pending and
unacked), and `GET /admin/drain` says `drained: true`; whoever planned the
switch then stops the process (SIGTERM), which loses nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, Field, SecretStr

from backends.contract import BackendUnavailable, QueueBackend
from services.admin import ADMIN_RESPONSES, AdminCheck, AdminCredentials
from services.errors import ApiError, json_response
from services.worker_pool import WorkerPool

DRAINING_HEADER = "X-Processor-Draining"


class DrainStatus(BaseModel):
    """Where a processor's drain stands."""

    draining: bool = Field(description="publishes are refused (503 + X-Processor-Draining)")
    drained: bool = Field(description="draining, and nothing left queued, in flight or being published")
    idle: bool = Field(
        description="draining, and nothing in flight or being published here (enough when the next processor "
        "shares the same NATS consumer and takes over what is queued)"
    )
    queued: int | None = Field(description="backend current_size (None: backend unreachable)")
    in_flight: int = Field(description="deliveries a worker of this processor holds")
    publishing: int = Field(description="publishes accepted before the drain and still running")
    processed_count: int


class Drain:
    """The draining flag and the publishes still running, for one processor.

    It is given what it reads (the backend, the worker pool, whether the
    backend is connected), not the processor, so it does not depend on it.
    """

    def __init__(self, backend: QueueBackend, pool: WorkerPool, is_connected: Callable[[], bool]) -> None:
        self.backend = backend
        self.pool = pool
        self.is_connected = is_connected
        self.active = False
        self.publishing = 0

    def refuse_if_draining(self) -> None:
        if self.active:
            raise ApiError(
                503,
                "processor is draining for a queue switch: send to another processor",
                headers={DRAINING_HEADER: "true", "Retry-After": "0"},
            )

    @contextlib.contextmanager
    def publish(self) -> Iterator[None]:
        """Around a publish that passed `refuse_if_draining`: drained waits for it."""
        self.publishing += 1
        try:
            yield
        finally:
            self.publishing -= 1

    async def status(self) -> DrainStatus:
        queued: int | None
        try:
            s = await self.backend.stats()
            queued = s.current_size if s.connected and self.is_connected() else None
        except BackendUnavailable:
            queued = None
        pool = self.pool
        idle = self.active and pool.in_flight == 0 and self.publishing == 0
        return DrainStatus(
            draining=self.active,
            drained=idle and queued == 0,
            idle=idle,
            queued=queued,
            in_flight=pool.in_flight,
            publishing=self.publishing,
            processed_count=pool.processed_count,
        )


def install_drain_routes(app: FastAPI, drain: Drain, token: SecretStr | None) -> None:
    """`POST /admin/drain` (start draining; idempotent) and `GET /admin/drain` (progress), token-protected."""
    check = AdminCheck(token)
    doc: dict[str, Any] = {"tags": ["admin"], "response_model": DrainStatus, "responses": ADMIN_RESPONSES}

    @app.post("/admin/drain", **doc)
    async def start_drain(credentials: AdminCredentials) -> Response:
        """Stop taking new messages (503 + X-Processor-Draining); workers finish what is queued."""
        check(credentials)
        drain.active = True
        return json_response((await drain.status()).model_dump())

    @app.get("/admin/drain", **doc)
    async def drain_status(credentials: AdminCredentials) -> Response:
        """Whether this processor is draining and whether it is done (`drained`: safe to stop)."""
        check(credentials)
        return json_response((await drain.status()).model_dump())
