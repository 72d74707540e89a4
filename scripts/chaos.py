#!/usr/bin/env python3
"""foodseg chaos suite: faults injected into a running stack under load, then a count of
what every accepted job became.

`just chaos [--jobs 1000] [--short] [--cluster] [--seed 7] [--release]`

Runs the api, two workers and the scheduler (the debug build the tests and the demo use,
so CI compiles once; `--release` for the optimised build) as processes on a throwaway
Postgres (initdb under .demo/chaos/, own port) and a throwaway NATS (own port and store;
`--cluster`: three nodes with FOODSEG_NATS_REPLICAS=3 and every node in NATS_URL), the
fixture photos served over HTTP and a webhook receiver that answers 500 to 10 % of the
calls (seeded) and records every call (job id, `webhook-id`, answer). The scheduler probes
a paused webhook endpoint every 5 s, doubling up to 10 s (FOODSEG_WEBHOOK_PROBE_INTERVAL,
FOODSEG_WEBHOOK_PROBE_MAX_INTERVAL; 30 s and 5 min by default), so that a pause, whether
the receiver-down fault's or a run of the seeded 500s', costs seconds and not minutes.

A load generator enqueues `--jobs` jobs over HTTP at half the throughput measured on the
stack first, spread over the run: half of them one at a time (`POST /enqueue`, each with
its own `Idempotency-Key`), the other half as bulk jobs in batches of 5 (`POST /v2/jobs`,
`"priority": "bulk"`, each job with its own `idempotency_key`, sent with a `submit` key
that `foodseg-api keys create` makes once the stack is ready), a batch after every five
single calls. A call that fails, single or batch, is retried with the same body until
it is accepted, and only accepted jobs count; singles and batches are sent from two
threads, so that both kinds meet every outage. The faults below are injected one after the
other meanwhile, the stack getting back to ready (and running under load for a while)
between two:

  kill -9 of one worker, three times (restarted at once each time); kill -9 of both
  workers (restarted); NATS down (killed, started again after 90 s; 20 s with
  --short); Postgres down (`pg_ctl stop -m immediate`, started again after 30 s; 20 s
  with --short); kill -9 of the scheduler (restarted); kill -9 of the api (restarted);
  the webhook receiver down (503 to every call, no Retry-After, for 60 s; 20 s with
  --short; then it answers as before), which prints how many calls reached it while it
  was down and how long the jobs that had finished by then took to be delivered once it
  was back; with --cluster, kill -9 of one NATS node (started again after 30 s; 15 s).

Then it waits (with a deadline) until every accepted job has finished and its webhook
was answered 200, and prints the table: accepted (of them interactive and bulk, by the
priority Postgres stored), lost (never finished or never delivered), double results (more
than one `succeeded` event in `job_events`), jobs that ended ERROR (the photos are valid
and always served, so each is an outage's doing), webhooks received (answered 500;
answered 503 while the receiver was down), jobs with more than one distinct
`webhook-id`, and redispatches (the sum of `jobs.redispatches`: dispatch messages the
scheduler's sweep republished); beside it, each lane's queue wait (`jobs.started_at -
jobs.created_at`: creation to the latest claim), median and maximum, which shows the
interactive jobs getting ahead of the bulk ones under the faults. It exits non-zero when
lost, doubles, ERROR jobs, jobs with several webhook ids, jobs whose webhook was answered
200 twice, jobs stored in another lane than the one they were sent in or services that
exited by themselves are not 0, or redispatches exceed 5 % of the accepted jobs; on
failure it prints the tails of the service logs (all logs are under .demo/chaos/).

Standard library only.
"""

import argparse
import http.server
import json
import os
import random
import signal
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import localstack
from localstack import DEMO, ROOT, Nats, Postgres, free_port, kill, ready, run_main, spawn, stop

