"""What the Python FUSE layer costs: the lazy file system against a plain directory, in the same run.

    python -m experiments.bench.lazyfs [--quick] [--repeat N]

Two levels, each measured as interleaved pairs (plain, then lazy, back to
back) so a slow moment of the shared machine hits both; the ratio is
lazy / plain within a pair, shown as the median with min..max over pairs:

- file writes: 4 KiB `write` calls into one file (no fsync), and 4 KiB
  writes each followed by `fsync` (what sync_always does per message);
- JetStream publish through nats-server with its store on each, one at a
  time and pipelined, under the default policy and `sync_interval: always`.
  The sync_always / default ratio is printed too (per pair, same store).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from experiments.runtime.lazyfs import LazyFS
from experiments.runtime.nats.base import nats_server_version
from experiments.runtime.nats.lazy import LazyNats
from experiments.runtime.nats.process import ProcessNats
from experiments.workload.publish import PUBLISH_MODES, publish_rate

BLOCK = b"x" * 4096


def write_rate(directory: Path, n: int, fsync: bool) -> float:
    """4 KiB writes/s into a new file in `directory` (each fsynced when `fsync`)."""
    path = directory / f"bench-{time.monotonic_ns()}"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            os.write(fd, BLOCK)
            if fsync:
                os.fsync(fd)
        elapsed = time.perf_counter() - t0
    finally:
        os.close(fd)
        path.unlink()
    return n / elapsed


def summary(name: str, plain: list[float], lazy: list[float]) -> str:
    ratios = [la / pl for la, pl in zip(lazy, plain, strict=True)]
    return (
        f"{name:<44} {statistics.median(plain):>11,.0f} {statistics.median(lazy):>11,.0f}  "
        f"{statistics.median(ratios):>5.2f}x ({min(ratios):.2f}..{max(ratios):.2f})"
    )


def bench_files(work: Path, n: int, n_sync: int, repeat: int) -> list[str]:
    plain_dir = work / "plain"
    plain_dir.mkdir(parents=True)
    lines = []
    work.mkdir(parents=True, exist_ok=True)
    with LazyFS(work / "backing", work / "mnt") as fs:
        for label, count, sync in (("file write 4 KiB", n, False), ("file write 4 KiB + fsync", n_sync, True)):
            plain: list[float] = []
            lazy: list[float] = []
            for _ in range(repeat):
                plain.append(write_rate(plain_dir, count, sync))
                lazy.append(write_rate(fs.mountpoint, count, sync))
                fs.flush()
            lines.append(summary(f"{label} [writes/s]", plain, lazy))
    return lines


async def bench_publish(work: Path, counts: dict[str, int], repeat: int) -> list[str]:
    lines: list[str] = []
    rates: dict[tuple[bool, str, str], list[float]] = {}
    for sync in (False, True):
        servers: dict[str, ProcessNats] = {
            "plain": ProcessNats(work / f"plain-{sync}", sync_always=sync),
            "lazy": LazyNats(work / f"lazy-{sync}", sync_always=sync),
        }
        try:
            for s in servers.values():
                s.start()
            for _ in range(repeat):
                for mode in PUBLISH_MODES:
                    for store, server in servers.items():
                        rate = await publish_rate(server.url, mode, counts[mode if not sync else f"{mode}-sync"])
                        rates.setdefault((sync, mode, store), []).append(rate)
        finally:
            for s in servers.values():
                s.close()
        policy = "sync_always" if sync else "default"
        for mode in PUBLISH_MODES:
            lines.append(summary(f"publish {mode}, {policy} [msg/s]", rates[(sync, mode, "plain")],
                                 rates[(sync, mode, "lazy")]))  # fmt: skip
    lines.append("")
    lines.append(f"{'sync_always / default, same store':<44} {'plain':>11} {'lazy FS':>11}")
    for mode in PUBLISH_MODES:
        cells = []
        for store in ("plain", "lazy"):
            r = [s / d for s, d in zip(rates[(True, mode, store)], rates[(False, mode, store)], strict=True)]
            cells.append(f"{statistics.median(r):.3f}x")
        lines.append(f"{'publish ' + mode:<44} {cells[0]:>11} {cells[1]:>11}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer operations (about 20 s)")
    parser.add_argument("--repeat", type=int, default=5, help="plain/lazy pairs per figure; medians are shown")
    args = parser.parse_args(argv)
    q = args.quick
    counts = {"single": 300 if q else 1000, "pipelined": 2000 if q else 10000,
              "single-sync": 100 if q else 300, "pipelined-sync": 300 if q else 1000}  # fmt: skip
    print(f"python {sys.version.split()[0]}, nats-server {nats_server_version()}, median of {args.repeat} pairs, "
          f"lazy FS writeback never", flush=True)  # fmt: skip
    head = f"{'operation':<44} {'plain dir':>11} {'lazy FS':>11}  {'lazy/plain (min..max)'}"
    print(head)
    print("-" * len(head))
    with tempfile.TemporaryDirectory(prefix="bench-lazyfs-") as tmp:
        work = Path(tmp)
        for line in bench_files(work / "files", 2000 if q else 10000, 100 if q else 500, args.repeat):
            print(line, flush=True)
        for line in asyncio.run(bench_publish(work / "nats", counts, args.repeat)):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
