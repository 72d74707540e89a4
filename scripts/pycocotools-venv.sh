#!/usr/bin/env bash
# Prepares a Python virtual environment with pycocotools (the reference COCO evaluation)
# and prints the path of its python. Idempotent and quick when the environment is
# present; concurrent callers wait for the one that installs.
# Usage: scripts/pycocotools-venv.sh [VENV_DIR]   (default: .cache/pycocotools-venv)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$root/.cache/pycocotools-venv}"
python="$venv/bin/python"

ready() { [ -x "$python" ] && "$python" -c 'import pycocotools.cocoeval, numpy' 2>/dev/null; }

if ready; then
    echo "$python"
    exit 0
fi

mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
if command -v flock >/dev/null; then flock 9; fi
if ! ready; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$python" -m pip install --quiet --disable-pip-version-check pycocotools numpy >&2
    ready || { echo "pycocotools did not install into $venv" >&2; exit 1; }
fi
echo "$python"
