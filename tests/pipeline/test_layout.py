"""The layout's rules, read from the source: no god modules, no import cycle, arrows that point one way.

Every import counts, also those inside functions (a lazy import still ties two modules together).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO_ROOT

PACKAGES = ("pipeline", "training")
# Rooms are split by topic, not by size (STYLE 15); past this many lines a module likely holds two topics.
# (A 300-line cap split files by size: contract.py and train.py passed it with one topic each.)
MAX_LINES = 500


def module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if all(part.isidentifier() for part in name.split(".")):  # not Alembic's 0001_initial.py
                files[name] = path
    return files


MODULES = module_files()


def imports_of(name: str) -> set[str]:
    """The project modules `name` imports anywhere in its source."""
    tree = ast.parse(MODULES[name].read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pipeline.cli import defects` imports the module pipeline.cli.defects; `from x import f`, x
            targets = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def importers(prefix: str) -> dict[str, set[str]]:
    """Modules outside `prefix` that import modules inside it."""
    inside = lambda m: m == prefix or m.startswith(prefix + ".")  # noqa: E731
    return {m: {t for t in deps if inside(t)} for m, deps in GRAPH.items() if not inside(m) and any(map(inside, deps))}


def test_the_source_is_found() -> None:
    assert {"pipeline.consumer", "pipeline.storage.store", "pipeline.cli.app", "training.cli"} <= MODULES.keys()
    assert "pipeline.storage.tables" in GRAPH["pipeline.storage.store"]
    assert "pipeline.cli.defects" in GRAPH["pipeline.cli.app"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_short(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines (at most {MAX_LINES}): two topics in one module?"


def test_no_import_cycle() -> None:
    # Tarjan's strongly connected components: any component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(GRAPH):
        if name not in index:
            visit(name)
    assert cycles == []


def test_training_imports_pipeline_never_the_reverse() -> None:
    assert {m for m in importers("training") if m.startswith("pipeline")} == set()


def test_the_runtime_does_not_need_the_development_tools() -> None:
    # only the dev room's own commands, and training's demo, use pipeline.dev
    assert set(importers("pipeline.dev")) <= {"training.demo"}


def test_nothing_imports_the_cli_but_commands() -> None:
    users = set(importers("pipeline.cli"))
    assert users <= {"pipeline.__main__", "pipeline.dev.cli", "training.cli"}


def test_storage_knows_nothing_of_alerting_or_the_loop() -> None:
    # alerting reads the outbox tables; storage writes them without knowing who delivers them
    allowed = {"pipeline.errors", "pipeline.results"}
    for name, deps in GRAPH.items():
        if name.startswith("pipeline.storage"):
            outside = {d for d in deps if d.startswith("pipeline") and not d.startswith("pipeline.storage")}
            assert outside <= allowed, f"{name} imports {sorted(outside - allowed)}"
