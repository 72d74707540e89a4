# foodseg task runner. `just --list` shows the recipes.

set shell := ["bash", "-euo", "pipefail", "-c"]

export ORT_DYLIB_PATH := env_var_or_default("ORT_DYLIB_PATH", justfile_directory() / ".cache/ort/lib/libonnxruntime.so.1.31.1")

# List the recipes.
default:
    @just --list

# The whole service end to end: api, worker and scheduler on the fixture photos.
demo: libjpeg
    python3 scripts/demo.py

# Faults under load (services, NATS, Postgres killed): no job lost or doubled (--short, --cluster, --jobs N).
chaos *ARGS: ort services libjpeg
    python3 scripts/chaos.py {{ARGS}}

# Fetch the ONNX Runtime CPU library from PyPI into .cache/ort (once).
ort:
    @scripts/fetch-onnxruntime.sh >/dev/null

# Chromium (apt) and Playwright (PyPI, in .cache/browser-venv) for the console's browser test.
browser:
    @scripts/browser-venv.sh >/dev/null

# libjpeg-turbo's development files (Debian: libturbojpeg0-dev, found with pkg-config), which every build links; installed when missing.
libjpeg:
    #!/usr/bin/env bash
    set -euo pipefail
    pkg-config --exists libturbojpeg 2>/dev/null && exit 0
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends libturbojpeg0-dev pkg-config

# Start the local PostgreSQL and NATS if they are installed but not running.
services:
    @scripts/ensure-services.sh

# Every test against the real Postgres, NATS and ONNX Runtime, then Schemathesis against a live api.
test: ort services browser libjpeg
    cargo test --workspace --no-fail-fast
    scripts/schemathesis.sh 50

# Formatting, lints, unused dependencies, import circles and the checked queries' offline data.
lint: deploy-check alerts-check sqlx-check machete libjpeg
    python3 scripts/import_graph.py
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# No crate names a dependency it does not use (cargo-machete, installed when missing).
machete:
    @command -v cargo-machete >/dev/null 2>&1 || cargo install cargo-machete --version 0.9.2 --locked
    cargo machete

# Every checked query agrees with the migrations (`.sqlx/` is up to date).
sqlx-check: sqlx-cli services libjpeg
    scripts/sqlx.sh check

# Regenerate `.sqlx/` after changing a query or a migration.
sqlx-prepare: sqlx-cli services libjpeg
    scripts/sqlx.sh prepare

# Install sqlx-cli (Postgres only) when missing.
sqlx-cli:
    @command -v cargo-sqlx >/dev/null 2>&1 || cargo install sqlx-cli --version 0.9.0 --locked --no-default-features --features postgres

# Format the code.
fmt:
    cargo fmt --all

# Enqueue rate and latency over HTTP beside raw INSERT+COMMIT into the same Postgres.
bench-enqueue *ARGS: services libjpeg
    cargo run --release -p foodseg-api --example bench_enqueue -- {{ARGS}}

# Per-stage worker timings beside bare session.run, for both fixture photos.
bench-worker *ARGS: ort services libjpeg
    cargo run --release -p foodseg-worker --example bench_worker -- {{ARGS}}

# Jobs through api -> worker -> scheduler -> webhook receiver with the real model.
bench-e2e *ARGS: ort services libjpeg
    cargo run --release -p foodseg-scheduler --example bench_e2e -- {{ARGS}}

# The engine's capacity: release api, worker and scheduler as processes, a model that finds nothing, jobs/s end to end, latency at half of peak, each process's CPU, raw INSERT rate.
bench-engine *ARGS: ort services libjpeg
    mkdir -p .cache/engine-noop
    "$(scripts/python-venv.sh .cache/onnx-venv 'import onnx, numpy' onnx numpy)" scripts/yolov8_export.py synthetic .cache/engine-noop/model.onnx --classes 1 --names food --names-json --size 32 --empty >/dev/null
    cargo build --release -p foodseg-api -p foodseg-worker -p foodseg-scheduler --bins
    cargo run --release -p foodseg-scheduler --example bench_engine -- --noop .cache/engine-noop/model.onnx {{ARGS}}

# Jobs on real photos (one 12 MP) timed enqueue -> webhook, alternating with the plain Python pipeline; items compared; saturation against as many Python processes as worker sessions; targets met or missed.
bench-photos *ARGS: ort services libjpeg
    "$(scripts/python-venv.sh .cache/bench-venv 'import cv2, numpy, onnxruntime, PIL, turbojpeg' onnxruntime==1.31.1 opencv-python-headless numpy pillow PyTurboJPEG==1.8.2)" scripts/bench_photos.py {{ARGS}}

# A person's job behind a two-key backfill on the real model (waits beside first-in-first-out), and two keys' backfills finishing together.
bench-lanes *ARGS: ort services libjpeg
    cargo run --release -p foodseg-scheduler --example bench_lanes -- {{ARGS}}

# All benchmarks.
bench: bench-enqueue bench-worker bench-e2e bench-engine bench-photos bench-lanes

# Run one service locally (api, worker or scheduler).
run SERVICE: ort services libjpeg
    cargo run --release -p foodseg-{{SERVICE}}

# The alert rules parse, their unit tests pass, and the compose Prometheus config loads them.
alerts-check: promtool
    promtool check rules deploy/prometheus/alerts.yaml
    promtool test rules deploy/prometheus/alerts.test.yaml
    promtool check config deploy/prometheus/prometheus.yaml

# Install promtool (Debian package `prometheus`) when missing.
promtool:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v promtool >/dev/null 2>&1 && exit 0
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends prometheus
    # The package starts a Prometheus server where systemd runs; only promtool is wanted.
    $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true

# deploy/ agrees with the code: env vars, ports, probes, entrypoints, KEDA names (no Docker).
deploy-check:
    @python3 -c "import yaml" 2>/dev/null || python3 -m pip install --quiet pyyaml
    python3 deploy/check.py
    python3 deploy/test_check.py
