#!/usr/bin/env bash
# Install the REAL TensorRT Python bindings of the two major versions qbench targets into
# .trt-bindings/10 and .trt-bindings/11 (git-ignored). Both wheels provide the same module name
# (tensorrt_bindings), so each gets its own --target folder and tests put one on PYTHONPATH at a time.
# The wheels have no hard dependencies; the TensorRT libraries they load are replaced in tests by
# null libraries (tests/trt/nulltrt.c), since the real ones cannot be installed here.
# Idempotent: a folder whose installed version already matches is left alone (no network).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/pip-target.sh
install_one() {
  pip_target_current ".trt-bindings/$1" "$2" tensorrt_bindings && return 0
  pip_target_install ".trt-bindings/$1" "$2" "tensorrt-cu13-bindings==$2"
  echo "install-trt-bindings: tensorrt-cu13-bindings $2 -> .trt-bindings/$1"
}
install_one 10 10.16.1.11
install_one 11 11.4.0.106
