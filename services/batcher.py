"""Adaptive batching of ingest's calls to the processor.

A request goes out at once while fewer than `max_in_flight` calls are open,
so a lone message waits for nothing. Under load, what arrives while the calls
are busy is sent as one batch when the next slot frees: one HTTP request and
one pipelined publish for many client requests, instead of one each (the
processor's per-request HTTP and broker round trips dominated its CPU).
Every caller still gets its answer only when the processor confirmed its own
messages stored, and gets exactly its own ids back. Each caller's messages
are encoded on their own, so one that cannot be encoded fails that caller
(a 422), never the callers batched with it.

The same coalescing serves the gateway's calls to ingest
(services/forward_ingest.py): there each caller also brings a tag (when the
gateway received it, its payload digests), which `headers` turns into the
batch's headers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from services.errors import ApiError

# (body, headers) -> the next hop's status and answer
Post = Callable[[bytes, dict[str, str]], Awaitable[tuple[int, bytes]]]
# the tags of a batch's callers, in order, each with its message count -> the call's headers
Headers = Callable[[list[tuple[Any, int]]], dict[str, str]]


@dataclass
class _Waiting:
    messages: list[dict[str, Any]]
    size: int
    answer: asyncio.Future[tuple[int, bytes]]
    tag: Any = None


class ForwardBatcher:
    """Coalesces concurrent message lists into processor calls, answering each caller separately."""

    def __init__(
        self, post: Post, *, max_in_flight: int, max_messages: int, max_bytes: int, headers: Headers | None = None
    ) -> None:
        self._post = post
        self._headers = headers
        self.max_in_flight = max_in_flight
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._queue: deque[_Waiting] = deque()
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, messages: list[dict[str, Any]], size: int, tag: Any = None) -> tuple[int, bytes]:
        """Forward `messages` (`size`: their encoded bytes); the next hop's status and this caller's answer.

        `tag`: what `headers` needs of this caller (the gateway's received time).
        """
        answer: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(messages, size, answer, tag))
        self._dispatch()
        return await answer

    def _dispatch(self) -> None:
        while self._queue and self._in_flight < self.max_in_flight:
            batch = [self._queue.popleft()]
            count, size = len(batch[0].messages), batch[0].size
            while self._queue:
                nxt = self._queue[0]
                if count + len(nxt.messages) > self.max_messages or size + nxt.size > self.max_bytes:
                    break
                batch.append(self._queue.popleft())
                count += len(nxt.messages)
                size += nxt.size
            self._in_flight += 1
            task = asyncio.create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Waiting]) -> None:
        try:
            body, batch = _encode(batch)
            if not batch:
                return
            headers = self._headers([(w.tag, len(w.messages)) for w in batch]) if self._headers else {}
            status, answer = await self._post(body, headers)
        except Exception as exc:  # every caller of the batch gets the failure (a 503 ApiError, usually)
            for w in batch:
                if not w.answer.done():
                    w.answer.set_exception(exc)
        else:
            for w, part in zip(batch, split_answer(status, answer, [len(w.messages) for w in batch]), strict=True):
                if not w.answer.done():
                    w.answer.set_result((status, part))
        finally:
            self._in_flight -= 1
            self._dispatch()

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _encode(batch: list[_Waiting]) -> tuple[bytes, list[_Waiting]]:
    """One JSON list of every caller's messages; a caller whose messages cannot be encoded gets a 422 alone."""
    parts: list[bytes] = []
    kept: list[_Waiting] = []
    for w in batch:
        try:
            encoded = orjson.dumps(w.messages)
        except orjson.JSONEncodeError as exc:
            if not w.answer.done():
                w.answer.set_exception(ApiError(422, f"message cannot be encoded as JSON: {exc}"))
            continue
        parts.append(encoded[1:-1])  # the list's items, without its brackets
        kept.append(w)
    return b"[" + b",".join(parts) + b"]", kept


def split_answer(status: int, answer: bytes, counts: list[int]) -> list[bytes]:
    """Cut one answer (`{"ids", "duplicate_positions"}`) into one per caller (the same error for all)."""
    if len(counts) == 1 or not 200 <= status < 300:
        return [answer] * len(counts)
    data = orjson.loads(answer)
    ids: list[str] = data["ids"]
    duplicate_at = set(data.get("duplicate_positions", ()))
    out = []
    start = 0
    for n in counts:
        mine = range(start, start + n)
        out.append(
            orjson.dumps(
                {
                    "ids": ids[start : start + n],
                    "count": n,
                    "duplicates": sum(1 for i in mine if i in duplicate_at),
                    "duplicate_positions": [i - start for i in mine if i in duplicate_at],
                }
            )
        )
        start += n
    return out
