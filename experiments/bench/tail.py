"""Client p99 at half rate: the current stack against one lever, side by side, at the same instants.

    python -m experiments.bench.tail [--levers freeze,gen0,granian] [--backends memory,nats]
                                     [--rate 250] [--windows 6] [--duration 4]

For each backend and lever, two stacks run at once: the current code and
the code with the lever. One generator drives both on the same schedule
(`--rate` each; the two together are about half the single-message max on
2 cores), window after window. The machine is shared (other processes, our
generator): back-to-back runs of the two saw p50s jump by 100x between
neighbouring windows, so only a comparison made at the same instants says
what the lever does. Per window: each stack's client p99, the generator's
send lag p99 (the same for both: one loop), and the ratio lever / current.
Then, for the current stack, the p99 of each stage (ledger stamps) over
the windows, to say where the tail is.

Levers: `freeze` (GC_FREEZE), `gen0` (GC_FREEZE with GC_GEN0_THRESHOLD=10000),
`granian` (the gateway under granian instead of uvicorn), `granian+freeze`. Every process runs
on 127.0.0.1 and is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from experiments.bench.http_chain import LEVERS, PAD, Variant, single_body
from experiments.lab.ledger_stages import phase_stages
from experiments.runtime.stack import Stack, StackConfig
from experiments.workload.load import closed_loop, id_bodies, open_loop, request_ids
from services.settings import BackendSettings

CURRENT = Variant()


@dataclass
class Window:
    p50_ms: float
    p99_ms: float
    lag_p99_ms: float
    stage_p99_ms: dict[str, float]


async def drive(url: str, ledgers: list[Path], prefix: str, rate: float, duration: float) -> Window:
    t0, t0_ns = time.perf_counter(), time.time_ns()
    body = id_bodies(prefix, payload_bytes=len(PAD) + 16, source="bench")
    res = await open_loop(f"{url}/api/v1/ingest", body, rate=rate, duration=duration, keep_ids=False)
    await asyncio.sleep(0.5)  # the last messages' ledger rows
    ids = {r.seq: request_ids(prefix, r.seq) for r in res.ok}
    stages = {s.stage: s.p99_ms for s in phase_stages(ledgers, prefix, res, ids, t0, t0_ns) if s.p99_ms is not None}
    return Window(res.latency_ms(0.50), res.latency_ms(0.99), res.send_lag_ms(0.99), stages)


async def side_by_side(
    targets: list[tuple[str, list[Path]]], rate: float, windows: int, duration: float
) -> list[list[Window]]:
    for url, _ in targets:
        await closed_loop(f"{url}/api/v1/ingest", single_body, concurrency=4, duration=0.5)  # connections, caches
    out = []
    for w in range(windows):
        out.append(list(await asyncio.gather(*(drive(u, ledgers, f"w{w}", rate, duration) for u, ledgers in targets))))
    return out


def stack_config(backend: str, variant: Variant) -> StackConfig:
    return StackConfig(
        queue=backend,
        env=dict(variant.env),
        gateway_server=variant.gateway_server,
        backend=BackendSettings(queue_size=200_000, nats_max_ack_pending=20_000),
    )


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}..{max(values):.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levers", default="freeze,gen0,granian")
    parser.add_argument("--backends", default="memory,nats")
    parser.add_argument("--rate", type=float, default=250.0, help="msg/s offered to each of the two stacks")
    parser.add_argument("--windows", type=int, default=6)
    parser.add_argument("--duration", type=float, default=4.0, help="s per window")
    args = parser.parse_args(argv)
    levers = args.levers.split(",")
    if unknown := [name for name in levers if name not in LEVERS]:
        parser.error(f"unknown lever(s) {unknown}; known: {sorted(LEVERS)}")
    if client_side := [name for name in levers if not LEVERS[name].client_heap_frozen]:
        parser.error(f"lever(s) {client_side} act on the one generator both stacks share; use bench-services")
    print(f"{args.windows} windows of {args.duration:.0f} s, {args.rate:.0f} msg/s to each stack", flush=True)
    summary = []
    stages: dict[str, list[Window]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-tail-") as tmp:
        for backend in args.backends.split(","):
            for name in levers:
                with ExitStack() as running:
                    stacks = [
                        running.enter_context(Stack(stack_config(backend, v), Path(tmp) / f"{backend}-{name}-{i}"))
                        for i, v in enumerate((CURRENT, LEVERS[name]))
                    ]
                    targets = [(s.gateway_url, s.ledger_paths) for s in stacks]
                    result = asyncio.run(side_by_side(targets, args.rate, args.windows, args.duration))
                for w, (cur, lev) in enumerate(result):
                    print(
                        f"{backend:<6} {name:<14} window {w}: client p50/p99 current {cur.p50_ms:.1f}/{cur.p99_ms:.1f}"
                        f" ms, {name} {lev.p50_ms:.1f}/{lev.p99_ms:.1f} ms (p99 {lev.p99_ms / cur.p99_ms:.2f}x);"
                        f" generator lag p99 {cur.lag_p99_ms:.1f} ms",
                        flush=True,
                    )
                stages.setdefault(backend, []).extend(cur for cur, _ in result)
                cur_p99 = [c.p99_ms for c, _ in result]
                summary.append(
                    f"{backend:<6} {name:<14} current {spread(cur_p99)}  {name} {spread([x.p99_ms for _, x in result])}"
                    f"  ratio {spread([x.p99_ms / c.p99_ms for c, x in result])}"
                    f"  p50 ratio {spread([x.p50_ms / c.p50_ms for c, x in result])}"
                    f"  generator lag {spread([c.lag_p99_ms for c, _ in result])}"
                )
    print(f"client p99 ms, median (min..max) over {args.windows} windows; ratio = lever / current, per window:")
    print("\n".join(summary))
    for backend, windows in stages.items():
        print(f"{backend}: p99 ms by stage, current stack, median (min..max) over {len(windows)} windows")
        for stage in dict.fromkeys(s for w in windows for s in w.stage_p99_ms):
            print(f"  {stage:<20} {spread([w.stage_p99_ms[stage] for w in windows if stage in w.stage_p99_ms])}")
        print(f"  {'client':<20} {spread([w.p99_ms for w in windows])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
