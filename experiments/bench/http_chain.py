"""End-to-end throughput and latency of the three services, beside a bare chain.

    python -m experiments.bench.http_chain [--quick] [--duration S] [--rounds N]
                                         [--configs memory,nats,nats:2] [--wrk-only]

Each round measures the bare 3-hop chain (same HTTP stack, no queue, no
validation) and then each configuration of the real stack (`BACKEND[:N]`, N
processor instances, default 1), all on fresh processes, back to back, so a
slow moment of the machine hits neighbours alike. Per configuration:
- single messages, closed loop (64 connections): accepted msg/s, and
  processed msg/s = every accepted message worked off and acked, divided by
  the time from the start of the load until the last one was (the drain
  counts: a queue that only grows is not throughput);
- batches of 100, closed loop (8 connections): the same, in messages;
- client latency p50/p99 at half the max single-message rate, open loop
  (from each request's scheduled time: no coordinated omission), beside
  the generator's own send lag p99 (how late it started requests: that part
  of the tail is the client, not the system), and the p99 of each stage
  (ledger stamps, experiments/lab/ledger_stages.py), so the tail has an address.
Figures are medians over the rounds; the single-message ratio to the bare
chain is the median of per-round ratios, with min..max.

Two independent checks in the same run:
- `wrk` (Debian's, installed by scripts/ensure-wrk.sh) drives the same
  gateway with the same body right after our generator, at 64 connections
  (saturation) and at 4 (below it): the two accepted rates should agree
  within ~20 % below saturation. At saturation ours is lower: our generator
  is a Python process taking CPU from the same two cores, wrk is C;
- the processor's CPU per message: in the real stack (psutil on the
  processor process(es) over the batch-of-100 window, HTTP included), and in
  one process without HTTP (publish_many + worker pool + ledger + ack) beside
  bare nats-py publish_async + fetch(100) + ack, interleaved per round
  (experiments/bench/cpu_cost.py); the ratio is ours / bare, per round.
Then the wrk round (experiments/bench/wrk_round.py), the figure issue 24 is
judged by: wrk with the Go original's body at 64 connections, req/s, p99 and
CPU µs per request of every process (services and nats-server) over the
window; a lever's configuration beside its plain one as per-round ratios.
`--wrk-only` runs only that round, configurations in alternating order.
Every process runs on 127.0.0.1 and is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import uvloop

from experiments.bench import cpu_cost, wrk, wrk_round
from experiments.lab.ledger_stages import phase_stages
from experiments.runtime import warn_once
from experiments.runtime.nats.base import nats_server_version
from experiments.runtime.ports import free_port
from experiments.runtime.stack import AsgiServer, ServiceProcess, Stack, StackConfig
from experiments.workload.load import closed_loop, id_bodies, open_loop, request_ids
from services.settings import BackendSettings

PAD = "x" * 64


def single_body(seq: int) -> bytes:
    return orjson.dumps({"source": "bench", "payload": {"n": seq, "pad": PAD}})


def batch_body(seq: int) -> bytes:
    return orjson.dumps([{"source": "bench", "payload": {"n": seq * 100 + i, "pad": PAD}} for i in range(100)])


@dataclass
class ChainFigures:
    """One configuration in one round."""

    name: str
    single_accepted: float
    single_processed: float
    batch_accepted: float
    batch_processed: float
    half_rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    wrk_accepted: float = 0.0  # wrk at 64 connections, 2xx/s
    low_accepted: float = 0.0  # ours at LOW_CONNECTIONS
    wrk_low_accepted: float = 0.0  # wrk at LOW_CONNECTIONS
    processor_cpu_us: float = 0.0  # CPU µs per message of the processor process(es), batch window
    lag_p99_ms: float = 0.0  # the generator's own send lag at half rate (scheduled -> request started)
    stage_p99_ms: dict[str, float] = field(default_factory=dict)  # half rate: p99 of each stage (ledger stamps)


LOW_CONNECTIONS = 4  # below saturation on 2 cores
HALF = "half"  # id prefix of the half-rate phase's messages
W = 19  # width of a configuration's name in the tables (`nats/granian+freeze`)


class BareChain:
    """sink <- forwarder <- forwarder, as uvicorn processes."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        sink = ServiceProcess(
            "bare-sink", "experiments.bench.bare_chain:create_sink", free_port(), {}, workdir / "sink.log"
        )
        mid = ServiceProcess(
            "bare-mid", "experiments.bench.bare_chain:create_forwarder", free_port(), {"BARE_NEXT_URL": sink.url},
            workdir / "mid.log",
        )  # fmt: skip
        front = ServiceProcess(
            "bare-front", "experiments.bench.bare_chain:create_forwarder", free_port(), {"BARE_NEXT_URL": mid.url},
            workdir / "front.log",
        )  # fmt: skip
        self.services = [sink, mid, front]
        self.url = front.url

    def start(self) -> None:
        for s in self.services:
            s.start()

    def stop(self) -> None:
        for s in reversed(self.services):
            s.stop()


