#!/usr/bin/env python3
"""Checks that deploy/ agrees with the code.

    python3 deploy/check.py        (needs PyYAML: pip install pyyaml)

Parses every YAML file under deploy/ (and otel/collector.yaml) and the Dockerfiles, then
checks, against the Rust sources and Cargo manifests:
  - every environment variable given to a service is one its code (or a shared library
    crate) reads; the required ones (database, NATS, listen address) are set;
  - listen ports agree: the address variable or the code's default, EXPOSE, container
    ports, published ports, health checks, probes, Service target ports, scrape annotations;
  - health check and probe paths are routes the service serves;
  - every image's ENTRYPOINT is a binary of the workspace, built and copied by its build;
  - compose build targets, Dockerfiles and bind mounts exist; Kubernetes selectors,
    Services, PDBs, the HPA and the KEDA ScaledObject point at real Deployments;
  - KEDA's stream and consumer are the names the code creates for the registered model;
  - ORT_DYLIB_PATH, the ONNX Runtime version and the models folder match the images;
  - compose runs without a GPU by default: a worker without a profile runs on the CPU,
    and every GPU worker sits under the opt-in `gpu` profile;
  - Kubernetes pods meet Pod Security "restricted" (non-root, no privilege escalation,
    all capabilities dropped, RuntimeDefault seccomp); no `replicas` where a KEDA
    ScaledObject or an HPA owns the scale; images are pinned (no `latest`, untagged
    images get their tag from kustomization `images:`).
Prints every disagreement and exits non-zero if there is one.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("deploy/check.py needs PyYAML: python3 -m pip install pyyaml")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The deployment files to check (another folder only for testing this checker).
DEPLOY = os.path.abspath(os.environ.get("FOODSEG_DEPLOY_DIR", os.path.join(ROOT, "deploy")))

# Variables read by libraries or the platform rather than by our sources.
PLATFORM_VARS = {"LD_LIBRARY_PATH", "RUST_LOG", "RUST_BACKTRACE", "ORT_DYLIB_PATH"}
# Which foodseg binaries are long-running services, and what each must be given.
REQUIRED_VARS = {"DATABASE_URL", "NATS_URL"}
WORKER_REQUIRED = {"FOODSEG_EXECUTION_PROVIDER", "ORT_DYLIB_PATH", "FOODSEG_MODELS_DIR"}


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.problems: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.problems.append(what)
        return ok


R = Report()


def from_deploy(path: str) -> str:
    """A path written relative to deploy/ (compose contexts, bind mounts), resolved as if
    the checked folder were the repository's deploy/."""
    virtual = os.path.normpath(os.path.join(ROOT, "deploy", path))
    inside = os.path.relpath(virtual, os.path.join(ROOT, "deploy"))
    return virtual if inside.startswith("..") else os.path.normpath(os.path.join(DEPLOY, inside))


def rel(path: str) -> str:
    return os.path.relpath(path, ROOT)


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


# ---------------------------------------------------------------- the workspace -----


@dataclass
class Crate:
    name: str
    dir: str
    bins: list[str]
    source: str  # all of src/ concatenated
    deps: list[str]  # package names of its [dependencies]

    def literal(self, s: str) -> bool:
        return f'"{s}"' in self.source


def load_crates() -> dict[str, Crate]:
    crates = {}
    for manifest in sorted(glob.glob(os.path.join(ROOT, "services", "*", "Cargo.toml"))):
        d = os.path.dirname(manifest)
        with open(manifest, "rb") as f:
            cargo = tomllib.load(f)
        name = cargo["package"]["name"]
        bins = [b["name"] for b in cargo.get("bin", [])]
        if not bins and os.path.exists(os.path.join(d, "src", "main.rs")):
            bins = [name]
        src = "\n".join(read(p) for p in glob.glob(os.path.join(d, "src", "**", "*.rs"), recursive=True))
        crates[name] = Crate(name, d, bins, src, list(cargo.get("dependencies", {})))
    return crates


CRATES = load_crates()
BINARIES = {b: c for c in CRATES.values() for b in c.bins}
# Library crates shared by the services (no binary of their own).
SHARED = [c for c in CRATES.values() if not c.bins]


def service_crate(binary: str) -> Crate | None:
    c = BINARIES.get(binary)
    return c if c and c.name != "foodseg-cli" else None


