#!/usr/bin/env python3
"""foodseg demo: the whole service on one machine, end to end.

Uses the Postgres at DATABASE_URL and the NATS at NATS_URL when they answer, otherwise
starts throwaway ones under .demo/. Builds and runs foodseg-api, foodseg-worker and
foodseg-scheduler, submits the fixture photos with a local webhook receiver, prints what
was found, renders overlay pictures with the `foodseg` CLI, then checks each service's
/metrics (promtool clean; every metric the alerts and the dashboard use is exported:
deploy/check_metrics.py) and stops what it started. Standard library only (PyYAML and
promtool for the metrics check).
"""

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
FIXTURES = ROOT / "services" / "pipeline" / "tests" / "fixtures"
PHOTOS = ["fruits.jpg", "coffee.png"]
DEADLINE_S = 180

started: list[subprocess.Popen] = []
cleanups = []


def say(msg: str) -> None:
    print(f"demo: {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def wait_for(what: str, check, timeout: float = 60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        for p in started:
            if p.poll() is not None:
                raise SystemExit(f"demo: {p.args[0]} exited with {p.returncode} while waiting for {what}"
                                 + log_tail(p))
        time.sleep(0.2)
    raise SystemExit(f"demo: timed out waiting for {what}")


def spawn(args, env=None, log=None) -> subprocess.Popen:
    out = open(log, "wb") if log else subprocess.DEVNULL
    p = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    p.log = log
    started.append(p)
    return p


def log_tail(p: subprocess.Popen, lines: int = 20) -> str:
    """The last lines a process logged, to say why it stopped."""
    if not p.log or not Path(p.log).exists():
        return ""
    tail = Path(p.log).read_text(errors="replace").splitlines()[-lines:]
    return f"; its last log lines ({p.log}):\n" + "\n".join("  " + line for line in tail)


def stop_all() -> None:
    for p in reversed(started):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in reversed(started):
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    for fn in reversed(cleanups):
        fn()


# --- infrastructure ---------------------------------------------------------------


def postgres_url() -> str:
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/foodseg")
    if shutil.which("psql"):
        ok = subprocess.run(["psql", url, "-tAc", "SELECT 1"], capture_output=True).returncode == 0
        if not ok:
            # The server answers but the database may not exist yet: create it.
            parsed = urllib.parse.urlparse(url)
            admin = parsed._replace(path="/postgres").geturl()
            db = parsed.path.lstrip("/") or "foodseg"
            if subprocess.run(["psql", admin, "-tAc", "SELECT 1"], capture_output=True).returncode == 0:
                subprocess.run(["psql", admin, "-qc", f'CREATE DATABASE "{db}"'], capture_output=True)
                ok = subprocess.run(["psql", url, "-tAc", "SELECT 1"], capture_output=True).returncode == 0
        if ok:
            say(f"using Postgres at {url}")
            return url
    return throwaway_postgres()


def pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / name).exists():
            return str(d / name)
    raise SystemExit(f"demo: PostgreSQL's {name} is not installed")


def throwaway_postgres() -> str:
    data = DEMO / "pg"
    port = free_port()
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    as_user = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(data, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    say(f"starting a throwaway Postgres in {data} on port {port}")
    subprocess.run(as_user + [pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    p = spawn(as_user + [pg_bin("postgres"), "-D", str(data), "-p", str(port), "-k", str(data),
                         "-c", "listen_addresses=127.0.0.1"], log=DEMO / "postgres.log")
    wait_for("Postgres", lambda: port_answers("127.0.0.1", port))
    url = f"postgres://postgres@127.0.0.1:{port}/postgres"
    wait_for("Postgres to accept connections",
             lambda: subprocess.run([pg_bin("psql"), url, "-tAc", "SELECT 1"], capture_output=True).returncode == 0)
    subprocess.run([pg_bin("psql"), url, "-qc", "CREATE DATABASE foodseg"], check=True)
    cleanups.append(lambda: shutil.rmtree(data, ignore_errors=True))
    del p
    return f"postgres://postgres@127.0.0.1:{port}/foodseg"


def nats_url() -> str:
    url = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    parsed = urllib.parse.urlparse(url)
    if port_answers(parsed.hostname or "127.0.0.1", parsed.port or 4222):
        say(f"using NATS at {url}")
        return url
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(binary).exists():
        raise SystemExit("demo: nats-server is not installed")
    port = free_port()
    store = DEMO / "nats"
    shutil.rmtree(store, ignore_errors=True)
    say(f"starting a throwaway nats-server with JetStream on port {port}")
    spawn([binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)], log=DEMO / "nats.log")
    wait_for("NATS", lambda: port_answers("127.0.0.1", port))
    cleanups.append(lambda: shutil.rmtree(store, ignore_errors=True))
    return f"nats://127.0.0.1:{port}"


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


def http_json(method: str, url: str, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


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
    subprocess.run(["cargo", "build", "--quiet", "-p", "foodseg-api", "-p", "foodseg-worker",
                    "-p", "foodseg-scheduler", "-p", "foodseg-cli"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug"

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
               RUST_LOG=os.environ.get("RUST_LOG", "info"))
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


def reconcile_soon() -> str:
    """A FOODSEG_RECONCILE_AT (UTC HH:MM) 20 to 80 seconds from now: after the scheduler
    has started, before the demo's jobs are done."""
    return (datetime.now(timezone.utc) + timedelta(seconds=80)).strftime("%H:%M")


def scrape(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


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
    code = 1
    try:
        code = main()
    except subprocess.CalledProcessError as e:
        print(f"demo: {' '.join(map(str, e.cmd))} failed with exit code {e.returncode}", file=sys.stderr)
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
    finally:
        stop_all()
    sys.exit(code)
