#!/usr/bin/env bash
# Prepares a Python virtual environment with pycocotools (the reference COCO evaluation)
# and prints the path of its python (see scripts/python-venv.sh).
# Usage: scripts/pycocotools-venv.sh [VENV_DIR]   (default: .cache/pycocotools-venv)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
exec "$root/scripts/python-venv.sh" "${1:-$root/.cache/pycocotools-venv}" \
    'import pycocotools.cocoeval, numpy' pycocotools numpy
