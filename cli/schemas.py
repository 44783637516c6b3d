"""`gapstream schemas export [--out DIR] [--check]`: the JSON Schemas and AsyncAPI document for other languages."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click

REGENERATE = "gapstream schemas export"


@click.group("schemas")
def schemas() -> None:
    """Topic contracts for producers and consumers in any language."""


@schemas.command("export")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write to (default: the schemas package, where the committed copies live).")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if the files there are stale.")
def export(out: Optional[Path], check: bool) -> None:
    """Write json/<topic>.schema.json for every topic and asyncapi.yaml, generated from the records."""
    from schemas.export import HERE, render, stale, write

    target = out or HERE
    files = render()
    if check:
        outdated = stale(target, files)
        if outdated:
            click.echo(f"gapstream: stale schema files in {target}: {', '.join(outdated)}; "
                       f"run `{REGENERATE}` to update them", err=True)
            sys.exit(1)
        click.echo(f"{len(files)} schema files in {target} are up to date")
        return
    changed = write(target, files)
    click.echo(f"wrote {len(changed)} of {len(files)} schema files to {target}"
               + (f": {', '.join(changed)}" if changed else " (all up to date)"))
