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
from services.models import DIGESTS_HEADER, RECEIVED_HEADER
from services.settings import GatewaySettings

INGEST_PATH = "/api/v1/ingest"


def forward_headers(runs: list[tuple[Any, int]]) -> dict[str, str]:
    """The call's headers from its callers' tags `(received ns, payload digests)`, in body order.

    `X-Gateway-Received-Ns`: each caller's received time with its message count;
    `X-Payload-Digests`: every message's digest, so ingest stamps what the gateway saw.
    """
    return {
        RECEIVED_HEADER: received.encode([(int(tag[0]), n) for tag, n in runs]),
        DIGESTS_HEADER: ",".join(d for tag, _ in runs for d in tag[1]),
    }


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
            headers=forward_headers,
        )

    async def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        return await self._ingest.post_json(INGEST_PATH, body, headers)

    async def forward(
        self, messages: list[dict[str, Any]], size: int, received_ns: int, digests: list[str]
    ) -> tuple[int, bytes]:
        """Ingest's status and this caller's answer (`{"ids", "count", "duplicates", ...}`) for `messages`.

        `digests`: each message's payload digest, as the gateway received it (one per message).
        """
        return await self._batcher.submit(messages, size, (received_ns, digests))

    async def close(self) -> None:
        """Wait for the calls in flight (before the ingest client closes)."""
        await self._batcher.close()