localstack.NAME = "chaos"
FIXTURES = ROOT / "services" / "pipeline" / "tests" / "fixtures"
PHOTOS = ["fruits.jpg", "coffee.png"]
WORK = DEMO / "chaos"
FAIL_RATE = 0.10
MAX_REDISPATCH_SHARE = 0.05
RESTART_S = 8.0
DRAIN_TIMEOUT_S = 120.0  # how long the drain after a receiver outage is measured
BATCH = 5  # bulk jobs per `POST /v2/jobs`; a batch follows every BATCH single calls
T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.monotonic() - T0:7.1f}s] chaos: {msg}", flush=True)


# --- photos and the webhook receiver ---------------------------------------------------


class Receiver:
    """Every webhook call: (job id, webhook id, answer). Answers 500 to FAIL_RATE of the
    calls, drawn from a seeded generator, and 503 to every call while it is down (drawing
    nothing, so the 500s fall on the same calls as without the outage)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str, int]] = []
        self.delivered: set[str] = set()  # jobs with a call answered 200
        self.down = False
        # Each time it was down: (seconds down, calls while down, jobs waiting for their
        # webhook when it came back, seconds until they were delivered or None).
        self.outages: list[tuple[float, int, int, float | None]] = []

    def set_down(self, down: bool) -> None:
        with self.lock:
            self.down = down

    def record(self, job_id: str, webhook_id: str) -> int:
        with self.lock:
            if self.down:
                code = 503
            else:
                code = 500 if self.rng.random() < FAIL_RATE else 200
            self.calls.append((job_id, webhook_id, code))
            if code == 200:
                self.delivered.add(job_id)
            return code

    def snapshot(self) -> tuple[list, set]:
        with self.lock:
            return list(self.calls), set(self.delivered)


def serve(receiver: Receiver) -> int:
    photos = {name: (FIXTURES / name).read_bytes() for name in PHOTOS}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = photos.get(urllib.parse.unquote(self.path.lstrip("/")))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png" if self.path.endswith(".png") else "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                # The v1 webhook body is the job document encoded as a JSON string.
                job_id = json.loads(json.loads(body))["job_id"]
            except (ValueError, KeyError, TypeError):
                self.send_response(400)
                self.end_headers()
                return
            self.send_response(receiver.record(job_id, self.headers.get("webhook-id", "")))
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    localstack.cleanups.append(server.shutdown)
    return server.server_address[1]


# --- the services ------------------------------------------------------------------------


class Service:
    """One foodseg process that can be killed and started again on the same ports."""

    def __init__(self, name: str, binary: Path, env: dict, health: str):
        self.name, self.binary, self.env, self.health = name, binary, env, health
        self.process = None
        self.log = WORK / "logs" / f"{name}.log"

    def start(self) -> None:
        self.process = spawn([str(self.binary)], env=self.env, log=self.log, watch=False, append=True)

    def kill(self) -> None:
        if self.process is not None:
            kill(self.process, signal.SIGKILL)
            self.process = None

    def exited(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def ready(self) -> bool:
        return self.process is not None and ready(self.health)

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join("  " + line for line in self.log.read_text(errors="replace").splitlines()[-lines:])


class Stack:
    def __init__(self, services: list[Service], pg: Postgres, nats: Nats):
        self.services = {s.name: s for s in services}
        self.pg, self.nats = pg, nats
        self.lock = threading.Lock()  # held while a fault kills or restarts something
        self.unexpected: list[str] = []

    def workers(self) -> list[Service]:
        return [s for s in self.services.values() if s.name.startswith("worker")]

    def check_exits(self) -> None:
        """A service that exited without being killed is logged, counted and restarted."""
        with self.lock:
            for s in self.services.values():
                code = s.exited()
                if code is not None:
                    log(f"{s.name} exited by itself with {code}; restarting it. Its last lines:\n{s.tail(15)}")
                    self.unexpected.append(f"{s.name} ({code})")
                    stop(s.process)
                    s.start()

    def wait_ready(self, what: str, timeout: float) -> float:
        """Waits until every service answers /health/ready; returns the seconds it took."""
        start = time.monotonic()
        end = start + timeout
        while time.monotonic() < end:
            self.check_exits()
            if all(s.ready() for s in self.services.values()):
                return time.monotonic() - start
            time.sleep(0.5)
        waiting = [s.name for s in self.services.values() if not s.ready()]
        raise SystemExit(f"chaos: {', '.join(waiting)} not ready {timeout:.0f} s after {what}")


# --- load --------------------------------------------------------------------------------


class Load:
    """Enqueues jobs at a steady rate, alternately five single calls (`POST /enqueue`) and
    one batch of five bulk jobs (`POST /v2/jobs`); a failed call is retried with the same
    body and keys until the api accepts it."""

    def __init__(self, api: str, images: str, run_id: str):
        self.api, self.images, self.run_id = api, images, run_id
        self.token = ""  # the `submit` key's token for `/v2/jobs`, set once the stack is ready
        self.accepted: dict[str, float] = {}
        self.bulk: set[str] = set()  # accepted jobs sent as bulk
        self.batches: set[str] = set()
        self.failed_calls = {"single": 0, "batch": 0}
        self.failures: dict[str, int] = {}  # why calls failed: HTTP status or error
        self.sent = 0
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.stopping = threading.Event()

    def job(self, i: int) -> dict:
        return {"image_url": f"{self.images}/{PHOTOS[i % len(PHOTOS)]}", "model_id": None,
                "webhook_url": f"{self.images}/webhook"}

    def key(self, i: int) -> str:
        return f"chaos-{self.run_id}-{i}"

    def post(self, kind: str, path: str, body: dict, headers: dict, accept):
        """POSTs `body` until the api answers 200 and `accept` takes its answer (returns
        what `accept` returned; None when stopping)."""
        data = json.dumps(body).encode()
        while not self.stopping.is_set():
            req = urllib.request.Request(f"{self.api}{path}", data=data, method="POST",
                                         headers=dict(headers, **{"Content-Type": "application/json"}))
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return accept(json.loads(r.read()))
            except (OSError, ValueError, KeyError, TypeError) as e:
                if isinstance(e, urllib.error.HTTPError):
                    why = str(e.code)
                elif isinstance(e, urllib.error.URLError):
                    why = type(e.reason).__name__ if not isinstance(e.reason, str) else e.reason
                else:
                    why = type(e).__name__
                with self.lock:
                    self.failed_calls[kind] += 1
                    self.failures[why] = self.failures.get(why, 0) + 1
                self.stopping.wait(0.5)
        return None

    def enqueue(self, i: int) -> str:
        def accept(answer) -> str:
            job_id = answer["job_id"]
            with self.lock:
                self.accepted[job_id] = time.monotonic()
            return job_id

        return self.post("single", "/enqueue", self.job(i), {"Idempotency-Key": self.key(i)}, accept) or ""

    def submit_batch(self, indices: range) -> list[str]:
        body = {"priority": "bulk", "jobs": [dict(self.job(i), idempotency_key=self.key(i)) for i in indices]}

        def accept(answer) -> list[str]:
            ids = [job["job_id"] for job in answer["jobs"]]
            if len(ids) != len(indices) or answer["priority"] != "bulk":
                raise ValueError(f"batch answered {len(ids)} jobs of priority {answer['priority']!r}")
            now = time.monotonic()
            with self.lock:
                self.batches.add(answer["batch_id"])
                for job_id in ids:
                    self.accepted[job_id] = now
                    self.bulk.add(job_id)
            return ids

        return self.post("batch", "/v2/jobs", body, {"Authorization": f"Bearer {self.token}"}, accept) or []

    def start(self, count: int, rate: float) -> None:
        """Jobs first..first+count, job i due at i / rate: in every ten, five single calls
        then one batch of five, sent at its first job's time. Singles and batches go
        from two threads, so that a call retried through an outage holds up only its own
        kind and both kinds meet every outage."""
        first = self.sent
        self.sent = first + count
        begin = time.monotonic()

        def due(i: int) -> bool:
            """Waits until job i is due; False when stopping."""
            return not self.stopping.wait(max(0.0, begin + i / rate - time.monotonic()))

        def singles():
            for i in range(count):
                if (i // BATCH) % 2 == 0:
                    if not due(i):
                        return
                    self.enqueue(first + i)

        def batches():
            for i in range(BATCH, count, 2 * BATCH):
                if not due(i):
                    return
                self.submit_batch(range(first + i, first + min(i + BATCH, count)))

        self.threads = [threading.Thread(target=f, daemon=True) for f in (singles, batches)]
        for t in self.threads:
            t.start()

    def running(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)


def wait_until(what: str, check, timeout: float, stack: Stack, poll: float = 1.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        stack.check_exits()
        if check():
            return
        time.sleep(poll)
    raise SystemExit(f"chaos: timed out after {timeout:.0f} s waiting for {what}")


def create_key(api_binary: Path, env: dict) -> str:
    """A `submit` key for `POST /v2/jobs`, made by the api binary's `keys create` in the
    stack's database; returns its token."""
    out = subprocess.run([str(api_binary), "keys", "create", "--name", "chaos-bulk", "--scope", "submit"],
                         env=env, capture_output=True, text=True, timeout=60)
    if out.returncode != 0 or not out.stdout.strip():
        raise SystemExit(f"chaos: foodseg-api keys create failed with {out.returncode}:\n{out.stderr}")
    return out.stdout.strip()


