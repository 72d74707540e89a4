#!/usr/bin/env bash
# Prepares a Python virtual environment with the given PyPI packages and prints the path
# of its python: the one way the test helpers get Python tools. Idempotent and quick when
# the environment is present; concurrent callers wait for the one that installs.
# Usage: scripts/python-venv.sh VENV_DIR IMPORT_CHECK PACKAGE...
#   IMPORT_CHECK: Python statements that succeed once the packages work
#   (e.g. 'import numpy').
set -euo pipefail

venv="$1"
check="$2"
shift 2
python="$venv/bin/python"

ready() { [ -x "$python" ] && "$python" -c "$check" 2>/dev/null; }

if ! ready; then
    mkdir -p "$(dirname "$venv")"
    exec 9>"$venv.lock"
    if command -v flock >/dev/null; then flock 9; fi
    if ! ready; then
        rm -rf "$venv"
        python3 -m venv "$venv" >&2
        "$python" -m pip install --quiet --disable-pip-version-check "$@" >&2
        ready || { echo "$* did not install into $venv" >&2; exit 1; }
    fi
fi
echo "$python"
