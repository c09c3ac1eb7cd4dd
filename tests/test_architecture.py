"""The layout's rules, checked from the code's own imports: no import cycles, and the device
side never reaches the trainer or TensorFlow.

Imports are read with ``ast`` (module level and inside functions alike), resolved to module
names under ``edgesight``; an import of a package counts as an import of its ``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGES = {
    "edgesight": ROOT / "edgesight_pkg",
    "edgesight.device": ROOT / "device",
    "edgesight.trainer": ROOT / "trainer",
}


def module_files() -> dict[str, Path]:
    """Every module of the distribution by its import name."""
    found: dict[str, Path] = {"edgesight": PACKAGES["edgesight"] / "__init__.py"}
    for name, folder in PACKAGES.items():
        if name == "edgesight":
            continue
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([name, *parts])] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The edgesight modules ``name`` imports (relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets.add(stem)
            targets.update(f"{stem}.{alias.name}" for alias in node.names)  # from pkg import module
    return {t for t in targets if t in known and t != name}


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read_from_the_code():
    graph = import_graph()
    assert "edgesight.device.daemon" in graph and "edgesight.trainer.train" in graph
    assert "edgesight.device.pipeline" in graph["edgesight.device.daemon"]
    assert "edgesight.device.core.bundle" in graph["edgesight.trainer.export"]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_device_never_imports_the_trainer_or_tensorflow():
    files = module_files()
    for name, path in files.items():
        if not name.startswith("edgesight.device"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            else:
                continue
            for imported in names:
                assert imported.split(".")[0] not in ("tensorflow", "keras"), f"{path}: imports {imported}"
                assert "trainer" not in imported.split("."), f"{path}: imports {imported}"


def test_the_core_imports_nothing_above_it():
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith("edgesight.device.core"):
            above = [t for t in targets if not t.startswith("edgesight.device.core")]
            assert above == [], f"{name} imports {above}"
