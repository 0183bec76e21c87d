"""The package's shape, measured from its source (ast, nothing imported): no module over 450
lines, no class over 300, and no import cycle among rtune's modules. Cycles count every import
(module level, inside functions, under TYPE_CHECKING): a deferred import hides a cycle from the
interpreter, not from a reader, and breaks the day someone moves it to the top."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rtune"
ROOT = PACKAGE.parent
MAX_MODULE_LINES = 450
MAX_CLASS_LINES = 300


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def load_modules() -> dict[str, tuple[Path, ast.Module]]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        modules[module_name(path)] = (path, ast.parse(path.read_text(), filename=str(path)))
    return modules


MODULES = load_modules()


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT))


def known_prefix(name: str) -> str | None:
    """The module a dotted name lands in: itself, or the nearest package or module above it
    (`rtune.x.y` naming an attribute of rtune.x is an import of rtune.x)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def imports_of(name: str, tree: ast.Module) -> dict[str, int]:
    """The rtune modules this module imports, each with the line of its first import."""
    path = MODULES[name][0]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}

    def add(target: str | None, line: int) -> None:
        if target is not None and target != name:
            found[target] = min(found.get(target, line), line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "rtune" or alias.name.startswith("rtune."):
                    add(known_prefix(alias.name), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base != "rtune" and not base.startswith("rtune."):
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                add(submodule if submodule in MODULES else known_prefix(base), node.lineno)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    return {name: imports_of(name, tree) for name, (_, tree) in MODULES.items()}


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            advanced = False
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(graph[target])))
                    advanced = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def a_cycle_through(group: list[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """The shortest cycle from the group's first module back to it, by breadth-first search."""
    start, members = group[0], set(group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in graph[node]:
                if target not in members:
                    continue
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if target not in came_from:
                    came_from[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle found in {group}")


def describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    steps = [
        f"{source} (line {graph[source][target]}) -> {target}"
        for source, target in zip(cycle, cycle[1:])
    ]
    return " -> ".join(cycle) + "\n    " + "\n    ".join(steps)


def test_the_package_source_was_found():
    assert "rtune" in MODULES and "rtune._execution.dispatch" in MODULES


def test_no_module_is_over_the_line_limit():
    too_long = [
        f"{shown(path)}: {len(path.read_text().splitlines())} lines"
        for path, _ in MODULES.values()
        if len(path.read_text().splitlines()) > MAX_MODULE_LINES
    ]
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(too_long)


def test_no_class_is_over_the_line_limit():
    too_long = []
    for path, tree in MODULES.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = node.end_lineno - first + 1
                if lines > MAX_CLASS_LINES:
                    too_long.append(f"{shown(path)}: class {node.name} (line {first}): {lines}")
    assert not too_long, f"classes over {MAX_CLASS_LINES} lines:\n" + "\n".join(too_long)


def test_no_import_cycle_among_rtune_modules():
    graph = import_graph()
    groups = strongly_connected(graph)
    message = "\n".join(
        f"modules importing each other: {', '.join(group)}\n"
        f"  for example {describe(a_cycle_through(group, graph), graph)}"
        for group in groups
    )
    assert not groups, message


# ---- the measuring itself ----


def test_the_cycle_finder_finds_a_planted_cycle_and_only_it():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}, "e": {"d": 5}}
    groups = strongly_connected(graph)
    assert groups == [["a", "b", "c"]]
    assert a_cycle_through(groups[0], graph) == ["a", "b", "c", "a"]
    assert strongly_connected({"a": {"b": 1}, "b": {}}) == []


def test_every_kind_of_import_counts():
    """Function-level and TYPE_CHECKING imports, `from package import submodule`, and a package
    import (its __init__) are all edges, read from a module of the real package."""
    source = """
from typing import TYPE_CHECKING
import rtune
import rtune._execution
from rtune._execution import dispatch
from rtune._execution.events import EventBus
if TYPE_CHECKING:
    from rtune._durable.trial import Trial
def later():
    import rtune._execution.lifecycle
    from rtune import tuner
    from . import drain
    from ..search import Searcher
"""
    found = imports_of("rtune._execution.launcher", ast.parse(source))
    assert set(found) == {
        "rtune",
        "rtune._execution",
        "rtune._execution.dispatch",
        "rtune._execution.events",
        "rtune._durable.trial",
        "rtune._execution.lifecycle",
        "rtune.tuner",
        "rtune._execution.drain",
        "rtune.search",
    }
