"""The first-party import graph of the repository, read with `ast` (nothing is imported), and its
cycles (tests/test_import_layers.py).

Every `import x` and `from x import y` counts, wherever it is: module level, inside a function,
under `if TYPE_CHECKING:`. A module may only know the layers below it, so a deferred import that
closes a loop is still a loop. `from pkg import mod` imports pkg.mod when that is a module;
relative imports are resolved against the importing module's package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

Graph = dict[str, set[str]]


def module_name(root: Path, path: Path) -> str:
    """services/platform/config.py -> services.platform.config; pkg/__init__.py -> pkg."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """{module name: file} for every .py file under root/<package> (sorted, deterministic)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(root, path)] = path
    return found


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str | None:
    """`from ..x import y` inside `module` -> the absolute name of ..x (None: above the top)."""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 > len(parts) or (level - 1 == len(parts) and not name):
        return None
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _owning_module(name: str, modules: Mapping[str, Path]) -> str | None:
    """The longest prefix of a dotted name that is a first-party module (None: third party)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, source: str, modules: Mapping[str, Path]) -> set[str]:
    """First-party modules that `module` (its source text) imports, itself excluded."""
    is_package = modules.get(module, Path()).name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets.update(filter(None, (_owning_module(a.name, modules) for a in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            if base is None:
                continue
            owner = _owning_module(base, modules)
            if owner is not None:
                targets.add(owner)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:  # `from pkg import mod`
                    targets.add(f"{base}.{alias.name}")
    targets.discard(module)
    return targets


def build_graph(modules: Mapping[str, Path]) -> Graph:
    """{module: first-party modules it imports} for every module."""
    return {name: imports_of(name, path.read_text(), modules) for name, path in modules.items()}


def cycles(graph: Mapping[str, set[str]]) -> list[tuple[str, ...]]:
    """Each strongly connected component of more than one module, sorted (Tarjan's algorithm,
    iterative so a deep graph cannot hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop()
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(tuple(sorted(component)))
    return sorted(found)
