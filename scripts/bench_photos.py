#!/usr/bin/env python3
"""Photo benchmark: a job as the client sees it, beside the plain Python pipeline.

`just bench-photos [--jobs 10] [--warmup 2] [--saturation 40] [--threads 2]
                   [--concurrency 2] [--batches 1,2,4] [--rounds 2] [--target 1.25]
                   [--limit-target 1.10]`

foodseg: the release api, worker and scheduler run as processes on a throwaway database
of the local Postgres and their own NATS streams; the photos are served over HTTP on
loopback by this process, which is also the jobs' webhook receiver. A foodseg job is
timed by the client, from just before its `POST /enqueue` to the arrival of its webhook
at the receiver (enqueue → webhook: api, dispatch, worker, scheduler and delivery), and
the `processing_time` the worker reports for it (claim to finish) is shown beside it,
with the worker's mean time per stage. The Python pipeline is timed from before the
download to its polygons. One job or image at a time, the two sides alternate job by
job on each photo (foodseg job, Python image, foodseg job, …, after `--warmup` of each,
with a short pause before each), so that a change in the machine's load hits both; the
median of `--jobs` per side is compared. The target is a speed-up of `--target` (1.25×)
of the Python median over foodseg's enqueue → webhook median.

Saturation: for each `--batches` value (FOODSEG_BATCH_MAX, with twice as many jobs in
flight), a fresh worker gets a warm-up, then `--saturation` jobs of fruits.jpg enqueued
at once, timed from the first enqueue to the last webhook received (jobs/s). Then, with
the worker stopped, Python runs as many processes as the worker runs sessions at once
(FOODSEG_PARALLEL_RUNS single-threaded sessions when it runs them in parallel, else one
session of `--threads`), each with its own onnxruntime session of the same thread count
(OpenCV and OpenBLAS too), sharing out `--saturation` images (download + pipeline), timed
from a barrier after all have loaded and warmed up to the last image done (images/s).
The two alternate per batch value, `--rounds` times; the medians over the rounds are
compared against the same target, per batch value and, with several, each side's best
against the other's (so that no layout that suits one side only decides the ratio).

The limit: beside each pair of runs of a photo, this process times what no pipeline can
go under on this machine for that photo, in the same run: the fastest decode that still
gives the model its input size (libjpeg-turbo through PyTurboJPEG at the smallest DCT
scale n/8 whose long side still covers the model's input, and at every larger power-of-two
scale, the fastest median taken; OpenCV for PNG) plus a bare `session.run` of the same
ONNX Runtime with the same intra-op threads, on the input foodseg gives the model for that
photo (its letterbox: long side to the model's size, padded to the stride). The target is
foodseg's `processing_time` median within `--limit-target` (1.10×) of that sum.

Items: every result on both sides (one at a time and at saturation) is reduced to its
multiset of class names (`category_name` of the v1 `response` items; the model's
category of Python's `class_index`); a photo's items agree when every result of both
sides has the same multiset. Disagreements are printed, the run does not fail for them.

Printed: targets met or missed, item agreement, the worker's stage table and a Markdown
table for docs/performance.md; the results also go to target/bench-photos.json.

Photos: fruits.jpg (512×480), coffee.png (600×400) and a 4032×3024 JPEG made here from
fruits.jpg (upscaled, with seeded noise so it compresses like a phone photo; ~5 MB at
quality 90), kept under .cache/bench/.
"""

import argparse
import http.server
import json
import math
import multiprocessing
import os
import queue
import re
import statistics
import subprocess
import threading
import time
import tomllib
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import NamedTuple

# NumPy's OpenBLAS threads busy-wait for about 0.1 s of CPU after each matrix product (the
# Python pipeline's masks) before they sleep: on two cores that took a core from the
# foodseg job that followed, and slowed the limit measured after it. Told to sleep at once
# (OpenBLAS reads this when NumPy loads it), they cost neither side anything but their work.
os.environ["OPENBLAS_THREAD_TIMEOUT"] = "4"

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from turbojpeg import TJPF_RGB, TurboJPEG  # noqa: E402

