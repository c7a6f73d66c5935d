"""The package's layering: no import cycles inside `winosim`, and no module imports a layer above its own.

The import graph is read from the source with `ast` (every `import winosim...` and `from winosim... import`
anywhere in a module, also inside functions; imports under `if TYPE_CHECKING:` are left out, they never
run). The layers, bottom up (docs/design.md): core records -> lowering and counts -> the machine -> results
and reports -> sweeps -> commands.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "winosim"

LAYERS: tuple[tuple[str, ...], ...] = (
    # core records and helpers
    (
        "winosim.errors",
        "winosim.version",
        "winosim.integers",
        "winosim.files",
        "winosim.text",
        "winosim.geometry",
        "winosim.winograd",
        "winosim.methods",
        "winosim.trace",
        "winosim.synthetic",
        "winosim.arch",
        "winosim.archio",
        "winosim.energy",
        "winosim.memo",
    ),
    # lowering and counts
    ("winosim.workload", "winosim.counts"),
    # the machine
    ("winosim.sim",),
    # the network loop, results and reports
    ("winosim.simulate", "winosim.report", "winosim.tables", "winosim.figures"),
    # sweeps
    ("winosim.sweep", "winosim.workers"),
    # commands (and the package's entry points)
    ("winosim.commands", "winosim.cli", "winosim.__main__", "winosim.nn", "winosim"),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("winosim"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module.startswith("winosim"):
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the winosim modules it imports (names that are not modules, such as functions, dropped)."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path, name) if m in paths and m != name} for name, path in paths.items()}


def _layer(module: str) -> int:
    best = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(f"{prefix}."):
                best = max(best, (len(prefix), index))
    assert best[1] >= 0, f"{module} is in no layer: add it to LAYERS"
    return best[1]


def test_there_are_no_import_cycles_inside_winosim() -> None:
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_no_module_imports_a_layer_above_its_own() -> None:
    graph = import_graph()
    upward = [
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if _layer(target) > _layer(module) and not (module == "winosim" or module.startswith("winosim.nn"))
    ]
    assert not upward, "\n".join(upward)


def test_the_graph_sees_the_known_edges() -> None:
    graph = import_graph()
    assert "winosim.sim.layer" in graph["winosim.simulate"]
    assert "winosim.workload" in graph["winosim.counts"]
