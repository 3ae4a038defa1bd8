# Sourced by scripts/install-*.sh: install one pinned package, without its dependencies, into a
# folder of its own (pip --target), and remember the version so a rerun is offline and instant.
# PY: the interpreter (the project's .venv when it exists).
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi

# pip_target_current DEST VERSION [MUST_EXIST]: true when DEST holds VERSION (and DEST/MUST_EXIST)
pip_target_current() {
  [ -f "$1/.installed" ] && [ "$(cat "$1/.installed")" = "$2" ] && { [ -z "${3:-}" ] || [ -e "$1/$3" ]; }
}

# pip_target_install DEST VERSION SPEC: reinstall SPEC into DEST from scratch. Call it as a plain
# command (not in a condition), so that `set -e` stops the script when pip fails.
pip_target_install() {
  rm -rf "$1"
  mkdir -p "$1"
  "$PY" -m pip install -q --disable-pip-version-check --no-deps --no-compile --target "$1" "$3"
  echo "$2" > "$1/.installed"
}
