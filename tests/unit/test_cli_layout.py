"""The rooms the CLI and benchmarks moved into stay apart: the wiring never reaches up into the CLI or the
benchmarks, production code never reaches into tests/, and starting the CLI imports no model stack."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("schemas", "agents", "infra", "streams", "ui", "cli", "benchmarks")


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _importers(packages: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            bad = sorted(name for name in _imports(path) if name.split(".")[0] in forbidden)
            if bad:
                found.append(f"{path.relative_to(ROOT)}: {', '.join(bad)}")
    return found


def test_the_wiring_imports_no_cli_no_click_and_no_benchmark():
    assert _importers(("schemas", "agents", "infra", "streams"), ("click", "cli", "benchmarks")) == []


def test_production_code_never_imports_tests():
    assert _importers(PRODUCTION, ("tests",)) == []


def test_starting_the_cli_imports_no_model_stack():
    code = ("import sys, cli.main; heavy = {'torch', 'diffusers', 'transformers', 'uvicorn', 'starlette'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