import localstack
import python_pipeline as baseline
from localstack import (ROOT, DEMO, free_port, http_json, nats_url, ready, run_main, say, scrape, spawn, stop,
                        wait_for)

localstack.NAME = "bench-photos"
FIXTURES = ROOT / "services" / "pipeline" / "tests" / "fixtures"
MODEL_DIR = ROOT / "models" / "yolov5s-seg-coco"
CACHE = ROOT / ".cache" / "bench"
LARGE = "phone-4032x3024.jpg"
SATURATION_PHOTO = "fruits.jpg"
WEBHOOK_DEADLINE_S = 600
SETTLE_S = 0.05  # pause before each one-at-a-time run, so the other side's tail is over
# The model's category names in class-index order, as the worker names items.
MANIFEST = tomllib.loads((MODEL_DIR / "model.toml").read_text())
CATEGORIES = [c["category_name"] for c in MANIFEST["categories"]]


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


# --- items ---------------------------------------------------------------------------

Classes = tuple[str, ...]  # a result's class names, sorted: a multiset


def foodseg_classes(doc: dict) -> Classes:
    return tuple(sorted(item["category_name"] for item in doc["response"]))


def python_classes(items: list[dict]) -> Classes:
    return tuple(sorted(CATEGORIES[item["class_index"]] for item in items))


def show(classes: Classes) -> str:
    counts = Counter(classes)
    return ", ".join(f"{name} ×{n}" if n > 1 else name for name, n in sorted(counts.items())) or "(nothing)"


def agree(*sides: set[Classes]) -> bool:
    """Every result of every side has the same multiset of classes."""
    return len(set().union(*sides)) == 1


def disagreement(what: str, foodseg: set[Classes], python: set[Classes]) -> list[str]:
    """Lines saying how the results differ."""
    lines = [f"{what}:"]
    lines += [f"  foodseg: {len(c)} items: {show(c)}" for c in sorted(foodseg)]
    lines += [f"  Python:  {len(c)} items: {show(c)}" for c in sorted(python)]
    if len(foodseg) == len(python) == 1:
        f, p = Counter(next(iter(foodseg))), Counter(next(iter(python)))
        lines.append(f"  only foodseg: {show(tuple((f - p).elements()))}; "
                     f"only Python: {show(tuple((p - f).elements()))}")
    return lines


# --- the photos and the webhook receiver ---------------------------------------------


