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
    "infra.settings_fields": "tests/unit/test_settings.py",
    # The wiring runs against a real broker: the integration suites are its tests.
    "streams.pipeline": "tests/integration/test_pipeline.py",
    "streams.handlers": "tests/integration/test_pipeline.py",
    "streams.client": "tests/integration/test_pipeline.py",
    "streams.result_log": "tests/integration/test_result_claims.py",
    "streams.local": "tests/integration/test_tansu_smoke.py",
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


SOURCES = {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))
           if p.name != "__main__.py" and has_logic(p)}
TESTS = {p: imported_modules(p) for p in sorted((ROOT / "tests").rglob("test_*.py")) if "node_modules" not in p.parts}


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
    suite = ROOT / COVERED_BY[module]
    assert suite.exists() and module in TESTS[suite], f"{COVERED_BY[module]} does not import {module}"


def test_covered_by_names_only_modules_without_tests_of_their_own():
    stale = sorted(module for module in COVERED_BY if module not in SOURCES or own_tests(module))
    assert not stale, f"these now have their own test module (or are gone): drop them from COVERED_BY: {stale}"
