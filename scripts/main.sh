#!/usr/bin/env bash
# The main job. Until the experiment batch lands it is a short demo of both
# backends on the embedded NATS: publish, consume and the bench figures.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m experiments.demo "$@"
