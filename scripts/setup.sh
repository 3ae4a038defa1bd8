#!/usr/bin/env bash
# Creates .venv (if absent) and installs qbench with its core (CPU-only) dependencies.
# Usage: bash scripts/setup.sh [extra]   e.g. "dev" for the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
extra=${1:-}
if [ -n "$extra" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extra]"
else
  .venv/bin/python -m pip install -q --disable-pip-version-check -e .
fi