# --- the faults ----------------------------------------------------------------------------


def faults(stack: Stack, receiver: Receiver, args) -> list[tuple[str, object]]:
    """(name, action) in the order they are injected; each action returns when the fault
    is over (the killed part started again)."""
    w1, w2 = stack.workers()

    def busy(workers: list[Service]) -> None:
        """Waits (up to 30 s) until one of `workers` holds a job, so the kill loses work."""
        end = time.monotonic() + 30
        ids = ", ".join(f"'{w.env['FOODSEG_WORKER_ID']}'" for w in workers)
        while time.monotonic() < end:
            rows = stack.pg.psql("foodseg", "SELECT count(DISTINCT lease_owner) FROM jobs "
                                 f"WHERE status = 'running' AND lease_owner IN ({ids})")
            if int(rows[0][0]) > 0:
                return
            time.sleep(0.2)
        log("the worker(s) held no job within 30 s; killing anyway")

    def kill_one(w: Service):
        def run():
            busy([w])
            with stack.lock:
                w.kill()
                w.start()
        return run

    def kill_all_workers():
        busy(stack.workers())
        with stack.lock:
            for w in stack.workers():
                w.kill()
            for w in stack.workers():
                w.start()

    def nats_down():
        with stack.lock:
            stack.nats.kill()
        log(f"NATS is down; starting it again in {args.nats_down:.0f} s")
        time.sleep(args.nats_down)
        with stack.lock:
            stack.nats.start()

    def postgres_down():
        with stack.lock:
            stack.pg.stop("immediate")
        log(f"Postgres is down; starting it again in {args.pg_down:.0f} s")
        time.sleep(args.pg_down)
        with stack.lock:
            stack.pg.start()

    def kill_service(name: str):
        def run():
            with stack.lock:
                stack.services[name].kill()
                stack.services[name].start()
        return run

    def receiver_down():
        before = len(receiver.snapshot()[0])
        receiver.set_down(True)
        log(f"the webhook receiver answers 503; answering normally again in {args.receiver_down:.0f} s")
        time.sleep(args.receiver_down)
        finished = {row[0] for row in stack.pg.psql(
            "foodseg", "SELECT id FROM jobs WHERE status IN ('succeeded', 'failed')")}
        calls, delivered = receiver.snapshot()
        receiver.set_down(False)
        back = time.monotonic()
        reached, backlog = len(calls) - before, finished - delivered
        log(f"the webhook receiver answers again: {reached} calls reached it while it was down; "
            f"{len(backlog)} finished jobs wait for their webhook")
        # The endpoint resumes at its next probe, then its deliveries drain at its rate.
        drained = None
        while time.monotonic() < back + DRAIN_TIMEOUT_S:
            stack.check_exits()
            if backlog <= receiver.snapshot()[1]:
                drained = time.monotonic() - back
                break
            time.sleep(0.2)
        if drained is None:
            log(f"{len(backlog - receiver.snapshot()[1])} of them still undelivered {DRAIN_TIMEOUT_S:.0f} s later")
        else:
            log(f"all {len(backlog)} delivered {drained:.1f} s after the receiver came back")
        receiver.outages.append((args.receiver_down, reached, len(backlog), drained))

    def nats_node_down():
        node = len(stack.nats.nodes) - 1
        with stack.lock:
            stack.nats.kill(node)
        log(f"NATS node {stack.nats.nodes[node]['name']} is down; starting it again in {args.node_down:.0f} s")
        time.sleep(args.node_down)
        with stack.lock:
            stack.nats.start(node)

    out = [
        ("kill -9 worker-1", kill_one(w1)),
        ("kill -9 worker-2", kill_one(w2)),
        ("kill -9 worker-1", kill_one(w1)),
        ("kill -9 both workers", kill_all_workers),
        (f"NATS down {args.nats_down:.0f} s", nats_down),
        (f"Postgres down {args.pg_down:.0f} s (stop -m immediate)", postgres_down),
        ("kill -9 scheduler", kill_service("scheduler")),
        ("kill -9 api", kill_service("api")),
        (f"webhook receiver down {args.receiver_down:.0f} s (503)", receiver_down),
    ]
    if args.cluster:
        out.append((f"kill -9 one NATS node, down {args.node_down:.0f} s", nats_node_down))
    return out


