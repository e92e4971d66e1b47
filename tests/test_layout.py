"""The layout's import rules, read from the source with ast (nothing is imported).

Every module of eval/, methods/ and ui/ is a node; every import in it is an edge, at module level,
inside a function, or under ``if TYPE_CHECKING`` alike (a circle only a type checker sees is still a
circle in the design). ``from pkg import name`` points at ``pkg.name`` when that is a module, else
at ``pkg``. The parent packages Python loads on the way to a module (``eval.study`` before
``eval.study.cells``) are not edges: a package's ``__init__`` re-exporting its own modules is how a
package states its API, not a circle.

The floors, lowest first: methods, eval.judging, eval.runs, (eval.study, eval.ratings), ui. A module
imports its own floor or lower ones, never a higher one. A ``__main__`` module is a program
(``python -m methods`` runs a method through eval.runs' runner so the CLI records like the app), not
a floor: nothing imports it, and it may import any floor.

One pattern is not a circle: a method package's spec (its ``__init__``) loads its pipeline inside
``run``, on use, and the pipeline imports the spec's settings class (:data:`SPEC_LOADS_PIPELINE`).
Python never sees that pair while importing; the test checks that the spec's side stays inside a
function.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("eval", "methods", "ui")
FLOORS = (  # (prefix, floor); the longest matching prefix wins
    ("methods", 0),
    ("eval.judging", 1),
    ("eval.runs", 2),
    ("eval.study", 3),
    ("eval.ratings", 3),
    ("eval", 3),  # eval/__init__.py and eval/__main__.py: the command line over every room
    ("ui", 4),
)
SPEC_LOADS_PIPELINE = {  # (package spec, its pipeline): the spec imports it inside run() only
    ("methods.point_e", "methods.point_e.pipeline"),
    ("methods.text_opt", "methods.text_opt.pipeline"),
    ("methods.triposr", "methods.triposr.pipeline"),
    ("methods.triposg", "methods.triposg.pipeline"),
    ("methods.hunyuan3d", "methods.hunyuan3d.pipeline"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            out[_module_name(path)] = path
    return out


def _resolve(module: str, level: int, current: str, is_package: bool) -> str:
    if not level:
        return module
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def import_graph(*, module_level_only: bool = False) -> dict[str, set[str]]:
    """module -> the project modules it imports (eval/, methods/, ui/ only); with ``module_level_only``,
    the imports outside functions (what runs when the module is imported)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        tree = _tree(path)
        in_functions = {
            id(inner)
            for fn in ast.walk(tree)
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            for inner in ast.walk(fn)
        }
        for node in ast.walk(tree):
            if module_level_only and id(node) in in_functions:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", node.level, name, path.name == "__init__.py")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # `import eval.study.cells as x` -> eval.study.cells
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def floor(module: str) -> int:
    best = max((p for p, _ in FLOORS if module == p or module.startswith(p + ".")), key=len)
    return dict(FLOORS)[best]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                part = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    part.append(top)
                    if top == node:
                        break
                if len(part) > 1:
                    out.append(sorted(part))
    return out


def test_the_graph_reads_every_module_and_sees_function_level_imports():
    graph = import_graph()
    assert {"eval.study.report", "eval.runs.store", "methods.base", "ui.arena"} <= set(graph)
    # a function-level import (tables.human_scores imports the ratings room inside the function)
    assert "eval.ratings" in graph["eval.study.tables"]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles_in_eval_methods_ui():
    graph = import_graph()
    for spec, pipeline in SPEC_LOADS_PIPELINE:
        graph[spec].discard(pipeline)
    assert circles(graph) == []
    at_import = import_graph(module_level_only=True)
    assert not [(spec, p) for spec, p in SPEC_LOADS_PIPELINE if p in at_import[spec]]
    assert circles(at_import) == []


def test_imports_flow_down_the_floors():
    graph = import_graph()
    assert not [m for m, targets in graph.items() for t in targets if t.endswith(".__main__")]
    graph = {m: t for m, t in graph.items() if not m.endswith(".__main__")}  # programs, not floors
    upward = sorted(
        f"{module} (floor {floor(module)}) imports {target} (floor {floor(target)})"
        for module, targets in graph.items()
        for target in targets
        if floor(target) > floor(module)
    )
    assert upward == []
    assert not [m for m, t in graph.items() if m.startswith("methods") and any(not x.startswith("methods") for x in t)]
    assert not [m for m, t in graph.items() if m.startswith("eval") and any(x.startswith("ui") for x in t)]
