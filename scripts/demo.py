#!/usr/bin/env python3
"""foodseg demo: the whole service on one machine, end to end.

Uses the Postgres at DATABASE_URL and the NATS at NATS_URL when they answer, otherwise
starts throwaway ones under .demo/. Builds and runs foodseg-api, foodseg-worker and
foodseg-scheduler with an API key of its own (which owns the jobs it submits), submits the
fixture photos with a local webhook receiver, prints what was found, reads them back from
the key's reconciliation feed, renders overlay pictures with the `foodseg` CLI, then checks
each service's
/metrics (promtool clean; every metric the alerts and the dashboard use is exported:
deploy/check_metrics.py) and stops what it started. Standard library only (PyYAML and
promtool for the metrics check).
"""

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

from localstack import (DEMO, ROOT, build, cleanups, http_json, nats_url, postgres_url, ready, run_main,
                        scrape, spawn, wait_for, free_port, say)

FIXTURES = ROOT / "services" / "pipeline" / "tests" / "fixtures"
PHOTOS = ["fruits.jpg", "coffee.png"]
DEADLINE_S = 180

# --- local HTTP: the photos and the webhook receiver --------------------------------

webhooks: dict[str, dict] = {}
webhooks_lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        name = urllib.parse.unquote(self.path.lstrip("/"))
        path = FIXTURES / name
        if name not in PHOTOS or not path.exists():
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "image/png" if name.endswith(".png") else "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            # The v1 webhook body is the job document encoded as a JSON string.
            doc = json.loads(json.loads(body))
            with webhooks_lock:
                webhooks[doc["job_id"]] = doc
            self.send_response(200)
        except (ValueError, KeyError, TypeError):
            self.send_response(400)
        self.end_headers()


def serve_http() -> int:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cleanups.append(server.shutdown)
    return server.server_address[1]


# --- the demo ------------------------------------------------------------------------


