#!/usr/bin/env python3
"""Photo benchmark: a job as the client sees it, beside the plain Python pipeline.

`just bench-photos [--jobs 10] [--warmup 2] [--saturation 40] [--threads 2]`

foodseg: the release api and worker run as processes on a throwaway database of the
local Postgres and their own NATS streams; the photos are served over HTTP on loopback.
For each photo, jobs are sent one at a time (after warm-up) and the median of the
`processing_time` the job reports is taken, with the worker's mean time per stage. Then,
for each `--batches` value (FOODSEG_BATCH_MAX, with twice as many jobs in flight),
`--saturation` jobs of fruits.jpg are enqueued at once and timed from the first enqueue
to the last finished job (jobs/s).

Baseline: scripts/python_pipeline.py (OpenCV + NumPy + onnxruntime, the same ONNX
Runtime version and intra-op thread count) run in this process after foodseg is stopped,
timing download + pipeline for each photo the same way, and images/s over the same
number of images one after another.

Photos: fruits.jpg (512×480), coffee.png (600×400) and a 4032×3024 JPEG made here from
fruits.jpg (upscaled, with seeded noise so it compresses like a phone photo; ~5 MB at
quality 90), kept under .cache/bench/.
"""

import argparse
import re
import http.server
import json
import os
import statistics
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import localstack
from localstack import (ROOT, DEMO, free_port, http_json, nats_url, ready, run_main, say, scrape, spawn, stop,
                        wait_for)

localstack.NAME = "bench-photos"
FIXTURES = ROOT / "services" / "pipeline" / "tests" / "fixtures"
MODEL = ROOT / "models" / "yolov5s-seg-coco" / "model.onnx"
CACHE = ROOT / ".cache" / "bench"
LARGE = "phone-4032x3024.jpg"


def large_photo() -> Path:
    """A 12-megapixel phone-like JPEG made from fruits.jpg, deterministic."""
    import numpy as np
    from PIL import Image

    path = CACHE / LARGE
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    src = Image.open(FIXTURES / "fruits.jpg").convert("RGB")
    # 4:3 crop of the 512×480 fixture, then upscaled like a phone's 12 MP frame.
    src = src.crop((0, 48, 512, 432)).resize((4032, 3024), Image.Resampling.BICUBIC)
    pixels = np.asarray(src, dtype=np.float32)
    noise = np.random.default_rng(7).normal(0.0, 16.0, pixels.shape)
    Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def photos() -> dict[str, bytes]:
    return {
        "fruits.jpg": (FIXTURES / "fruits.jpg").read_bytes(),
        "coffee.png": (FIXTURES / "coffee.png").read_bytes(),
        LARGE: large_photo().read_bytes(),
    }


def serve(files: dict[str, bytes]) -> int:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            body = files.get(urllib.parse.unquote(self.path.lstrip("/")))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png" if self.path.endswith(".png") else "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):  # webhooks are not part of this benchmark
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    localstack.cleanups.append(server.shutdown)
    return server.server_address[1]


def throwaway_database() -> str:
    """A fresh database on DATABASE_URL's server, dropped when the benchmark ends."""
    url = urllib.parse.urlparse(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    admin = url._replace(path="/postgres").geturl()
    name = f"foodseg_bench_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", admin, "-qc", f'CREATE DATABASE "{name}"'], check=True)
    localstack.cleanups.append(lambda: subprocess.run(
        ["psql", admin, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], capture_output=True))
    return url._replace(path=f"/{name}").geturl()


