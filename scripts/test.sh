#!/usr/bin/env bash
# The whole test suite: lint, types, then pytest. What CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
echo "== ruff" && .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy" && .venv/bin/mypy
echo "== import contracts" && .venv/bin/lint-imports --no-cache
# In CI the container tests must run for real: install and start an engine
# (fails loudly if it cannot). On a user's machine only an engine that is
# already there is used; without one, those tests skip with the reason.
# FUSE (the lazy file system of the power-loss tests) and Debian's chromium (the
# browser test of `make lab`) likewise: installed in CI.
case "${CI:-}" in ""|0|false|no) ;; *) echo "== docker engine" && bash scripts/ensure-docker.sh
  echo "== fuse" && bash scripts/ensure-fuse.sh
  echo "== chromium" && bash scripts/ensure-chromium.sh ;; esac
# Kafka's jars (Maven, cached outside the repo; seconds when cached): the Kafka
# tests run in every `make test`, not only in CI. Where Java or Maven is missing
# and cannot be installed, CI fails here; elsewhere the Kafka tests skip with the reason.
echo "== kafka"
bash scripts/ensure-kafka.sh >/dev/null || case "${CI:-}" in ""|0|false|no) echo "(the Kafka tests will skip)" >&2 ;; *) exit 1 ;; esac
# In CI the stack's images are built in the background at the lowest priority while the suite runs
# (debootstrap, the nats CLI's Go build, wheels: minutes, much of it waiting on the network; started
# after the apt-get installs above, which it would contend with for dpkg's lock). The container
# tests come last and run docker/build-images.sh again, which waits for that build and finds every
# layer cached; a broken build fails them there. Its log: .pytest-reports/build-images.log.
case "${CI:-}" in ""|0|false|no) ;; *) mkdir -p .pytest-reports
  echo "== images (in the background: .pytest-reports/build-images.log)"
  nice -n 19 bash docker/build-images.sh >.pytest-reports/build-images.log 2>&1 </dev/null & ;; esac
echo "== pytest" && .venv/bin/pytest "$@"
