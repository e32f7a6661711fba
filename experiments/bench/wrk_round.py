"""The Go original's load on a chain: wrk, its body, 64 connections; req/s, p99 and CPU µs per request.

The figure issue 24 is judged by. wrk (C, one thread) posts the Go
original's body `{"source","data","metadata"}` (which the gateway accepts)
closed loop at 64 connections. Over the wrk window the CPU time of every
process of the deployment is read (psutil: user + system, children
included, so granian's worker under its master counts), and divided by the
2xx answers: CPU µs per request per process, and their sum. The broker
(nats-server) is one of the processes, so a queue's own cost is in the sum.
The resident memory of each process after the window is shown beside it.

The same function measures any chain given its URL and its processes' pids
(the Go original in a network namespace too: `prefix` runs wrk there).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson
import psutil

from experiments.bench import wrk

# The Go original's body (its IngestRequest: source, data as a string, metadata string->string).
GO_BODY = orjson.dumps({"source": "wrk", "data": "x" * 64, "metadata": {"client": "wrk"}})
CONNECTIONS = 64
WARMUP_S = 1.0


@dataclass(frozen=True)
class WrkRound:
    """One chain under wrk for one window."""

    name: str
    rate: float  # 2xx answers per second
    p99_ms: float  # wrk's p99 (every answer)
    non_2xx: int
    cpu_us: dict[str, float]  # process name -> CPU µs per 2xx answer over the window
    rss_mb: dict[str, float]  # process name -> resident MB after the window

    @property
    def total_cpu_us(self) -> float:
        return sum(self.cpu_us.values())

    @property
    def total_rss_mb(self) -> float:
        return sum(self.rss_mb.values())


class Processes:
    """Named processes whose CPU is summed with their children's (granian serves from a child)."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}

    def _tree(self, proc: psutil.Process) -> list[psutil.Process]:
        with contextlib.suppress(psutil.NoSuchProcess):
            return [proc, *proc.children(recursive=True)]
        return []

    def cpu_s(self) -> dict[str, dict[int, float]]:
        """Per name: CPU seconds of each process of its tree, by pid (a child may come or go)."""
        out: dict[str, dict[int, float]] = {}
        for name, proc in self.procs.items():
            out[name] = {}
            for p in self._tree(proc):
                with contextlib.suppress(psutil.NoSuchProcess):
                    t = p.cpu_times()
                    out[name][p.pid] = float(t.user + t.system)
        return out

    def rss_mb(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, proc in self.procs.items():
            total = 0
            for p in self._tree(proc):
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += p.memory_info().rss
            out[name] = total / 2**20
        return out


def cpu_delta(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds spent per name between two readings (a pid new in `after` counts from zero)."""
    return {
        name: sum(t - before.get(name, {}).get(pid, 0.0) for pid, t in pids.items()) for name, pids in after.items()
    }


def measure(
    name: str,
    url: str,
    pids: Mapping[str, int],
    duration: float,
    prefix: Sequence[str] = (),
    body: bytes = GO_BODY,
) -> WrkRound:
    """A short warm-up, then wrk at 64 connections for `duration` s with every process's CPU read around it."""
    wrk.accepted_rate(url, body, 16, WARMUP_S, prefix=prefix)
    procs = Processes(pids)
    before = procs.cpu_s()
    r = wrk.accepted_rate(url, body, CONNECTIONS, duration, latency=True, prefix=prefix)
    spent = cpu_delta(before, procs.cpu_s())
    ok = r.requests - r.non_2xx
    cpu_us = {n: s * 1e6 / ok if ok else float("nan") for n, s in spent.items()}
    time.sleep(0.2)  # let the last answers' work settle before reading memory
    return WrkRound(name, r.rate, r.p99_ms if r.p99_ms is not None else float("nan"), r.non_2xx, cpu_us, procs.rss_mb())


def _spread(values: Sequence[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}..{max(values):{fmt}})"


def render(rounds: Sequence[Sequence[WrkRound]], names: Sequence[str], baselines: Mapping[str, str]) -> str:
    """Medians over rounds with min..max; per process CPU µs/request; ratios to a baseline per round.

    `baselines`: configuration -> the one it is compared with (same backend,
    no lever), measured in the same rounds; the ratio is taken per round.
    """
    rows = {n: [r for rnd in rounds for r in rnd if r.name == n] for n in names}
    by_round = [{r.name: r for r in rnd} for rnd in rounds]
    width = max(8, *(len(n) for n in names))
    head = (
        f"{'chain':<{width}} {'req/s (min..max)':>24} {'p99 ms (min..max)':>22} {'CPU µs/req (min..max)':>22}"
        f" {'RSS MB':>7} {'non-2xx':>7}"
    )
    lines = [
        f"wrk -t1 -c{CONNECTIONS}, the Go original's body, {len(rounds)} round(s): medians (min..max)",
        head,
        "-" * len(head),
    ]
    for n in names:
        rs = rows[n]
        if not rs:
            continue
        lines.append(
            f"{n:<{width}} {_spread([r.rate for r in rs], ',.0f'):>24} {_spread([r.p99_ms for r in rs], '.1f'):>22}"
            f" {_spread([r.total_cpu_us for r in rs], '.0f'):>22}"
            f" {statistics.median(r.total_rss_mb for r in rs):>7.0f} {sum(r.non_2xx for r in rs):>7}"
        )
    lines.append("CPU µs per request by process (medians):")
    for n in names:
        rs = rows[n]
        if not rs:
            continue
        procs = list(dict.fromkeys(p for r in rs for p in r.cpu_us))
        cells = ", ".join(f"{p} {statistics.median(r.cpu_us[p] for r in rs if p in r.cpu_us):.0f}" for p in procs)
        lines.append(f"  {n:<{width}} {cells}")
    compared = [(n, b) for n, b in baselines.items() if n in rows and b in rows and n != b]
    if compared:
        lines.append("against the baseline, per round (median (min..max)):")
        for n, b in compared:
            pairs = [(rnd[n], rnd[b]) for rnd in by_round if n in rnd and b in rnd]
            rate = [x.rate / y.rate for x, y in pairs if y.rate]
            cpu = [x.total_cpu_us / y.total_cpu_us for x, y in pairs if y.total_cpu_us]
            p99 = [x.p99_ms / y.p99_ms for x, y in pairs if y.p99_ms]
            if rate and cpu and p99:
                lines.append(
                    f"  {n} / {b}: req/s {_spread(rate, '.2f')}x, CPU/req {_spread(cpu, '.2f')}x,"
                    f" p99 {_spread(p99, '.2f')}x"
                )
    return "\n".join(lines)
