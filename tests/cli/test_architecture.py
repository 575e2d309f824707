"""The house keeps its shape: each stage imports only the stages before it, and no module imports itself back."""

from __future__ import annotations

import ast
from pathlib import Path

import mailer

PACKAGE = Path(mailer.__file__).parent
# The order a customer row travels in; the shared basics come before every stage.
STAGES = ["basics", "store", "contacts", "planning", "outbox", "compose", "delivery", "service", "web", "cli"]
BASICS = {"config", "errors", "logs", "addresses", "__init__"}


def stage_of(module: str) -> str:
    first = module.split(".")[1] if "." in module else "__init__"
    return "basics" if first in BASICS else first


def imports() -> dict[str, set[str]]:
    """Every mailer module and the mailer modules it imports (anywhere in it, lazy imports included)."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        name = ".".join(("mailer", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mailer"):
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name.startswith("mailer"))
        found[name] = targets
    return {name: {t for t in targets if t in found and t != name} for name, targets in found.items()}


def test_each_stage_imports_only_the_stages_before_it() -> None:
    backwards = [
        f"{module} imports {target}"
        for module, targets in imports().items()
        for target in targets
        if STAGES.index(stage_of(target)) > STAGES.index(stage_of(module))
    ]
    assert backwards == []


def test_no_module_takes_part_in_an_import_cycle() -> None:
    graph = imports()
    # A package's __init__ importing its own modules (cli registers its commands) is not a cycle of ideas.
    for name in graph:
        graph[name] = {t for t in graph[name] if not (name.startswith(t + ".") and t in graph)}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []
