#!/usr/bin/env bash
# JupyterLab on 127.0.0.1 over notebooks/ with the project's kernel ("Python (queue-lab)", in the venv).
# `make lab` runs it; extra arguments go to `jupyter lab` (tests/test_lab_browser.py passes a port,
# a token and a root directory). As root (containers, devcontainers) it adds --allow-root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
[ -x .venv/bin/jupyter-lab ] || .venv/bin/python -m pip install --quiet -c requirements-dev.lock -e '.[dev,lab]'
.venv/bin/python -m ipykernel install --sys-prefix --name queue-lab --display-name "Python (queue-lab)" >/dev/null
root=()
[ "$(id -u)" -ne 0 ] || root=(--allow-root)
cd notebooks
exec ../.venv/bin/jupyter lab --ip 127.0.0.1 --no-browser "${root[@]}" "$@"
