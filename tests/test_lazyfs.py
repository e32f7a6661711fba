"""The lazy file system alone, on a real FUSE mount: what `lose` drops and what it keeps.

Each test writes through the mount with ordinary system calls, drops the
pending layer (`lose`, the power loss) and reads back through the mount and
in the backing directory. The randomized test drives write / truncate /
fsync / lose sequences against a two-state model (what reads see, what is
durable). The last tests show that a run which ends, or is killed, leaves
no mount and no process behind.
"""

from __future__ import annotations

import mmap
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.runtime.lazyfs import LazyFS, is_mounted
from experiments.runtime.lazyfs.daemon import parse_writeback
from experiments.runtime.lazyfs.pending import PAGE
from experiments.runtime.processes import alive
from tests.lazyfs_fixtures import lazyfs, require_fuse_or_skip

__all__ = ["lazyfs"]


def write(path: Path, data: bytes, *, fsync: bool = False, flags: int = 0, offset: int | None = None) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | flags, 0o644)
    try:
        if offset is None:
            os.write(fd, data)
        else:
            os.pwrite(fd, data, offset)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def test_unsynced_writes_are_gone_after_lose_and_fsynced_ones_stay(lazyfs: LazyFS) -> None:
    mnt = lazyfs.mountpoint
    write(mnt / "synced", b"kept", fsync=True)
    write(mnt / "unsynced", b"dropped")
    assert (mnt / "unsynced").read_bytes() == b"dropped"  # reads see pending data
    assert (lazyfs.backing / "unsynced").read_bytes() == b""  # ... which is not durable yet
    assert lazyfs.report() == {"pending_bytes": 7, "pending_files": 1}
    assert lazyfs.lose() == 7
    assert (mnt / "synced").read_bytes() == b"kept"
    assert (mnt / "unsynced").read_bytes() == b""  # the create passed through; the data did not
    assert os.stat(mnt / "unsynced").st_size == 0
    assert lazyfs.pending_bytes() == 0


def test_writes_after_an_fsync_are_lost_but_not_what_the_fsync_covered(lazyfs: LazyFS) -> None:
    f = lazyfs.mountpoint / "log"
    write(f, b"A" * 10, fsync=True)
    write(f, b"B" * 10, offset=10)
    write(f, b"C" * 3, offset=2)
    assert f.read_bytes() == b"AACCCAAAAA" + b"B" * 10
    lazyfs.lose()
    assert f.read_bytes() == b"A" * 10


def test_fdatasync_makes_durable_too(lazyfs: LazyFS) -> None:
    f = lazyfs.mountpoint / "d"
    fd = os.open(f, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"data")
        os.fdatasync(fd)
    finally:
        os.close(fd)
    lazyfs.lose()
    assert f.read_bytes() == b"data"


@pytest.mark.parametrize("flag", [os.O_SYNC, os.O_DSYNC], ids=["O_SYNC", "O_DSYNC"])
def test_writes_on_an_o_sync_handle_are_durable_at_once(lazyfs: LazyFS, flag: int) -> None:
    f = lazyfs.mountpoint / "meta.inf"
    write(f, b"stream config", flags=flag)
    assert (lazyfs.backing / "meta.inf").read_bytes() == b"stream config"  # before any fsync or lose
    assert lazyfs.pending_bytes() == 0
    lazyfs.lose()
    assert f.read_bytes() == b"stream config"


def _map_and_write(f: Path, data: bytes, offset: int, *, msync: bool) -> None:
    """Write `data` at `offset` through a shared mapping of `f` (as Kafka writes its index files)."""
    fd = os.open(f, os.O_RDWR)
    try:
        with mmap.mmap(fd, os.fstat(fd).st_size, mmap.MAP_SHARED) as m:
            m[offset : offset + len(data)] = data
            if msync:
                m.flush()  # msync(MS_SYNC): FUSE writes the page back, then fsyncs
    finally:
        os.close(fd)


def test_a_shared_mapping_works_and_msync_makes_it_durable(lazyfs: LazyFS) -> None:
    f = lazyfs.mountpoint / "00000000000000000000.index"
    write(f, b"\0" * PAGE, fsync=True)
    _map_and_write(f, b"entry", 8, msync=True)
    assert f.read_bytes()[8:13] == b"entry"
    assert (lazyfs.backing / f.name).read_bytes()[8:13] == b"entry"  # durable before any lose
    lazyfs.lose()
    assert f.read_bytes()[8:13] == b"entry"


