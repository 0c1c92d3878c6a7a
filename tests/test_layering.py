"""The package's folders are its layers and imports point down only: codecs < config < algorithm <
tooling < flower. Only the Flower adapters import Flower, and no module imports itself back."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fedras_flwr"
#: bottom to top; a module may import its own layer and the layers below it
LAYERS = ("codecs", "config", "algorithm", "tooling", "flower")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """`fedras_flwr.<layer>...`; the empty root `__init__` sits below everything."""
    parts = module.split(".")
    if len(parts) == 1:
        return LAYERS[0]
    return parts[1]


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (lazy imports inside functions count too)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".rstrip(".")
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return names


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: {i for i in imports_of(path) if i in MODULES and i != name} for name, path in MODULES.items()}


def test_every_module_belongs_to_a_layer():
    assert [m for m in MODULES if layer_of(m) not in LAYERS] == []


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(module, target) pairs where the target sits in a higher layer than the module."""
    return sorted(
        (module, target) for module, targets in graph.items() for target in targets
        if LAYERS.index(layer_of(target)) > LAYERS.index(layer_of(module))
    )


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when there is none."""
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> list[str]:
        if module in trail:
            return trail[trail.index(module):] + [module]
        if module in done:
            return []
        for target in sorted(graph.get(module, ())):
            cycle = visit(target, trail + [module])
            if cycle:
                return cycle
        done.add(module)
        return []

    return next((cycle for module in sorted(graph) if (cycle := visit(module, []))), [])


def test_imports_point_down():
    assert upward_imports(GRAPH) == []


def test_no_import_cycles():
    assert find_cycle(GRAPH) == []


def test_only_the_flower_adapters_import_flower():
    offenders = [
        name for name, path in MODULES.items()
        if layer_of(name) != "flower" and any(i == "flwr" or i.startswith("flwr.") for i in imports_of(path))
    ]
    assert offenders == []


def test_the_checks_see_violations():
    """Planted in a copy of the real graph, an upward import and a cycle are both reported."""
    assert "fedras_flwr.tooling.session" in GRAPH["fedras_flwr.flower.strategy"]  # real edges are parsed
    planted = {m: set(t) for m, t in GRAPH.items()}
    planted["fedras_flwr.codecs.base"].add("fedras_flwr.config")
    assert ("fedras_flwr.codecs.base", "fedras_flwr.config") in upward_imports(planted)
    planted["fedras_flwr.config"].add("fedras_flwr.codecs.base")
    assert {"fedras_flwr.codecs.base", "fedras_flwr.config"} <= set(find_cycle(planted))
