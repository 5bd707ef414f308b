"""The package's layering, checked on every import (module level and function-local) via ast.

The layer map (docs/architecture.md explains each decision):

* floor: shared logic below the stages (schema, errors, artifacts, dirs, config, models,
  logprobs, policy, preference, stats, the report hook ``rendering``...); imports only the floor.
* ``io``: the input stage, and the one reader every stage uses for ``--pairs``; imports only the floor.
* stages (simulate, curate, train, evaluate, audit): import the floor and ``io``, never another
  stage, never ``reports``, never an orchestrator or the CLI. They reach their HTML report
  through ``pairlab.rendering`` (which ``reports`` registers into).
* reports: reads stage directories and renders; imports the floor, ``io`` and only the stage
  modules that are declarative registries (:data:`REPORTS_MAY_READ`), nothing that computes.
* orchestrators (ablate, executors, tracking, export, demo, and audit's validation suite
  ``audit.validate`` / ``audit.suite``) and the CLI (``pairlab.cli``, ``pairlab.docs``, and each
  stage's thin ``cli`` module) are the only code that crosses between stages.
* no import circle among module-level imports.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pairlab"

FLOOR = {"schema", "errors", "artifacts", "dirs", "config", "console", "extras", "distributed", "models",
         "logprobs", "policy", "preference", "stats", "rendering", "results"}
STAGES = {"simulate", "curate", "train", "evaluate", "audit"}
ORCHESTRATORS = {"ablate", "executors", "tracking", "export", "demo", "experiments"}
CLI = {"cli", "docs", "__main__"}
#: audit's validation suite trains, curates and evaluates arms: an orchestrator living in audit/.
ORCHESTRATOR_MODULES = {"pairlab.audit.validate", "pairlab.audit.suite"}
#: stage modules reports may read: name -> description tables, no computation.
REPORTS_MAY_READ = {"pairlab.audit.registry"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def imports_of(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported pairlab module, line, function-local?) for every import statement in the file."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, inner) for a in child.names if a.name.startswith("pairlab"))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[:len(package.split(".")) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.startswith("pairlab"):
                    for alias in child.names:  # `from . import x` imports the module pairlab.x
                        sub = f"{target}.{alias.name}"
                        found.append((sub if sub in MODULES else target, child.lineno, inner))
            elif (isinstance(child, ast.Call) and getattr(child.func, "attr", getattr(child.func, "id", ""))
                  == "import_module" and child.args and isinstance(child.args[0], ast.Constant)
                  and str(child.args[0].value).startswith("pairlab")):
                found.append((child.args[0].value, child.lineno, True))
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    area = parts[1] if len(parts) > 1 else "pairlab"
    if module in ORCHESTRATOR_MODULES or area in ORCHESTRATORS:
        return "orchestrator"
    if area in CLI or (len(parts) > 2 and parts[-1] == "cli"):
        return "cli"
    if area in FLOOR or area == "pairlab":
        return "floor"
    if area == "io":
        return "io"
    if area in STAGES:
        return "stage"
    if area == "reports":
        return "reports"
    raise AssertionError(f"{module} is in no layer: add its area to tests/test_layering.py and docs/architecture.md")


def violation(module: str, target: str) -> str | None:
    """Why importing ``target`` from ``module`` breaks the layering, or None."""
    src, dst = layer(module), layer(target)
    src_area, dst_area = module.split(".")[1:2], target.split(".")[1:2]
    if src in ("orchestrator", "cli"):
        return None
    if src_area == dst_area and module == f"pairlab.{src_area[0]}":
        return None  # a package's __init__ (lazily) re-exporting its own modules, e.g. audit.run_validation
    if src == "floor" and dst != "floor":
        return f"the floor imports {dst}"
    if src == "io" and dst not in ("floor", "io"):
        return f"io imports {dst}"
    if src == "stage":
        if dst == "stage" and src_area != dst_area:
            return "a stage imports another stage"
        if dst not in ("floor", "io", "stage"):
            return f"a stage imports {dst}"
    if src == "reports" and dst not in ("floor", "io", "reports") and target not in REPORTS_MAY_READ:
        return f"reports imports {dst} {target} (reports reads directories and registries, computes nothing)"
    return None


def test_every_module_has_a_layer():
    assert {layer(m) for m in MODULES} <= {"floor", "io", "stage", "reports", "orchestrator", "cli"}


def test_no_import_crosses_the_layers():
    bad = [f"{MODULES[m].relative_to(PACKAGE.parent)}:{line}: {m} -> {t}: {why}"
           for m in sorted(MODULES) for t, line, _ in imports_of(m, MODULES[m])
           if (why := violation(m, t))]
    assert not bad, "layering violations:\n" + "\n".join(bad)


def test_no_module_level_import_circles():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m, path in MODULES.items():
        for target, _, local in imports_of(m, path):
            if local or target == m:
                continue
            graph[m].add(target)
            parts = target.split(".")  # importing a.b.c runs a.b's __init__ first
            graph[m].update(p for i in range(2, len(parts)) if not m.startswith((p := ".".join(parts[:i])) + "."))
    circles = _strongly_connected(graph)
    assert not circles, "import circles: " + "; ".join(" <-> ".join(sorted(c)) for c in circles)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in graph:
        if v not in index:
            connect(v)
    return found


@pytest.mark.parametrize("source, expected", [
    ("from ..reports import render_report\n", "a stage imports reports"),
    ("def f():\n    from ..curate import curate\n", "a stage imports another stage"),
    ("import pairlab.ablate.pipeline\n", "a stage imports orchestrator"),
])
def test_the_checker_sees_module_level_and_local_imports(tmp_path, source, expected):
    """The rules above fail on what they should: a stage reaching into reports, another stage
    (inside a function) or an orchestrator."""
    path = tmp_path / "probe.py"
    path.write_text(source)
    MODULES["pairlab.evaluate.probe"] = path
    try:
        reasons = {violation("pairlab.evaluate.probe", t) for t, _, _ in imports_of("pairlab.evaluate.probe", path)}
    finally:
        del MODULES["pairlab.evaluate.probe"]
    assert expected in reasons


def test_circles_are_found():
    assert _strongly_connected({"a": {"b"}, "b": {"a"}, "c": {"a"}}) != []
    assert _strongly_connected({"a": {"b"}, "b": set()}) == []


def _stage_file_names() -> set[str]:
    """Every file name a stage directory class in pairlab.dirs defines (names with a suffix)."""
    from pairlab import dirs

    names = set()
    for cls in vars(dirs).values():
        if isinstance(cls, type) and issubclass(cls, dirs.StageDir):
            names.update(v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str) and "." in v
                         and " " not in v)
    return names


def test_stage_file_names_are_typed_only_in_dirs():
    """No stage file name is a string literal outside pairlab/dirs.py (use the *Dir constants).
    A report template argument (``write_report(path, "audit.html", ...)``) is a template, not a file."""
    names = _stage_file_names()
    assert {"pairs.parquet", "per_pair.parquet", "metrics.json", "comparison.json"} <= names
    found = []
    for module, path in MODULES.items():
        if module in ("pairlab.dirs", "pairlab.artifacts"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        templates = {id(call.args[1]) for call in ast.walk(tree) if isinstance(call, ast.Call)
                     and getattr(call.func, "id", getattr(call.func, "attr", "")) == "write_report"
                     and len(call.args) > 1}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in templates:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.value!r}")
    assert not found, "stage file names typed outside pairlab/dirs.py:\n" + "\n".join(found)
