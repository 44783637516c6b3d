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

# module -> (the suite that covers it, what in that suite exercises it: a string the suite must contain).
COVERED_BY = {
    # The topic registry and the conversation records: the schema suite checks every topic through them.
    "schemas.topics": ("tests/unit/test_schemas.py", "schemas.topics"),
    "schemas.questions": ("tests/unit/test_schemas.py", "schemas.questions"),
    "infra.settings_fields": ("tests/unit/test_settings.py", "SettingsError"),
    # The wiring runs against a real broker: the integration suites are its tests.
    "streams.client": ("tests/integration/test_pipeline.py", "streams.client"),
    "streams.result_log": ("tests/integration/test_result_claims.py", "KafkaResultLog"),
    "streams.local": ("tests/e2e/test_cli.py", '_gapstream("run"'),
    "streams.dlq": ("tests/integration/test_dlq_cli.py", '"dlq"'),
    "streams.watchdog": ("tests/integration/test_watchdog.py", "watchdog"),
    # The commands: run as a user runs them, in a subprocess, so no suite imports them.
    "cli.common": ("tests/ui/test_ui_command.py", "cli.common"),
    "cli.run": ("tests/e2e/test_cli.py", '_gapstream("run"'),
    "cli.memory": ("tests/e2e/test_cli.py", '_gapstream("memory", "add"'),
    "cli.answer": ("tests/e2e/test_cli.py", '_gapstream("answer"'),
    "cli.dlq": ("tests/integration/test_dlq_cli.py", '"dlq"'),
    "cli.schemas": ("tests/unit/test_export.py", "export"),
    "cli.bench": ("tests/integration/test_bench.py", '"bench"'),
    # Benchmarks: driven through `gapstream bench` or run as scripts by their suites.
    "benchmarks.common": ("tests/integration/test_bench.py", '"bench"'),
    "benchmarks.pipeline": ("tests/integration/test_bench.py", '"pipeline"'),
    "benchmarks.scaleout": ("tests/integration/test_bench.py", '"scaleout"'),
    "benchmarks.sim_worker": ("tests/integration/test_bench.py", '"scaleout"'),
    "benchmarks.generator": ("tests/unit/test_generator_bench.py", '"generator"'),
    "benchmarks.fake_serpapi": ("tests/unit/test_serpapi_search.py", "benchmarks.fake_serpapi"),
    "benchmarks.threaded_fake": ("tests/unit/test_llm_adapter.py", "benchmarks"),
    "benchmarks.llama_server": ("tests/integration/test_real_llm.py", "benchmarks.llama_server"),
    "benchmarks.device_check": ("tests/unit/test_generator_device_check.py", "device_check"),
    "benchmarks.real_llm": ("tests/integration/test_real_llm.py", "benchmarks"),
    # The page: the ASGI app's tests reach every part of it through its routes.
    "ui.auth": ("tests/ui/test_app.py", "token"),
    "ui.forms": ("tests/ui/test_app.py", "/submit"),
    "ui.index": ("tests/integration/test_ui_index.py", "ui.index"),
    "ui.live": ("tests/ui/test_app.py", "/events"),
    "ui.services": ("tests/ui/test_app.py", "Services"),
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
            helper = ROOT / Path(*module.split(".")).with_suffix(".py")
            if module not in seen and module.startswith("tests.") and helper.exists():
                todo.append(helper)
            seen.add(module)
    return seen


SOURCES = {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))
           if p.name != "__main__.py" and has_logic(p)}
TESTS = {p: through_test_helpers(p) for p in sorted((ROOT / "tests").rglob("test_*.py"))
         if "node_modules" not in p.parts}


def own_tests(module: str) -> list[Path]:
    base = module.rpartition(".")[2]
    return [p for p, imported in TESTS.items()
            if (p.stem == f"test_{base}" or p.stem.startswith(f"test_{base}_")) and module in imported]


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_each_module_has_its_tests(module):
    if own_tests(module):
        return
    assert module in COVERED_BY, (f"{SOURCES[module].relative_to(ROOT)} has no tests/**/test_"
                                  f"{module.rpartition('.')[2]}.py importing {module}; add one, or name the suite "
                                  "that covers it in COVERED_BY")
    suite, evidence = COVERED_BY[module]
    path = ROOT / suite
    assert path.exists(), f"{suite} (named for {module}) does not exist"
    assert module in TESTS[path] or evidence in path.read_text(encoding="utf-8"), \
        f"{suite} neither imports {module} nor contains {evidence!r}"


def test_covered_by_names_only_modules_without_tests_of_their_own():
    stale = sorted(module for module in COVERED_BY if module not in SOURCES or own_tests(module))
    assert not stale, f"these now have their own test module (or are gone): drop them from COVERED_BY: {stale}"
