#!/usr/bin/env bash
# Install the REAL TensorRT Python bindings of the two major versions qbench targets into
# .trt-bindings/10 and .trt-bindings/11 (git-ignored). Both wheels provide the same module name
# (tensorrt_bindings), so each gets its own --target folder and tests put one on PYTHONPATH at a time.
# The wheels have no hard dependencies; the TensorRT libraries they load are replaced in tests by
# null libraries (tests/trt/nulltrt.c), since the real ones cannot be installed here.
# Idempotent: a folder whose installed version already matches is left alone (no network).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
install_one() {
  local major="$1" version="$2" dest=".trt-bindings/$1"
  if [ -f "$dest/.installed" ] && [ "$(cat "$dest/.installed")" = "$version" ] \
     && [ -d "$dest/tensorrt_bindings" ]; then
    return 0
  fi
  rm -rf "$dest"
  mkdir -p "$dest"
  "$PY" -m pip install -q --disable-pip-version-check --no-deps --no-compile \
    --target "$dest" "tensorrt-cu13-bindings==$version"
  echo "$version" > "$dest/.installed"
  echo "install-trt-bindings: tensorrt-cu13-bindings $version -> $dest"
}
install_one 10 10.16.1.11
install_one 11 11.4.0.106