def addr_var(crate: Crate) -> str | None:
    found = sorted(set(re.findall(r'"(FOODSEG_[A-Z]+_ADDR)"', crate.source)))
    return found[0] if len(found) == 1 else None


def default_port(crate: Crate) -> int | None:
    m = re.search(r"SocketAddr::from\(\(\[0, 0, 0, 0\], (\d+)\)\)", crate.source)
    return int(m.group(1)) if m else None


def known_var(crate: Crate, var: str) -> bool:
    return var in PLATFORM_VARS or crate.literal(var) or any(s.literal(var) for s in SHARED)


def serves(crate: Crate, path: str) -> bool:
    """The route is in the crate's source or in a shared crate it depends on (the ops
    listener of foodseg-runtime)."""
    shared = [s for s in SHARED if s.name in crate.deps]
    return any(path.strip("/") in c.source for c in [crate, *shared])


def port_of(value: str | None) -> int | None:
    if not value:
        return None
    m = re.search(r":(\d+)$", value.strip())
    return int(m.group(1)) if m else None


def url_port_path(url: str) -> tuple[int | None, str]:
    m = re.match(r"https?://[^/:]+(?::(\d+))?(/[^ ?]*)?", url)
    if not m:
        return None, ""
    return (int(m.group(1)) if m.group(1) else 80), (m.group(2) or "/")


# ------------------------------------------------------------------ Dockerfiles -----


@dataclass
class Stage:
    name: str
    base: str
    parent: Stage | None = None
    args: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    expose: list[int] = field(default_factory=list)
    healthcheck: str = ""
    entrypoint: list[str] = field(default_factory=list)
    copies: list[tuple[str | None, list[str], str]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    def all_env(self) -> dict[str, str]:
        env = self.parent.all_env() if self.parent else {}
        env.update(self.env)
        return env

    def all_copies(self) -> list[tuple[str | None, list[str], str]]:
        return (self.parent.all_copies() if self.parent else []) + self.copies


def logical_lines(text: str) -> list[str]:
    out, cur = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not cur and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
        else:
            out.append(cur + line)
            cur = ""
    if cur:
        out.append(cur)
    return out


def subst(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), value)


def parse_kv(rest: str, args: dict[str, str]) -> dict[str, str]:
    out = {}
    for tok in shlex.split(rest):
        if "=" in tok:
            k, v = tok.split("=", 1)
            out[k] = subst(v, args)
    return out


def parse_dockerfile(path: str) -> dict[str, Stage]:
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for line in logical_lines(read(path)):
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "ARG":
            name, _, default = rest.strip().partition("=")
            target = stage.args if stage else global_args
            target[name] = default if default else global_args.get(name, "")
        elif word == "FROM":
            parts = rest.split()
            base = subst(parts[0], global_args)
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else f"#{len(stages)}"
            stage = Stage(name, base, stages.get(base))
            stages[name] = stage
        elif stage is None:
            continue
        elif word == "ENV":
            stage.env.update(parse_kv(rest, stage.args))
        elif word == "EXPOSE":
            stage.expose += [int(p.split("/")[0]) for p in rest.split()]
        elif word == "HEALTHCHECK":
            stage.healthcheck = rest
        elif word == "ENTRYPOINT":
            stage.entrypoint = json.loads(rest)
        elif word == "COPY":
            toks = rest.split()
            frm = next((t.split("=", 1)[1] for t in toks if t.startswith("--from=")), None)
            paths = [t for t in toks if not t.startswith("--")]
            stage.copies.append((frm, paths[:-1], paths[-1]))
        elif word == "RUN":
            stage.runs.append(subst(rest, {**global_args, **stage.args}))
    return stages


def check_dockerfile(path: str) -> dict[str, Stage]:
    stages = parse_dockerfile(path)
    name = rel(path)
    for stage in stages.values():
        for frm, sources, _dest in stage.copies:
            if frm is None:
                for src in sources:
                    R.check(os.path.exists(os.path.join(ROOT, src)), f"{name} [{stage.name}]: COPY source {src} does not exist")
            else:
                R.check(frm in stages, f"{name} [{stage.name}]: COPY --from={frm} names no stage")
        if not stage.entrypoint:
            continue
        binary = os.path.basename(stage.entrypoint[0])
        if not R.check(binary in BINARIES, f"{name} [{stage.name}]: ENTRYPOINT {binary} is no binary of the workspace"):
            continue
        check_binary_is_built(name, stages, stage, binary)
    return stages


