"""A soak: open-loop load at half the max rate for minutes, watching every process for growth.

    diplom soak --minutes 10 [--queues memory,nats] [--sample-s 5] [--warmup-s 30]

Per queue: a fresh stack (nats-server for nats, processor, ingest, gateway on
127.0.0.1). The max rate is measured first (closed loop, 32 clients, 5 s:
2xx per second); then the open loop runs at half of it, window after window
of `sample_s`, and after each window every process's RSS and open file
descriptors (psutil) and the ledger's size on disk are sampled. After a
warm-up, a least-squares line through each series gives its slope; a process
fails when the growth the line predicts over the measured span exceeds the
noise (3 residual standard deviations) and a floor (`RSS_FLOOR_MIB` or
`RSS_FLOOR_FRACTION` of its median RSS; `FD_FLOOR` descriptors). Each queue's
dedup window is set inside the warm-up (`dedup_window_for`). The ledger
grows by design (a row per message): its bytes per processed message are
printed, not judged. Every process is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from experiments.runtime.nats.process import ProcessNats
from experiments.runtime.stack import Stack, StackConfig
from experiments.workload.load import closed_loop, id_bodies, open_loop

RSS_FLOOR_MIB = 4.0
RSS_FLOOR_FRACTION = 0.05
FD_FLOOR = 3.0
MAX_RATE_CLIENTS = 32
MAX_RATE_S = 5.0


@dataclass
class Series:
    """One quantity of one process over time (t in s since the soak's start)."""

    name: str
    unit: str
    t: list[float] = field(default_factory=list)
    v: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Slope:
    name: str
    unit: str
    per_min: float  # the fitted slope, unit per minute
    growth: float  # what the line predicts over the measured span
    noise: float  # 3 standard deviations of the residuals
    floor: float
    median: float

    @property
    def grows(self) -> bool:
        return self.growth > max(self.noise, self.floor)

    def line(self) -> str:
        verdict = "GROWS" if self.grows else "flat"
        return (
            f"{self.name:<22} {self.median:>9.1f} {self.unit:<4} slope {self.per_min:+8.3f} {self.unit}/min  "
            f"growth {self.growth:+8.2f} vs noise {self.noise:6.2f} / floor {self.floor:5.1f}  {verdict}"
        )


def slope(series: Series, warmup_s: float, floor: float) -> Slope:
    """Least squares after the warm-up; growth = slope x span, judged against 3 sigma of residuals and a floor."""
    pts = [(t, v) for t, v in zip(series.t, series.v, strict=True) if t >= warmup_s]
    if len(pts) < 3:
        raise ValueError(f"{series.name}: {len(pts)} samples after the {warmup_s:g} s warm-up; need 3 or more")
    ts, vs = [p[0] for p in pts], [p[1] for p in pts]
    fit = statistics.linear_regression(ts, vs)
    residuals = [v - (fit.slope * t + fit.intercept) for t, v in pts]
    noise = 3 * statistics.pstdev(residuals)
    return Slope(series.name, series.unit, fit.slope * 60, fit.slope * (ts[-1] - ts[0]), noise, floor,
                 statistics.median(vs))  # fmt: skip


def rss_floor(median_mib: float) -> float:
    return max(RSS_FLOOR_MIB, RSS_FLOOR_FRACTION * median_mib)


@dataclass
class SoakResult:
    queue: str
    max_rate: float
    rate: float
    sent: int
    ok: int
    processed_bytes_per_msg: float
    slopes: list[Slope]

    @property
    def growing(self) -> list[Slope]:
        return [s for s in self.slopes if s.grows]


def _processes(stack: Stack) -> dict[str, int]:
    pids = {s.name: s.serving_pid for s in stack.services}
    if isinstance(stack.nats, ProcessNats) and stack.nats.pid is not None:
        pids["nats-server"] = stack.nats.pid
    return {name: pid for name, pid in pids.items() if pid is not None}


def _ledger_bytes(stack: Stack) -> int:
    total = 0
    for path in stack.ledger_paths:
        for p in (path, path.with_name(path.name + "-wal")):
            if p.exists():
                total += p.stat().st_size
    return total


def dedup_window_for(warmup_s: float) -> float:
    """The dedup window a soak runs with: half its warm-up (at least 1 s).

    Both queues keep every id of the window in memory (the memory backend's
    dedup map, nats-server's duplicate window); at the default 120 s a short
    soak fits its line while that memory is still filling (seen: +5 MiB in
    36 s at 1,300 msg/s in the processor, and in nats-server), growth by
    design that no soak of minutes shorter than the window could tell from a
    leak. With the window inside the warm-up, the fitted part is steady state.
    """
    return max(1.0, warmup_s / 2)


async def soak_queue(queue: str, seconds: float, sample_s: float, warmup_s: float, workdir: Path) -> SoakResult:
    env = {"DEDUP_WINDOW": f"{dedup_window_for(warmup_s):g}"}
    with Stack(StackConfig(queue=queue, env=env), workdir / queue) as stack:
        url = f"{stack.gateway_url}/api/v1/ingest"
        probe = await closed_loop(url, id_bodies(f"max-{queue}"), concurrency=MAX_RATE_CLIENTS, duration=MAX_RATE_S)
        max_rate = len(probe.ok) / probe.duration
        rate = max_rate / 2
        pids = _processes(stack)
        procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        rss = {n: Series(f"{n} rss", "MiB") for n in procs}
        fds = {n: Series(f"{n} fds", "fd") for n in procs}
        ledger = Series("ledger", "MiB")
        sent = ok = 0
        ledger_start = _ledger_bytes(stack)
        started = time.perf_counter()
        window = 0
        while time.perf_counter() - started < seconds:
            res = await open_loop(url, id_bodies(f"soak-{queue}-{window}"), rate=rate, duration=sample_s,
                                  keep_ids=False)  # fmt: skip
            window += 1
            sent += len(res.records)
            ok += len(res.ok)
            t = time.perf_counter() - started
            for name, proc in procs.items():
                rss[name].t.append(t)
                rss[name].v.append(proc.memory_info().rss / 2**20)
                fds[name].t.append(t)
                fds[name].v.append(float(proc.num_fds()))
            ledger.t.append(t)
            ledger.v.append(_ledger_bytes(stack) / 2**20)
        ledger_growth = _ledger_bytes(stack) - ledger_start
        slopes = []
        for name in procs:
            median = statistics.median(rss[name].v)
            slopes.append(slope(rss[name], warmup_s, rss_floor(median)))
            slopes.append(slope(fds[name], warmup_s, FD_FLOOR))
        return SoakResult(queue, max_rate, rate, sent, ok, ledger_growth / max(ok, 1), slopes)


def report(result: SoakResult, seconds: float) -> str:
    lines = [
        f"== {result.queue}: max {result.max_rate:.0f} msg/s (closed loop, {MAX_RATE_CLIENTS} clients), "
        f"soak at {result.rate:.0f} msg/s for {seconds:g} s: {result.sent} sent, {result.ok} 2xx, "
        f"ledger {result.processed_bytes_per_msg:.0f} B per 2xx message",
        *(s.line() for s in result.slopes),
    ]
    growing = ", ".join(s.name for s in result.growing)
    lines.append(f"   verdict: {'GROWTH in ' + growing if growing else 'no growth beyond noise'}")
    return "\n".join(lines)


async def soak(queues: list[str], seconds: float, sample_s: float, warmup_s: float) -> list[SoakResult]:
    with tempfile.TemporaryDirectory(prefix="queue-lab-soak-") as tmp:
        return [await soak_queue(q, seconds, sample_s, warmup_s, Path(tmp)) for q in queues]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="diplom soak", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, required=True, help="soak length per queue, after the max-rate probe")
    ap.add_argument("--queues", default="memory,nats")
    ap.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples (one load window)")
    ap.add_argument("--warmup-s", type=float, default=None, help="samples before this are not fitted (default: 20%%)")
    args = ap.parse_args(argv)
    seconds = args.minutes * 60
    warmup = args.warmup_s if args.warmup_s is not None else 0.2 * seconds
    results = asyncio.run(soak(args.queues.split(","), seconds, args.sample_s, warmup))
    for r in results:
        print(report(r, seconds), flush=True)
    return 1 if any(r.growing for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
