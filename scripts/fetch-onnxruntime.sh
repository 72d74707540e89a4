#!/usr/bin/env bash
# Fetches the ONNX Runtime CPU library (from the PyPI `onnxruntime` wheel) into
# .cache/ort/lib/ and prints the path of libonnxruntime.so.<version> on stdout.
#
#   export ORT_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh)
#
# Idempotent: the wheel is downloaded only when missing, the libraries extracted only
# when missing. Needs python3 with pip. Diagnostics go to stderr.
set -euo pipefail

ORT_VERSION="${ORT_VERSION:-1.31.1}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.cache/ort"
lib_dir="$cache/lib"
lib="$lib_dir/libonnxruntime.so.$ORT_VERSION"

if [[ ! -f "$lib" ]]; then
    mkdir -p "$cache" "$lib_dir"
    shopt -s nullglob
    wheels=("$cache"/onnxruntime-"$ORT_VERSION"-*.whl)
    if [[ ${#wheels[@]} -eq 0 ]]; then
        echo "fetch-onnxruntime: downloading onnxruntime==$ORT_VERSION wheel into $cache" >&2
        python3 -m pip download --quiet --no-deps --only-binary=:all: \
            --dest "$cache" "onnxruntime==$ORT_VERSION" >&2
        wheels=("$cache"/onnxruntime-"$ORT_VERSION"-*.whl)
    fi
    if [[ ${#wheels[@]} -eq 0 ]]; then
        echo "fetch-onnxruntime: no onnxruntime-$ORT_VERSION wheel in $cache after download" >&2
        exit 1
    fi
    echo "fetch-onnxruntime: extracting libraries from ${wheels[0]##*/}" >&2
    python3 - "${wheels[0]}" "$lib_dir" <<'PY'
import os, sys, zipfile

wheel, dest = sys.argv[1], sys.argv[2]
wanted = 0
with zipfile.ZipFile(wheel) as zf:
    for info in zf.infolist():
        name = info.filename
        base = os.path.basename(name)
        if not name.startswith("onnxruntime/capi/") or not base.startswith("libonnxruntime"):
            continue
        if ".so" not in base:
            continue
        tmp = os.path.join(dest, base + ".part")
        with zf.open(info) as src, open(tmp, "wb") as out:
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
        os.chmod(tmp, 0o755)
        os.replace(tmp, os.path.join(dest, base))
        wanted += 1
if wanted == 0:
    sys.exit(f"fetch-onnxruntime: {wheel} holds no onnxruntime/capi/libonnxruntime*.so")
PY
fi

if [[ ! -f "$lib" ]]; then
    echo "fetch-onnxruntime: $lib missing after extraction" >&2
    exit 1
fi
echo "$lib"
