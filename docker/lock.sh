#!/usr/bin/env bash
# Regenerate docker/requirements.in (from pyproject.toml) and docker/requirements.lock: exact
# versions and sha256 hashes of every package the services need at run time.
#
# Transitive versions are constrained to what the project's .venv has
# installed (the set `make test` runs against), so the image runs the code on
# the same versions as the tests. Needs PyPI (pip-tools resolves there); the
# local pip config (extra indexes, find-links) is ignored so the lock names
# PyPI's files only.
#
#   bash docker/lock.sh        # then commit docker/requirements.lock
set -euo pipefail
cd "$(dirname "$0")/.."

PIP_TOOLS_VERSION=7.6.2
bash scripts/bootstrap.sh

.venv/bin/python docker/requirements.py  # requirements.in from pyproject.toml's pins

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS='' PIP_DISABLE_PIP_VERSION_CHECK=1

.venv/bin/python -m pip freeze --exclude-editable | grep -v '^-e ' | grep -iv '^queue-lab' >"$work/constraints.txt"
.venv/bin/python -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet "pip==25.3" "pip-tools==$PIP_TOOLS_VERSION"

CUSTOM_COMPILE_COMMAND="bash docker/lock.sh" "$work/venv/bin/pip-compile" \
  --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
  --resolver=backtracking --constraint "$work/constraints.txt" \
  --output-file docker/requirements.lock docker/requirements.in
# The constraint file's temp path is noise in the "via" comments.
sed -i "s|$work/constraints.txt|.venv (pip freeze)|g" docker/requirements.lock
echo "lock: $(grep -c '==' docker/requirements.lock) packages pinned in docker/requirements.lock" >&2
