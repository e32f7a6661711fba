"""Next hops served by ASGI apps in this process: the chain without sockets, for fast tests.

`AsgiHops({url: app})` is a `NextHopFactory`: give it to a composition root
(`create_app(..., downstream=hops)`) and its calls to `url` go to `app`
through `httpx.ASGITransport`, with the same 503 for a hop that fails or is
too slow as `Downstream` gives over TCP. The apps' lifespans are the caller's
(`lifespans(...)`): ASGITransport does not run them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson
from fastapi import FastAPI

from services.downstream import NotConnected
from services.errors import JSON, ApiError


class AsgiDownstream:
    """`NextHop` to one ASGI app."""

    def __init__(self, name: str, app: FastAPI, base_url: str, timeout: float) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._transport = httpx.ASGITransport(app=app)
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(transport=self._transport, base_url=self.base_url, timeout=self.timeout)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _require(self) -> httpx.AsyncClient:
        if self._client is None:
            raise ApiError(503, f"{self.name} client not started")
        return self._client

    async def post_json(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """POST; a failure or timeout of the hop becomes a 503 naming it, as over TCP."""
        try:
            r = await self._require().post(path, content=body, headers={"Content-Type": JSON, **(headers or {})})
        except httpx.TimeoutException:
            raise ApiError(503, f"{self.name} did not answer within {self.timeout}s") from None
        except httpx.HTTPError as exc:
            raise ApiError(503, f"{self.name} unavailable: {type(exc).__name__}") from None
        return r.status_code, r.content

    async def post_json_headers(self, path: str, body: bytes) -> tuple[int, bytes, Mapping[str, str]]:
        """`post_json` with the answer's headers; a hop that cannot be reached is `NotConnected`."""
        try:
            r = await self._require().post(path, content=body, headers={"Content-Type": JSON})
        except httpx.ConnectError as exc:
            raise NotConnected(503, f"{self.name} unavailable: {type(exc).__name__}") from None
        except httpx.TimeoutException:
            raise ApiError(503, f"{self.name} did not answer within {self.timeout}s") from None
        except httpx.HTTPError as exc:
            raise ApiError(503, f"{self.name} unavailable: {type(exc).__name__}") from None
        return r.status_code, r.content, r.headers

    async def get_json(self, path: str, timeout: float) -> tuple[int, Any]:
        r = await self._require().get(path, timeout=timeout)
        return r.status_code, orjson.loads(r.content)


class AsgiHops:
    """A `NextHopFactory` that maps base URLs to apps in this process."""

    def __init__(self, apps: Mapping[str, FastAPI]) -> None:
        self.apps = {url.rstrip("/"): app for url, app in apps.items()}

    def __call__(self, name: str, base_url: str, timeout: float, connections: int) -> AsgiDownstream:
        app = self.apps.get(base_url.rstrip("/"))
        if app is None:
            raise KeyError(f"no in-process app for {name} at {base_url} (have {', '.join(self.apps)})")
        return AsgiDownstream(name, app, base_url, timeout)


@contextlib.asynccontextmanager
async def lifespans(*apps: FastAPI) -> AsyncIterator[None]:
    """Run the apps' lifespans (startup in the order given, shutdown reversed), as uvicorn would."""
    async with contextlib.AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
        yield
