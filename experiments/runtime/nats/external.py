"""A NATS deployment the user runs (`HARNESS_NATS=external`): used, never started, stopped or faulted.

A user who outgrew one machine points the lab at their own servers with
`NATS_URL` (one URL or a comma-separated cluster) and, for the report's
record of versions, cluster size and fsync policy, `NATS_MONITOR_URL`. The
harness does not own these processes, so every verb that would kill, pause
or restart one raises `NotOurServer`, naming why and what to run instead.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Mapping
from pathlib import Path

import nats

from experiments.runtime.lifetime import Managed
from experiments.runtime.nats.base import NatsNotReady, wait_healthy


class NotOurServer(RuntimeError):
    """A fault was asked of a server this harness did not start."""


class ExternalNats(Managed):
    """The user's NATS at `url`; `start` only checks that JetStream answers."""

    kind = "external"

    def __init__(self, url: str, monitor_url: str = "", ready_timeout: float = 10.0) -> None:
        if not url.strip():
            raise ValueError("HARNESS_NATS=external needs NATS_URL (one URL, or several comma-separated)")
        self.url = url
        self.monitor_url = monitor_url
        self.ready_timeout = ready_timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="nats-external-")
        self.store_dir = Path(self._tmp.name)  # nothing of the broker's: the store is theirs
        self.pid: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ExternalNats:
        return cls(environ.get("NATS_URL", ""), environ.get("NATS_MONITOR_URL", ""))

    @property
    def size(self) -> int:
        return len([u for u in self.url.split(",") if u.strip()])

    def start(self) -> None:
        """Check every monitoring endpoint is healthy (when given) and JetStream answers a client."""
        for base in [u.strip() for u in self.monitor_url.split(",") if u.strip()]:
            wait_healthy(base.rstrip("/"), self.ready_timeout)
        try:
            asyncio.run(self._account_info())
        except Exception as exc:
            raise NatsNotReady(f"external NATS at {self.url}: JetStream does not answer ({exc!r})") from None

    async def _account_info(self) -> None:
        servers = [u.strip() for u in self.url.split(",") if u.strip()]
        nc = await nats.connect(servers, connect_timeout=int(self.ready_timeout), max_reconnect_attempts=0)
        try:
            await nc.jetstream().account_info()
        finally:
            await nc.close()

    def _refuse(self, verb: str) -> NotOurServer:
        return NotOurServer(
            f"cannot {verb} NATS: HARNESS_NATS=external points at servers this harness did not start "
            f"({self.url}); experiments that kill, pause, restart or partition nodes need "
            "HARNESS_NATS=process, docker or auto"
        )

    def stop(self, timeout: float = 10.0) -> None:
        raise self._refuse("stop")

    def kill(self) -> None:
        raise self._refuse("kill")

    def restart(self, hard: bool = False) -> None:
        raise self._refuse("restart")

    def pause(self) -> None:
        raise self._refuse("pause")

    def resume(self) -> None:
        raise self._refuse("resume")

    def close(self) -> None:
        """Release the harness's own temp dir; the user's servers are left as they were."""
        self._tmp.cleanup()