def check_binary_is_built(name: str, stages: dict[str, Stage], stage: Stage, binary: str) -> None:
    for frm, sources, dest in stage.all_copies():
        if frm and any(os.path.basename(s) == binary for s in sources):
            build = stages[frm]
            script = " ".join(build.runs)
            crate = BINARIES[binary]
            R.check(f"-p {crate.name}" in script, f"{name}: stage {frm} does not build package {crate.name}")
            R.check(f"target/release/{binary}" in script, f"{name}: stage {frm} does not keep target/release/{binary}")
            R.check(os.path.basename(stage.entrypoint[0]) == binary and (dest.endswith(binary) or dest.endswith("/")),
                    f"{name} [{stage.name}]: {binary} is copied to {dest}, not where ENTRYPOINT runs it")
            return
    R.check(False, f"{name} [{stage.name}]: nothing copies {binary} into the image")


# ------------------------------------------------------------- per-unit checks ------


def check_unit(where: str, stage: Stage, env: dict[str, str], ports: dict[str, int],
               health: list[tuple[str, int | None, str]]) -> int | None:
    """One running service: env names, ports, health paths. Returns its listen port."""
    binary = os.path.basename(stage.entrypoint[0]) if stage.entrypoint else ""
    crate = service_crate(binary)
    if not R.check(crate is not None, f"{where}: image stage {stage.name} runs no service binary ({binary or 'no ENTRYPOINT'})"):
        return None
    effective = {**stage.all_env(), **env}
    for var in sorted(env):
        R.check(known_var(crate, var), f"{where}: {var} is read by neither {crate.name} nor a shared crate")
    required = set(REQUIRED_VARS)
    if crate.name == "foodseg-worker":
        required |= WORKER_REQUIRED
    for var in sorted(required):
        R.check(bool(effective.get(var)), f"{where}: {var} is not set")
    var = addr_var(crate)
    if not R.check(var is not None, f"{crate.name}: no single FOODSEG_*_ADDR variable in its sources"):
        return None
    port = port_of(effective.get(var)) or default_port(crate)
    if not R.check(port is not None, f"{where}: no listen port ({var} unset and no default in {crate.name})"):
        return None
    R.check(port in stage.expose, f"{where}: image stage {stage.name} does not EXPOSE {port}")
    for label, p in ports.items():
        R.check(p == port, f"{where}: {label} is {p}, the service listens on {port} ({var})")
    hc_port, hc_path = url_port_path(re.sub(r".*?(https?://\S+).*", r"\1", stage.healthcheck)) if stage.healthcheck else (port, "/health/live")
    health = health + [(f"image {stage.name} HEALTHCHECK", hc_port, hc_path)]
    for label, p, path in health:
        R.check(p == port, f"{where}: {label} uses port {p}, the service listens on {port}")
        R.check(serves(crate, path), f"{where}: {label} path {path} is not a route of {crate.name}")
    models_dir = effective.get("FOODSEG_MODELS_DIR")
    if models_dir:
        dests = [d.rstrip("/") for frm, src, d in stage.all_copies() if frm is None and "models" in src]
        R.check(models_dir.rstrip("/") in dests, f"{where}: FOODSEG_MODELS_DIR={models_dir} but the image copies models to {dests}")
    ort = effective.get("ORT_DYLIB_PATH")
    if ort:
        check_ort_path(where, stage, ort)
    return port


ORT_VERSION = (re.search(r'ORT_VERSION="\$\{ORT_VERSION:-([\d.]+)\}"', read(os.path.join(ROOT, "scripts", "fetch-onnxruntime.sh"))) or [None, None])[1]


def check_ort_path(where: str, stage: Stage, path: str) -> None:
    R.check(path.endswith(f"libonnxruntime.so.{ORT_VERSION}"),
            f"{where}: ORT_DYLIB_PATH={path} is not ONNX Runtime {ORT_VERSION} (scripts/fetch-onnxruntime.sh)")
    lib_dir = os.path.dirname(path)
    copied = [d.rstrip("/") for frm, _src, d in stage.all_copies() if frm and frm.startswith("ort")]
    R.check(any(lib_dir.startswith(d) for d in copied), f"{where}: ORT_DYLIB_PATH dir {lib_dir} is not where the image puts ONNX Runtime ({copied})")


