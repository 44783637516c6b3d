"""Tests mirror the layout: each source module with logic has a test module named after it (`test_<module>.py`,
or `test_<module>_<aspect>.py`) that imports it, so a reader finds a module's tests by its name.

Where one suite covers a module better than a test module of its own would (an end-to-end suite, a behaviour
suite over several modules), `COVERED_BY` names that suite; it must import the module too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "agents", "infra", "streams", "cli", "benchmarks", "ui")

COVERED_BY = {
    # Ports and small records: exercised by every stage's tests through their fakes.
    "agents.ports": "tests/unit/test_backends.py",
    "schemas.topics": "tests/unit/test_schemas.py",
    "schemas.trace": "tests/unit/test_records_frozen.py",
    "schemas.records": "tests/unit/test_records_frozen.py",
    # The planner's parts: the planner's own suite and the public examples drive them through HeuristicPlanner.
    "agents.planner_rules": "tests/unit/test_sharper_default_brain.py",
    "agents.planner_memory": "tests/unit/test_sharper_default_brain.py",
    "agents.statements": "tests/unit/test_sharper_default_brain.py",
    "agents.visual": "tests/unit/test_sharper_default_brain.py",
    "agents.semantic": "tests/unit/test_sharper_default_brain.py",
    "agents.text": "tests/unit/test_memory.py",
    "agents.search_text": "tests/unit/test_searcher.py",
    "agents.llm_stage": "tests/unit/test_llm_planner.py",
    "agents.llm_outputs": "tests/unit/test_llm_planner.py",
    "agents.publisher": "tests/unit/test_records_frozen.py",
    "agents.conversation": "tests/unit/test_learning_conversation_clarify.py",
    "agents.clarify": "tests/unit/test_learning_conversation_clarify.py",
    "agents.learning": "tests/unit/test_learning_conversation_clarify.py",
    "infra.llm_json": "tests/unit/test_llm_adapter.py",
    "infra.redis_errors": "tests/integration/test_degraded_and_security.py",
    "infra.settings_fields": "tests/unit/test_settings.py",
    "infra.metrics": "tests/unit/test_logs_and_metrics.py",
    "streams.logs": "tests/unit/test_logs_and_metrics.py",
    # The wiring runs against a real broker: the integration suites are its tests.
    "streams.pipeline": "tests/integration/test_pipeline.py",
    "streams.handlers": "tests/integration/test_pipeline.py",
    "streams.client": "tests/integration/test_pipeline.py",
    "streams.faust_app": "tests/unit/test_faust_app.py",
    "streams.result_log": "tests/integration/test_result_claims.py",
    "streams.local": "tests/integration/test_tansu_smoke.py",
    "streams.progress": "tests/e2e/test_progress.py",
    # The CLI's shared parts and the benchmarks' fakes: the suites that use them.
    "cli.common": "tests/ui/test_command.py",
    "streams.dlq": "tests/ui/test_app.py",
    "benchmarks.fake_serpapi": "tests/unit/test_serpapi_search.py",
    "benchmarks.threaded_fake": "tests/unit/test_llm_adapter.py",
    "benchmarks.llama_server": "tests/integration/test_real_llm.py",
    "benchmarks.device_check": "tests/unit/test_generator_device_check.py",
    # The page: the ASGI app's tests reach every part of it.
    "ui.auth": "tests/ui/test_app.py",
    "ui.forms": "tests/ui/test_app.py",
    "ui.index": "tests/integration/test_ui_index.py",
    "ui.live": "tests/ui/test_app.py",
    "ui.services": "tests/ui/test_app.py",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def has_logic(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for node in tree.body)


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def through_test_helpers(path: Path) -> set[str]:
    """What a test module imports, directly or through the tests' own helper modules (kafka_tools, fakes, ...)."""
    seen: set[str] = set()
    todo = [path]
    while todo:
        for module in imported_modules(todo.pop()):
            if module in seen:
                continue
            seen.add(module)
            helper = ROOT / Path(*module.split(".")).with_suffix(".py")
            if module.startswith("tests.") and helper.exists():
                todo.append(helper)
    return seen


SOURCES = {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))
           if p.name != "__main__.py" and has_logic(p)}
TESTS = {p: through_test_helpers(p) for p in sorted((ROOT / "tests").rglob("test_*.py"))
         if "node_modules" not in p.parts}


def own_tests(module: str) -> list[Path]:
    base = module.rpartition(".")[2]
    return [p for p, imported in TESTS.items()
            if (p.stem == f"test_{base}" or p.stem.startswith(f"test_{base}_")) and module in imported_modules(p)]


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_each_module_has_its_tests(module):
    if own_tests(module):
        return
    assert module in COVERED_BY, (f"{SOURCES[module].relative_to(ROOT)} has no tests/**/test_"
                                  f"{module.rpartition('.')[2]}.py importing {module}; add one, or name the suite "
                                  "that covers it in COVERED_BY")
    suite = ROOT / COVERED_BY[module]
    assert suite.exists() and module in TESTS[suite], f"{COVERED_BY[module]} does not import {module}"


def test_covered_by_names_only_modules_without_tests_of_their_own():
    stale = sorted(module for module in COVERED_BY if module not in SOURCES or own_tests(module))
    assert not stale, f"these now have their own test module (or are gone): drop them from COVERED_BY: {stale}"
