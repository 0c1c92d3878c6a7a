"""The algorithm does not import Flower; only the thin adapters do."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fedras_flwr"
FLOWER_ADAPTERS = {"client.py", "strategy.py", "client_app.py", "server_app.py"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_algorithm_modules_do_not_import_flower():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name in FLOWER_ADAPTERS:
            continue
        if any(name == "flwr" or name.startswith("flwr.") for name in imported_modules(path)):
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []
