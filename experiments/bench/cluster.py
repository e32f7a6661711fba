"""What replication costs a single publisher: R3 on a three-node cluster against R1 on one node, same run.

    python -m experiments.bench.cluster [--messages N] [--repeat N]

One publisher, one message at a time (each waits for its PubAck), through
our backend: the rate and the publish latency p50 / p99. R1 (one
nats-server) and R3 (three, routed into a cluster) run in interleaved
rounds, so a slow moment of the machine hits both; each round gives one
R3/R1 ratio, and the median ratio is printed with its min..max. A raw nats-py
`js.publish` loop on the same R1 server is the baseline for the backend's
own overhead. NATS runs as local processes, 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nats

from backends.contract import JsonValue, Message
from backends.nats import NatsConfig, NatsJetStreamBackend, server_list, stream_config
from experiments.runtime.nats.cluster import NatsCluster
from experiments.runtime.nats.process import ProcessNats
from services.percentile import nearest_rank

PAYLOAD: JsonValue = {"pad": "x" * 100}  # ~128 B on the wire with the envelope


async def ours(url: str, monitor_url: str, replicas: int, n: int, tag: str) -> tuple[float, float, float]:
    """(msg/s, p50 ms, p99 ms) of `n` one-at-a-time publishes through the backend, on a fresh stream."""
    name = f"B{tag}"
    b = NatsJetStreamBackend(
        NatsConfig(
            url=url,
            monitor_url=monitor_url,
            replicas=replicas,
            stream=name,
            subject=f"b.{tag}",
            durable=f"d{tag}",
            dlq_stream=f"{name}_DLQ",
            dlq_subject=f"b.{tag}.dlq",
        )
    )
    await b.connect()
    try:
        lat = []
        started = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            await b.publish(Message(f"{tag}-{i}", "bench", PAYLOAD))
            lat.append((time.perf_counter() - t) * 1000)
        rate = n / (time.perf_counter() - started)
    finally:
        await b.close()
    lat.sort()
    return rate, nearest_rank(lat, 0.5), nearest_rank(lat, 0.99)


async def bare(url: str, n: int, tag: str) -> float:
    """msg/s of nats-py's own `js.publish` loop, one at a time, same stream settings (R1)."""
    nc = await nats.connect(server_list(url))
    try:
        js = nc.jetstream()
        await js.add_stream(stream_config(NatsConfig(stream=f"R{tag}", subject=f"r.{tag}")))
        body = Message("x", "bench", PAYLOAD).to_json()
        started = time.perf_counter()
        for i in range(n):
            await js.publish(f"r.{tag}", body, headers={"Nats-Msg-Id": f"{tag}-{i}"})
        return n / (time.perf_counter() - started)
    finally:
        await nc.close()


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}..{fmt.format(max(values))})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000, help="publishes per phase")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        one = ProcessNats(Path(tmp) / "one")
        three = NatsCluster(Path(tmp) / "three", nodes=3)
        try:
            started = time.perf_counter()
            one.start()
            three.start()
            print(f"one node and a three-node cluster healthy in {time.perf_counter() - started:.1f} s")
            r1: list[tuple[float, float, float]] = []
            r3: list[tuple[float, float, float]] = []
            raw: list[float] = []
            for k in range(args.repeat):
                raw.append(asyncio.run(bare(one.url, args.messages, f"raw{k}")))
                r1.append(asyncio.run(ours(one.url, one.monitor_url, 1, args.messages, f"one{k}")))
                r3.append(asyncio.run(ours(three.url, three.monitor_url, 3, args.messages, f"three{k}")))
        finally:
            three.close()
            one.close()
    print(f"{args.repeat} interleaved rounds of {args.messages} one-at-a-time publishes (median (min..max)):")
    print(f"  nats-py js.publish, R1        {_spread(raw, '{:.0f}')} msg/s")
    for name, rows in (("backend, R1 (1 node) ", r1), ("backend, R3 (3 nodes)", r3)):
        rates, p50, p99 = zip(*rows, strict=True)
        print(f"  {name}         {_spread(list(rates), '{:.0f}')} msg/s, p50 {_spread(list(p50))} ms, "
              f"p99 {_spread(list(p99))} ms")  # fmt: skip
    ratio = [a[0] / b[0] for a, b in zip(r3, r1, strict=True)]
    p50r = [a[1] / b[1] for a, b in zip(r3, r1, strict=True)]
    p99r = [a[2] / b[2] for a, b in zip(r3, r1, strict=True)]
    ours_vs_raw = [a[0] / b for a, b in zip(r1, raw, strict=True)]
    print(f"  R3/R1 rate {_spread(ratio)}, p50 {_spread(p50r)}, p99 {_spread(p99r)}; "
          f"backend R1 / nats-py R1 rate {_spread(ours_vs_raw)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