class Processed:
    """The processors' `processed_count`, summed (one or several instances)."""

    def __init__(self, stats_urls: list[str]) -> None:
        self.stats_urls = stats_urls

    async def count(self, client: httpx.AsyncClient) -> int:
        answers = await asyncio.gather(*(client.get(u) for u in self.stats_urls))
        return sum(int(a.json()["pool"]["processed_count"]) for a in answers)

    async def wait_for(self, client: httpx.AsyncClient, target: int, timeout: float) -> int:
        """Poll until `target` are processed (bounded); the stats API has no push."""
        deadline = time.monotonic() + timeout
        n = await self.count(client)
        while n < target and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            n = await self.count(client)
        return n


async def measure(
    name: str,
    url: str,
    processed: Processed | None,
    duration: float,
    processor_pids: list[int] | None = None,
    ledgers: list[Path] | None = None,
    freeze_heap: bool = True,
) -> ChainFigures:
    ingest = f"{url}/api/v1/ingest"
    errors = 0
    client = httpx.AsyncClient(trust_env=False, timeout=5)
    procs = [psutil.Process(pid) for pid in processor_pids or []]
    cpu_us = 0.0

    async def window(body, concurrency: int, per_request: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
        nonlocal errors
        before = await processed.count(client) if processed else 0
        started = time.monotonic()
        res = await closed_loop(ingest, body, concurrency=concurrency, duration=duration, freeze_heap=freeze_heap)
        errors += len(res.records) - len(res.ok)
        accepted_msgs = len(res.ok) * per_request
        accepted = accepted_msgs / res.duration
        if processed is None:
            return accepted, accepted
        done = await processed.wait_for(client, before + accepted_msgs, timeout=120) - before
        return accepted, done / (time.monotonic() - started)

    def cpu_s() -> float:
        return sum(float(t.user + t.system) for t in (p.cpu_times() for p in procs))

    try:
        # warm up connections; with the same heap policy, so a `plain-heap` round never freezes
        await closed_loop(ingest, single_body, concurrency=16, duration=1.0, freeze_heap=freeze_heap)
        single_acc, single_proc = await window(single_body, 64, 1)
        wrk_acc = await asyncio.to_thread(wrk.accepted_rate, ingest, single_body(0), 64, duration)
        low_res = await closed_loop(
            ingest, single_body, concurrency=LOW_CONNECTIONS, duration=duration, freeze_heap=freeze_heap
        )
        errors += len(low_res.records) - len(low_res.ok)
        wrk_low = await asyncio.to_thread(wrk.accepted_rate, ingest, single_body(0), LOW_CONNECTIONS, duration)
        before_cpu, before_n = cpu_s(), (await processed.count(client) if processed else 0)
        batch_acc, batch_proc = await window(batch_body, 8, 100)
        if procs and processed:
            done = await processed.count(client) - before_n
            cpu_us = (cpu_s() - before_cpu) * 1e6 / done if done else 0.0
        half = max(1.0, single_acc / 2)
        # client-chosen ids, so each answer joins its message's stage stamps in the ledger
        before_half = await processed.count(client) if processed else 0
        t0, t0_ns = time.perf_counter(), time.time_ns()
        res = await open_loop(
            ingest,
            id_bodies(HALF, payload_bytes=len(PAD) + 16, source="bench"),
            rate=half,
            duration=duration,
            keep_ids=False,
            freeze_heap=freeze_heap,
        )
        errors += len(res.records) - len(res.ok)
        if processed is not None:  # the last ones' stamps too
            await processed.wait_for(client, before_half + len(res.ok), timeout=30)
    finally:
        await client.aclose()
    stages = {}
    if ledgers:
        ids = {r.seq: request_ids(HALF, r.seq) for r in res.ok}
        stages = {s.stage: s.p99_ms for s in phase_stages(ledgers, HALF, res, ids, t0, t0_ns) if s.p99_ms is not None}
    return ChainFigures(
        name, single_acc, single_proc, batch_acc, batch_proc, half, res.latency_ms(0.50), res.latency_ms(0.99), errors,
        wrk_acc.rate, len(low_res.ok) / low_res.duration, wrk_low.rate, cpu_us, res.send_lag_ms(0.99), stages,
    )  # fmt: skip


@dataclass(frozen=True)
class Variant:
    """A lever: service environment (settings), the gateway's ASGI server, or the load generator's heap.

    `client_heap_frozen=False` is the generator's own lever: its loads run
    with the heap as it is, so a full collection of this process (the
    harness imported) can stall it mid-schedule (experiments.workload.load).
    """

    env: dict[str, str] = field(default_factory=dict)
    gateway_server: AsgiServer = "uvicorn"
    client_heap_frozen: bool = True
    hop_server: AsgiServer = "uvicorn"  # ingest's and the processors'


# Levers on the half-rate tail (`BACKEND/LEVER` in --configs). experiments/bench/tail.py runs
# the stack ones side by side; `plain-heap` is the generator's, so it is bench-services' alone.
LEVERS: dict[str, Variant] = {
    "freeze": Variant({"GC_FREEZE": "true"}),
    "gen0": Variant({"GC_FREEZE": "true", "GC_GEN0_THRESHOLD": "10000"}),
    "granian": Variant({}, "granian"),
    "granian+freeze": Variant({"GC_FREEZE": "true"}, "granian"),
    "plain-heap": Variant(client_heap_frozen=False),
    "granian-all": Variant({}, "granian", hop_server="granian"),
    # the gateway's calls to ingest one per request, as before services/forward_ingest.py (256 open calls:
    # never fewer free than the 64 connections of the wrk round, so nothing waits to be coalesced)
    "per-request": Variant({"INGEST_IN_FLIGHT": "256"}),
}


@dataclass(frozen=True)
class Config:
    backend: str
    processors: int = 1
    lever: str = ""

    @property
    def name(self) -> str:
        base = self.backend if self.processors == 1 else f"{self.backend}x{self.processors}"
        return f"{base}/{self.lever}" if self.lever else base

    @property
    def variant(self) -> Variant:
        return LEVERS[self.lever] if self.lever else Variant()


def parse_config(text: str) -> Config:
    """`BACKEND[:PROCESSORS][/LEVER]`, e.g. `nats:2` or `memory/granian+freeze`."""
    head, _, lever = text.partition("/")
    backend, _, n = head.partition(":")
    if backend not in ("memory", "nats"):
        raise argparse.ArgumentTypeError(f"unknown backend {backend!r} in {text!r}")
    if lever and lever not in LEVERS:
        raise argparse.ArgumentTypeError(f"unknown lever {lever!r} in {text!r}; known: {', '.join(LEVERS)}")
    return Config(backend, int(n or 1), lever)


@dataclass
class CpuPair:
    """One round's processor queue work vs bare nats-py, CPU µs per message (experiments/bench/cpu_cost.py)."""

    ours_us: float
    bare_us: float

    @property
    def ratio(self) -> float:
        return self.ours_us / self.bare_us if self.bare_us else float("nan")


def cpu_round(work: Path, index: int, n: int) -> CpuPair:
    """Ours and bare on one fresh nats-server; which goes first alternates by round."""
    return CpuPair(*cpu_cost.round_pair(work, index, n))


CLIENT_LOOPS: dict[str, Callable[[Coroutine[Any, Any, ChainFigures]], ChainFigures]] = {
    "uvloop": uvloop.run,  # what the services run: less of the generator's own lateness in the client's tail
    "asyncio": asyncio.run,
}


def stack_config(config: Config, workers: int) -> StackConfig:
    return StackConfig(
        queue=config.backend,
        workers=workers,
        processors=config.processors,
        backend=BackendSettings(queue_size=200_000, nats_max_ack_pending=20_000),
        env=dict(config.variant.env),
        gateway_server=config.variant.gateway_server,
        hop_server=config.variant.hop_server,
    )


def stack_pids(stack: Stack) -> dict[str, int]:
    """Every process of the deployment by name, the broker included (what the wrk round's CPU sums)."""
    named = {s.name: s.pid for s in stack.services}
    if stack.nats is not None:
        named["nats-server"] = getattr(stack.nats, "pid", None)
    return {name: pid for name, pid in named.items() if pid is not None}


def interleaved(configs: list[Config], index: int) -> list[Config]:
    """Round `index`'s order: reversed every other round, so no configuration always runs first."""
    return configs if index % 2 == 0 else configs[::-1]


def run_round(
    work: Path, configs: list[Config], duration: float, workers: int, client_loop: str = "uvloop", index: int = 0
) -> tuple[list[ChainFigures], list[wrk_round.WrkRound]]:
    run = CLIENT_LOOPS[client_loop]
    out = []
    wrk_out = []
    bare_chain = BareChain(work / "bare")
    bare_chain.start()
    try:
        out.append(run(measure("bare", bare_chain.url, None, duration)))
    finally:
        bare_chain.stop()
    for config in interleaved(configs, index):
        name = config.name
        with Stack(stack_config(config, workers), work / name.replace("/", "-")) as stack:
            counter = Processed([f"{p.url}/stats" for p in stack.processors])
            pids = [p.serving_pid for p in stack.processors if p.serving_pid is not None]
            frozen = config.variant.client_heap_frozen
            out.append(run(measure(name, stack.gateway_url, counter, duration, pids, stack.ledger_paths, frozen)))
            wrk_out.append(wrk_round.measure(name, f"{stack.gateway_url}/api/v1/ingest", stack_pids(stack), duration))
    return out, wrk_out


def wrk_only_round(
    work: Path, configs: list[Config], duration: float, workers: int, index: int
) -> list[wrk_round.WrkRound]:
    """Only the wrk round (`--wrk-only`): each configuration on fresh processes, in interleaved order."""
    out = []
    for config in interleaved(configs, index):
        name = config.name
        with Stack(stack_config(config, workers), work / name.replace("/", "-")) as stack:
            out.append(wrk_round.measure(name, f"{stack.gateway_url}/api/v1/ingest", stack_pids(stack), duration))
    return out


def baselines(configs: list[Config]) -> dict[str, str]:
    """Each lever's configuration -> the same backend and processors without a lever, when it is in the run."""
    names = {c.name for c in configs}
    out = {}
    for c in configs:
        plain = Config(c.backend, c.processors).name
        if c.lever and plain in names:
            out[c.name] = plain
    return out


def median_of(rounds: list[list[ChainFigures]], name: str) -> ChainFigures:
    rows = [r for rnd in rounds for r in rnd if r.name == name]

    def med(attr: str) -> float:
        return float(statistics.median(float(getattr(r, attr)) for r in rows))

    return ChainFigures(
        name,
        med("single_accepted"),
        med("single_processed"),
        med("batch_accepted"),
        med("batch_processed"),
        med("half_rate"),
        med("p50_ms"),
        med("p99_ms"),
        sum(r.errors for r in rows),
        med("wrk_accepted"),
        med("low_accepted"),
        med("wrk_low_accepted"),
        med("processor_cpu_us"),
        med("lag_p99_ms"),
        {
            stage: float(statistics.median(r.stage_p99_ms[stage] for r in rows if stage in r.stage_p99_ms))
            for stage in dict.fromkeys(k for r in rows for k in r.stage_p99_ms)
        },
    )


def single_ratios(rounds: list[list[ChainFigures]], name: str) -> list[float]:
    out = []
    for rnd in rounds:
        bare = next(r for r in rnd if r.name == "bare")
        row = next(r for r in rnd if r.name == name)
        out.append(row.single_processed / bare.single_processed if bare.single_processed else 0.0)
    return out


def render(rounds: list[list[ChainFigures]], names: list[str]) -> str:
    head = (
        f"{'chain':<{W}} {'single acc/s':>12} {'single proc/s':>13} {'vs bare (min..max)':>19} {'batch100 acc/s':>14}"
        f" {'batch100 proc/s':>15} {'half rate':>9} {'p50 ms':>7} {'p99 ms':>7} {'gen lag p99':>11} {'errors':>6}"
    )
    lines = [head, "-" * len(head)]
    for name in ["bare", *names]:
        r = median_of(rounds, name)
        ratios = single_ratios(rounds, name)
        vs = f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}..{max(ratios):.2f})"
        lines.append(
            f"{r.name:<{W}} {r.single_accepted:>12,.0f} {r.single_processed:>13,.0f} {vs:>19}"
            f" {r.batch_accepted:>14,.0f} {r.batch_processed:>15,.0f} {r.half_rate:>9,.0f}"
            f" {r.p50_ms:>7.1f} {r.p99_ms:>7.1f} {r.lag_p99_ms:>11.1f} {r.errors:>6}"
        )
    lines.append("gen lag: how late our generator itself started a request (scheduled -> sent), part of the client p99")
    per_round = (
        f"{name} " + " / ".join(f"{r.p99_ms:.1f}" for rnd in rounds for r in rnd if r.name == name)
        for name in ["bare", *names]
    )
    lines.append("client p99 ms at half rate, round by round: " + "; ".join(per_round))
    return "\n".join(lines)