def test_a_mapped_write_never_synced_is_lost_with_the_rest(lazyfs: LazyFS) -> None:
    """A dirty mapped page is the kernel's, not yet the pending layer's: `lose` writes it back first, then drops it.

    The mapping stays open through the loss (a close would write the page back
    by itself: FUSE flushes dirty pages at close, as at a killed process's exit).
    """
    f = lazyfs.mountpoint / "00000000000000000000.timeindex"
    write(f, b"\0" * PAGE, fsync=True)
    fd = os.open(f, os.O_RDWR)
    try:
        with mmap.mmap(fd, PAGE, mmap.MAP_SHARED) as m:
            m[16:24] = b"unsynced"
            assert lazyfs.lose() >= len(b"unsynced"), "the mapped write never reached the pending layer"
    finally:
        os.close(fd)
    assert lazyfs.pending_bytes() == 0  # nothing of it arrived after the loss
    assert f.read_bytes() == b"\0" * PAGE
    assert (lazyfs.backing / f.name).read_bytes() == b"\0" * PAGE


def test_a_descriptor_open_across_the_loss_reads_what_is_durable(lazyfs: LazyFS) -> None:
    f = lazyfs.mountpoint / "held"
    write(f, b"durable", fsync=True)
    fd = os.open(f, os.O_RDWR)
    try:
        os.pwrite(fd, b"PENDING", 0)
        assert os.pread(fd, 7, 0) == b"PENDING"
        lazyfs.lose()
        assert os.pread(fd, 7, 0) == b"durable"  # not the page cache's copy of the lost write
    finally:
        os.close(fd)


def test_truncate_is_pending_like_a_write(lazyfs: LazyFS) -> None:
    f = lazyfs.mountpoint / "t"
    write(f, b"0123456789", fsync=True)
    os.truncate(f, 4)
    assert f.read_bytes() == b"0123"
    os.truncate(f, 8)  # grows with zeros, not with the old bytes still in the backing file
    assert f.read_bytes() == b"0123\0\0\0\0"
    assert (lazyfs.backing / "t").read_bytes() == b"0123456789"
    lazyfs.lose()
    assert f.read_bytes() == b"0123456789"
    os.truncate(f, 3)
    fd = os.open(f, os.O_WRONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    lazyfs.lose()
    assert f.read_bytes() == b"012"


def test_o_trunc_at_open_is_pending(lazyfs: LazyFS) -> None:
    f = lazyfs.mountpoint / "o"
    write(f, b"old contents", fsync=True)
    write(f, b"new", flags=os.O_TRUNC)
    assert f.read_bytes() == b"new"
    lazyfs.lose()
    assert f.read_bytes() == b"old contents"


def test_rename_passes_through_and_pending_data_follows_the_file(lazyfs: LazyFS) -> None:
    """Documented: renames are durable at once (kinder than a crash); the data's durability is the file's own."""
    mnt = lazyfs.mountpoint
    write(mnt / "a.tmp", b"synced-then-renamed", fsync=True)
    os.rename(mnt / "a.tmp", mnt / "a")
    write(mnt / "b.tmp", b"unsynced-then-renamed")
    os.rename(mnt / "b.tmp", mnt / "b")
    assert (mnt / "b").read_bytes() == b"unsynced-then-renamed"
    lazyfs.lose()
    assert sorted(os.listdir(mnt)) == ["a", "b"]  # both renames survived
    assert (mnt / "a").read_bytes() == b"synced-then-renamed"
    assert (mnt / "b").read_bytes() == b""  # its contents were never fsynced


def test_rename_over_a_file_and_unlink_drop_its_pending_state(lazyfs: LazyFS) -> None:
    mnt = lazyfs.mountpoint
    write(mnt / "old", b"pending old")
    write(mnt / "new", b"durable new", fsync=True)
    os.rename(mnt / "new", mnt / "old")
    assert (mnt / "old").read_bytes() == b"durable new"
    write(mnt / "gone", b"pending")
    os.unlink(mnt / "gone")
    assert lazyfs.report() == {"pending_bytes": 0, "pending_files": 0}
    lazyfs.lose()
    assert sorted(os.listdir(mnt)) == ["old"]
    assert (mnt / "old").read_bytes() == b"durable new"


def test_flush_makes_everything_durable(lazyfs: LazyFS) -> None:
    f = lazyfs.mountpoint / "f"
    write(f, b"x" * (3 * PAGE + 5))
    assert lazyfs.flush() == 3 * PAGE + 5
    lazyfs.lose()
    assert f.read_bytes() == b"x" * (3 * PAGE + 5)


@pytest.mark.spawns
def test_writeback_makes_old_pending_data_durable_on_its_own(tmp_path: Path) -> None:
    require_fuse_or_skip()
    with LazyFS(tmp_path / "backing", tmp_path / "mnt", writeback_s=0.3) as fs:
        f = fs.mountpoint / "w"
        write(f, b"written back")
        assert fs.pending_bytes() == 12
        deadline = time.monotonic() + 5
        while fs.pending_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fs.pending_bytes() == 0
        fs.lose()
        assert f.read_bytes() == b"written back"


def test_writeback_knob_parses_never_and_seconds() -> None:
    assert parse_writeback("never") is None
    assert parse_writeback("30") == 30.0
    with pytest.raises(ValueError, match="writeback_s"):
        parse_writeback("0")


# -- randomized: write / truncate / fsync / lose against a model ---------------------

SIZE = 3 * PAGE  # operations land within a few pages, crossing page edges
ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, SIZE), st.binary(min_size=1, max_size=PAGE + 100)),
        st.tuples(st.just("truncate"), st.integers(0, SIZE + 100), st.just(b"")),
        st.tuples(st.just("fsync"), st.just(0), st.just(b"")),
        st.tuples(st.just("lose"), st.just(0), st.just(b"")),
        st.tuples(st.just("reopen"), st.just(0), st.just(b"")),
    ),
    min_size=1,
    max_size=25,
)


