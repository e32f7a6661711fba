"""A KRaft Kafka node in a Docker container, through testcontainers, on an image built here.

The same node as `ProcessKafkaNode` (it is one: the directory, the ports, the
formatting on the host with the same jars, the readiness by metadata), run
by the engine instead. What these machines allow shapes it, as for NATS
(`experiments.runtime.nats.docker`):

- No registry: the image is built locally, `queue-lab/kafka:<version>`, from
  a Debian base with Debian's JRE made by debootstrap (docker/kafka/build-base.sh,
  queue-lab/java-base:bookworm) plus the jar cache of scripts/ensure-kafka.sh.
- Host networking, every listener on 127.0.0.1 (published ports do not work here).
- The image also carries what the compose stack's `kafka` service runs:
  docker/kafka/start.sh (format once, then the broker) and healthy.sh.
- Ryuk cannot be pulled: containers carry this run's label and are removed at
  `close`, and at interpreter exit (the NATS module's reaper covers both).

The node directory is mounted at /data: data in /data/data, logs in /data/logs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import os
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

from testcontainers.core.container import DockerContainer
from testcontainers.core.docker_client import DockerClient

from experiments.runtime.kafka.config import CLUSTER_ID, NodePlan, server_properties
from experiments.runtime.kafka.jars import LOG4J_CONFIG, POM, REPO, kafka_libs, kafka_version
from experiments.runtime.kafka.process import ProcessKafkaNode, jvm_options
from experiments.runtime.kafka.readiness import KafkaNotReady
from experiments.runtime.nats.docker import LABEL_RUN, RUN_ID, _register_reaper
from experiments.runtime.processes import register_container

log = logging.getLogger(__name__)

IMAGE_REPO = "queue-lab/kafka"
JAVA_BASE = "queue-lab/java-base:bookworm"
COMPOSE_DIR = REPO / "docker" / "kafka"
BASE_SCRIPT = COMPOSE_DIR / "build-base.sh"
LABEL_APP = "queue-lab.kafka"
DATA = "/data"
IMAGE_LOG4J = "/opt/kafka/log4j2.properties"


def compose_properties() -> str:
    """The compose stack's single node: 127.0.0.1, client 9092, controller 9093, store in /data/kafka."""
    plan = NodePlan(1, 9092, 9093)
    return server_properties(plan, [plan], Path(DATA) / "kafka")


