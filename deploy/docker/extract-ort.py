#!/usr/bin/env python3
"""Extracts the ONNX Runtime shared libraries from a PyPI onnxruntime(-gpu) wheel.

    extract-ort.py WHEEL DEST_DIR VERSION

Copies every onnxruntime/capi/libonnxruntime*.so* (the runtime and, in the GPU wheel,
the shared/CUDA/TensorRT provider libraries, which ONNX Runtime loads from the same
folder) into DEST_DIR and fails unless libonnxruntime.so.VERSION is among them.
"""
import os
import sys
import zipfile


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    wheel, dest, version = sys.argv[1:]
    os.makedirs(dest, exist_ok=True)
    extracted = []
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            base = os.path.basename(info.filename)
            if not info.filename.startswith("onnxruntime/capi/"):
                continue
            if not base.startswith("libonnxruntime") or ".so" not in base:
                continue
            target = os.path.join(dest, base)
            with zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            os.chmod(target, 0o755)
            extracted.append(base)
    for name in sorted(extracted):
        print(f"extract-ort: {name}")
    wanted = f"libonnxruntime.so.{version}"
    if wanted not in extracted:
        print(f"extract-ort: {wheel} holds no onnxruntime/capi/{wanted}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
