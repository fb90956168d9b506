"""The package's shape, checked from the source: no import cycle anywhere in ``matchzoo/``.

A cycle hidden in a function-local import still couples the two modules (neither can be understood, moved or
imported alone), so every import statement counts, wherever it sits. ``from pkg import name`` is an edge to the
module ``pkg.name`` when that is a module, else to ``pkg``; ``import pkg.mod`` binds ``pkg`` itself, so it is an
edge to ``pkg``'s ``__init__`` as well as to ``pkg.mod``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "matchzoo"


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(root: Path) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def absolute_source(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(path: Path, importer: str, known: set[str]) -> set[str]:
    """Every ``matchzoo`` module an import statement in ``path`` names, at module level or inside a function."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                targets.add(alias.name)
                if alias.asname is None:  # ``import a.b`` binds ``a``: its __init__ is what the code then reads
                    targets.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            source = absolute_source(node, importer, path.name == "__init__.py")
            for alias in node.names:
                child = f"{source}.{alias.name}"
                targets.add(child if child in known else source)
    return {target for target in targets if target in known and target != importer}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    modules = package_modules(root)
    known = set(modules)
    return {name: imported_modules(path, name, known) for name, path in modules.items()}


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph is small, but recursion depth is not ours to spend)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
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
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def test_the_import_graph_is_read_from_the_source():
    graph = import_graph()
    assert "matchzoo.objectives.base" in graph["matchzoo.objectives"]  # a package importing its children
    assert "matchzoo.registry" in graph["matchzoo.objectives.frechet"]


def test_cycle_detection_finds_a_function_local_cycle(tmp_path):
    """The checker itself: a cycle that only a function-local import closes is found."""
    package = tmp_path / "matchzoo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from matchzoo import b\n")
    (package / "b.py").write_text("def f():\n    from matchzoo.a import g\n")
    (package / "c.py").write_text("import matchzoo.a\n")
    graph = import_graph(package)
    assert graph["matchzoo.c"] == {"matchzoo", "matchzoo.a"}
    assert ["matchzoo.a", "matchzoo.b"] in strongly_connected_components(graph)


def test_no_import_cycle_in_the_package():
    cycles = [component for component in strongly_connected_components(import_graph()) if len(component) > 1]
    assert not cycles, "import cycles (every import counts, also inside functions): " + "; ".join(
        " <-> ".join(component) for component in cycles
    )
