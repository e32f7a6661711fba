"""One KRaft node (broker + controller in one JVM) as a child process, stopped and faulted by pid.

`java -cp 'libs/*' kafka.Kafka server.properties`, after the storage tool
formatted its data dir once (kept across restarts, so a topic's records
survive `stop`/`kill` + `start`). Its heap is capped (`heap`, 512 MiB by
default) so three nodes fit beside everything else; its log goes to
`<node dir>/logs/server.log` (log4j2), its stdout/stderr to `console.log`.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Collection, Mapping
from pathlib import Path

from experiments.runtime.kafka.class_archive import archive_options
from experiments.runtime.kafka.config import CLUSTER_ID, HOST, NodePlan, server_properties
from experiments.runtime.kafka.jars import LOG4J_CONFIG, classpath, java_binary
from experiments.runtime.kafka.readiness import KafkaNotReady, wait_ready
from experiments.runtime.processes import freeze, register_child, signal_and_wait

DEFAULT_HEAP = "512m"


def jvm_options(heap: str, logs_dir: Path) -> list[str]:
    """Heap cap, a low-pause collector, and log4j2 writing to `logs_dir`."""
    return [
        f"-Xmx{heap}",
        f"-Xms{min(128, _mib(heap))}m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        "-Djava.net.preferIPv4Stack=true",  # plain 127.0.0.1 sockets, not ::ffff:127.0.0.1
        f"-Dkafka.logs.dir={logs_dir}",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
    ]


def new_directory_id() -> str:
    """A Kafka Uuid as the storage tool writes it: 16 random bytes, base64url without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _mib(heap: str) -> int:
    units = {"k": 1 / 1024, "m": 1, "g": 1024}
    suffix = heap[-1].lower()
    return int(float(heap[:-1]) * units[suffix]) if suffix in units else int(heap) // 2**20