class Foodseg:
    def __init__(self, api: str, images: str):
        self.api, self.images = api, images

    def enqueue(self, photo: str) -> str:
        doc = http_json("POST", f"{self.api}/enqueue", {
            "image_url": f"{self.images}/{photo}", "model_id": None,
            "webhook_url": f"{self.images}/webhook"})
        return doc["job_id"]

    def wait(self, job_ids: list[str]) -> dict[str, dict]:
        """Waits for every job, polling one at a time in enqueue order: polling them all
        at once would load the cores the worker runs on and slow what is measured."""
        done: dict[str, dict] = {}
        for job_id in job_ids:
            def finished(job_id=job_id):
                doc = http_json("GET", f"{self.api}/status/{job_id}")
                if doc["status"] in ("MFR.Job.SUCCESS", "MFR.Job.ERROR"):
                    done[job_id] = doc
                return job_id in done

            wait_for(f"job {job_id} to finish", finished, timeout=600, poll=0.05)
        for doc in done.values():
            if doc["status"] != "MFR.Job.SUCCESS":
                raise SystemExit(f"bench-photos: job {doc['job_id']} ended {doc['status']}: {doc['message']}")
        return done

    def processing_time(self, photo: str) -> tuple[float, int]:
        job_id = self.enqueue(photo)
        doc = self.wait([job_id])[job_id]
        return doc["processing_time"], len(doc["response"])


STAGES = ["claim", "fetch", "decode", "preprocess", "inference", "postprocess", "write"]


def stage_totals(metrics_url: str) -> dict[str, tuple[float, float]]:
    """(seconds, count) per stage of foodseg_worker_stage_seconds."""
    totals: dict[str, list[float]] = {}
    for line in scrape(metrics_url).splitlines():
        m = re.match(r'foodseg_worker_stage_seconds_(sum|count)\{[^}]*stage="(\w+)"[^}]*\} (\S+)', line)
        if m:
            kind, stage, value = m.groups()
            slot = totals.setdefault(stage, [0.0, 0.0])
            slot[0 if kind == "sum" else 1] += float(value)
    return {k: (v[0], v[1]) for k, v in totals.items()}


