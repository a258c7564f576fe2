"""The package's import graph is a DAG, at the level of packages and of modules.

Every ``import``/``from … import`` of ``tvmc_mobilenet`` is counted, lazy ones inside functions and
``TYPE_CHECKING`` ones included: an arrow back up is a cycle even when Python would tolerate it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tvmc_mobilenet"

#: The layers, bottom first: a unit may import units of its own layer's predecessors only.
LAYERS = [
    {"tvmc_mobilenet", "errors", "files"},
    {"model", "targets", "schedules"},
    {"options"},
    {"runtime"},
    {"compiler"},
    {"tuning"},
    {"build"},
    {"sweep", "devices"},
    {"cli"},
]


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def module_imports() -> dict[str, set[str]]:
    """Module → the project's modules it imports (``from pkg import mod`` resolved to ``pkg.mod``)."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("tvmc_mobilenet")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tvmc_mobilenet"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in known else node.module)
        graph[name] = deps - {name}
    return graph


def unit(module: str) -> str:
    """The package (or top-level module) a module belongs to: ``tvmc_mobilenet.tuning.tune`` → ``tuning``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_module_imports_a_module_that_imports_it_back():
    assert find_cycle(module_imports()) is None, " → ".join(find_cycle(module_imports()))


def test_packages_form_a_dag():
    packages: dict[str, set[str]] = {}
    for module, deps in module_imports().items():
        packages.setdefault(unit(module), set()).update(unit(d) for d in deps if unit(d) != unit(module))
    cycle = find_cycle(packages)
    assert cycle is None, " → ".join(cycle)


def test_every_arrow_points_down_the_layers():
    layer_of = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    found = {unit(m) for m in modules()}
    assert found <= set(layer_of), f"packages missing from LAYERS: {sorted(found - set(layer_of))}"
    upward = sorted(
        f"{module} → {dep}"
        for module, deps in module_imports().items()
        for dep in deps
        if unit(dep) != unit(module) and layer_of[unit(dep)] >= layer_of[unit(module)]
    )
    assert not upward, "imports that point up (or sideways): " + "; ".join(upward)


def test_nothing_below_the_cli_imports_click():
    for name, path in modules().items():
        if name != "tvmc_mobilenet.cli":
            tree = ast.parse(path.read_text())
            imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
            assert "click" not in imported, name
