"""The README's settings table is rendered from the declarations, and a stale one fails here (issue 14, item 7)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from infra.settings import SETTINGS
from infra.settings_table import END, START, WRITE_COMMAND, default_cell, main, render_table, rewrite

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_table_is_the_generated_one():
    current = README.read_text(encoding="utf-8")
    assert current == rewrite(current), f"README.md's settings table is stale: run {WRITE_COMMAND}"


def test_every_declared_variable_has_a_row_with_help():
    rows = render_table().splitlines()[2:]
    assert [row.split("|")[1].strip() for row in rows] == [f"`{item.env}`" for item in SETTINGS]
    assert all(row.split("|")[3].strip() for row in rows)


def test_a_secret_never_shows_its_default():
    key = next(item for item in SETTINGS if item.env == "OPENAI_API_KEY")
    with_default = dataclasses.replace(key, default="sk-default-123")
    assert "sk-default-123" not in default_cell(with_default)
    assert "sk-default-123" not in render_table([with_default])
    plain = dataclasses.replace(key, spec=dataclasses.replace(key.spec, secret=False), default="sk-default-123")
    assert "sk-default-123" in default_cell(plain)  # the cell shows defaults: only the flag hides this one


def test_defaults_read_as_an_operator_writes_them():
    cells = {item.env: default_cell(item) for item in SETTINGS}
    assert cells["GAPSTREAM_HOME"] == "`~/.gapstream`"
    assert cells["GAPSTREAM_LLM_TIMEOUT_S"] == "`30`"
    assert cells["GAPSTREAM_SEMANTIC_MATCHING"] == "`true`"
    assert cells["GAPSTREAM_METRICS_PORT"] == "`0` (off)"
    assert cells["GAPSTREAM_KAFKA_BOOTSTRAP"] == "unset: embedded broker (`run` only)"
    assert cells["GAPSTREAM_IMAGE_STORE"] == "`$GAPSTREAM_HOME/images`"


def test_rewrite_replaces_only_the_marked_section():
    readme = f"# Title\n\nbefore\n\n{START}\n| old | table |\n{END}\n\nafter\n"
    rewritten = rewrite(readme, table="| new |\n")
    assert rewritten == f"# Title\n\nbefore\n\n{START}\n| new |\n{END}\n\nafter\n"
    assert rewrite(rewritten, table="| new |\n") == rewritten
    with pytest.raises(ValueError, match="settings-table"):
        rewrite("# no markers\n")


def test_check_fails_on_a_stale_readme_and_write_mends_it(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\n| stale |\n{END}\nrest\n", encoding="utf-8")
    assert main(["--check", "--readme", str(readme)]) == 1
    assert WRITE_COMMAND in capsys.readouterr().err
    assert main(["--write", "--readme", str(readme)]) == 0
    assert main(["--check", "--readme", str(readme)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("intro\n") and text.endswith(f"{END}\nrest\n") and "`GAPSTREAM_UI_TOKEN`" in text
