#!/usr/bin/env bash
# Create .venv and install the project (editable, with dev tools) when
# pyproject.toml or the dev lock changed since the last install. Idempotent and
# quick when done. requirements-dev.lock (scripts/lock-dev.sh) pins every
# transitive package, so every clone installs the set the tests ran against.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY=$cand; break
    fi
  done
fi
[ -n "$PY" ] || { echo "bootstrap: need Python >= 3.11 on PATH" >&2; exit 1; }

stamp=.venv/.installed
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt requirements-dev.lock ]; then
  exit 0
fi
echo "bootstrap: creating .venv with $("$PY" --version) and installing queue-lab[dev]" >&2
"$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip==25.3
.venv/bin/python -m pip install --quiet -c requirements-dev.lock -e '.[dev]'
touch "$stamp"