# ---------------------------------------------------------------------- compose -----


def check_compose(stages_by_file: dict[str, dict[str, Stage]]) -> dict[str, Stage]:
    path = os.path.join(DEPLOY, "compose.yaml")
    compose = yaml.safe_load(read(path))
    services = compose.get("services", {})
    images: dict[str, Stage] = {}
    for name, svc in services.items():
        where = f"compose {name}"
        for dep in svc.get("depends_on", {}) or {}:
            R.check(dep in services, f"{where}: depends on unknown service {dep}")
        for vol in svc.get("volumes", []) or []:
            src = vol.split(":")[0]
            if src.startswith((".", "/")):
                R.check(os.path.exists(from_deploy(src)), f"{where}: bind mount {src} does not exist")
            else:
                R.check(src in (compose.get("volumes") or {}), f"{where}: volume {src} is not declared")
        build = svc.get("build")
        if not build:
            continue
        R.check(from_deploy(build["context"]) == ROOT, f"{where}: build context {build['context']} is not the repository root")
        dockerfile = from_deploy(os.path.join(build["context"], build["dockerfile"]))
        if not R.check(dockerfile in stages_by_file, f"{where}: Dockerfile {rel(dockerfile)} missing"):
            continue
        stages = stages_by_file[dockerfile]
        target = build.get("target") or list(stages)[-1]
        if not R.check(target in stages, f"{where}: build target {target} is not a stage of {rel(dockerfile)}"):
            continue
        stage = stages[target]
        images[svc["image"].split(":")[0]] = stage
        env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
        ports = {f"published port {p}": int(str(p).split(":")[-1]) for p in svc.get("ports", []) or []}
        test = svc.get("healthcheck", {}).get("test", [])
        urls = [t for t in test if isinstance(t, str) and t.startswith("http")]
        health = [("healthcheck", *url_port_path(u)) for u in urls]
        R.check(bool(urls), f"{where}: no HTTP healthcheck")
        check_unit(where, stage, env, ports, health)
        if "worker" in name:
            check_worker_variant(where, svc)
    default_cpu_workers = [n for n, s in services.items()
                           if "worker" in n and not s.get("profiles") and not uses_gpu(s)]
    R.check(bool(default_cpu_workers), "compose: no CPU worker runs by default (without a profile)")
    check_infra(services)
    return images


def uses_gpu(svc: dict) -> bool:
    devices = svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return any("gpu" in d.get("capabilities", []) for d in devices)


def check_worker_variant(where: str, svc: dict) -> None:
    provider = svc["environment"].get("FOODSEG_EXECUTION_PROVIDER", "")
    gpu = uses_gpu(svc)
    R.check(provider.startswith("cuda") == gpu, f"{where}: FOODSEG_EXECUTION_PROVIDER={provider} but GPU reservation is {gpu}")
    if gpu:
        R.check("gpu" in (svc.get("profiles") or []), f"{where}: a GPU worker must sit under the opt-in profile gpu")


def check_infra(services: dict) -> None:
    nats = services.get("nats", {})
    m = re.match(r"nats:(\d+)\.(\d+)", nats.get("image", ""))
    R.check(bool(m) and (int(m.group(1)), int(m.group(2))) >= (2, 10), "compose nats: image must be NATS 2.10+")
    R.check("-js" in (nats.get("command") or []), "compose nats: JetStream (-js) is not enabled")
    R.check(any(":/data" in v for v in nats.get("volumes", [])), "compose nats: JetStream store has no volume")
    R.check(services.get("postgres", {}).get("image", "").startswith("postgres:16"), "compose postgres: image must be postgres:16")
    R.check("healthcheck" in services.get("postgres", {}), "compose postgres: no healthcheck")
    R.check("jaegertracing/jaeger:2" in services.get("jaeger", {}).get("image", "").replace("${JAEGER_VERSION:-", ""),
            "compose jaeger: must be Jaeger v2 (jaegertracing/jaeger:2.x)")