def stage_means_ms(before: dict, after: dict) -> dict[str, float]:
    out = {}
    for stage in STAGES:
        s0, c0 = before.get(stage, (0.0, 0.0))
        s1, c1 = after.get(stage, (0.0, 0.0))
        out[stage] = (s1 - s0) / (c1 - c0) * 1000.0 if c1 > c0 else float("nan")
    return out


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10, help="timed jobs per photo")
    parser.add_argument("--warmup", type=int, default=2, help="untimed jobs per photo first")
    parser.add_argument("--saturation", type=int, default=40, help="jobs enqueued at once for jobs/s")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads, both sides")
    parser.add_argument("--concurrency", type=int, default=2, help="FOODSEG_WORKER_CONCURRENCY")
    parser.add_argument("--batches", type=lambda v: [int(b) for b in v.split(",")], default=[1, 2, 4],
                        help="FOODSEG_BATCH_MAX values for the saturation runs (first: the table's)")
    args = parser.parse_args()

    files = photos()
    http_port = serve(files)
    images = f"http://127.0.0.1:{http_port}"
    ort = subprocess.run([str(ROOT / "scripts" / "fetch-onnxruntime.sh")], check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    say("building the release api and worker…")
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "foodseg-api", "-p", "foodseg-worker"],
                   cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"

    logs = DEMO / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    api_port, worker_port = free_port(), free_port()
    env = dict(os.environ, DATABASE_URL=throwaway_database(), NATS_URL=nats_url(), ORT_DYLIB_PATH=ort,
               FOODSEG_NATS_PREFIX=f"bench{uuid.uuid4().hex[:8]}",
               FOODSEG_MODELS_DIR=str(ROOT / "models"), FOODSEG_URL_ALLOW_CIDRS="127.0.0.0/8",
               FOODSEG_API_ADDR=f"127.0.0.1:{api_port}", FOODSEG_WORKER_ADDR=f"127.0.0.1:{worker_port}",
               FOODSEG_INTRA_THREADS=str(args.threads), FOODSEG_WORKER_CONCURRENCY=str(args.concurrency),
               RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    api_process = spawn([str(target / "foodseg-api")], env=env, log=logs / "api.log")
    api = f"http://127.0.0.1:{api_port}"
    wait_for("the api", lambda: ready(f"{api}/health/ready"), timeout=90)
    fs = Foodseg(api, images)
    worker_metrics = f"http://127.0.0.1:{worker_port}/metrics"

    def start_worker(batch: int, concurrency: int):
        worker = spawn([str(target / "foodseg-worker")], log=logs / f"worker-batch{batch}.log",
                       env=dict(env, FOODSEG_BATCH_MAX=str(batch), FOODSEG_WORKER_CONCURRENCY=str(concurrency)))
        wait_for("the worker", lambda: ready(f"http://127.0.0.1:{worker_port}/health/ready"), timeout=90)
        return worker

    worker = start_worker(1, args.concurrency)

    rows = {}
    for photo in files:
        for _ in range(args.warmup):
            fs.processing_time(photo)
        before = stage_totals(worker_metrics)
        runs = [fs.processing_time(photo) for _ in range(args.jobs)]
        rows[photo] = {"foodseg_ms": median_ms([t for t, _ in runs]), "foodseg_items": runs[0][1],
                       "foodseg_mean_ms": statistics.mean(t for t, _ in runs) * 1000.0,
                       "stages_ms": stage_means_ms(before, stage_totals(worker_metrics))}
        say(f"foodseg {photo}: median processing_time {rows[photo]['foodseg_ms']:.0f} ms")
    stop(worker)
    rates = {}
    for batch in args.batches:
        concurrency = max(args.concurrency, 2 * batch)
        worker = start_worker(batch, concurrency)
        fs.wait([fs.enqueue("fruits.jpg") for _ in range(2 * concurrency)])  # warm-up
        start = time.monotonic()
        fs.wait([fs.enqueue("fruits.jpg") for _ in range(args.saturation)])
        rates[batch] = args.saturation / (time.monotonic() - start)
        say(f"foodseg saturation, batch {batch}, concurrency {concurrency}: {rates[batch]:.2f} jobs/s")
        stop(worker)
    stop(api_process)

    import python_pipeline as baseline

    session = baseline.load(str(MODEL), args.threads)

    def timed(photo: str) -> tuple[float, int]:
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"{images}/{photo}", timeout=30) as r:
            data = r.read()
        items = baseline.segment(session, data)
        return time.perf_counter() - t0, len(items)

    for photo in files:
        for _ in range(args.warmup):
            timed(photo)
        runs = [timed(photo) for _ in range(args.jobs)]
        rows[photo]["python_ms"] = median_ms([t for t, _ in runs])
        rows[photo]["python_items"] = runs[0][1]
        say(f"python {photo}: median {rows[photo]['python_ms']:.0f} ms")
    start = time.monotonic()
    for _ in range(args.saturation):
        timed("fruits.jpg")
    python_rate = args.saturation / (time.monotonic() - start)

    import onnxruntime
    print()
    print(f"machine: {os.cpu_count()} cores, CPU only; ONNX Runtime {onnxruntime.__version__}, "
          f"{args.threads} intra-op threads; {args.jobs} jobs per photo after {args.warmup} warm-up; "
          f"worker concurrency {args.concurrency}")
    print()
    print("| photo | bytes | foodseg processing_time (median) | Python pipeline (median) | speed-up | items (foodseg / Python) |")
    print("|---|---|---|---|---|---|")
    for photo, row in rows.items():
        print(f"| {photo} | {len(files[photo]):,} | {row['foodseg_ms']:.0f} ms | {row['python_ms']:.0f} ms | "
              f"{row['python_ms'] / row['foodseg_ms']:.2f}× | {row['foodseg_items']} / {row['python_items']} |")
    for batch, rate in rates.items():
        print(f"| saturation, {args.saturation} × fruits.jpg, FOODSEG_BATCH_MAX={batch} | | {rate:.2f} jobs/s | "
              f"{python_rate:.2f} images/s | {rate / python_rate:.2f}× | |")
    print()
    print("Where a job's time goes on the worker (mean ms per stage over the timed jobs):")
    print()
    print("| photo | " + " | ".join(STAGES) + " | stage sum | processing_time (mean) |")
    print("|---|" + "---|" * (len(STAGES) + 2))
    for photo, row in rows.items():
        stages = row["stages_ms"]
        print(f"| {photo} | " + " | ".join(f"{stages[s]:.1f}" for s in STAGES)
              + f" | {sum(stages.values()):.1f} | {row['foodseg_mean_ms']:.1f} |")
    out = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "bench-photos.json"
    out.write_text(json.dumps({"photos": rows, "foodseg_jobs_per_s": rates,
                               "python_images_per_s": python_rate}, indent=2))
    say(f"results also in {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