# --- the count -------------------------------------------------------------------------------


def count(stack: Stack, load: Load, receiver: Receiver) -> tuple[list[tuple[str, object, str]], dict, bool]:
    """The table's rows, each lane's queue waits (priority -> seconds) and whether every
    criterion is met."""
    q = lambda sql: stack.pg.psql("foodseg", sql)  # noqa: E731
    accepted = set(load.accepted)
    jobs = {row[0]: row[1:] for row in q(
        "SELECT id, status, priority, extract(epoch FROM started_at - created_at) FROM jobs")}
    status = {j: row[0] for j, row in jobs.items()}
    lane = {j: row[1] for j, row in jobs.items()}
    waits: dict[str, list[float]] = {"interactive": [], "bulk": []}
    for j in accepted:
        if j in jobs and jobs[j][2]:
            waits.setdefault(jobs[j][1], []).append(float(jobs[j][2]))
    calls, delivered = receiver.snapshot()
    unfinished = {j for j in accepted if status.get(j) not in ("succeeded", "failed")}
    undelivered = accepted - delivered
    lost = unfinished | undelivered
    doubles = q("SELECT job_id, count(*) FROM job_events WHERE to_status = 'succeeded' "
                "GROUP BY job_id HAVING count(*) > 1")
    errors = q("SELECT id, message FROM jobs WHERE status = 'failed'")
    error_jobs = [e for e in errors if e[0] in accepted]
    ids: dict[str, set[str]] = {}
    for job_id, webhook_id, _ in calls:
        ids.setdefault(job_id, set()).add(webhook_id)
    several_ids = [j for j, s in ids.items() if len(s) > 1]
    delivered_200: dict[str, int] = {}
    for job_id, _, answer in calls:
        if answer == 200:
            delivered_200[job_id] = delivered_200.get(job_id, 0) + 1
    twice = [j for j, n in delivered_200.items() if n > 1]
    redispatches = int(q("SELECT coalesce(sum(redispatches), 0) FROM jobs")[0][0])
    redrives = int(q("SELECT count(*) FROM job_events WHERE detail LIKE 'redrive:%'")[0][0])
    answered_500 = sum(1 for c in calls if c[2] == 500)
    answered_503 = sum(1 for c in calls if c[2] == 503)
    bulk = {j for j in accepted if lane.get(j) == "bulk"}
    interactive = {j for j in accepted if lane.get(j) == "interactive"}
    # A bulk job stored in another lane, or a single one stored as bulk.
    wrong_lane = {j for j in accepted if lane.get(j) != ("bulk" if j in load.bulk else "interactive")}
    n = max(len(accepted), 1)
    limit = MAX_REDISPATCH_SHARE * n
    failed = sum(load.failed_calls.values())
    why = ", ".join(f"{k} x{v}" for k, v in sorted(load.failures.items(), key=lambda kv: -kv[1]))
    rows = [
        ("accepted", len(accepted), f"{failed} calls failed and were retried"
                                    + (f" ({why})" if why else "")),
        ("  interactive", len(interactive), f"POST /enqueue; {load.failed_calls['single']} calls retried"),
        ("  bulk", len(bulk), f"POST /v2/jobs, {len(load.batches)} batches; "
                              f"{load.failed_calls['batch']} calls retried"),
        ("lost", len(lost), f"never finished {len(unfinished)}, never delivered {len(undelivered)}"),
        ("double results", len(doubles), "jobs with more than one succeeded event"),
        ("ended ERROR (outage)", len(error_jobs), "; ".join(sorted({e[1] for e in error_jobs}))[:200]),
        ("webhooks received", len(calls), f"{answered_500} answered 500, {answered_503} answered 503 (receiver down), "
                                          f"{len(delivered)} jobs delivered"),
        (">1 webhook id", len(several_ids), "jobs whose calls carried different webhook-id headers"),
        ("delivered 200 twice", len(twice), "jobs whose webhook was answered 200 more than once"),
        ("wrong lane", len(wrong_lane), "jobs stored with another priority than they were sent with"),
        ("redispatches", redispatches, f"{redispatches / n:.1%} of accepted (limit {MAX_REDISPATCH_SHARE:.0%})"),
        ("redrives", redrives, "jobs re-queued after their worker was lost (not a criterion)"),
        ("unexpected exits", len(stack.unexpected), ", ".join(stack.unexpected)),
    ]
    ok = (not lost and not doubles and not error_jobs and not several_ids and not twice and not wrong_lane
          and not stack.unexpected and redispatches <= limit)
    for job in sorted(lost)[:10]:
        log(f"lost job {job} ({lane.get(job, '?')}): status {status.get(job, 'absent')}, "
            f"delivered {job in delivered}")
    for job in sorted(wrong_lane)[:10]:
        log(f"job {job} sent {'bulk' if job in load.bulk else 'interactive'}, stored {lane.get(job, 'absent')}")
    return rows, waits, ok


