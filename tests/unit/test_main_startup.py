"""`gapstream` starts without the model or web stacks: `--help` and every error message come without torch."""

import subprocess
import sys
from pathlib import Path

from cli.main import main

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "diffusers", "transformers", "uvicorn", "starlette")


def test_starting_the_cli_imports_no_model_or_web_stack():
    # A fresh interpreter: this one has imported whatever other tests needed.
    code = ("import sys\nfrom cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print(sorted(set({HEAVY!r}) & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert "Commands:" in out.stdout and out.stdout.strip().splitlines()[-1] == "[]"


def test_help_lists_every_command(capsys):
    main(["--help"])  # returns: only failures exit
    listed = {line.split()[0] for line in capsys.readouterr().out.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == {"answer", "bench", "dlq", "memory", "run", "schemas", "submit", "ui", "worker"}