class ProcessKafkaNode:
    """One node of a KRaft cluster: fixed ports and directory for the object's life."""

    kind = "process"

    def __init__(
        self,
        plan: NodePlan,
        voters: list[NodePlan],
        node_dir: Path,
        *,
        heap: str = DEFAULT_HEAP,
        overrides: Mapping[str, str] | None = None,
        ready_timeout: float = 180.0,
    ) -> None:
        self.plan = plan
        self.voters = voters
        self.node_dir = node_dir
        self.heap = heap
        self.overrides = dict(overrides or {})
        self.ready_timeout = ready_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self.started_in_s: float | None = None  # the last start's wall time, format included
        self.extra_jvm_options: list[str] = []  # after the lab's own (the class archive's dump sets one)

    @property
    def node_id(self) -> int:
        return self.plan.node_id

    @property
    def port(self) -> int:
        return self.plan.broker_port

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.node_dir / "data"

    @property
    def logs_dir(self) -> Path:
        return self.node_dir / "logs"

    @property
    def config_path(self) -> Path:
        return self.node_dir / "server.properties"

    @property
    def log_path(self) -> Path:
        return self.logs_dir / "server.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _java(self, main: str, *args: str) -> list[str]:
        options = [*jvm_options(self.heap, self.logs_dir), *self._class_archive(), *self.extra_jvm_options]
        return [java_binary(), *options, "-cp", classpath(), main, *args]

    def _class_archive(self) -> list[str]:
        """Kafka's classes mapped from the machine's CDS archive (`class_archive`), unless this JVM dumps one."""
        dumping = any(o.startswith("-XX:ArchiveClassesAtExit") for o in self.extra_jvm_options)
        return [] if dumping else archive_options()

    def _tool(self, main: str, *args: str) -> list[str]:
        """A short-lived tool's JVM: C1 only and the serial collector, less CPU to start and finish."""
        fast = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx256m"]
        options = [o for o in jvm_options(self.heap, self.logs_dir) if not o.startswith(("-Xm", "-XX:"))]
        return [java_binary(), *fast, *self._class_archive(), *options, "-cp", classpath(), main, *args]

    @property
    def formatted(self) -> bool:
        return (self.data_dir / "meta.properties").exists()

    def prepare(self, like: ProcessKafkaNode | None = None) -> None:
        """Write server.properties and format the data dir (once: a formatted dir is kept).

        `like`: a formatted node of the same cluster, whose data dir is copied
        instead of starting the storage tool's JVM again (seconds on a busy
        2-core machine): the tool writes the same bootstrap checkpoint for every
        node, and meta.properties differs only in node.id and directory.id.
        """
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(server_properties(self.plan, self.voters, self.data_dir, self.overrides))
        self._write_runtime_config()
        if self.formatted:
            return
        if like is not None and like.formatted:
            shutil.copytree(like.data_dir, self.data_dir)
            meta = self.data_dir / "meta.properties"
            lines = [
                f"node.id={self.node_id}"
                if line.startswith("node.id=")
                else f"directory.id={new_directory_id()}"
                if line.startswith("directory.id=")
                else line
                for line in meta.read_text().splitlines()
            ]
            meta.write_text("\n".join(lines) + "\n")
            return
        cmd = self._tool("kafka.tools.StorageTool", "format", "-t", CLUSTER_ID, "-c", str(self.config_path))
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            raise KafkaNotReady(f"formatting {self.data_dir} failed:\n{done.stdout[-1000:]}{done.stderr[-2000:]}")

    def _write_runtime_config(self) -> None:
        """What the broker reads when it does not run on this host's paths (a container): nothing here."""

    def launch(self) -> None:
        """Start the JVM without waiting for it (a cluster starts all nodes, then waits)."""
        if self.pid is not None:
            raise RuntimeError(f"Kafka node {self.node_id} already running as pid {self.pid}")
        with open(self.node_dir / "console.log", "ab") as console:
            self._proc = subprocess.Popen(
                self._java("kafka.Kafka", str(self.config_path)),
                stdout=console,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        register_child(self._proc.pid)

    def wait_ready(self, expect_ids: Collection[int] | None = None, timeout: float | None = None) -> None:
        """Until this node's metadata lists itself and `expect_ids`; on failure the JVM is killed, its log shown."""
        try:
            wait_ready(
                self.port,
                {self.node_id, *(expect_ids or ())},
                self.ready_timeout if timeout is None else timeout,
                alive=lambda: self.pid is not None,
            )
        except KafkaNotReady as exc:
            self.kill()
            raise KafkaNotReady(f"{exc}\n--- {self.log_path} ---\n{self.log_tail()}") from None

    def log_tail(self, chars: int = 3000) -> str:
        text = ""
        for path in (self.node_dir / "console.log", self.log_path):
            if path.exists():
                text += path.read_text(errors="replace")[-chars:]
        return text or "(no log)"

    def start(self) -> None:
        """Format if needed, start, and return once this node serves metadata listing itself."""
        t0 = time.monotonic()
        self.prepare()
        self.launch()
        self.wait_ready()
        self.started_in_s = time.monotonic() - t0

    def stop(self, timeout: float = 15.0) -> None:
        """Controlled shutdown (SIGTERM): leadership moves away first; SIGKILL after `timeout`."""
        signal_and_wait(self._proc, signal.SIGTERM, timeout)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: a crash, no controlled shutdown, no flush beyond what the OS has."""
        signal_and_wait(self._proc, signal.SIGKILL, 5.0)
        self._proc = None

    def restart(self, hard: bool = False) -> None:
        if hard:
            self.kill()
        else:
            self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the JVM (SIGSTOP, every thread): connections stay open, nothing answers."""
        if self._proc is None or self.pid is None:
            raise RuntimeError(f"Kafka node {self.node_id} is not running")
        freeze(self._proc.pid)

    def resume(self) -> None:
        if self._proc is None or self.pid is None:
            raise RuntimeError(f"Kafka node {self.node_id} is not running")
        os.kill(self._proc.pid, signal.SIGCONT)

    def close(self) -> None:
        self.kill()