def print_waits(waits: dict[str, list[float]]) -> None:
    """Each lane's queue wait: creation to claim (`jobs.started_at - created_at`)."""
    print("queue wait, creation to claim (jobs.started_at - created_at):")
    for lane in ("interactive", "bulk"):
        w = waits.get(lane) or []
        if w:
            print(f"  {lane:<12} {len(w):>5} jobs  median {statistics.median(w):6.2f} s  max {max(w):7.2f} s")
    print()


def print_redispatches(stack: Stack, timeline: list[tuple[str, float]]) -> None:
    """Republished dispatch messages by the fault they followed."""
    times = [float(r[0]) for r in stack.pg.psql(
        "foodseg", "SELECT extract(epoch FROM at) FROM job_events WHERE detail LIKE 'republish:%'")]
    if not times:
        return
    print("redispatches by the fault they followed:")
    for i, (name, start) in enumerate(timeline):
        end = timeline[i + 1][1] if i + 1 < len(timeline) else float("inf")
        n = sum(1 for t in times if start <= t < end)
        if n:
            print(f"  {n:>5}  after {name}")
    print()


def print_receiver_outages(receiver: Receiver) -> None:
    """What the webhook receiver saw while it was down, and how fast the backlog went."""
    for down, reached, backlog, drained in receiver.outages:
        print(f"webhook receiver down {down:.0f} s:")
        print(f"  {reached:>5}  calls reached it while it answered 503")
        after = (f"delivered {drained:.1f} s after it came back" if drained is not None
                 else f"not all delivered {DRAIN_TIMEOUT_S:.0f} s after it came back")
        print(f"  {backlog:>5}  finished jobs waited for their webhook, {after}")
        print()


