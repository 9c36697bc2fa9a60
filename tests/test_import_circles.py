"""No import circles among the package's modules (architecture rule), lazy imports included.

Every ``import`` / ``from ... import`` in a module, at top level or inside a function, is an
edge; a circle is a strongly connected group of two or more modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import napari_microseg

ROOT = Path(napari_microseg.__file__).parent
ALLOWED: set[frozenset] = set()


def _modules() -> dict[str, tuple[Path, list[str]]]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = ["napari_microseg", *p.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
            package = parts
        else:
            package = parts[:-1]
        out[".".join(parts)] = (p, package)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (``from . import sub`` counts as ``sub`` only)."""
    mods = _modules()
    graph = {}
    for name, (path, package) in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
                found = subs or [target]
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            else:
                continue
            deps.update(m for m in found if m in mods and m != name)
        graph[name] = deps
    return graph


def circles(graph: dict[str, set[str]]) -> list[frozenset]:
    """Strongly connected groups of two or more modules (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(frozenset(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    found = set(circles(import_graph()))
    assert found <= ALLOWED, sorted(sorted(c) for c in found - ALLOWED)


def test_the_scan_finds_a_circle():
    """Guard against a vacuous test: a made-up edge back must show up as a circle."""
    graph = import_graph()
    assert "napari_microseg.core.measure.objects" in graph["napari_microseg.core.measure.pipeline"]
    graph["napari_microseg.core.measure.objects"].add("napari_microseg.core.measure.pipeline")
    assert any({"napari_microseg.core.measure.objects", "napari_microseg.core.measure.pipeline"} <= c
               for c in circles(graph) if c not in ALLOWED)
