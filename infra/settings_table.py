"""The README's table of settings, rendered from their declaration in `infra/settings.py`, so the two cannot drift.

    python -m infra.settings_table --write    # rewrite README.md's table after adding or changing a setting
    python -m infra.settings_table --check    # exit 1 while README.md's table is stale (a unit test does the same)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from infra.settings import SETTINGS
from infra.settings_fields import DATACLASS_DEFAULT, Declared

START = "<!-- settings-table:start -->"
END = "<!-- settings-table:end -->"
README = Path(__file__).resolve().parents[1] / "README.md"
WRITE_COMMAND = "python -m infra.settings_table --write"


def render_table(settings: Sequence[Declared] = SETTINGS) -> str:
    """The markdown table: one row per variable, in declaration order."""
    rows = ["| variable | default | what it is for |", "|---|---|---|"]
    rows += [f"| `{item.env}` | {_cell(default_cell(item))} | {_cell(item.spec.help)} |" for item in settings]
    return "\n".join(rows) + "\n"


def default_cell(item: Declared) -> str:
    """What the table says about the default: the value, what leaving it unset means, never a secret's value."""
    spec = item.spec
    if spec.shown is not None:
        return spec.shown
    value = item.default if spec.env_default is DATACLASS_DEFAULT else spec.env_default
    if value is None:
        return f"unset: {spec.means}" if spec.means else "unset"
    if spec.secret:
        return "not shown (secret)"
    text = f"`{_text(value)}`"
    return f"{text} ({spec.means})" if spec.means else text


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, "g")  # 30.0 reads as 30, as an operator would write it
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def rewrite(readme: str, table: Optional[str] = None) -> str:
    """`readme` with the text between the settings-table markers replaced by the table."""
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README has no {START} … {END} section")
    before = readme[: start + len(START)]
    return f"{before}\n{render_table() if table is None else table}{readme[end:]}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.settings_table", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the README's table in place")
    mode.add_argument("--check", action="store_true", help="exit 1 if the README's table is stale")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        sys.stdout.write(render_table())
        return 0
    current = args.readme.read_text(encoding="utf-8")
    wanted = rewrite(current)
    if args.check:
        if current != wanted:
            print(f"{args.readme}: the settings table is stale; run {WRITE_COMMAND}", file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        args.readme.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