def render_stages(rounds: list[list[ChainFigures]], names: list[str]) -> str:
    """p99 of each stage at half rate (medians over rounds), from the ledger's stamps: where the tail is."""
    rows = [median_of(rounds, name) for name in names]
    stages = list(dict.fromkeys(k for r in rows for k in r.stage_p99_ms))
    if not stages:
        return ""
    title = "p99 ms by stage at half rate"
    width = max(len(title), *(len(s) for s in stages))
    head = f"{title:<{width}} " + " ".join(f"{r.name:>9}" for r in rows)
    lines = [head, "-" * len(head)]
    for stage in stages:
        cells = " ".join(f"{r.stage_p99_ms[stage]:>9.1f}" if stage in r.stage_p99_ms else f"{'-':>9}" for r in rows)
        lines.append(f"{stage:<{width}} {cells}")
    lines.append(f"{'client (scheduled -> answer)':<{width}} " + " ".join(f"{r.p99_ms:>9.1f}" for r in rows))
    return "\n".join(lines)


def render_checks(rounds: list[list[ChainFigures]], names: list[str], cpu: list[CpuPair]) -> str:
    """Our generator beside wrk (same gateway, same body, same run), and the processor's CPU per message."""
    head = (
        f"{'chain':<{W}} {'ours c=64':>10} {'wrk c=64':>9} {'wrk/ours':>8} {'ours c=4':>9} {'wrk c=4':>8}"
        f" {'wrk/ours':>8} {'processor CPU µs/msg (batch100, HTTP incl.)':>44}"
    )
    lines = ["independent check of the load generator (2xx/s), and the processor's CPU:", head, "-" * len(head)]
    for name in ["bare", *names]:
        r = median_of(rounds, name)
        hi = r.wrk_accepted / r.single_accepted if r.single_accepted else float("nan")
        lo = r.wrk_low_accepted / r.low_accepted if r.low_accepted else float("nan")
        proc = f"{r.processor_cpu_us:.1f}" if r.processor_cpu_us else "-"
        lines.append(
            f"{name:<{W}} {r.single_accepted:>10,.0f} {r.wrk_accepted:>9,.0f} {hi:>7.2f}x {r.low_accepted:>9,.0f}"
            f" {r.wrk_low_accepted:>8,.0f} {lo:>7.2f}x {proc:>44}"
        )
    if cpu:
        ratios = [c.ratio for c in cpu]
        lines.append(
            f"queue work CPU per message, batches of {cpu_cost.BATCH} (no HTTP): ours (publish_many + pool + ledger"
            f" + ack) {statistics.median(c.ours_us for c in cpu):.1f} µs, bare nats-py (publish_async +"
            f" fetch({cpu_cost.BATCH}) + ack) {statistics.median(c.bare_us for c in cpu):.1f} µs: ratio"
            f" {statistics.median(ratios):.2f}x ({min(ratios):.2f}..{max(ratios):.2f}) over {len(cpu)} round(s)"
        )
    return "\n".join(lines)