def _executable(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mode = 0o755
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _inputs_digest() -> str:
    """What the image is built from (pom, scripts, configs): an image built from other inputs is rebuilt."""
    digest = hashlib.sha256()
    for path in (POM, LOG4J_CONFIG, COMPOSE_DIR / "start.sh", COMPOSE_DIR / "healthy.sh"):
        digest.update(path.read_bytes())
    digest.update(compose_properties().encode())
    return digest.hexdigest()[:16]


def kafka_image_tag() -> str:
    return f"{IMAGE_REPO}:{kafka_version()}"


def _build_context(libs: Path) -> io.BytesIO:
    dockerfile = (
        f"FROM {JAVA_BASE}\n"
        "COPY libs /opt/kafka/libs\n"
        f"COPY log4j2.properties {IMAGE_LOG4J}\n"
        "COPY compose.properties cluster-id start.sh healthy.sh /opt/kafka/\n"
        'ENTRYPOINT ["java"]\n'
        f'LABEL org.opencontainers.image.title="Apache Kafka {kafka_version()} (Maven jars) on Debian JRE 17" '
        f'{LABEL_APP}.image="1" {LABEL_APP}.inputs="{_inputs_digest()}"\n'
    ).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        for jar in sorted(libs.glob("*.jar")):
            tar.add(str(jar), arcname=f"libs/{jar.name}")
        tar.add(str(LOG4J_CONFIG), arcname="log4j2.properties")
        for name, text in (("compose.properties", compose_properties()), ("cluster-id", CLUSTER_ID + "\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for script in ("start.sh", "healthy.sh"):
            tar.add(str(COMPOSE_DIR / script), arcname=script, filter=_executable)
    buf.seek(0)
    return buf


def ensure_kafka_image(client: DockerClient | None = None) -> str:
    """The local Kafka image's tag, built first (base included) if the engine does not have it."""
    tag = kafka_image_tag()
    own = client is None
    client = client or DockerClient()
    try:
        inputs = _inputs_digest()
        if any(i.labels.get(f"{LABEL_APP}.inputs") == inputs for i in client.client.images.list(name=tag)):
            return tag
        if not client.client.images.list(name=JAVA_BASE):
            done = subprocess.run(["bash", str(BASE_SCRIPT)], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{BASE_SCRIPT} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        started = time.monotonic()
        client.client.images.build(
            fileobj=_build_context(kafka_libs()), custom_context=True, tag=tag, rm=True, forcerm=True
        )
        log.info("built %s in %.1fs", tag, time.monotonic() - started)
        return tag
    finally:
        if own:
            client.client.close()


class DockerKafkaNode(ProcessKafkaNode):
    """One KRaft node in a container on the host network; `stop`/`kill` keep the container, `close` removes it."""

    kind = "docker"

    def __init__(self, *args: Any, image: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.image = image
        self._container: DockerContainer | None = None

    @property
    def container_config(self) -> Path:
        return self.node_dir / "container.properties"

    def _write_runtime_config(self) -> None:
        self.container_config.write_text(server_properties(self.plan, self.voters, Path(DATA) / "data", self.overrides))

    @property
    def container_id(self) -> str | None:
        if self._container is None or self._container._container is None:
            return None
        return str(self._container.get_container_id())

    def _wrapped(self) -> Any:
        assert self._container is not None
        return self._container.get_wrapped_container()

    @property
    def status(self) -> str | None:
        if self.container_id is None:
            return None
        wrapped = self._wrapped()
        wrapped.reload()
        return str(wrapped.status)

    @property
    def pid(self) -> int | None:
        """Host pid of the container's JVM while it runs (or is paused), else None."""
        if self.status not in ("running", "paused"):
            return None
        return int(self._wrapped().attrs["State"]["Pid"]) or None

    def _command(self) -> list[str]:
        options = [
            o for o in jvm_options(self.heap, Path(DATA) / "logs") if not o.startswith("-Dlog4j2.configurationFile=")
        ]
        return [
            *options,
            f"-Dlog4j2.configurationFile={IMAGE_LOG4J}",
            "-cp",
            "/opt/kafka/libs/*",
            "kafka.Kafka",
            f"{DATA}/container.properties",
        ]

    def launch(self) -> None:
        if self.container_id is not None:
            if self.status in ("running", "paused"):
                raise RuntimeError(f"Kafka container {self.container_id[:12]} is already running")
            self._wrapped().start()
            return
        container = (
            DockerContainer(
                self.image or ensure_kafka_image(),
                network_mode="host",
                labels={LABEL_APP: "1", LABEL_RUN: RUN_ID},
                user=f"{os.getuid()}:{os.getgid()}",
                name=f"queue-lab-kafka-{RUN_ID}-{self.port}",
            )
            .with_command(self._command())
            .with_volume_mapping(str(self.node_dir), DATA, "rw")
        )
        self._container = container  # before start: close() removes a half-started one
        _register_reaper()
        container.start()
        register_container(str(container.get_container_id()))  # a killed run's reaper removes it

    def log_tail(self, chars: int = 3000) -> str:
        text = super().log_tail(chars)
        with contextlib.suppress(Exception):
            text += bytes(self._wrapped().logs()).decode(errors="replace")[-chars:]
        return text

    def wait_ready(self, expect_ids: Any = None, timeout: float | None = None) -> None:
        try:
            super().wait_ready(expect_ids, timeout)
        except KafkaNotReady as exc:
            raise KafkaNotReady(f"container {self.container_id}: {exc}") from None

    def stop(self, timeout: float = 15.0) -> None:
        status = self.status
        if status == "paused":
            self._wrapped().unpause()
        if status in ("running", "paused"):
            self._wrapped().stop(timeout=math.ceil(timeout))

    def kill(self) -> None:
        status = self.status
        if status not in ("running", "paused"):
            return
        wrapped = self._wrapped()
        wrapped.kill(signal="SIGKILL")
        if status == "paused":
            with contextlib.suppress(Exception):
                wrapped.unpause()
        wrapped.wait(timeout=10, condition="not-running")

    def pause(self) -> None:
        """Freeze the node (`docker pause`, the cgroup freezer)."""
        if self.status != "running":
            raise RuntimeError(f"Kafka container is not running ({self.status})")
        self._wrapped().pause()

    def resume(self) -> None:
        if self.status != "paused":
            raise RuntimeError(f"Kafka container is not paused ({self.status})")
        self._wrapped().unpause()

    def close(self) -> None:
        container, self._container = self._container, None
        if container is None:
            return
        try:
            if container._container is not None:
                container._container.remove(force=True, v=True)
        except Exception as exc:
            if getattr(exc, "status_code", None) != 404:
                raise
        finally:
            container.get_docker_client().client.close()
