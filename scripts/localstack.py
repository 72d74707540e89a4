"""The local stack the demo and the photo benchmark run on: child processes started in
their own session and stopped together, the local Postgres and NATS (or throwaway ones
under .demo/ when they do not answer), and small HTTP helpers. Standard library only.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
NAME = "demo"  # the prefix of every message; a caller sets its own

started: list[subprocess.Popen] = []
cleanups = []


def say(msg: str) -> None:
    print(f"{NAME}: {msg}", flush=True)


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


def wait_for(what: str, check, timeout: float = 60.0, poll: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        for p in started:
            if p.poll() is not None:
                raise SystemExit(f"{NAME}: {p.args[0]} exited with {p.returncode} while waiting for {what}"
                                 + log_tail(p))
        time.sleep(poll)
    raise SystemExit(f"{NAME}: timed out waiting for {what}")


def spawn(args, env=None, log=None) -> subprocess.Popen:
    out = open(log, "wb") if log else subprocess.DEVNULL
    p = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    p.log = log
    started.append(p)
    return p


def stop(p: subprocess.Popen, timeout: float = 60) -> None:
    """Stops one started process (SIGTERM, then SIGKILL) and forgets it."""
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    started.remove(p)


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
    raise SystemExit(f"{NAME}: PostgreSQL's {name} is not installed")


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
        raise SystemExit(f"{NAME}: nats-server is not installed")
    port = free_port()
    store = DEMO / "nats"
    shutil.rmtree(store, ignore_errors=True)
    say(f"starting a throwaway nats-server with JetStream on port {port}")
    spawn([binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)], log=DEMO / "nats.log")
    wait_for("NATS", lambda: port_answers("127.0.0.1", port))
    cleanups.append(lambda: shutil.rmtree(store, ignore_errors=True))
    return f"nats://127.0.0.1:{port}"


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


def scrape(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


def run_main(main) -> None:
    """Runs a script's `main`, says why it failed, stops what it started and exits with
    its code."""
    code = 1
    try:
        code = main()
    except subprocess.CalledProcessError as e:
        print(f"{NAME}: {' '.join(map(str, e.cmd))} failed with exit code {e.returncode}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{NAME}: interrupted", file=sys.stderr)
    finally:
        stop_all()
    sys.exit(code)
