"""The local stack the demo, the photo benchmark and the chaos suite run on: child
processes started in their own session and stopped together, the local Postgres and NATS
(or throwaway ones under .demo/ when they do not answer), throwaway Postgres servers and
NATS servers or 3-node NATS clusters that can be stopped and started again, and small
HTTP helpers. Standard library only.
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
    """Polls `check` until it returns a true value (returned) or `timeout` passes. Fails
    early when a watched started process exits."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        for p in started:
            if p.watch and p.poll() is not None:
                raise SystemExit(f"{NAME}: {p.args[0]} exited with {p.returncode} while waiting for {what}"
                                 + log_tail(p))
        time.sleep(poll)
    raise SystemExit(f"{NAME}: timed out waiting for {what}")


def spawn(args, env=None, log=None, watch: bool = True, append: bool = False) -> subprocess.Popen:
    """Starts a process in its own session, its output written to `log` (`append`: after
    what is there, for a process started again). `watch`: its exit stops `wait_for` (off
    for processes the caller kills and restarts itself)."""
    out = open(log, "ab" if append else "wb") if log else subprocess.DEVNULL
    p = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    p.log = log
    p.watch = watch
    started.append(p)
    return p


def kill(p: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Sends `sig` (SIGKILL unless told) to a started process's session, waits for it and
    forgets it."""
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass
    p.wait()
    if p in started:
        started.remove(p)


def stop(p: subprocess.Popen, timeout: float = 60) -> None:
    """Stops one started process (SIGTERM, then SIGKILL) and forgets it."""
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    if p in started:
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
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for fn in reversed(cleanups):
        fn()


# --- infrastructure ---------------------------------------------------------------


def build(release: bool = False) -> Path:
    """Builds the service binaries and returns their directory. The debug build is
    `cargo build --workspace --all-targets`: the same targets and features `cargo test
    --workspace` compiles, so the demo, the chaos suite and the tests share one build."""
    if release:
        args = ["cargo", "build", "--release", "--quiet", "--workspace", "--bins"]
    else:
        args = ["cargo", "build", "--quiet", "--workspace", "--all-targets"]
    subprocess.run(args, cwd=ROOT, check=True)
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / ("release" if release else "debug")


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


class Postgres:
    """A throwaway Postgres server: its own data directory (made by initdb) and port, so
    it can be stopped and started again."""

    def __init__(self, data: Path, port: int | None = None, log: Path | None = None, watch: bool = True):
        self.data, self.port, self.watch = data, port or free_port(), watch
        self.log = log or data.parent / f"{data.name}.log"
        self.process = None
        # initdb and postgres refuse to run as root.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def url(self, db: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def init(self) -> "Postgres":
        shutil.rmtree(self.data, ignore_errors=True)
        self.data.mkdir(parents=True)
        if self.as_user:
            shutil.chown(self.data, "postgres", "postgres")
        subprocess.run(self.as_user + [pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True)
        cleanups.append(lambda: shutil.rmtree(self.data, ignore_errors=True))
        self.log.write_bytes(b"")
        return self

    def start(self, timeout: float = 60) -> None:
        self.process = spawn(self.as_user + [pg_bin("postgres"), "-D", str(self.data), "-p", str(self.port),
                                             "-k", str(self.data), "-c", "listen_addresses=127.0.0.1"],
                             log=self.log, watch=self.watch, append=True)
        wait_for("Postgres to accept connections", self.answers, timeout=timeout)

    def answers(self) -> bool:
        return subprocess.run([pg_bin("psql"), self.url(), "-tAc", "SELECT 1"], capture_output=True).returncode == 0

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m <mode>` (`immediate`: no checkpoint, crash recovery at the next
        start), then waits for the server to be gone."""
        subprocess.run(self.as_user + [pg_bin("pg_ctl"), "-D", str(self.data), "stop", "-m", mode, "-w"],
                       check=True, capture_output=True)
        if self.process is not None:
            self.process.wait()
            if self.process in started:
                started.remove(self.process)
            self.process = None

    def psql(self, db: str, sql: str) -> list[list[str]]:
        """Rows of a query, as lists of text fields."""
        out = subprocess.run([pg_bin("psql"), self.url(db), "-tA", "-F", "\t", "-c", sql],
                             check=True, capture_output=True, text=True).stdout
        return [line.split("\t") for line in out.splitlines() if line]


def throwaway_postgres() -> str:
    pg = Postgres(DEMO / "pg", log=DEMO / "postgres.log").init()
    say(f"starting a throwaway Postgres in {pg.data} on port {pg.port}")
    pg.start()
    subprocess.run([pg_bin("psql"), pg.url(), "-qc", "CREATE DATABASE foodseg"], check=True)
    return pg.url("foodseg")


def nats_binary() -> str:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(binary).exists():
        raise SystemExit(f"{NAME}: nats-server is not installed")
    return binary


class Nats:
    """Throwaway nats-server processes with JetStream: one server, or a cluster of
    `nodes` servers (routes between all of them), each with its own client, cluster and
    monitoring ports and store directory, so each node can be killed and started again."""

    def __init__(self, root: Path, nodes: int = 1, watch: bool = True):
        self.root, self.watch = root, watch
        self.nodes = [{"name": f"n{i + 1}", "port": free_port(), "cluster": free_port(), "http": free_port(),
                       "store": root / f"n{i + 1}", "process": None} for i in range(nodes)]
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        cleanups.append(lambda: shutil.rmtree(root, ignore_errors=True))

    def url(self) -> str:
        """Every node's client URL, comma-separated (NATS_URL)."""
        return ",".join(f"nats://127.0.0.1:{n['port']}" for n in self.nodes)

    def start(self, i: int | None = None) -> None:
        """Starts node `i` (every node when None), then waits until JetStream answers
        (in a cluster: until it has a meta leader and every running node sees it)."""
        for n in self.nodes if i is None else [self.nodes[i]]:
            args = [nats_binary(), "-a", "127.0.0.1", "-p", str(n["port"]), "-m", str(n["http"]),
                    "-js", "-sd", str(n["store"]), "-n", n["name"]]
            if len(self.nodes) > 1:
                routes = ",".join(f"nats://127.0.0.1:{o['cluster']}" for o in self.nodes if o is not n)
                args += ["--cluster", f"nats://127.0.0.1:{n['cluster']}", "--routes", routes,
                         "--cluster_name", "foodseg-chaos"]
            n["process"] = spawn(args, log=self.root / f"{n['name']}.log", watch=self.watch, append=True)
        wait_for("NATS JetStream", self.ready, timeout=90)

    def kill(self, i: int | None = None, sig: int = signal.SIGKILL) -> None:
        """Kills node `i` (every node when None), SIGKILL unless told."""
        for n in self.nodes if i is None else [self.nodes[i]]:
            if n["process"] is not None:
                kill(n["process"], sig)
                n["process"] = None

    def streams(self) -> dict[str, int]:
        """Stream name → replicas (the leader and its followers), as a running node's
        monitoring endpoint reports them."""
        for n in self.running():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{n['http']}/jsz?streams=true", timeout=2) as r:
                    jsz = json.loads(r.read())
            except (OSError, ValueError):
                continue
            out = {}
            for account in jsz.get("account_details") or []:
                for st in account.get("stream_detail") or []:
                    cluster = st.get("cluster") or {}
                    out[st["name"]] = (1 if cluster.get("leader") else 0) + len(cluster.get("replicas") or [])
            return out
        return {}

    def running(self) -> list[dict]:
        return [n for n in self.nodes if n["process"] is not None and n["process"].poll() is None]

    def ready(self) -> bool:
        nodes = self.running()
        if not nodes:
            return False
        for n in nodes:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{n['http']}/jsz", timeout=2) as r:
                    jsz = json.loads(r.read())
            except (OSError, ValueError):
                return False
            if len(self.nodes) > 1 and not (jsz.get("meta_cluster") or {}).get("leader"):
                return False
        return True


def nats_url() -> str:
    url = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    parsed = urllib.parse.urlparse(url)
    if port_answers(parsed.hostname or "127.0.0.1", parsed.port or 4222):
        say(f"using NATS at {url}")
        return url
    nats = Nats(DEMO / "nats")
    say(f"starting a throwaway nats-server with JetStream on port {nats.nodes[0]['port']}")
    nats.start()
    return nats.url()


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