def verdicts(rounds: list[list[ChainFigures]], names: list[str], cpu: list[CpuPair]) -> str:
    """Targets as ratios measured in the same run (absolute msg/s targets moved 30 % with the machine)."""
    out = []
    cpu_ratio = statistics.median(c.ratio for c in cpu) if cpu else None
    for name in names:
        r = median_of(rounds, name)
        ratio = statistics.median(single_ratios(rounds, name))
        low = r.wrk_low_accepted / r.low_accepted if r.low_accepted else float("nan")
        checks = [
            ("single processed >= 0.8x bare", ratio >= 0.8),
            ("client p99 <= 50 ms at half max", r.p99_ms <= 50),
            ("wrk within 20 % of ours below saturation", abs(low - 1) <= 0.2),
        ]
        if name.startswith("nats") and cpu_ratio is not None:
            checks.append(("queue work CPU <= 1.25x bare nats-py", cpu_ratio <= 1.25))
        out.append(f"{name}: " + "; ".join(f"{text}: {'ok' if ok else 'MISSED'}" for text, ok in checks))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement window")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are shown")
    parser.add_argument("--quick", action="store_true", help="one round of 2 s windows")
    parser.add_argument(
        "--configs", default="memory,nats,nats:2", help="BACKEND[:PROCESSORS][/LEVER],... levers: " + ", ".join(LEVERS)
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--client-loop", choices=sorted(CLIENT_LOOPS), default="uvloop", help="the load generator's event loop"
    )
    parser.add_argument("--cpu-messages", type=int, default=20_000, help="messages per CPU-cost run (ours, bare)")
    parser.add_argument(
        "--wrk-only", action="store_true", help="only the wrk round (Go body, 64 connections, CPU per process)"
    )
    args = parser.parse_args(argv)
    duration, rounds_n = (2.0, 1) if args.quick else (args.duration, args.rounds)
    configs = [parse_config(c) for c in args.configs.split(",")]
    names = [c.name for c in configs]
    print(
        f"python {sys.version.split()[0]}, nats-server {nats_server_version()}, {platform.machine()}, "
        f"{duration:.0f} s windows, {rounds_n} round(s), workers={args.workers} per processor, "
        f"load generator on {args.client_loop}",
        flush=True,
    )
    once = warn_once.install()
    wrk.ensure()
    rounds = []
    wrk_rounds: list[list[wrk_round.WrkRound]] = []
    cpu: list[CpuPair] = []
    with tempfile.TemporaryDirectory(prefix="bench-services-") as tmp:
        for i in range(rounds_n):
            work = Path(tmp) / f"round-{i}"
            if args.wrk_only:
                wrk_rounds.append(wrk_only_round(work, configs, duration, args.workers, i))
            else:
                cpu.append(cpu_round(work, i, args.cpu_messages))
                figures, wrk_figures = run_round(work, configs, duration, args.workers, args.client_loop, i)
                rounds.append(figures)
                wrk_rounds.append(wrk_figures)
            print(f"round {i + 1}/{rounds_n} done", flush=True)
    if not args.wrk_only:
        print(render(rounds, names))
        print(render_stages(rounds, names))
        print(render_checks(rounds, names, cpu))
        print(verdicts(rounds, names, cpu))
    print(wrk_round.render(wrk_rounds, names, baselines(configs)))
    if once.dropped:
        print(f"({once.dropped} repeats of warnings above not shown)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