# --------------------------------------------------------------------- collector ----


def check_collector(endpoints: set[str]) -> None:
    path = os.path.join(ROOT, "otel", "collector.yaml")
    if not R.check(os.path.exists(path), "otel/collector.yaml is missing (compose mounts it)"):
        return
    conf = yaml.safe_load(read(path)) or {}
    otlp = (conf.get("receivers") or {}).get("otlp") or {}
    protocols = otlp.get("protocols") or {}
    R.check("http" in protocols, "otel/collector.yaml: the otlp receiver does not take http (services send http/protobuf)")
    http_ep = (protocols.get("http") or {}).get("endpoint", "0.0.0.0:4318")
    for ep in endpoints:
        R.check(port_of(ep) == port_of(http_ep), f"services export to {ep}, the collector's OTLP/HTTP listens on {http_ep}")
    pipelines = ((conf.get("service") or {}).get("pipelines") or {})
    exporters = [e for p in pipelines.values() for e in (p.get("exporters") or [])]
    R.check(any(e.startswith("debug") for e in exporters), "otel/collector.yaml: no debug exporter in a pipeline")
    R.check(any(e.startswith("otlp") for e in exporters), "otel/collector.yaml: no OTLP exporter (to Jaeger) in a pipeline")


# -------------------------------------------------------------------- kubernetes ----


def k8s_objects() -> list[tuple[str, dict]]:
    objs = []
    for path in sorted(glob.glob(os.path.join(DEPLOY, "k8s", "*.yaml"))):
        try:
            docs = list(yaml.safe_load_all(read(path)))
        except yaml.YAMLError:
            continue  # reported by the parse check
        objs += [(rel(path), doc) for doc in docs if doc]
    return objs


def matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_k8s(images: dict[str, Stage]) -> None:
    objs = k8s_objects()
    kinds: dict[str, dict[str, dict]] = {}
    for f, o in objs:
        kinds.setdefault(o["kind"], {})[o.get("metadata", {}).get("name", f)] = o
    kust = kinds.get("Kustomization", {})
    listed = {r for k in kust.values() for r in k.get("resources", [])}
    files = {os.path.basename(p) for p in glob.glob(os.path.join(DEPLOY, "k8s", "*.yaml"))} - {"kustomization.yaml"}
    R.check(listed == files, f"k8s/kustomization.yaml resources {sorted(listed)} differ from the files {sorted(files)}")
    for f, o in objs:
        if o["kind"] not in ("Namespace", "Kustomization"):
            R.check(o["metadata"].get("namespace") == "foodseg", f"{f}: {o['kind']} {o['metadata']['name']} is not in namespace foodseg")
    deployments = kinds.get("Deployment", {})
    worker_deployments = []
    for name, d in deployments.items():
        if check_deployment(name, d, images, kinds):
            worker_deployments.append(name)
    for kind in ("Service", "PodDisruptionBudget"):
        for name, o in kinds.get(kind, {}).items():
            sel = o["spec"]["selector"]
            sel = sel.get("matchLabels", sel) if kind == "PodDisruptionBudget" else sel
            R.check(any(matches(sel, d["spec"]["template"]["metadata"]["labels"]) for d in deployments.values()),
                    f"k8s {kind} {name}: selector {sel} matches no Deployment")
    for name, d in deployments.items():
        labels = d["spec"]["template"]["metadata"]["labels"]
        R.check(matches(d["spec"]["selector"]["matchLabels"], labels), f"k8s Deployment {name}: selector does not match its pod labels")
        R.check(any(matches(p["spec"]["selector"]["matchLabels"], labels) for p in kinds.get("PodDisruptionBudget", {}).values()),
                f"k8s Deployment {name}: no PodDisruptionBudget")
    for name, h in kinds.get("HorizontalPodAutoscaler", {}).items():
        R.check(h["spec"]["scaleTargetRef"]["name"] in deployments, f"k8s HPA {name}: target is not a Deployment")
    check_keda(kinds.get("ScaledObject", {}), worker_deployments)
    autoscaled = {o["spec"]["scaleTargetRef"]["name"]
                  for kind in ("HorizontalPodAutoscaler", "ScaledObject") for o in kinds.get(kind, {}).values()}
    pinned = {i["name"]: i for k in kust.values() for i in k.get("images", [])}
    for name, d in deployments.items():
        where = f"k8s Deployment {name}"
        if name in autoscaled:
            R.check("replicas" not in d["spec"], f"{where}: sets replicas but an autoscaler owns its scale")
        check_restricted(where, d["spec"]["template"]["spec"])
        for c in d["spec"]["template"]["spec"]["containers"]:
            check_pinned(f"{where} container {c['name']}", c["image"], pinned)