class Site:
    """The photos over HTTP on loopback, and the webhook receiver: the arrival time
    (time.monotonic, taken as the request reaches the handler) and the job document of
    each job's first webhook."""

    def __init__(self, files: dict[str, bytes]):
        self.arrivals: dict[str, tuple[float, dict]] = {}
        self.arrived = threading.Condition()
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def answer(self, status: int, body: bytes = b"", content_type: str = "text/plain"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                body = files.get(urllib.parse.unquote(self.path.lstrip("/")))
                if body is None:
                    self.answer(404)
                else:
                    self.answer(200, body, "image/png" if self.path.endswith(".png") else "image/jpeg")

            def do_POST(self):
                at = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    # The v1 webhook body is the job document encoded as a JSON string.
                    doc = json.loads(body)
                    doc = json.loads(doc) if isinstance(doc, str) else doc
                    job_id = doc["job_id"]
                except (ValueError, KeyError, TypeError):
                    self.answer(400)
                    return
                with site.arrived:
                    site.arrivals.setdefault(job_id, (at, doc))
                    site.arrived.notify_all()
                self.answer(200)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        localstack.cleanups.append(server.shutdown)
        self.url = f"http://127.0.0.1:{server.server_address[1]}"

    def webhooks(self, job_ids: list[str]) -> list[tuple[float, dict]]:
        """Waits for the webhook of every job: (arrival time, document) each."""
        def all_arrived():
            with self.arrived:
                return self.arrived.wait_for(lambda: all(j in self.arrivals for j in job_ids), timeout=0.5)

        wait_for(f"the webhooks of {len(job_ids)} job(s)", all_arrived, timeout=WEBHOOK_DEADLINE_S, poll=0)
        with self.arrived:
            return [self.arrivals[j] for j in job_ids]


# --- the two sides -------------------------------------------------------------------


class Run(NamedTuple):
    seconds: float  # foodseg: enqueue → webhook; Python: download → polygons
    classes: Classes
    processing_time: float | None = None  # what the worker reports (foodseg)


class Foodseg:
    def __init__(self, api: str, site: Site):
        self.api, self.site = api, site

    def enqueue(self, photo: str) -> tuple[str, float]:
        """The job id and the time just before the request."""
        start = time.monotonic()
        doc = http_json("POST", f"{self.api}/enqueue", {
            "image_url": f"{self.site.url}/{photo}", "model_id": None,
            "webhook_url": f"{self.site.url}/webhook"})
        return doc["job_id"], start

    def finish(self, jobs: list[tuple[str, float]]) -> tuple[list[Run], float]:
        """Each job's run, once its webhook arrived, and the last arrival."""
        arrivals = self.site.webhooks([job_id for job_id, _ in jobs])
        for _, doc in arrivals:
            if doc["status"] != "MFR.Job.SUCCESS":
                raise SystemExit(f"bench-photos: job {doc['job_id']} ended {doc['status']}: {doc['message']}")
        runs = [Run(at - start, foodseg_classes(doc), doc["processing_time"])
                for (_, start), (at, doc) in zip(jobs, arrivals)]
        return runs, max(at for at, _ in arrivals)

    def run(self, photo: str) -> Run:
        return self.finish([self.enqueue(photo)])[0][0]

    def saturate(self, photo: str, jobs: int) -> tuple[float, set[Classes]]:
        """Jobs/s from the first enqueue to the last webhook, and the results' classes."""
        enqueued = [self.enqueue(photo) for _ in range(jobs)]
        runs, last = self.finish(enqueued)
        return jobs / (last - enqueued[0][1]), {r.classes for r in runs}


def python_session(threads: int):
    """An onnxruntime session of `threads` intra-op threads; OpenCV gets as many."""
    cv2.setNumThreads(threads)
    return baseline.load(str(MODEL_DIR / "model.onnx"), threads)


def python_image(session, url: str) -> list[dict]:
    """Download and pipeline: what the Python side does per image."""
    with urllib.request.urlopen(url, timeout=30) as r:
        data = r.read()
    return baseline.segment(session, data)


class Python:
    """The Python pipeline in this process, one image at a time."""

    def __init__(self, threads: int, site: Site):
        self.session, self.site = python_session(threads), site

    def run(self, photo: str) -> Run:
        start = time.monotonic()
        items = python_image(self.session, f"{self.site.url}/{photo}")
        return Run(time.monotonic() - start, python_classes(items))


def pool_process(threads: int, url: str, barrier, left, results) -> None:
    """One process of a PythonPool: loads its session, warms up, says it is ready, then
    for each round waits at the barrier and takes images until none is left."""
    session = python_session(threads)
    for _ in range(2):
        python_image(session, url)
    results.put(None)
    while True:
        barrier.wait()
        seen = set()
        while True:
            with left.get_lock():
                if left.value <= 0:
                    break
                left.value -= 1
            seen.add(python_classes(python_image(session, url)))
        results.put((time.monotonic(), seen))


class PythonPool:
    """`processes` spawned Python processes of `threads` threads each, sharing out the
    images of a round (of one photo)."""

    def __init__(self, processes: int, threads: int, url: str):
        ctx = multiprocessing.get_context("spawn")
        self.barrier = ctx.Barrier(processes + 1)
        self.left = ctx.Value("i", 0)
        self.results = ctx.Queue()
        # OpenBLAS (NumPy) reads its thread count when a child imports it.
        saved = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
        os.environ.update(dict.fromkeys(saved, str(threads)))
        try:
            self.processes = [ctx.Process(target=pool_process, daemon=True,
                                          args=(threads, url, self.barrier, self.left, self.results))
                              for _ in range(processes)]
            for p in self.processes:
                p.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    del os.environ[k]
                else:
                    os.environ[k] = v
        localstack.cleanups.append(self.close)
        self.collect()  # every process loaded and warmed up

    def collect(self) -> list:
        """One message from each process, failing when one has exited."""
        out = []
        while len(out) < len(self.processes):
            try:
                out.append(self.results.get(timeout=1))
            except queue.Empty:
                for p in self.processes:
                    if not p.is_alive():
                        raise SystemExit(f"bench-photos: a Python baseline process exited with {p.exitcode}")
        return out

    def saturate(self, images: int) -> tuple[float, set[Classes]]:
        """Images/s from the barrier to the last image done, and the results' classes."""
        self.left.value = images
        self.barrier.wait(timeout=60)
        start = time.monotonic()
        done = self.collect()
        return images / (max(end for end, _ in done) - start), set().union(*(seen for _, seen in done))

    def close(self) -> None:
        for p in self.processes:
            if p.is_alive():
                p.terminate()
            p.join()


# --- the limit -----------------------------------------------------------------------


class Limit:
    """What no pipeline goes under for a photo on this machine: the fastest decode that
    still gives the model its input size, plus a bare session.run on foodseg's input."""

    def __init__(self, session):
        self.session = session
        self.turbo = TurboJPEG()
        spec = MANIFEST["input"]
        self.size, self.stride, self.input = spec["size"], spec["stride"], spec["name"]

    def decoders(self, data: bytes) -> dict[str, callable]:
        """The decodes that give at least the model's size, by label."""
        if not data.startswith(b"\xff\xd8"):
            return {"OpenCV": lambda: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)}
        width, height, _, _ = self.turbo.decode_header(data)
        long = max(width, height)
        covering = [n for n in range(1, 9) if -(-long * n // 8) >= self.size] or [8]
        smallest = covering[0]
        out = {}
        for n in sorted({smallest} | {p for p in (1, 2, 4, 8) if p >= smallest}):
            g = math.gcd(n, 8)
            factor = (n // g, 8 // g)
            out[f"libjpeg-turbo {factor[0]}/{factor[1]}"] = (
                lambda factor=factor: self.turbo.decode(data, pixel_format=TJPF_RGB, scaling_factor=factor))
        return out

    def tensor(self, data: bytes) -> np.ndarray:
        """foodseg's model input for the photo: long side to the model's size, padded to
        the stride with the letterbox grey (rounding as services/pipeline/src/preprocess.rs)."""
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
        h, w = image.shape[:2]
        scale = self.size / max(w, h)
        rw, rh = (min(max(round(side * scale), 1), self.size) for side in (w, h))
        iw, ih = (-(-side // self.stride) * self.stride for side in (rw, rh))
        canvas = np.full((ih, iw, 3), MANIFEST["input"]["letterbox_pad"], np.uint8)
        top, left = (ih - rh) // 2, (iw - rw) // 2
        canvas[top:top + rh, left:left + rw] = cv2.resize(image, (rw, rh), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(canvas.transpose(2, 0, 1))[None].astype(np.float32) / 255.0

    def measure(self, data: bytes, tensor: np.ndarray, times: dict[str, list[float]]) -> None:
        """One timing of every decode and of the bare run, appended to `times`."""
        for label, decode in self.decoders(data).items():
            start = time.perf_counter()
            decode()
            times.setdefault(label, []).append(time.perf_counter() - start)
        start = time.perf_counter()
        self.session.run(None, {self.input: tensor})
        times.setdefault("session.run", []).append(time.perf_counter() - start)


def limit_of(times: dict[str, list[float]]) -> dict:
    """The fastest decode's median plus the bare run's median, in ms."""
    decodes = {label: ms(t) for label, t in times.items() if label != "session.run"}
    fastest = min(decodes, key=decodes.get)
    run = ms(times["session.run"])
    return {"decode": fastest, "decode_ms": decodes[fastest], "decodes_ms": decodes, "run_ms": run,
            "limit_ms": decodes[fastest] + run}

# --- worker metrics ------------------------------------------------------------------

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


def parallel_runs(threads: int, concurrency: int, batch: int) -> int:
    """FOODSEG_PARALLEL_RUNS as the worker defaults it on CPU (services/worker/src/config.rs),
    set explicitly so that the Python side runs as many processes."""
    return min(threads, concurrency) if batch == 1 else 1


def sessions(threads: int, runs: int) -> tuple[int, int]:
    """(sessions running at once, intra-op threads each) of a saturated worker: single-
    threaded parallel runs, else the one session with every intra-op thread."""
    return (runs, 1) if runs > 1 else (1, threads)


def ms(seconds: list[float], fn=statistics.median) -> float:
    return fn(seconds) * 1000.0


def throwaway_database() -> str:
    """A fresh database on DATABASE_URL's server, dropped when the benchmark ends."""
    url = urllib.parse.urlparse(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    admin = url._replace(path="/postgres").geturl()
    name = f"foodseg_bench_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", admin, "-qc", f'CREATE DATABASE "{name}"'], check=True)
    localstack.cleanups.append(lambda: subprocess.run(
        ["psql", admin, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], capture_output=True))
    return url._replace(path=f"/{name}").geturl()


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def yes_no(ok: bool) -> str:
    return "yes" if ok else "NO"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10, help="timed jobs per photo and side")
    parser.add_argument("--warmup", type=int, default=2, help="untimed jobs per photo and side first")
    parser.add_argument("--saturation", type=int, default=40, help="jobs (images) at once for jobs/s")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads, both sides")
    parser.add_argument("--concurrency", type=int, default=2, help="FOODSEG_WORKER_CONCURRENCY")
    parser.add_argument("--batches", type=lambda v: [int(b) for b in v.split(",")], default=[1, 2, 4],
                        help="FOODSEG_BATCH_MAX values for the saturation runs (first: the headline)")
    parser.add_argument("--rounds", type=int, default=2, help="saturation rounds, alternating the sides")
    parser.add_argument("--target", type=float, default=1.25, help="speed-up over Python to reach")
    parser.add_argument("--limit-target", type=float, default=1.10,
                        help="processing_time over the photo's limit to stay within")
    args = parser.parse_args()

    files = photos()
    site = Site(files)
    python = Python(args.threads, site)
    limit = Limit(python.session)
    ort = subprocess.run([str(ROOT / "scripts" / "fetch-onnxruntime.sh")], check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    say("building the release api, worker and scheduler…")
    target = localstack.build(release=True)

    logs = DEMO / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    api_port, worker_port, scheduler_port = free_port(), free_port(), free_port()
    env = dict(os.environ, DATABASE_URL=throwaway_database(), NATS_URL=nats_url(), ORT_DYLIB_PATH=ort,
               FOODSEG_NATS_PREFIX=f"bench{uuid.uuid4().hex[:8]}",
               # Image and webhook URLs on loopback (this process) are allowed.
               FOODSEG_MODELS_DIR=str(ROOT / "models"), FOODSEG_URL_ALLOW_CIDRS="127.0.0.0/8",
               FOODSEG_API_ADDR=f"127.0.0.1:{api_port}", FOODSEG_WORKER_ADDR=f"127.0.0.1:{worker_port}",
               FOODSEG_SCHEDULER_ADDR=f"127.0.0.1:{scheduler_port}",
               FOODSEG_INTRA_THREADS=str(args.threads), RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    api = f"http://127.0.0.1:{api_port}"
    spawn([str(target / "foodseg-api")], env=env, log=logs / "api.log")
    wait_for("the api", lambda: ready(f"{api}/health/ready"), timeout=90)
    spawn([str(target / "foodseg-scheduler")], env=env, log=logs / "scheduler.log")
    wait_for("the scheduler", lambda: ready(f"http://127.0.0.1:{scheduler_port}/health/ready"), timeout=90)
    foodseg = Foodseg(api, site)
    worker_metrics = f"http://127.0.0.1:{worker_port}/metrics"

    def start_worker(batch: int, concurrency: int, runs: int):
        worker = spawn([str(target / "foodseg-worker")], log=logs / f"worker-batch{batch}.log",
                       env=dict(env, FOODSEG_BATCH_MAX=str(batch), FOODSEG_WORKER_CONCURRENCY=str(concurrency),
                                FOODSEG_PARALLEL_RUNS=str(runs)))
        wait_for("the worker", lambda: ready(f"http://127.0.0.1:{worker_port}/health/ready"), timeout=90)
        return worker

    # One at a time, alternating job by job.
    worker = start_worker(1, args.concurrency, parallel_runs(args.threads, args.concurrency, 1))
    rows = {}
    for photo in files:
        sides = {"foodseg": foodseg.run, "python": python.run}
        tensor, limit_times = limit.tensor(files[photo]), {}
        for _ in range(args.warmup):
            for run in sides.values():
                run(photo)
            limit.measure(files[photo], tensor, {})
        before = stage_totals(worker_metrics)
        runs: dict[str, list[Run]] = {side: [] for side in sides}
        for _ in range(args.jobs):
            for side, run in sides.items():
                time.sleep(SETTLE_S)
                runs[side].append(run(photo))
            time.sleep(SETTLE_S)
            limit.measure(files[photo], tensor, limit_times)
        fs, py = runs["foodseg"], runs["python"]
        row = rows[photo] = {
            "bytes": len(files[photo]),
            "foodseg_webhook_ms": ms([r.seconds for r in fs]),
            "foodseg_webhook_mean_ms": ms([r.seconds for r in fs], statistics.mean),
            "foodseg_processing_ms": ms([r.processing_time for r in fs]),
            "foodseg_processing_mean_ms": ms([r.processing_time for r in fs], statistics.mean),
            "python_ms": ms([r.seconds for r in py]),
            "stages_ms": stage_means_ms(before, stage_totals(worker_metrics)),
            "foodseg_classes": {r.classes for r in fs},
            "python_classes": {r.classes for r in py},
        }
        row["limit"] = limit_of(limit_times)
        row["over_limit"] = row["foodseg_processing_ms"] / row["limit"]["limit_ms"]
        row["limit_met"] = row["over_limit"] <= args.limit_target
        row["speedup"] = row["python_ms"] / row["foodseg_webhook_ms"]
        row["speedup_processing_time"] = row["python_ms"] / row["foodseg_processing_ms"]
        row["met"] = row["speedup"] >= args.target
        row["items_agree"] = agree(row["foodseg_classes"], row["python_classes"])
        say(f"{photo}: foodseg enqueue→webhook {row['foodseg_webhook_ms']:.0f} ms (processing_time "
            f"{row['foodseg_processing_ms']:.0f} ms, {row['over_limit']:.2f}× its limit "
            f"{row['limit']['limit_ms']:.0f} ms), Python {row['python_ms']:.0f} ms; "
            f"items agree: {yes_no(row['items_agree'])}")
    stop(worker)

    # Saturation, the sides alternating per batch value and round.
    pools: dict[tuple[int, int], PythonPool] = {}
    saturation = {}
    for _ in range(args.rounds):
        for batch in args.batches:
            concurrency = max(args.concurrency, 2 * batch)
            runs_at_once = parallel_runs(args.threads, concurrency, batch)
            layout = sessions(args.threads, runs_at_once)
            sat = saturation.setdefault(batch, {
                "batch": batch, "concurrency": concurrency, "sessions": layout[0], "threads_per_session": layout[1],
                "foodseg_jobs_per_s": [], "python_images_per_s": [],
                "foodseg_classes": set(), "python_classes": set()})
            worker = start_worker(batch, concurrency, runs_at_once)
            foodseg.saturate(SATURATION_PHOTO, 2 * concurrency)  # warm-up
            rate, classes = foodseg.saturate(SATURATION_PHOTO, args.saturation)
            stop(worker)
            sat["foodseg_jobs_per_s"].append(rate)
            sat["foodseg_classes"] |= classes
            if layout not in pools:
                pools[layout] = PythonPool(*layout, f"{site.url}/{SATURATION_PHOTO}")
            py_rate, classes = pools[layout].saturate(args.saturation)
            sat["python_images_per_s"].append(py_rate)
            sat["python_classes"] |= classes
            say(f"saturation, batch {batch}, concurrency {concurrency}, {layout[0]} session(s) × {layout[1]} "
                f"thread(s): foodseg {rate:.2f} jobs/s, Python {py_rate:.2f} images/s")
    for pool in pools.values():
        pool.close()
    single = rows[SATURATION_PHOTO]
    for batch, sat in saturation.items():
        sat["label"] = (f"saturation: {args.saturation} × {SATURATION_PHOTO}, FOODSEG_BATCH_MAX={batch}, "
                        f"{sat['sessions']} × {sat['threads_per_session']}-thread session(s) each side")
        sat["foodseg_median"] = statistics.median(sat["foodseg_jobs_per_s"])
        sat["python_median"] = statistics.median(sat["python_images_per_s"])
        sat["items_agree"] = agree(sat["foodseg_classes"], sat["python_classes"],
                                   single["foodseg_classes"], single["python_classes"])
    compared = list(saturation.values())
    if len(saturation) > 1:
        # Each side at its best, whatever the layout: the ratio no choice of layout flatters.
        fs = max(compared, key=lambda sat: sat["foodseg_median"])
        py = max(compared, key=lambda sat: sat["python_median"])
        compared.append({
            "label": f"saturation, best of each side: foodseg FOODSEG_BATCH_MAX={fs['batch']}, Python "
                     f"{py['sessions']} × {py['threads_per_session']}-thread process(es)",
            "foodseg_median": fs["foodseg_median"], "python_median": py["python_median"],
            "items_agree": all(sat["items_agree"] for sat in saturation.values())})
    for sat in compared:
        sat["speedup"] = sat["foodseg_median"] / sat["python_median"]
        sat["met"] = sat["speedup"] >= args.target

    import onnxruntime
    print()
    print(f"machine: {os.cpu_count()} cores, CPU only; ONNX Runtime {onnxruntime.__version__}, "
          f"{args.threads} intra-op threads one at a time; {args.jobs} jobs per photo and side after "
          f"{args.warmup} warm-up, alternating; worker concurrency {args.concurrency}; saturation: median of "
          f"{args.rounds} round(s)")
    print()
    print(f"Targets (speed-up ≥ {args.target:.2f}× over Python; foodseg timed enqueue → webhook by the client):")
    for photo, row in rows.items():
        print(f"  {photo}: {row['foodseg_webhook_ms']:.0f} ms (processing_time {row['foodseg_processing_ms']:.0f} ms, "
              f"{row['speedup_processing_time']:.2f}×) vs Python {row['python_ms']:.0f} ms → "
              f"{row['speedup']:.2f}×: {verdict(row['met'])}")
    for sat in compared:
        print(f"  {sat['label']}: {sat['foodseg_median']:.2f} jobs/s vs Python {sat['python_median']:.2f} "
              f"images/s → {sat['speedup']:.2f}×: {verdict(sat['met'])}")
    print()
    print(f"Targets (processing_time ≤ {args.limit_target:.2f}× the photo's limit: fastest decode to the model's "
          f"size + bare session.run, same run):")
    for photo, row in rows.items():
        lim = row["limit"]
        print(f"  {photo}: processing_time {row['foodseg_processing_ms']:.1f} ms vs limit {lim['limit_ms']:.1f} ms "
              f"({lim['decode']} {lim['decode_ms']:.1f} + session.run {lim['run_ms']:.1f}) → "
              f"{row['over_limit']:.2f}×: {verdict(row['limit_met'])}")
    print()
    print("Items (multiset of classes of every result, both sides):")
    problems = []
    for photo, row in rows.items():
        if row["items_agree"]:
            print(f"  {photo}: items agree: yes ({show(next(iter(row['foodseg_classes'])))})")
        else:
            print(f"  {photo}: items agree: NO (below)")
            problems += disagreement(photo, row["foodseg_classes"], row["python_classes"])
    for sat in saturation.values():
        print(f"  {sat['label']}: items agree: {yes_no(sat['items_agree'])}")
        if not sat["items_agree"]:
            problems += disagreement(sat["label"], sat["foodseg_classes"], sat["python_classes"])
    if problems:
        print()
        print("!!! ITEMS DISAGREE: the two pipelines did not find the same objects !!!")
        print("\n".join("  " + line for line in problems))
    print()
    print("Where a job's time goes on the worker (mean ms per stage over the timed jobs):")
    print()
    print("| photo | " + " | ".join(STAGES) + " | stage sum | processing_time (mean) | enqueue→webhook (mean) |")
    print("|---|" + "---|" * (len(STAGES) + 3))
    for photo, row in rows.items():
        stages = row["stages_ms"]
        print(f"| {photo} | " + " | ".join(f"{stages[s]:.1f}" for s in STAGES)
              + f" | {sum(stages.values()):.1f} | {row['foodseg_processing_mean_ms']:.1f} "
              f"| {row['foodseg_webhook_mean_ms']:.1f} |")
    print()
    print("The limit beside it (median ms; every decode measured, the fastest counted):")
    print()
    print("| photo | decodes | fastest decode | bare session.run | limit | processing_time (median) "
          "| over the limit | target | met/missed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for photo, row in rows.items():
        lim = row["limit"]
        decodes = ", ".join(f"{label} {t:.1f}" for label, t in lim["decodes_ms"].items())
        print(f"| {photo} | {decodes} | {lim['decode_ms']:.1f} | {lim['run_ms']:.1f} | {lim['limit_ms']:.1f} | "
              f"{row['foodseg_processing_ms']:.1f} | {row['over_limit']:.2f}× | ≤ {args.limit_target:.2f}× | "
              f"{verdict(row['limit_met'])} |")
    print()
    print("| photo | bytes | foodseg enqueue→webhook (median) | foodseg processing_time (median) | "
          "Python download→polygons (median) | speed-up | target | met/missed | items agree |")
    print("|---|---|---|---|---|---|---|---|---|")
    for photo, row in rows.items():
        print(f"| {photo} | {row['bytes']:,} | {row['foodseg_webhook_ms']:.0f} ms | "
              f"{row['foodseg_processing_ms']:.0f} ms | {row['python_ms']:.0f} ms | {row['speedup']:.2f}× | "
              f"≥ {args.target:.2f}× | {verdict(row['met'])} | {yes_no(row['items_agree'])} |")
    for sat in compared:
        print(f"| {sat['label']} | | {sat['foodseg_median']:.2f} jobs/s | | {sat['python_median']:.2f} images/s | "
              f"{sat['speedup']:.2f}× | ≥ {args.target:.2f}× | {verdict(sat['met'])} | "
              f"{yes_no(sat['items_agree'])} |")

    def plain(value):
        """JSON-ready: class multisets as sorted lists."""
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, set):
            return sorted(list(c) for c in value)
        return value

    out = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "bench-photos.json"
    best = compared[-1] if len(saturation) > 1 else None
    out.write_text(json.dumps({"settings": vars(args), "photos": plain(rows), "saturation": plain(saturation),
                               "saturation_best_of_each_side": best}, indent=2))
    print()
    say(f"results also in {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
