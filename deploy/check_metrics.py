#!/usr/bin/env python3
"""Checks what the running services export against what the alerts and dashboards use.

    python3 deploy/check_metrics.py http://api/metrics http://worker/metrics http://scheduler/metrics

Scrapes each `/metrics` URL and
  - runs `promtool check metrics` on each (HELP text, `_total` counters, base units, …):
    any finding fails;
  - collects every `foodseg_*` metric name in the PromQL expressions of
    deploy/prometheus/alerts.yaml and of the Grafana dashboards in deploy/grafana/
    (histogram `_bucket`/`_sum`/`_count` suffixes stripped) and fails, listing them,
    when one is exported by none of the services.
Needs PyYAML and promtool (`just promtool`). Standard
library otherwise. Also importable: `check(urls) -> list[str]` returns the problems.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ALERTS = os.path.join(HERE, "prometheus", "alerts.yaml")
DASHBOARDS = os.path.join(HERE, "grafana", "dashboards")

NAME = re.compile(r"\bfoodseg_[a-zA-Z0-9_]+")


def base_name(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def alert_exprs() -> list[tuple[str, str]]:
    import yaml

    with open(ALERTS, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    return [(f"alert {r.get('alert') or r.get('record')}", r["expr"])
            for g in doc["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[tuple[str, str]]:
    found = []

    def walk(panels, file):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    found.append((f"{os.path.basename(file)} panel {p.get('title')!r}", t["expr"]))
            walk(p.get("panels", []), file)

    for file in sorted(glob.glob(os.path.join(DASHBOARDS, "*.json"))):
        with open(file, encoding="utf-8") as f:
            walk(json.load(f).get("panels", []), file)
    return found


def used_names() -> dict[str, list[str]]:
    """Metric name → where it is used."""
    used: dict[str, list[str]] = {}
    for where, expr in alert_exprs() + dashboard_exprs():
        # Label values (`stream=~".*_JOBS"`) are strings, not metric names.
        bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
        for name in NAME.findall(bare):
            used.setdefault(base_name(name), []).append(where)
    return used


def exported_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(base_name(re.split(r"[{ ]", line, 1)[0]))
    return names


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def promtool_findings(text: str) -> str:
    promtool = shutil.which("promtool")
    if not promtool:
        return "promtool is not installed (`just promtool`)"
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    findings = (out.stdout + out.stderr).strip()
    return findings if out.returncode != 0 or findings else ""


def check(urls: list[str]) -> list[str]:
    """The problems found with the services at `urls`."""
    problems = []
    exported: set[str] = set()
    for url in urls:
        try:
            text = scrape(url)
        except OSError as e:
            problems.append(f"cannot scrape {url}: {e}")
            continue
        exported |= exported_names(text)
        findings = promtool_findings(text)
        if findings:
            problems.append(f"promtool check metrics on {url}:\n    " + findings.replace("\n", "\n    "))
    for name, where in sorted(used_names().items()):
        if name in exported:
            continue
        places = ", ".join(sorted(set(where)))
        problems.append(f"{name} is exported by no service; used by {places}")
    return problems


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    problems = check(argv)
    for p in problems:
        print(f"check_metrics: FAIL {p}")
    print(f"check_metrics: {len(used_names())} metric names used by alerts and dashboards, "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
