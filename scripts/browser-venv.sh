#!/usr/bin/env bash
# Prepares what the console's browser test needs and prints the path of the python that
# drives the browser: Chromium (Debian package `chromium`, installed with apt when
# missing) and a Python virtual environment with Playwright (from PyPI; it drives the
# system Chromium, no browser download). Idempotent and quick when both are present;
# concurrent callers wait for the one that installs.
# Usage: scripts/browser-venv.sh [VENV_DIR]   (default: .cache/browser-venv)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$root/.cache/browser-venv}"
python="$venv/bin/python"
playwright_version="1.56.0"

have_chromium() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }
ready() { have_chromium && [ -x "$python" ] && "$python" -c 'import playwright.sync_api' 2>/dev/null; }

if ready; then
    echo "$python"
    exit 0
fi

mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
if command -v flock >/dev/null; then flock 9; fi
if ! have_chromium; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    echo "installing Chromium (apt package chromium)" >&2
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >&2
fi
if ! ready; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$python" -m pip install --quiet --disable-pip-version-check "playwright==$playwright_version" >&2
    ready || { echo "Chromium or Playwright did not install (venv $venv)" >&2; exit 1; }
fi
echo "$python"
