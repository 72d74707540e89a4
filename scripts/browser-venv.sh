#!/usr/bin/env bash
# Prepares what the console's browser test needs and prints the path of the python that
# drives the browser: Chromium (Debian package `chromium`, installed with apt when
# missing) and a Python virtual environment with Playwright (from PyPI, through
# scripts/python-venv.sh; it drives the system Chromium, no browser download).
# Usage: scripts/browser-venv.sh [VENV_DIR]   (default: .cache/browser-venv)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
playwright_version="1.56.0"

have_chromium() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }

if ! have_chromium; then
    mkdir -p "$root/.cache"
    exec 8>"$root/.cache/chromium-install.lock"
    if command -v flock >/dev/null; then flock 8; fi
    if ! have_chromium; then
        sudo=""
        if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
        echo "installing Chromium (apt package chromium)" >&2
        $sudo apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >&2
    fi
    have_chromium || { echo "Chromium did not install" >&2; exit 1; }
fi
exec "$root/scripts/python-venv.sh" "${1:-$root/.cache/browser-venv}" \
    'import playwright.sync_api' "playwright==$playwright_version"
