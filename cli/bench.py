"""`gapstream bench …`: benchmarks that print figures (ratios measured in one run), never pass/fail timings.

Each benchmark lives in its own module, `benchmarks.<name>`, exposing a click command named `command`; the group
imports it only when asked for, so the heavy imports of one benchmark never slow the CLI or another benchmark.
"""

from __future__ import annotations

import importlib
from typing import Optional

import click

# name -> (module, one-line help shown by `gapstream bench --help`)
BENCHMARKS = {
    "generator": ("benchmarks.generator", "Images/s one at a time vs micro-batched on the configured model."),
    "pipeline": ("benchmarks.pipeline", "Raw 6-hop chain vs the pipeline vs a sequential agent script."),
    "scaleout": ("benchmarks.scaleout", "Generator images/s in 1, 2 and 4 worker processes of one group."),
}


class _LazyBenchGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(BENCHMARKS)

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        if name not in BENCHMARKS:
            return None
        module_name, help_text = BENCHMARKS[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            return click.Command(name, help=f"{help_text} (not available in this build)",
                                 callback=_unavailable(name))
        return module.command


def _unavailable(name: str):
    def callback() -> None:
        raise click.ClickException(f"the {name} benchmark is not available in this build")

    return callback


@click.group(cls=_LazyBenchGroup)
def bench() -> None:
    """Benchmarks that print figures; `--json` on each prints one JSON object whose keys name their unit."""