def main() -> int:
    DEMO.mkdir(exist_ok=True)
    (DEMO / "logs").mkdir(exist_ok=True)
    out = ROOT / "out"
    out.mkdir(exist_ok=True)

    ort = subprocess.run([str(ROOT / "scripts" / "fetch-onnxruntime.sh")], check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    say(f"ONNX Runtime: {ort}")

    say("building foodseg (cargo build)…")
    target = build()

    db, nats = postgres_url(), nats_url()
    http_port = serve_http()
    api_port, worker_port, sched_port = free_port(), free_port(), free_port()
    env = dict(os.environ,
               DATABASE_URL=db, NATS_URL=nats, ORT_DYLIB_PATH=ort,
               FOODSEG_MODELS_DIR=str(ROOT / "models"),
               FOODSEG_URL_ALLOW_CIDRS="127.0.0.0/8",
               FOODSEG_API_ADDR=f"127.0.0.1:{api_port}",
               FOODSEG_WORKER_ADDR=f"127.0.0.1:{worker_port}",
               FOODSEG_SCHEDULER_ADDR=f"127.0.0.1:{sched_port}",
               # The daily reconciliation, due in the next minute, so its metrics show.
               FOODSEG_RECONCILE_AT=reconcile_soon(),
               # The console over plain HTTP on this machine.
               FOODSEG_CONSOLE_INSECURE_COOKIE="true",
               RUST_LOG=os.environ.get("RUST_LOG", "info"))
    # Every route beyond the MFR v1 contract needs an API key: the demo makes one, and
    # the jobs it submits through the keyless v1 routes belong to it (FOODSEG_V1_OWNER).
    key_name = f"demo-{os.urandom(4).hex()}"
    token = subprocess.run([str(target / "foodseg-api"), "keys", "create", "--name", key_name,
                            "--scope", "submit"], env=env, check=True, capture_output=True,
                           text=True).stdout.strip()
    env["FOODSEG_V1_OWNER"] = key_name
    say(f"API key {key_name} created (scope submit); it owns the v1 jobs of this demo")
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    for service in ["api", "worker", "scheduler"]:
        spawn([str(target / f"foodseg-{service}")], env=env, log=DEMO / "logs" / f"{service}.log")
    api = f"http://127.0.0.1:{api_port}"
    wait_for("the api to be ready", lambda: ready(f"{api}/health/ready"), timeout=90)
    wait_for("the worker to be ready", lambda: ready(f"http://127.0.0.1:{worker_port}/health/ready"), timeout=90)
    say(f"api on {api} (docs at {api}/docs); logs in {DEMO / 'logs'}")

    jobs = {}
    for photo in PHOTOS:
        doc = http_json("POST", f"{api}/enqueue", {
            "image_url": f"http://127.0.0.1:{http_port}/{photo}",
            "model_id": None,
            "webhook_url": f"http://127.0.0.1:{http_port}/webhook",
        })
        jobs[photo] = doc["job_id"]
        say(f"submitted {photo}: job {doc['job_id']} {doc['status']}")

    def all_delivered():
        with webhooks_lock:
            return all(j in webhooks for j in jobs.values())

    wait_for("the webhooks", all_delivered, timeout=DEADLINE_S)

    failed = False
    print()
    print(f"{'photo':<12} {'category':<16} {'score':>6}  {'box (x, y, w, h)':<24} {'area':>7} {'parts':>5}")
    for photo, job_id in jobs.items():
        doc = webhooks[job_id]
        if doc["status"] != "MFR.Job.SUCCESS":
            print(f"{photo:<12} ERROR: {doc['message']}")
            failed = True
            continue
        for item in sorted(doc["response"], key=lambda i: -i["score"]):
            box = ", ".join(str(round(v)) for v in item["bbox"])
            print(f"{photo:<12} {item['category_name']:<16} {item['score']:>6.2f}  {box:<24} "
                  f"{item['area']:>7} {len(item['polygons']):>5}")
        print(f"{'':<12} ({doc['processing_time']:.2f} s, model {doc['model_identifier']})")
    print()

    if not check_feed(api, token, started, set(jobs.values())):
        failed = True

    for photo, job_id in jobs.items():
        png = out / f"{Path(photo).stem}.overlay.png"
        subprocess.run([str(target / "foodseg"), "--api", api, "overlay", job_id,
                        "--image", str(FIXTURES / photo), "-o", str(png)], check=True)
        say(f"overlay written: {png.relative_to(ROOT)}")

    sched_metrics = f"http://127.0.0.1:{sched_port}/metrics"
    wait_for("the daily reconciliation's metrics",
             lambda: "foodseg_reconcile_last_success_timestamp_seconds" in scrape(sched_metrics), timeout=120)
    if not check_metrics([f"{api}/metrics", f"http://127.0.0.1:{worker_port}/metrics", sched_metrics]):
        failed = True
    return 1 if failed else 0


def check_feed(api: str, token: str, since: datetime, job_ids: set[str]) -> bool:
    """The reconciliation feed (GET /v2/jobs) refuses a caller without a key and lists the
    demo's jobs to the key that owns them."""
    url = f"{api}/v2/jobs?" + urllib.parse.urlencode({"updated_since": since.isoformat()})
    try:
        urllib.request.urlopen(url, timeout=10)
        print("demo: the feed answered a caller without a key", file=sys.stderr)
        return False
    except urllib.error.HTTPError as e:
        if e.code != 401:
            print(f"demo: the feed answered {e.code} to a caller without a key", file=sys.stderr)
            return False
    listed: set[str] = set()

    def owned_jobs_listed() -> bool:
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            listed.update(doc["job_id"] for doc in json.loads(r.read())["jobs"])
        return job_ids <= listed

    wait_for("the demo's jobs in its key's feed", owned_jobs_listed, timeout=30)
    say(f"feed: the demo's key reads its {len(job_ids)} jobs; without a key the feed answers 401")
    return True


def reconcile_soon() -> str:
    """A FOODSEG_RECONCILE_AT (UTC HH:MM) 20 to 80 seconds from now: after the scheduler
    has started, before the demo's jobs are done."""
    return (datetime.now(timezone.utc) + timedelta(seconds=80)).strftime("%H:%M")


def check_metrics(urls: list[str]) -> bool:
    """deploy/check_metrics.py on the running services: promtool-clean, and every metric
    the alerts and the dashboard use is exported."""
    if not shutil.which("promtool"):
        subprocess.run(["just", "promtool"], cwd=ROOT, check=True)
    try:
        import yaml  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "pyyaml"], check=True)
    out = subprocess.run([sys.executable, str(ROOT / "deploy" / "check_metrics.py"), *urls],
                         capture_output=True, text=True)
    print(out.stdout, end="")
    if out.returncode != 0:
        print("demo: the metrics check failed (above): a metric used by deploy/prometheus/alerts.yaml or "
              "deploy/grafana/dashboards is missing, or a /metrics page has promtool findings", file=sys.stderr)
        return False
    say("metrics check passed")
    return True


if __name__ == "__main__":
    run_main(main)
