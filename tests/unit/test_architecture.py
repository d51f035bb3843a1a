"""The package's shape, checked: no import cycles between modules (imports inside functions
included), no module importing another's private names, and imports only downward through
the layers ARCHITECTURE.md draws (cli → operations → archive, registry → storage → oci)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "cargohold"

#: Each package and the packages below it that it may import (the top-level modules errors,
#: limits, progress, version and defaults are shared by all).
LAYERS: dict[str, set[str]] = {
    "cli": {"serving", "operations", "archive", "registry", "storage", "oci"},
    "serving": {"operations", "storage", "oci"},
    "operations": {"archive", "registry", "storage", "oci"},
    "archive": {"storage", "oci"},
    "registry": {"oci"},
    "storage": {"oci"},
    "oci": set(),
}
SHARED = {"defaults", "errors", "limits", "progress", "version"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``from X import`` names."""
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports() -> dict[str, set[tuple[str, str]]]:
    """For each module: (imported module, imported name) pairs, every import in the file."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    found: dict[str, set[tuple[str, str]]] = {}
    for name, path in modules.items():
        edges: set[tuple[str, str]] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = resolve(name, path.name == "__init__.py", node)
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    edges.add((sub, "") if sub in modules else (target, alias.name))
            elif isinstance(node, ast.Import):
                edges.update((alias.name, "") for alias in node.names)
        found[name] = {(m, n) for m, n in edges if m in modules}
    return found


GRAPH = imports()


def test_the_graph_was_read() -> None:
    assert len(GRAPH) > 30
    assert ("cargohold.oci.digests", "Digest") in GRAPH["cargohold.oci.references"]


def test_no_import_cycles() -> None:
    edges = {m: {t for t, _ in targets if t != m} for m, targets in GRAPH.items()}
    # a package's __init__ is imported with each of its modules; its own imports of them are
    # not cycles, so the package modules are looked at without their __init__
    packages = {m for m in edges if (SRC.parent / m.replace(".", "/") / "__init__.py").exists()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges[module] - packages):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(set(edges) - packages):
        if module not in state:
            visit(module)


def test_no_module_imports_another_modules_private_names() -> None:
    private = [
        f"{module} imports {name} from {target}"
        for module, targets in GRAPH.items()
        for target, name in targets
        if name.startswith("_") and not name.startswith("__") and target != module
    ]
    assert private == []


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_imports_only_go_down_the_layers(package: str) -> None:
    allowed = LAYERS[package] | {package} | SHARED
    wrong = []
    for module, targets in GRAPH.items():
        if not module.startswith(f"cargohold.{package}"):
            continue
        for target, _ in targets:
            parts = target.split(".")
            if len(parts) > 1 and parts[1] not in allowed:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_no_test_module_imports_another() -> None:
    """Shared test code lives in tests/support; a test module importing another would run that
    module's tests' fixtures and helpers from the wrong place."""
    tests = Path(__file__).resolve().parents[1]
    names = {p.stem for p in tests.rglob("test_*.py")}
    found = []
    for path in tests.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in names:
                found.append(f"{path.name} imports {node.module}")
            elif isinstance(node, ast.Import):
                found += [f"{path.name} imports {a.name}" for a in node.names if a.name in names]
    assert found == []