def print_table(rows) -> None:
    print()
    print(f"{'':<22} {'count':>7}  notes")
    for name, value, note in rows:
        print(f"{name:<22} {value:>7}  {note}")
    print()


# --- main ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, help="jobs to enqueue (default 1000, 150 with --short)")
    parser.add_argument("--short", action="store_true", help="CI form: fewer jobs, shorter outages")
    parser.add_argument("--cluster", action="store_true", help="a 3-node NATS cluster with R3 streams")
    parser.add_argument("--seed", type=int, default=7, help="seed of the receiver's 500s")
    parser.add_argument("--release", action="store_true", help="run the release build (default: the debug build)")
    args = parser.parse_args()
    args.jobs = args.jobs or (150 if args.short else 1000)
    args.nats_down = 20.0 if args.short else 90.0
    args.pg_down = 20.0 if args.short else 30.0
    args.node_down = 15.0 if args.short else 30.0
    # --short: as long as its other outages; still long enough for the endpoint to pause
    # and for probes to fail at the first and at the longest interval (5 s, then 10 s).
    args.receiver_down = 20.0 if args.short else 60.0
    min_gap = 10.0 if args.short else 25.0
    deadline = 600.0 if args.short else 1200.0

    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "logs").mkdir(exist_ok=True)
    for old in (WORK / "logs").glob("*.log"):
        old.unlink()

    ort = os.environ.get("ORT_DYLIB_PATH", "")
    if not Path(ort).is_file():
        ort = subprocess.run([str(ROOT / "scripts" / "fetch-onnxruntime.sh")], check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
    log(f"building the api, worker and scheduler ({'release' if args.release else 'debug'})…")
    target = localstack.build(release=args.release)

    pg = Postgres(WORK / "pg", log=WORK / "logs" / "postgres.log", watch=False).init()
    pg.start()
    subprocess.run([localstack.pg_bin("psql"), pg.url(), "-qc", "CREATE DATABASE foodseg"], check=True)
    nats = Nats(WORK / "nats", nodes=3 if args.cluster else 1, watch=False)
    nats.start()
    log(f"Postgres on port {pg.port}; NATS {nats.url()}" + (" (3 nodes, R3 streams)" if args.cluster else ""))

    receiver = Receiver(args.seed)
    images = f"http://127.0.0.1:{serve(receiver)}"
    api_port, sched_port = free_port(), free_port()
    env = dict(os.environ, DATABASE_URL=pg.url("foodseg"), NATS_URL=nats.url(), ORT_DYLIB_PATH=ort,
               FOODSEG_NATS_REPLICAS="3" if args.cluster else "1",
               FOODSEG_MODELS_DIR=str(ROOT / "models"), FOODSEG_URL_ALLOW_CIDRS="127.0.0.0/8",
               FOODSEG_LIMIT_ENQUEUE="off", FOODSEG_DB_MAX_CONNECTIONS="10",
               FOODSEG_API_ADDR=f"127.0.0.1:{api_port}", FOODSEG_SCHEDULER_ADDR=f"127.0.0.1:{sched_port}",
               FOODSEG_WEBHOOK_RETRY_SCHEDULE="1s,2s,5s,10s,10s,20s,30s,60s,60s,60s",
               FOODSEG_WEBHOOK_PROBE_INTERVAL="5s", FOODSEG_WEBHOOK_PROBE_MAX_INTERVAL="10s",
               FOODSEG_SWEEP_INTERVAL="2s", FOODSEG_INTRA_THREADS="1", FOODSEG_WORKER_CONCURRENCY="2",
               RUST_LOG=os.environ.get("RUST_LOG", "info"))
    services = [Service("api", target / "foodseg-api", env, f"http://127.0.0.1:{api_port}/health/ready"),
                Service("scheduler", target / "foodseg-scheduler", env,
                        f"http://127.0.0.1:{sched_port}/health/ready")]
    for i in (1, 2):
        port = free_port()
        services.append(Service(f"worker-{i}", target / "foodseg-worker",
                                dict(env, FOODSEG_WORKER_ADDR=f"127.0.0.1:{port}", FOODSEG_WORKER_ID=f"chaos-worker-{i}"),
                                f"http://127.0.0.1:{port}/health/ready"))
    stack = Stack(services, pg, nats)
    for s in services:
        s.start()
    log(f"stack ready in {stack.wait_ready('start', 120):.1f} s; logs in {WORK / 'logs'}")

    if args.cluster:
        def replicated():
            streams = nats.streams()
            return streams if len(streams) >= 2 and all(v == 3 for v in streams.values()) else None

        streams = localstack.wait_for("both streams with 3 replicas", replicated, timeout=60)
        log("JetStream streams and their replicas: " + ", ".join(f"{k} {v}" for k, v in sorted(streams.items())))
    api = f"http://127.0.0.1:{api_port}"
    load = Load(api, images, uuid.uuid4().hex[:8])
    load.token = create_key(target / "foodseg-api", env)
    log("created the submit key the bulk batches are sent with")
    # Throughput of this machine, so the load stays under it (a backlog alone would make
    # queued jobs look stale to the sweep).
    calibration = 12 if args.short else 24
    started = time.monotonic()
    warm = [load.enqueue(i) for i in range(calibration)]
    load.sent = calibration
    wait_until("the calibration jobs", lambda: set(warm) <= receiver.snapshot()[1], 300, stack, poll=0.2)
    throughput = calibration / (time.monotonic() - started)
    plan = faults(stack, receiver, args)
    outages = args.nats_down + args.pg_down + args.receiver_down + (args.node_down if args.cluster else 0)
    rate = args.jobs / max(args.jobs / (0.5 * throughput), outages + (len(plan) + 1) * min_gap)
    span = args.jobs / rate
    # Each fault also takes a few seconds of restarts and readiness checks.
    gap = max(min_gap, (span - outages - RESTART_S * len(plan)) / (len(plan) + 1))
    log(f"throughput {throughput:.2f} jobs/s; enqueuing {args.jobs} jobs at {rate:.2f}/s over ~{span:.0f} s "
        f"(half of them bulk, in batches of {BATCH}), {len(plan)} faults {gap:.0f} s apart")
    load.start(args.jobs, rate)

    timeline = [("before the first fault", time.time())]
    for name, action in plan:
        time.sleep(gap)
        stack.check_exits()
        log(f"fault: {name} ({load.count()} jobs accepted so far)")
        timeline.append((name, time.time()))
        action()
        took = stack.wait_ready(name, 300)
        log(f"recovered from {name}: every service ready {took:.1f} s after it ended")
    time.sleep(gap)

    wait_until("the load generator to have every job accepted", lambda: not load.running(),
               deadline, stack)
    log(f"all {load.count()} jobs accepted; waiting for every job to finish and its webhook to be delivered")
    wait_end = time.monotonic() + deadline
    while time.monotonic() < wait_end:
        stack.check_exits()
        missing = set(load.accepted) - receiver.snapshot()[1]
        if not missing:
            break
        time.sleep(2)
    else:
        log(f"deadline: {len(missing)} jobs without a delivered webhook")
    rows, waits, ok = count(stack, load, receiver)
    print_table(rows)
    print_waits(waits)
    print_redispatches(stack, timeline)
    print_receiver_outages(receiver)
    if not ok:
        for s in services:
            print(f"--- last lines of {s.name} ({s.log}):\n{s.tail()}")
        log("FAILED: a criterion above is not met")
        return 1
    log("passed: nothing lost, nothing doubled, no outage errors, one webhook id and one delivery per job, "
        "every job in the lane it was sent in, no service exited by itself, few redispatches")
    return 0


if __name__ == "__main__":
    run_main(main)