def check_restricted(where: str, pod: dict) -> None:
    """Pod Security Standards, profile "restricted"."""
    psc = pod.get("securityContext") or {}
    for c in pod.get("initContainers", []) + pod["containers"]:
        w = f"{where} container {c['name']}"
        csc = c.get("securityContext") or {}
        R.check(csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{w}: runAsNonRoot is not true (Pod Security restricted)")
        R.check(csc.get("allowPrivilegeEscalation") is False, f"{w}: allowPrivilegeEscalation is not false (Pod Security restricted)")
        R.check("ALL" in ((csc.get("capabilities") or {}).get("drop") or []), f"{w}: capabilities.drop lacks ALL (Pod Security restricted)")
        seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        R.check(seccomp in ("RuntimeDefault", "Localhost"), f"{w}: seccompProfile.type is {seccomp}, not RuntimeDefault (Pod Security restricted)")


def check_pinned(where: str, image: str, pinned: dict[str, dict]) -> None:
    name, _, tag = image.partition("@")[0].rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    R.check(tag != "latest", f"{where}: image {image} uses the moving tag latest")
    if not tag and "@" not in image:
        entry = pinned.get(name)
        R.check(entry is not None and (entry.get("digest") or entry.get("newTag") not in (None, "", "latest")),
                f"{where}: image {image} has no tag and kustomization images: pins none")


def check_deployment(name: str, d: dict, images: dict[str, Stage], kinds: dict) -> bool:
    """Returns whether the Deployment runs the worker."""
    containers = d["spec"]["template"]["spec"]["containers"]
    c = containers[0]
    where = f"k8s Deployment {name}"
    image = c["image"].split(":")[0]
    if not R.check(image in images, f"{where}: image {image} is built by no compose service / Dockerfile stage"):
        return False
    stage = images[image]
    env = {e["name"]: str(e.get("value", "")) if "value" in e else "<from field>" for e in c.get("env", [])}
    from_refs = {}
    for ref in c.get("envFrom", []):
        kind = "ConfigMap" if "configMapRef" in ref else "Secret"
        ref_name = (ref.get("configMapRef") or ref.get("secretRef"))["name"]
        obj = kinds.get(kind, {}).get(ref_name)
        if R.check(obj is not None, f"{where}: envFrom {kind} {ref_name} does not exist"):
            from_refs.update({k: str(v) for k, v in (obj.get("data") or obj.get("stringData") or {}).items()})
    named = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    ports = {f"containerPort {n}": p for n, p in named.items()}
    annotations = d["spec"]["template"]["metadata"].get("annotations", {})
    if "prometheus.io/port" in annotations:
        ports["prometheus.io/port"] = int(annotations["prometheus.io/port"])
    health = []
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probe in c:
            get = c[probe]["httpGet"]
            health.append((probe, named.get(get["port"], get["port"]), get["path"]))
    R.check("readinessProbe" in c and "livenessProbe" in c, f"{where}: needs readiness and liveness probes")
    merged = {**from_refs, **env}
    port = check_unit(where, stage, merged, ports, health)
    for svc_name, svc in kinds.get("Service", {}).items():
        if matches(svc["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"]):
            for sp in svc["spec"]["ports"]:
                tp = sp.get("targetPort", sp["port"])
                R.check(named.get(tp, tp) == port, f"k8s Service {svc_name}: targetPort {tp} is not the service's port {port}")
    is_worker = os.path.basename(stage.entrypoint[0]) == "foodseg-worker"
    if is_worker:
        gpu = c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
        provider = merged.get("FOODSEG_EXECUTION_PROVIDER", stage.all_env().get("FOODSEG_EXECUTION_PROVIDER", ""))
        R.check(provider.startswith("cuda") == (gpu is not None), f"{where}: FOODSEG_EXECUTION_PROVIDER={provider} but nvidia.com/gpu limit is {gpu}")
    return is_worker


def nats_names() -> tuple[str, list[str]]:
    engine = CRATES["foodseg-engine"]
    m = re.search(r'Subjects::with_prefix\("([\w.-]+)"\)', engine.source)
    prefix = m.group(1) if m else "?"
    R.check('format!("{upper}_JOBS")' in engine.source, "foodseg-engine: jobs stream is no longer <PREFIX>_JOBS")
    R.check('format!("worker-{model_name}")' in engine.source, "foodseg-engine: worker consumers are no longer worker-<model>")
    R.check('format!("worker-bulk-{model_name}")' in engine.source,
            "foodseg-engine: bulk-lane consumers are no longer worker-bulk-<model>")
    stream = prefix.upper().replace(".", "_").replace("-", "_") + "_JOBS"
    models = []
    for manifest in glob.glob(os.path.join(ROOT, "models", "*", "model.toml")):
        with open(manifest, "rb") as f:
            models.append(tomllib.load(f)["name"])
    return stream, [f"worker-{m}" for m in models] + [f"worker-bulk-{m}" for m in models]


def check_keda(scaled: dict[str, dict], worker_deployments: list[str]) -> None:
    stream, consumers = nats_names()
    R.check(bool(scaled), "k8s: no KEDA ScaledObject for the workers")
    for name, so in scaled.items():
        R.check(so["spec"]["scaleTargetRef"]["name"] in worker_deployments, f"k8s ScaledObject {name}: target is not a worker Deployment")
        for trig in so["spec"]["triggers"]:
            R.check(trig["type"] == "nats-jetstream", f"k8s ScaledObject {name}: trigger {trig['type']} is not nats-jetstream")
            meta = trig["metadata"]
            R.check(meta.get("stream") == stream, f"k8s ScaledObject {name}: stream {meta.get('stream')} is not {stream}")
            R.check(meta.get("consumer") in consumers, f"k8s ScaledObject {name}: consumer {meta.get('consumer')} is none of {consumers}")


# --------------------------------------------------------------------------- main ----


def otlp_endpoints() -> set[str]:
    compose = yaml.safe_load(read(os.path.join(DEPLOY, "compose.yaml")))
    envs = [svc.get("environment") or {} for svc in compose["services"].values()]
    return {str(e["OTEL_EXPORTER_OTLP_ENDPOINT"]) for e in envs if e.get("OTEL_EXPORTER_OTLP_ENDPOINT")}


def guarded(what: str, check, *args):
    """Runs one group of checks; a file missing an expected field is a failure, not a crash."""
    try:
        return check(*args)
    except yaml.YAMLError:
        return None  # reported by the parse check
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as e:
        R.check(False, f"{what}: malformed or unexpected structure ({type(e).__name__}: {e})")
        return None


def main() -> int:
    yaml_files = sorted(glob.glob(os.path.join(DEPLOY, "**", "*.yaml"), recursive=True))
    yaml_files += [p for p in [os.path.join(ROOT, "otel", "collector.yaml")] if os.path.exists(p)]
    for path in yaml_files:
        try:
            list(yaml.safe_load_all(read(path)))
            R.check(True, "")
        except yaml.YAMLError as e:
            R.check(False, f"{rel(path)}: does not parse: {e}")
    stages_by_file = {p: check_dockerfile(p) for p in sorted(glob.glob(os.path.join(DEPLOY, "docker", "Dockerfile.*"))) if not p.endswith(".dockerignore")}
    for p, stages in stages_by_file.items():
        for s in stages.values():
            for run in s.runs:
                if "extract-ort.py" in run:
                    R.check(ORT_VERSION in run, f"{rel(p)} [{s.name}]: extracts ONNX Runtime other than {ORT_VERSION}")
    images = guarded("compose.yaml", check_compose, stages_by_file) or {}
    endpoints = guarded("compose.yaml", otlp_endpoints) or set()
    guarded("otel/collector.yaml", check_collector, endpoints)
    guarded("k8s/", check_k8s, images)
    for problem in R.problems:
        print(f"FAIL {problem}")
    print(f"deploy check: {R.passed} passed, {len(R.problems)} failed")
    return 1 if R.problems else 0


if __name__ == "__main__":
    sys.exit(main())
