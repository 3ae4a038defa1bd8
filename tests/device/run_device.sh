#!/bin/bash
# The GPU session behind docs/FP16.md (a machine with CUDA and PyTorch, no TensorRT, no network).
# Lay out a folder W (git-ignored, e.g. .whl/) holding: the wheels onnx2torch, pytools, platformdirs,
# mako, siphash24 (python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 ...),
# the pycuda sdist (pycuda-*.tar.gz), this script, and tree/ = a copy of qbench/, calib_data/,
# tests/device/ and pyproject.toml. Then, on the GPU machine: bash W/run_device.sh
# It builds pycuda from its sdist in the background while the FP16 cross-check runs, then runs the
# calibrator device-buffer check with both CUDA backends. Logs land in $OUT.
set -o pipefail
export PYTHONUNBUFFERED=1
W=$(cd "$(dirname "$0")" && pwd)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  $W/onnx2torch-*.whl $W/pytools-*.whl $W/platformdirs-*.whl $W/mako-*.whl $W/siphash24-*.whl || exit 1
export PYTHONPATH=/tmp/site:$W/tree
( set -e; tar xzf $W/pycuda-*.tar.gz -C /tmp; cd /tmp/pycuda-*/
  t0=$(date +%s)
  echo "+ python3 configure.py --cuda-root=/usr/local/cuda"; python3 configure.py --cuda-root=/usr/local/cuda
  echo "+ python3 -m pip install --no-index --no-build-isolation --no-deps --target /tmp/site ."
  MAKEFLAGS=-j16 python3 -m pip install --no-index --no-build-isolation --no-deps --no-cache-dir --target /tmp/site .
  echo "pycuda build+install: $(( $(date +%s) - t0 )) s" ) > $OUT/pycuda_build.log 2>&1 &
BUILD=$!
cd $W/tree
python3 tests/device/fp16_crosscheck.py --rewrite --json $OUT/crosscheck.json "$@" 2>&1 | grep -v Warning | tee $OUT/crosscheck.log
wait $BUILD; echo "pycuda build exit: $?"; tail -3 $OUT/pycuda_build.log
python3 -c "import pycuda, sys; print('pycuda', pycuda.VERSION_TEXT, pycuda.__file__)"
python3 tests/device/check_calibrator_device.py 2>&1 | tee $OUT/calibrator_device.log