def _apply_write(buf: bytes, data: bytes, offset: int) -> bytes:
    if offset > len(buf):
        buf += b"\0" * (offset - len(buf))
    return buf[:offset] + data + buf[offset + len(data) :]


def _apply_truncate(buf: bytes, length: int) -> bytes:
    return buf[:length] + b"\0" * max(0, length - len(buf))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=ops)
def test_random_sequences_agree_with_a_model(lazyfs: LazyFS, sequence: list[tuple[str, int, bytes]]) -> None:
    """Model: `current` is what reads see, `durable` what survives; fsync copies, lose restores."""
    f = lazyfs.mountpoint / "model"
    if f.exists():
        f.unlink()
    write(f, b"", fsync=True)
    current = durable = b""
    fd = os.open(f, os.O_RDWR)
    try:
        for op, n, data in sequence:
            if op == "write":
                os.pwrite(fd, data, n)
                current = _apply_write(current, data, n)
            elif op == "truncate":
                os.ftruncate(fd, n)
                current = _apply_truncate(current, n)
            elif op == "fsync":
                os.fsync(fd)
                durable = current
            elif op == "lose":
                lazyfs.lose()
                current = durable
            else:  # a new descriptor sees the same file
                os.close(fd)
                fd = os.open(f, os.O_RDWR)
            assert os.fstat(fd).st_size == len(current), (op, n)
            assert os.pread(fd, SIZE * 2, 0) == current, (op, n)
        lazyfs.lose()
        assert f.read_bytes() == durable
        assert (lazyfs.backing / "model").read_bytes() == durable
    finally:
        os.close(fd)


# -- nothing left behind -----------------------------------------------------------------

OWNER = textwrap.dedent(
    """
    import sys, time
    from experiments.runtime.lazyfs import LazyFS
    fs = LazyFS(sys.argv[1] + "/backing", sys.argv[1] + "/mnt")
    fs.start()
    print(fs.pid, flush=True)
    sys.stdin.readline()  # the test looked at the mount
    if sys.argv[2] == "hang":
        time.sleep(600)
    # "exit": return without stop(): atexit must unmount
    """
)


def _naming(mnt: Path) -> list[int]:
    """Live processes whose command line names the mount point (the daemon, its watchdog, fusermount3)."""
    return [p.pid for p in psutil.process_iter(["cmdline"]) if str(mnt) in (p.info["cmdline"] or []) and alive(p.pid)]


def _gone(pid: int, mnt: Path, timeout: float) -> bool:
    """The daemon, every process naming the mount, and the mount itself are gone within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid) and not is_mounted(mnt) and not _naming(mnt):
            return True
        time.sleep(0.05)
    print(f"after {timeout} s: pid {pid} alive={alive(pid)}, {mnt} mounted={is_mounted(mnt)}, left: {_naming(mnt)}")
    return False


@pytest.mark.spawns
@pytest.mark.parametrize("how", ["exit", "hang"], ids=["ends-without-stop", "killed-as-on-timeout"])
def test_a_run_that_ends_or_is_killed_leaves_no_mount_and_no_process(tmp_path: Path, how: str) -> None:
    """`exit`: the owner returns without stop() (atexit unmounts); `hang`: it is SIGKILLed, as a timed-out kernel is."""
    require_fuse_or_skip()
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path), how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert owner.stdout is not None
        assert owner.stdin is not None
        daemon_pid = int(owner.stdout.readline())
        assert is_mounted(tmp_path / "mnt")
        owner.stdin.write(b"go\n")
        owner.stdin.flush()
        if how == "hang":
            os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=15)
        assert _gone(daemon_pid, tmp_path / "mnt", timeout=10), "lazyfs daemon or its mount outlived its owner"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if is_mounted(tmp_path / "mnt"):
            subprocess.run(["fusermount3", "-uz", str(tmp_path / "mnt")], check=False)


def test_a_killed_daemon_leaves_no_mount(lazyfs: LazyFS) -> None:
    """auto_unmount: even a SIGKILL of the FUSE process itself unmounts."""
    pid = lazyfs.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert _gone(pid, lazyfs.mountpoint, timeout=10)
