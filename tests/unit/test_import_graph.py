"""The house rules of docs/design-notes.md ("The map"), checked on the code's own imports.

Imports flow one way: schemas ← agents ← infra ← streams ← cli / benchmarks / ui. Every import counts, at module
level or inside a function: a lazy import may keep torch out of a CLI's start-up, but it may not hide a cycle or a
wrong-way import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {"schemas": 0, "agents": 1, "infra": 2, "streams": 3, "cli": 4, "benchmarks": 4, "ui": 4}
# What infra/ may take from agents/: the ports it implements and pure helpers both sides share.
AGENTS_FOR_INFRA = {"agents.ports", "agents.text"}
# Stage logic reads top to bottom without a broker or a database: none of these in agents/.
NOT_IN_AGENTS = {"faust", "aiokafka", "kafka", "redis", "click", "infra", "streams", "cli", "benchmarks", "ui"}
MAX_LINES = 400


def production_modules() -> dict[str, Path]:
    modules = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = production_modules()


def imports_of(name: str, path: Path) -> set[str]:
    """Every module `name` imports, anywhere in the file, resolved to a module of this house where it is one."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # `from streams import logs` imports the module streams.logs
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return {module for module in found if module}


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def internal(module: str) -> str | None:
    """The module of this house that an import names (a name inside a module counts as that module)."""
    while module:
        if module in MODULES:
            return module
        module = module.rpartition(".")[0]
    return None


def test_the_house_is_read_whole():
    assert {"schemas.records", "agents.planner", "infra.settings", "streams.topology", "streams.pipeline"} <= set(MODULES)
    assert "agents.ports" in GRAPH["infra.redis_memory"] or "agents.ports" in {
        internal(m) for m in GRAPH["infra.redis_clarify"]}


def test_imports_flow_one_way():
    wrong = []
    for name, imported in GRAPH.items():
        layer = LAYERS[name.split(".")[0]]
        for module in imported:
            target = internal(module)
            if target is None:
                continue
            if LAYERS[target.split(".")[0]] > layer:
                wrong.append(f"{name} -> {target}")
    assert not wrong, "imports against the flow schemas <- agents <- infra <- streams <- cli/benchmarks/ui:\n" + \
        "\n".join(sorted(wrong))


def test_infra_takes_only_ports_and_pure_helpers_from_agents():
    wrong = sorted(f"{name} -> {internal(m)}" for name, imported in GRAPH.items() if name.startswith("infra.")
                   for m in imported if (internal(m) or "").startswith("agents.") and internal(m) not in AGENTS_FOR_INFRA)
    assert not wrong, "\n".join(wrong)


def test_stage_logic_needs_no_broker_database_or_cli():
    wrong = sorted(f"{name} -> {m}" for name, imported in GRAPH.items() if name.startswith("agents.")
                   for m in imported if m.split(".")[0] in NOT_IN_AGENTS)
    assert not wrong, "\n".join(wrong)


def test_streams_is_wiring_not_commands():
    wrong = sorted(name for name, imported in GRAPH.items() if name.startswith("streams.")
                   and any(m.split(".")[0] == "click" for m in imported))
    assert not wrong, f"click commands belong in cli/: {wrong}"


def test_production_code_never_imports_the_tests():
    wrong = sorted(f"{name} -> {m}" for name, imported in GRAPH.items() for m in imported
                   if m == "tests" or m.startswith("tests."))
    assert not wrong, "\n".join(wrong)


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    edges = {name: {internal(m) for m in imported} - {None, name} for name, imported in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    assert cycles() == []


def test_the_cycle_finder_finds_a_cycle(monkeypatch):
    monkeypatch.setitem(GRAPH, "agents.text", GRAPH["agents.text"] | {"agents.planner"})
    assert any({"agents.planner", "agents.text"} <= set(component) for component in cycles())


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_grows_past_the_limit(name):
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)} has {lines} lines: split it by concern"
