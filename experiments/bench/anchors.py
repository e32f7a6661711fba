"""Each broker's own load tool as an anchor beside our backend: `nats bench` (the real nats CLI) for JetStream.

Kafka's anchors (ProducerPerformance, ConsumerPerformance) live in
`experiments.bench.kafka_perf`. The figures are what the tools print (their
CSV), parsed here; nothing is typed in.
"""

from __future__ import annotations

import csv
import subprocess
import tempfile
from pathlib import Path

NATS_BENCH_PUB = ("js", "pub", "async", "bench.anchor", "--create", "--purge", "--batch", "1000")
NATS_BENCH_FETCH = ("js", "fetch", "--batch", "100")


def natscli() -> str:
    """The pinned nats CLI, built once by scripts/ensure-natscli.sh (its path is what the script prints)."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "ensure-natscli.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True, timeout=900)
    return done.stdout.strip().splitlines()[-1]


def nats_bench_rate(cli: str, url: str, args: tuple[str, ...], msgs: int, size: int) -> float:
    """msgs/s of one `nats bench` run, from its CSV (the first client's row)."""
    with tempfile.TemporaryDirectory(prefix="nats-bench-") as tmp:
        out = Path(tmp) / "bench.csv"
        cmd = [cli, "bench", *args, "-s", url, "--msgs", str(msgs), "--size", f"{size}B", "--no-progress",
               "--stream", "anchor", "--csv", str(out)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"nats bench {' '.join(args)} failed: {done.stdout[-800:]}{done.stderr[-800:]}")
        rows = list(csv.reader(line for line in out.read_text().splitlines() if line.strip()))
    header = [h.lstrip("#") for h in rows[0]]
    return float(rows[1][header.index("MsgsPerSec")])
