"""One nats-py connection with what every part of the backend waits on: connected, a topology that exists.

It also owns the backend's one set of background tasks (a dead-letter move,
a server switch, a meta-leader refresh), so `close()` cancels all of them.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from backends.contract import BackendUnavailable
from backends.nats import topology
from backends.nats.config import NatsConfig, redact, server_list

log = logging.getLogger(__name__)


class BackgroundTasks:
    """Tasks started by callbacks and left running; `cancel_all` ends every one (at close)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class Connection:
    """The client, its JetStream context, and the waits: `ready(budget)` or `BackendUnavailable`."""

    def __init__(self, config: NatsConfig) -> None:
        self.config = config
        self.nc: NatsClient | None = None
        self.js: JetStreamContext | None = None
        self.connected = asyncio.Event()
        self.closing = False
        self.server_version = ""
        self.server_switches = 0
        self.tasks = BackgroundTasks()
        # Called after nats-py reconnected (e.g. the consumer asks for deliveries anew).
        self.on_reconnected: list[Callable[[], None]] = []
        self._needs_ensure = False
        self._ensure_lock = asyncio.Lock()
        self._last_error: Exception | None = None
        self._last_switch = 0.0

    async def open(self) -> NatsClient:
        """Connect within `connect_timeout`; `BackendUnavailable` if NATS is away.

        nats-py retries the first connect forever when reconnects are
        unlimited, so the whole attempt is bounded here.
        """
        cfg = self.config
        self.closing = False
        self._last_error = None
        nc = NatsClient()
        try:
            tls = cfg.tls_context()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise BackendUnavailable(
                f"cannot read the TLS files for NATS (NATS_TLS_CA, NATS_TLS_CERT, NATS_TLS_KEY): {exc!r}"
            ) from exc
        try:
            async with asyncio.timeout(cfg.connect_timeout):
                await nc.connect(
                    servers=server_list(cfg.url),
                    name="queue-lab",
                    connect_timeout=max(1, int(cfg.connect_timeout)),
                    reconnect_time_wait=cfg.reconnect_wait,  # type: ignore[arg-type]
                    max_reconnect_attempts=-1,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    user=cfg.user,
                    password=cfg.password,
                    token=cfg.token,
                    tls=tls,
                )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            self.closing = True
            await nc.close()
            cause = self._last_error or exc
            raise BackendUnavailable(
                f"cannot connect to NATS at {redact(cfg.url)} within {cfg.connect_timeout}s: {cause!r}{_hint(cause)}"
            ) from exc
        self.nc = nc
        self.js = nc.jetstream(timeout=cfg.publish_timeout)
        self.connected.set()
        v = nc.connected_server_version
        self.server_version = f"{v.major}.{v.minor}.{v.patch}"
        return nc

    async def close(self) -> None:
        """Cancel every background task, then close the client."""
        self.closing = True
        await self.tasks.cancel_all()
        nc, self.nc = self.nc, None
        self.js = None
        self.connected.clear()
        if nc is not None and not nc.is_closed:
            await nc.close()

    def require_js(self) -> JetStreamContext:
        if self.js is None:
            raise BackendUnavailable("NATS backend is not connected (call connect())")
        return self.js

    def require_nc(self) -> NatsClient:
        if self.nc is None:
            raise BackendUnavailable("NATS backend is not connected (call connect())")
        return self.nc

    def stream_may_be_gone(self) -> None:
        """No stream answered: check (and re-create) the topology before the next attempt."""
        self._needs_ensure = True

    async def ready(self, budget: float) -> JetStreamContext:
        """Wait, bounded, for a live connection and a topology that exists: `budget` s for both together."""
        js = self.require_js()
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + budget
        if not self.connected.is_set():
            try:
                async with asyncio.timeout(budget):
                    await self.connected.wait()
            except TimeoutError:
                raise BackendUnavailable(f"NATS at {redact(self.config.url)} unreachable for {budget}s") from None
        if self._needs_ensure:
            try:
                async with asyncio.timeout(max(0.01, give_up_at - loop.time())), self._ensure_lock:
                    if self._needs_ensure:
                        if not await topology.stream_exists(js, self.config):
                            await topology.create(js, self.config)
                        self._needs_ensure = False
            except (nats.errors.Error, TimeoutError) as exc:
                self.leave_server_without_leader()
                raise BackendUnavailable(f"cannot re-create stream/consumer: {exc!r}") from exc
        return js

    def leave_server_without_leader(self) -> None:
        """A whole publish_timeout without a PubAck: on a cluster, try another server.

        A node cut off from its peers (a partition) keeps its clients' TCP
        connections and answers nothing useful; nats-py would stay on it. At
        most one switch per `reconnect_wait * 4`, so a cluster-wide outage
        does not spin.
        """
        nc = self.nc
        now = time.monotonic()
        if (
            nc is None
            or len(server_list(self.config.url)) < 2
            or now - self._last_switch < self.config.reconnect_wait * 4
        ):
            return
        self._last_switch = now
        self.server_switches += 1
        log.warning("no PubAck through %s for %ss: switching server", nc.connected_url, self.config.publish_timeout)
        self.tasks.spawn(nc.force_reconnect(), name="nats-switch-server")

    async def _on_error(self, exc: Exception) -> None:
        # A refusal (credentials, TLS) is what to report, not the connection reset that may follow it.
        if not (self._last_error is not None and _hint(self._last_error) and not _hint(exc)):
            self._last_error = exc
        log.debug("nats error: %r", exc)

    async def _on_disconnected(self) -> None:
        self.connected.clear()
        if not self.closing:
            log.warning("disconnected from NATS at %s; reconnecting", redact(self.config.url))

    async def _on_reconnected(self) -> None:
        # A broker restarted with an empty store has no stream: re-create lazily.
        self._needs_ensure = True
        for hook in self.on_reconnected:
            hook()
        self.connected.set()
        log.info("reconnected to NATS at %s", redact(self.config.url))


def _hint(cause: BaseException) -> str:
    """What to set when the server said why it refused (credentials, TLS); empty otherwise."""
    text = str(cause).lower()
    if "authorization violation" in text or "authentication" in text:
        return (
            "; the server refused the credentials: set NATS_USER and NATS_PASSWORD (or NATS_TOKEN,"
            " or user:password@ in NATS_URL) to what the server expects"
        )
    if isinstance(cause, ssl.SSLError) or "certificate" in text or "tls" in text:
        return (
            "; TLS failed: NATS_TLS_CA names the CA that signed the server's certificate,"
            " NATS_TLS_CERT and NATS_TLS_KEY the client certificate a server with verify needs"
        )
    return ""
