"""Nothing outlives a killed run: SIGKILL the runner mid-deployment, then no process and no mount is left.

The batch runner (`diplom run`) runs 06_power_loss (a nats-server on a lazy
FUSE store, three uvicorn services, a papermill kernel); `diplom up` runs the
stack in the foreground. Each is SIGKILLed once its deployment is up; every
process below it (recorded by pid and start time before the kill) and every
mount under the test's directory must be gone within seconds. What stops them:
the run's reaper (`experiments/runtime/reaper.py`), PR_SET_PDEATHSIG on the
children (`processes.die_with_parent`) and the lazy FS's watchdog.
Cost: ~30 s for the batch (a kernel start), ~10 s for `diplom up`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.lazyfs_fixtures import require_fuse_or_skip

pytestmark = pytest.mark.spawns

ROOT = Path(__file__).resolve().parent.parent
BATCH = """\
batch: killed
timeout_s: 600
report: null
runs:
  - notebook: 06_power_loss
    parameters: {backends: [nats], writebacks: [never], replicas: [1], rate: 100, duration_s: 300,
                 fault_at_s: 250, down_s: 0.3, publish_single: 100, publish_pipelined: 1000, publish_rounds: 1}
"""
Proc = tuple[int, float, str]  # pid, start time, name


def _tree(pid: int) -> list[Proc]:
    try:
        procs = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for p in procs:
        try:
            out.append((p.pid, p.create_time(), " ".join(p.cmdline())[:120]))
        except psutil.NoSuchProcess:
            continue
    return out


def _still_running(procs: list[Proc]) -> list[Proc]:
    left = []
    for pid, started, name in procs:
        try:
            p = psutil.Process(pid)
            if abs(p.create_time() - started) < 0.05 and p.status() != psutil.STATUS_ZOMBIE:
                left.append((pid, started, name))
        except psutil.NoSuchProcess:
            continue
    return left


def _mounts_under(path: Path) -> list[str]:
    root = os.path.realpath(path)
    return [p.mountpoint for p in psutil.disk_partitions(all=True) if p.mountpoint.startswith(root)]


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.2)


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The started runners; killed (by pid) at teardown if the test failed before it did."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """The run's TMPDIR: short, for the lazy FS's control socket (AF_UNIX paths end at 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="qlk-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _names(procs: list[Proc]) -> str:
    return "; ".join(name for _, _, name in procs)


@pytest.mark.timeout(300)
def test_sigkill_of_the_batch_runner_mid_run_leaves_no_process_and_no_mount(
    tmp_path: Path, short_tmp: Path, runner: list[subprocess.Popen[bytes]]
) -> None:
    require_fuse_or_skip()
    batch = tmp_path / "killed.yaml"
    batch.write_text(BATCH)
    log = open(tmp_path / "runner.log", "wb")  # noqa: SIM115 (closed below)
    env = {**os.environ, "TMPDIR": str(short_tmp), "HARNESS_NATS": "process"}  # the run's stores in here
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", "run", str(batch), "--results", str(tmp_path / "results")],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
    )  # fmt: skip
    runner.append(proc)

    def deployed() -> bool:
        names = _names(_tree(proc.pid))
        assert proc.poll() is None, (tmp_path / "runner.log").read_text()[-3000:]
        return "nats-server" in names and names.count("uvicorn") >= 3 and bool(_mounts_under(short_tmp))

    _wait(deployed, 120, "the run's nats-server on a lazy store and three services")
    time.sleep(1.0)  # under load a moment
    before = _tree(proc.pid)
    names = _names(before)
    for part in ("papermill", "ipykernel", "lazyfs"):
        assert part in names, names
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    log.close()
    _wait(lambda: not _still_running(before), 20, f"every process of the run gone: {_still_running(before)}")
    _wait(lambda: not _mounts_under(short_tmp), 20, f"every mount gone: {_mounts_under(short_tmp)}")


def test_sigkill_of_diplom_up_leaves_no_process(tmp_path: Path, runner: list[subprocess.Popen[bytes]]) -> None:
    from experiments.runtime.ports import free_port

    ports = [str(free_port()) for _ in range(5)]
    cmd = [sys.executable, "-m", "experiments.cli", "up", "--queue", "nats", "--workdir", str(tmp_path / "run"),
           "--gateway-port", ports[0], "--ingest-port", ports[1], "--processor-port", ports[2],
           "--nats-port", ports[3], "--nats-monitor-port", ports[4]]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runner.append(proc)

    def up() -> bool:
        assert proc.poll() is None, "diplom up ended early"
        names = _names(_tree(proc.pid))
        return "nats-server" in names and names.count("uvicorn") >= 3

    _wait(up, 60, "diplom up's nats-server and three services")
    before = _tree(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    _wait(lambda: not _still_running(before), 10, f"every process of `diplom up` gone: {_still_running(before)}")
