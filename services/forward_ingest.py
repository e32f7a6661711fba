"""The gateway's calls to ingest, coalesced: concurrent requests share one ingest call.

Measured under wrk at 64 connections (experiments/bench/wrk_round.py), one
HTTP client call per request was a quarter of the gateway's CPU, and each
call cost ingest a whole request's framework work again. Here, as ingest
does toward the processor (services/batcher.py), a request goes out at once
while fewer than `ingest_in_flight` calls are open; what arrives meanwhile
goes as one list when a call returns. Each caller still gets its answer only
when ingest answered for its messages (202 only once the processor's backend
stored them), with exactly its own ids; an error of the call (503, 429, ...)
reaches every caller of it. Each message keeps its own gateway stamp
(services/received.py).
"""

from __future__ import annotations

from typing import Any

from services import received
from services.batcher import ForwardBatcher
from services.downstream import NextHop
from services.models import RECEIVED_HEADER
from services.settings import GatewaySettings

INGEST_PATH = "/api/v1/ingest"


def received_header(runs: list[tuple[Any, int]]) -> dict[str, str]:
    """The call's `X-Gateway-Received-Ns`: each caller's received time with its message count."""
    return {RECEIVED_HEADER: received.encode([(int(ns), n) for ns, n in runs])}


class IngestForwarder:
    """Coalesces the gateway's requests into ingest calls; one per gateway process."""

    def __init__(self, ingest: NextHop, settings: GatewaySettings) -> None:
        self._ingest = ingest
        # Half the body limit, as ingest's batcher: the messages grow a little on the way (ids).
        self._batcher = ForwardBatcher(
            self._post,
            max_in_flight=settings.ingest_in_flight,
            max_messages=settings.max_batch,
            max_bytes=settings.max_body_bytes // 2,
            headers=received_header,
        )

    async def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        return await self._ingest.post_json(INGEST_PATH, body, headers)

    async def forward(self, messages: list[dict[str, Any]], size: int, received_ns: int) -> tuple[int, bytes]:
        """Ingest's status and this caller's answer (`{"ids", "count", "duplicates", ...}`) for `messages`."""
        return await self._batcher.submit(messages, size, received_ns)

    async def close(self) -> None:
        """Wait for the calls in flight (before the ingest client closes)."""
        await self._batcher.close()
