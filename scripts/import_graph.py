#!/usr/bin/env python3
"""The structure drawn from the imports: no circle among the files of a crate, and no
crate that depends on a crate above it.

For each crate under services/, every `.rs` file of `src/` is a node; a file points at
the file of each module it names (`use crate::a::b`, `crate::a::b::f()`, `super::x`),
test modules (`#[cfg(test)]` and what follows) left out. A parent declaring or
re-exporting its children (`mod x;`, `pub use x::…`) draws no arrow; a parent calling
into a child does, and so does a child naming its parent (the items the parent defines or
re-exports), a sibling or another branch. A circle
is a strongly connected set of more than one file. Across crates, a crate's dependencies
must sit in a lower layer (below), and the test kit depends on no service crate, not
even for its own tests.

  scripts/import_graph.py            # prints the circles and back arrows; exit 1 if any
  scripts/import_graph.py --dot      # the file graph of every crate, as Graphviz

Standard library only.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / "services"

# A crate's [dependencies] sit in lower layers only.
LAYERS = {
    "foodseg-http": 0,
    "foodseg-models": 0,
    "foodseg-telemetry": 1,
    "foodseg-engine": 2,
    "foodseg-pipeline": 2,
    "foodseg-runtime": 3,
    "foodseg-testkit": 3,
    "foodseg-api": 4,
    "foodseg-worker": 4,
    "foodseg-scheduler": 4,
    "foodseg-cli": 4,
}
SERVICE_CRATES = {"foodseg-api", "foodseg-worker", "foodseg-scheduler", "foodseg-cli"}

PATH_RE = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP_RE = re.compile(r"\buse\s+(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\};", re.S)


def module_of(src: Path, file: Path) -> tuple[str, ...]:
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("lib", "main", "mod"):
        parts = parts[:-1]
    return tuple(parts)


def code_of(text: str) -> str:
    """The file without its test module, comments and re-exports."""
    text = text.split("#[cfg(test)]")[0]
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"\bpub(?:\([^)]*\))?\s+use\s[^;]*;", "", text)
    return text


def crate_graph(src: Path) -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    files = {module_of(src, f): f for f in src.rglob("*.rs") if f.name != "main.rs"}
    modules = set(files)
    edges: dict[tuple[str, ...], set[tuple[str, ...]]] = {m: set() for m in modules}

    def resolve(path: tuple[str, ...]) -> tuple[str, ...] | None:
        # The longest prefix that is a module file.
        for n in range(len(path), -1, -1):
            if path[:n] in modules:
                return path[:n]
        return None

    for module, file in files.items():
        code = code_of(file.read_text())
        # For `super`, the parent of a file module is its enclosing module.
        here = module
        targets: list[tuple[str, ...]] = []
        # Children used by name (`feed::router()`, `use feed::X;`).
        for child in set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;", code, re.M)):
            if re.search(r"(?<![:\w])" + child + r"::", code):
                targets.append(here + (child,))
        paths = []
        for base, head, group in USE_GROUP_RE.findall(code):
            prefix = [p for p in head.split("::") if p]
            for item in re.split(r",", group):
                item = item.strip().split(" as ")[0].strip()
                first = re.split(r"::|\{", item)[0].strip()
                if first and first != "self":
                    paths.append((base, prefix + [first]))
                else:
                    paths.append((base, prefix))
        for base, rest in PATH_RE.findall(code):
            paths.append((base, [p for p in rest.split("::") if p]))
        for base, parts in paths:
            if base == "crate":
                full = tuple(parts)
            else:
                parent = here[:-1]
                while parts and parts[0] == "super":
                    parent = parent[:-1]
                    parts = parts[1:]
                full = parent + tuple(parts)
            target = resolve(full)
            if target is not None:
                targets.append(target)
        for t in targets:
            t = resolve(t)
            if t is not None and t != module:
                edges[module].add(t)
    return edges


def circles(edges: dict) -> list[list]:
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def crate_deps(toml: Path) -> list[str]:
    deps, section = [], None
    for line in toml.read_text().splitlines():
        if line.startswith("["):
            section = line.strip()
            continue
        m = re.match(r"(foodseg-[a-z]+)\s*(\.workspace|=)", line)
        if m and section in ("[dependencies]", "[dev-dependencies]"):
            deps.append((m.group(1), section))
    return deps


def main() -> int:
    dot = "--dot" in sys.argv[1:]
    problems = []
    if dot:
        print("digraph foodseg {")
    for crate_dir in sorted(p for p in SERVICES.iterdir() if (p / "Cargo.toml").exists()):
        name = "foodseg-" + crate_dir.name
        edges = crate_graph(crate_dir / "src")
        for comp in circles(edges):
            problems.append(f"{name}: {len(comp)} files form a circle: "
                            + ", ".join("::".join(m) or "lib" for m in comp))
        if dot:
            for a, targets in sorted(edges.items()):
                for b in sorted(targets):
                    print(f'  "{name}/{"::".join(a) or "lib"}" -> "{name}/{"::".join(b) or "lib"}";')
        for dep, section in crate_deps(crate_dir / "Cargo.toml"):
            if dep == name:
                continue
            if section == "[dependencies]" and LAYERS.get(dep, 0) >= LAYERS.get(name, 0):
                problems.append(f"{name} depends on {dep}, which is not below it")
            if name == "foodseg-testkit" and dep in SERVICE_CRATES:
                problems.append(f"{name} depends on the service crate {dep} ({section})")
    if dot:
        print("}")
        return 0
    for p in problems:
        print(p)
    print(f"import graph: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
